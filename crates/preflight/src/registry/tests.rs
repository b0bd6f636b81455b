//! The registry client against local servers that record every connection: what is not
//! on the list, or is at an address it may not have, gets none, and answers as a
//! registry that does not answer.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::Preflight;
use crate::allow::RegistryHost;

/// A local HTTP server that counts the connections it accepts and keeps each request's
/// head; `answer(method, target, head)` is the whole response.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

type Answer = dyn Fn(&str, &str, &str) -> String + Send + Sync;

impl Server {
    async fn start(answer: impl Fn(&str, &str, &str) -> String + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answer: Arc<Answer> = Arc::new(answer);
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (r, answer) = (r.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let mut first = head.lines().next().unwrap_or_default().split(' ');
                    let (method, target) = (
                        first.next().unwrap_or_default().to_string(),
                        first.next().unwrap_or_default().to_string(),
                    );
                    r.lock().unwrap().push(head.clone());
                    let response = answer(&method, &target, &head);
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Server {
            addr,
            connections,
            requests,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn response(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out
}

fn found() -> String {
    response(
        "200 OK",
        &[(
            "Docker-Content-Digest",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        )],
        "",
    )
}

const UNKNOWN: &str = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;

/// Answers every manifest with "unknown" (404, and the envelope on a GET).
fn unknown(method: &str, _: &str, _: &str) -> String {
    match method {
        "GET" => response(
            "404 Not Found",
            &[("Content-Type", "application/json")],
            UNKNOWN,
        ),
        _ => response("404 Not Found", &[], ""),
    }
}

fn hosts(list: &[String]) -> Vec<RegistryHost> {
    list.iter().map(|h| h.parse().unwrap()).collect()
}

async fn look(registry: &Registry, image: &str) -> (Lookup<()>, String) {
    let reference = crate::reference_of(image).unwrap();
    tokio::time::timeout(TIME_LIMIT, registry.exists(&reference, None))
        .await
        .unwrap_or((Lookup::Unknown, NOT_REACHABLE.into()))
}

fn not_reachable() -> (Lookup<()>, String) {
    (Lookup::Unknown, NOT_REACHABLE.to_string())
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A kube client whose every answer is 404: no Secret, no account, no pull secret.
fn no_objects() -> kube::Client {
    crate::tests::missing_everything().0
}

fn spec(image: &str) -> datajob_api::DataJobSpec {
    serde_json::from_value(serde_json::json!({"image": image})).unwrap()
}

#[tokio::test]
async fn images_off_the_list_get_no_connection_and_the_warnings_of_an_unreachable_registry() {
    let server = Server::start(unknown).await;
    let port = server.addr.port();
    let default = Preflight::new(no_objects(), Registries::new(Vec::new()));
    // Allowed, the server answers: the user is told the image is missing.
    let allowed = Preflight::new(
        no_objects(),
        Registries::new(hosts(&[format!("127.0.0.1:{port}")])),
    );
    let image = format!("127.0.0.1:{port}/team/job:1");
    let told = allowed.warnings("ns", &spec(&image)).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0].contains("was not found in its registry (manifest unknown)"),
        "{told:?}"
    );
    let after_allowed = server.connections();
    assert!(after_allowed >= 1);

    // Not on the list: no connection, and the warnings of a registry that is not there.
    let unreachable = format!("127.0.0.1:{}/team/job:1", closed_port());
    let silent = allowed.warnings("ns", &spec(&unreachable)).await;
    assert!(silent.is_empty(), "{silent:?}");
    let started = Instant::now();
    for refused in [
        image.clone(),
        format!("localhost:{port}/team/job:1"),
        format!("[::1]:{port}/team/job:1"),
        format!("127.1:{port}/team/job:1"),
        "169.254.169.254/latest/meta-data:1".to_string(),
        "10.0.0.7:5000/team/job:1".to_string(),
        "192.168.1.20/team/job:1".to_string(),
        "registry.kube-system.svc.cluster.local:5000/team/job:1".to_string(),
        "metadata.google.internal/computemetadata/v1:1".to_string(),
        "registry:5000/team/job:1".to_string(),
    ] {
        assert_eq!(
            default.warnings("ns", &spec(&refused)).await,
            silent,
            "{refused}"
        );
        // The same inner answer too, in case it is ever shown.
        assert_eq!(
            look(&default.registry, &refused).await,
            not_reachable(),
            "{refused}"
        );
    }
    assert_eq!(
        look(&allowed.registry, &unreachable).await,
        not_reachable(),
        "an allowed registry that does not answer"
    );
    assert_eq!(
        server.connections(),
        after_allowed,
        "{:?}",
        server.requests()
    );
    // Refused before any connection: no waiting on addresses that may not answer.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_named_host_is_connected_to_and_a_public_name_at_a_loopback_address_is_not() {
    let server = Server::start(|_, _, _| found()).await;
    let port = server.addr.port();
    let named = Registry::new(Registries::new(hosts(&[
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
    ])));
    assert_eq!(
        look(&named, &format!("127.0.0.1:{port}/team/job:1"))
            .await
            .0,
        Lookup::Found(())
    );
    assert_eq!(
        look(&named, &format!("localhost:{port}/team/job:1"))
            .await
            .0,
        Lookup::Found(())
    );
    let seen = server.connections();
    assert!(seen >= 2, "{seen}");
    assert!(
        server.requests()[0].starts_with("HEAD /v2/team/job/manifests/1 HTTP/1.1"),
        "{:?}",
        server.requests()
    );
    // On the public list but resolving to 127.0.0.1: the resolver keeps no address.
    let public = Registry::new(Registries::with_public(
        hosts(&[format!("localhost:{port}")]),
        Vec::new(),
    ));
    // (`localhost` is refused by name already; the resolver is the check for names that
    // look public. Ask it directly, as the client does.)
    use reqwest::dns::Resolve as _;
    let resolver = Guarded(Arc::new(Registries::with_public(Vec::new(), Vec::new())));
    let name: reqwest::dns::Name = "localhost".parse().unwrap();
    assert!(
        resolver.resolve(name).await.is_err(),
        "loopback addresses dropped"
    );
    let resolver = Guarded(Arc::new(Registries::new(hosts(&["localhost:*".into()]))));
    let name: reqwest::dns::Name = "localhost".parse().unwrap();
    assert!(resolver.resolve(name).await.is_ok(), "named: any address");
    assert_eq!(
        look(&public, &format!("localhost:{port}/team/job:1")).await,
        not_reachable()
    );
    assert_eq!(server.connections(), seen);
}

#[tokio::test]
async fn redirects_and_token_services_off_the_list_get_no_connection() {
    let target = Server::start(|_, _, _| found()).await;
    let elsewhere = format!("http://127.0.0.1:{}", target.addr.port());
    let (to, realm) = (elsewhere.clone(), elsewhere.clone());
    let redirects = Server::start(move |_, path, _| {
        response(
            "307 Temporary Redirect",
            &[("Location", &format!("{to}{path}"))],
            "",
        )
    })
    .await;
    let challenges = Server::start(move |_, _, _| {
        let challenge = format!(r#"Bearer realm="{realm}/token",service="registry""#);
        response("401 Unauthorized", &[("WWW-Authenticate", &challenge)], "")
    })
    .await;
    let metadata = Server::start(|_, _, _| {
        response(
            "302 Found",
            &[("Location", "http://169.254.169.254/latest/meta-data/")],
            "",
        )
    })
    .await;
    let allowed = Registry::new(Registries::new(hosts(&[
        format!("127.0.0.1:{}", redirects.addr.port()),
        format!("127.0.0.1:{}", challenges.addr.port()),
        format!("127.0.0.1:{}", metadata.addr.port()),
    ])));
    let started = Instant::now();
    for server in [&redirects, &challenges, &metadata] {
        let image = format!("127.0.0.1:{}/team/job:1", server.addr.port());
        assert_eq!(look(&allowed, &image).await, not_reachable(), "{image}");
        assert_eq!(server.connections(), 1, "the allowed registry is asked");
    }
    assert_eq!(target.connections(), 0, "{:?}", target.requests());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Once the target is allowed too, both are followed.
    let both = Registry::new(Registries::new(hosts(&[
        format!("127.0.0.1:{}", redirects.addr.port()),
        format!("127.0.0.1:{}", challenges.addr.port()),
        format!("127.0.0.1:{}", target.addr.port()),
    ])));
    let image = format!("127.0.0.1:{}/team/job:1", redirects.addr.port());
    assert_eq!(look(&both, &image).await.0, Lookup::Found(()));
    assert_eq!(target.connections(), 1);
    let image = format!("127.0.0.1:{}/team/job:1", challenges.addr.port());
    // The target answers the token request with no token: no answer, but it was asked.
    assert_eq!(look(&both, &image).await, not_reachable());
    assert_eq!(target.connections(), 2);
    assert!(
        target.requests()[1]
            .starts_with("GET /token?service=registry&scope=repository%3Ateam%2Fjob%3Apull "),
        "{:?}",
        target.requests()
    );
}

#[tokio::test]
async fn the_token_flow_and_the_registrys_words() {
    // Challenges requests without the token, with a token service on itself.
    let registry = Server::start(move |method, path, head| {
        let bearer = head.lines().any(|l| l.eq_ignore_ascii_case("authorization: Bearer t0k3n"));
        let me = head
            .lines()
            .find_map(|l| l.strip_prefix("host: ").or_else(|| l.strip_prefix("Host: ")))
            .unwrap_or_default()
            .to_string();
        match (method, path) {
            ("GET", p) if p.starts_with("/token?") => {
                response("200 OK", &[("Content-Type", "application/json")], r#"{"token":"t0k3n"}"#)
            }
            (_, p) if !bearer && p.starts_with("/v2/") => {
                let challenge = format!(r#"Bearer realm="http://{me}/token",service="registry""#);
                response("401 Unauthorized", &[("WWW-Authenticate", &challenge)], "")
            }
            (_, "/v2/team/job/manifests/1") => found(),
            ("GET", "/v2/team/job/manifests/denied") => response(
                "404 Not Found",
                &[],
                r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#,
            ),
            ("GET", "/v2/team/job/manifests/bare") => response("404 Not Found", &[], "not json"),
            (m, _) => unknown(m, "", ""),
        }
    })
    .await;
    let port = registry.addr.port();
    let client = Registry::new(Registries::new(hosts(&[format!("127.0.0.1:{port}")])));
    let at = |tag: &str| format!("127.0.0.1:{port}/team/job:{tag}");
    assert_eq!(look(&client, &at("1")).await.0, Lookup::Found(()));
    assert_eq!(
        look(&client, &at("2")).await,
        (Lookup::Missing, "manifest unknown".to_string())
    );
    assert_eq!(
        look(&client, &at("bare")).await,
        (Lookup::Missing, "HTTP 404".to_string())
    );
    assert_eq!(look(&client, &at("denied")).await, not_reachable());
}

#[test]
fn challenges_are_parsed_with_quoted_commas() {
    let (scheme, params) = parse_challenge(
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
    );
    assert_eq!(scheme, "bearer");
    assert_eq!(
        params,
        vec![
            (
                "realm".to_string(),
                "https://auth.docker.io/token".to_string()
            ),
            ("service".into(), "registry.docker.io".into()),
            ("scope".into(), "repository:a/b:pull,push".into()),
        ]
    );
    assert_eq!(
        parse_challenge(r#"Basic realm=x"#),
        ("basic".into(), vec![("realm".into(), "x".into())])
    );
    assert_eq!(parse_challenge(""), (String::new(), Vec::new()));
}

#[test]
fn manifest_urls_are_https_except_on_this_host() {
    let url = |image: &str| {
        manifest_url(&crate::reference_of(image).unwrap())
            .unwrap()
            .to_string()
    };
    assert_eq!(
        url("busybox"),
        "https://index.docker.io/v2/library/busybox/manifests/latest"
    );
    assert_eq!(
        url("ghcr.io/acme/churn:1.4.2"),
        "https://ghcr.io/v2/acme/churn/manifests/1.4.2"
    );
    assert_eq!(
        url("127.0.0.1:5000/x:1"),
        "http://127.0.0.1:5000/v2/x/manifests/1"
    );
    assert_eq!(url("localhost/x"), "http://localhost/v2/x/manifests/latest");
    assert_eq!(
        url("[::1]:5000/x"),
        "http://[::1]:5000/v2/x/manifests/latest"
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    assert_eq!(
        url(&format!("quay.io/x:1@{digest}")),
        format!("https://quay.io/v2/x/manifests/{digest}")
    );
}

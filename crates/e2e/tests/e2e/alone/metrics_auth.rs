//! End-to-end: `/metrics` served securely (`--metrics-secure`) on the real apiserver.
//! An operator serves it over HTTPS and lets a scrape in only when the apiserver
//! authenticates its bearer token (TokenReview) and authorizes its user to `get` the
//! non-resource URL `/metrics` (SubjectAccessReview), as kube-rbac-proxy does: no token
//! or a garbage one 401, a ServiceAccount without the permission 403, one bound to a
//! ClusterRole that grants it 200 with the metrics; plain HTTP on that port gets no
//! answer, and the admin port keeps only the probes. First with a certificate from a
//! directory (as a mounted cert-manager Secret; the scraper verifies it against its CA),
//! then with the self-signed one made in memory, where the cache shows: an allowed token
//! stays allowed for its 30 s after its binding went, and is refused after.
//!
//! The operators never act: they follow a Lease the test holds (no controller runs), and
//! have no webhook. Run with
//!   cargo test -p datajob-e2e --features e2e --test e2e -- --test-threads=1 alone::metrics_auth::
use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::operator::{Operator, free_port, http_get, sample, spawn};
use common::{client, from_json, test_namespace, unique_name};
use http::header::AUTHORIZATION;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

/// The Lease the operators elect on; the test holds it for an hour, so they follow.
const LEASE: &str = "held-by-the-test";

/// Deletes the test's ClusterRole and ClusterRoleBinding (both named `0`) when dropped.
struct ClusterRbac(String);

impl Drop for ClusterRbac {
    fn drop(&mut self) {
        let name = self.0.clone();
        common::clean_up_now(move |c| async move {
            let _ = Api::<ClusterRoleBinding>::all(c.clone())
                .delete(&name, &DeleteParams::default())
                .await;
            let _ = Api::<ClusterRole>::all(c)
                .delete(&name, &DeleteParams::default())
                .await;
        });
    }
}

/// A token of the ServiceAccount `name` (the TokenRequest API, the apiserver's audience).
async fn token(sas: &Api<ServiceAccount>, name: &str) -> String {
    sas.create(
        &PostParams::default(),
        &from_json(json!({"metadata": {"name": name}})),
    )
    .await
    .expect("create the ServiceAccount");
    let request: TokenRequest = from_json(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600},
    }));
    sas.create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("a token of the ServiceAccount")
        .status
        .expect("the TokenRequest's status")
        .token
        .expect("the token")
}

/// An operator that serves `/metrics` securely on `secure` (certificate from
/// `cert_dir`, else self-signed) and follows the test's Lease in `ns`.
async fn secure_operator(ns: &str, secure: &str, cert_dir: Option<&Path>) -> Operator {
    let dir = cert_dir.map(|d| d.display().to_string());
    let mut env = vec![
        ("POD_NAMESPACE", ns),
        ("DATAJOB_LEASE_NAME", LEASE),
        ("DATAJOB_METRICS_SECURE", "true"),
        ("DATAJOB_METRICS_SECURE_ADDR", secure),
    ];
    if let Some(d) = &dir {
        env.push(("DATAJOB_METRICS_CERT_DIR", d));
    }
    spawn(&env).await
}

/// A scraper of `https://<addr>`: verifies the server against the CA in `ca_file`, or,
/// without one, accepts any certificate (the self-signed one).
fn scraper(addr: &str, ca_file: Option<&Path>) -> kube::Client {
    let url = format!("https://{addr}").parse().expect("a URL");
    let mut config = kube::Config::new(url);
    match ca_file {
        Some(f) => config.root_cert_file = Some(f.to_path_buf()),
        None => config.accept_invalid_certs = true,
    }
    config.default_retry = false;
    config.read_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(config).expect("an HTTPS client")
}

/// `GET /metrics` with `token` as bearer token: status and body.
async fn scrape(scraper: &kube::Client, token: Option<&str>) -> (u16, String) {
    let mut request = http::Request::get("/metrics");
    if let Some(t) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = scraper
        .send(
            request
                .body(kube::client::Body::empty())
                .expect("a request"),
        )
        .await
        .expect("the secure metrics server answers over TLS");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect_bytes()
        .await
        .expect("the body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The status line of `GET path` on the admin port.
async fn plain_status(op: &Operator, path: &str) -> String {
    let out = http_get(&op.admin, path).await.unwrap_or_default();
    out.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn secure_metrics_let_in_only_tokens_the_apiserver_authorizes_for_get_metrics() {
    let client = client().await;
    let ns = test_namespace(&client, "metrics-auth").await;
    let n = ns.name();
    let rbac = unique_name("metrics-auth");
    let _rbac = ClusterRbac(rbac.clone());

    // The Lease, held by nobody real for an hour: the operators only serve.
    let leases: Api<Lease> = Api::namespaced(client.clone(), n);
    leases
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": {"name": LEASE},
                "spec": {"holderIdentity": "the-test", "leaseDurationSeconds": 3600},
            })),
        )
        .await
        .expect("create the Lease");

    // Two ServiceAccounts; `reader` is bound to a ClusterRole that may get /metrics.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), n);
    let reader = token(&sas, "reader").await;
    let stranger = token(&sas, "stranger").await;
    Api::<ClusterRole>::all(client.clone())
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": {"name": rbac, "labels": {"datajob.dev/e2e": "true"}},
                "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
            })),
        )
        .await
        .expect("create the ClusterRole");
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    bindings
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": {"name": rbac, "labels": {"datajob.dev/e2e": "true"}},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": rbac},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": n}],
            })),
        )
        .await
        .expect("create the ClusterRoleBinding");

    // A certificate for 127.0.0.1 in a directory, as a mounted kubernetes.io/tls Secret.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let now = chrono::Utc::now().timestamp();
    let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
    let cert = datajob_operator::webhook::tls::generate_between(&hosts, now, now + 24 * 3600)
        .expect("a certificate");
    for (file, pem) in [
        ("tls.crt", &cert.cert_pem),
        ("tls.key", &cert.key_pem),
        ("ca.crt", &cert.ca_pem),
    ] {
        std::fs::write(dir.path().join(file), pem).expect("write the certificate");
    }
    let ca_file = dir.path().join("ca.crt");

    // 1. The certificate from the directory, verified by the scraper.
    let secure = format!("127.0.0.1:{}", free_port());
    let mut op = secure_operator(n, &secure, Some(dir.path())).await;
    let https = scraper(&secure, Some(&ca_file));
    let (status, body) = scrape(&https, None).await;
    assert_eq!(status, 401, "no token: {body}");
    let (status, body) = scrape(&https, Some("not-a-token")).await;
    assert_eq!(status, 401, "a garbage token: {body}");
    let (status, body) = scrape(&https, Some(&stranger)).await;
    assert_eq!(
        status, 403,
        "a ServiceAccount without get on /metrics: {body}"
    );
    assert!(!body.contains("datajob_build_info"), "{body}");
    let (status, body) = scrape(&https, Some(&reader)).await;
    assert_eq!(status, 200, "the bound ServiceAccount: {body}");
    assert!(body.contains("datajob_build_info"), "{body}");
    assert_eq!(
        sample(&body, "datajob_leader", &[]),
        Some(0.0),
        "it follows the test's Lease"
    );
    // Garbage stays garbage (also when answered from the cache).
    assert_eq!(scrape(&https, Some("not-a-token")).await.0, 401);
    // Plain HTTP on the secure port is no HTTP answer at all, and the admin port keeps
    // only the probes, plain.
    let plain = http_get(&secure, "/metrics").await.unwrap_or_default();
    assert!(
        !plain.starts_with("HTTP/") && !plain.contains("datajob_build_info"),
        "plain HTTP on the secure port answered: {plain:?}"
    );
    assert!(plain_status(&op, "/healthz").await.contains(" 200 "));
    assert!(plain_status(&op, "/readyz").await.contains(" 200 "));
    assert!(
        plain_status(&op, "/metrics").await.contains(" 404 "),
        "the admin port no longer serves /metrics"
    );
    op.stop().await;

    // 2. The self-signed certificate made at start; decisions are cached.
    let secure = format!("127.0.0.1:{}", free_port());
    let mut op = secure_operator(n, &secure, None).await;
    let https = scraper(&secure, None);
    // It is not signed by anything the scraper trusts.
    let strict = scraper(&secure, Some(&ca_file));
    let mut request = http::Request::get("/metrics");
    request = request.header(AUTHORIZATION, format!("Bearer {reader}"));
    assert!(
        strict
            .send(
                request
                    .body(kube::client::Body::empty())
                    .expect("a request")
            )
            .await
            .is_err(),
        "the self-signed certificate is trusted by the other CA"
    );
    assert_eq!(scrape(&https, None).await.0, 401);
    assert_eq!(scrape(&https, Some(&stranger)).await.0, 403);
    let (status, body) = scrape(&https, Some(&reader)).await;
    let allowed_at = Instant::now();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("datajob_build_info"), "{body}");
    // The binding goes: the allowed token stays allowed while its answer is cached
    // (30 s), and is refused once the operator asks again.
    bindings
        .delete(&rbac, &DeleteParams::default())
        .await
        .expect("delete the ClusterRoleBinding");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        scrape(&https, Some(&reader)).await.0,
        200,
        "answered from the cache"
    );
    let refused_after = loop {
        let (status, body) = scrape(&https, Some(&reader)).await;
        if status == 403 {
            break allowed_at.elapsed();
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            allowed_at.elapsed() < Duration::from_secs(90),
            "still allowed 90 s after the binding went"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(
        refused_after >= Duration::from_secs(25),
        "refused after {refused_after:?}: the allowed answer was not cached"
    );
    op.stop().await;
}

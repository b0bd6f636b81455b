//! The admin server: `/healthz`, `/readyz` (true once caches are synced and the webhook
//! is registered) and `/metrics`, plain HTTP.
//!
//! With `--metrics-secure`, `/metrics` moves to a server of its own ([`serve_secure`]):
//! HTTPS, and only for a bearer token whose user may `get` the non-resource URL
//! `/metrics` (the decisions are [`crate::metrics_auth`]'s). The admin server keeps the
//! probes, plain HTTP, for the kubelet.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Router, routing::get};
use axum_server::tls_rustls::RustlsConfig;
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{debug, info, warn};

use crate::leader::LeaseHealth;
use crate::metrics::Metrics;
use crate::metrics_auth::{self, Cache, Decision};
use crate::webhook::tls;
use crate::{Error, Result};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How often a certificate from `--metrics-cert-dir` is read again (cert-manager
/// renews the Secret; the kubelet updates the mounted files).
const CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
/// Validity of the self-signed certificate made at start (a restart makes a new one).
const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The names of the self-signed certificate.
const SELF_SIGNED_HOSTS: [&str; 2] = ["localhost", "127.0.0.1"];

#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub(crate) fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The admin server with `/metrics`.
pub fn router(metrics: Metrics, ready: Readiness, lease: LeaseHealth) -> Router {
    probes(ready, lease).merge(metrics_router(metrics))
}

/// The admin server without `/metrics` (it is served securely elsewhere).
///
/// `/healthz` fails while this replica leads on a Lease renewal older than the renew
/// deadline: its election loop is wedged, and the kubelet restarts it.
pub fn probes(ready: Readiness, lease: LeaseHealth) -> Router {
    let healthz = Router::new()
        .route(
            "/healthz",
            get(|State(lease): State<LeaseHealth>| async move {
                match lease.problem(Instant::now()) {
                    None => (StatusCode::OK, "ok".to_string()),
                    Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                }
            }),
        )
        .with_state(lease);
    Router::new()
        .route(
            "/readyz",
            get(|State(ready): State<Readiness>| async move {
                if ready.is_ready() {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .with_state(ready)
        .merge(healthz)
}

fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(m): State<Metrics>| async move {
                ([(header::CONTENT_TYPE, OPENMETRICS)], m.encode())
            }),
        )
        .with_state(metrics)
}

/// Where and with which certificate `/metrics` is served securely.
#[derive(Clone, Debug)]
pub struct SecureSettings {
    pub addr: SocketAddr,
    /// `tls.crt` and `tls.key` here; `None`: a self-signed certificate made at start.
    pub cert_dir: Option<PathBuf>,
}

/// Asks the apiserver who a token is and whether they may read `/metrics`, and
/// remembers the answers a short while.
#[derive(Clone)]
pub struct Gate {
    client: Client,
    cache: Arc<Mutex<Cache>>,
}

impl Gate {
    pub fn new(client: Client) -> Self {
        Gate {
            client,
            cache: Arc::new(Mutex::new(Cache::default())),
        }
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The decision on `token`: from the cache, or from a TokenReview and (for a token
    /// of someone) a SubjectAccessReview. An API error is not remembered.
    pub async fn decide(&self, token: &str) -> Result<Decision> {
        let key = metrics_auth::key(token);
        if let Some(d) = self.cache().get(&key, Instant::now()) {
            return Ok(d);
        }
        let decision = self.review(token).await?;
        self.cache().put(key, decision, Instant::now());
        Ok(decision)
    }

    async fn review(&self, token: &str) -> Result<Decision> {
        let tokens: Api<TokenReview> = Api::all(self.client.clone());
        let who = tokens
            .create(&PostParams::default(), &metrics_auth::token_review(token))
            .await
            .map_err(Error::api("create", "TokenReview", "", ""))?;
        let user = match metrics_auth::authenticated(who.status.as_ref()) {
            Ok(user) => user,
            Err(refused) => return Ok(refused),
        };
        let name = user.username.as_deref().unwrap_or_default();
        let access: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let may = access
            .create(&PostParams::default(), &metrics_auth::access_review(user))
            .await
            .map_err(Error::api("create", "SubjectAccessReview", "", name))?;
        let decision = metrics_auth::authorized(may.status.as_ref());
        if decision != Decision::Allowed {
            debug!(user = %name, "may not get /metrics");
        }
        Ok(decision)
    }
}

/// Lets a request through only when its bearer token is allowed.
async fn authorize(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let token = match metrics_auth::bearer_token(header) {
        Ok(t) => t.to_string(),
        Err(e) => {
            debug!(error = %e, "metrics request without a usable token");
            return refusal(Decision::Unauthenticated);
        }
    };
    match gate.decide(&token).await {
        Ok(Decision::Allowed) => next.run(req).await,
        Ok(refused) => refusal(refused),
        Err(e) => {
            warn!(error = %e, "could not review a metrics request");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request could not be reviewed\n",
            )
                .into_response()
        }
    }
}

fn refusal(d: Decision) -> Response {
    match d {
        Decision::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "Unauthorized\n",
        )
            .into_response(),
        Decision::Forbidden => (StatusCode::FORBIDDEN, "Forbidden\n").into_response(),
        Decision::Allowed => StatusCode::OK.into_response(),
    }
}

/// `/metrics` behind the gate.
pub fn secure_router(metrics: Metrics, gate: Gate) -> Router {
    metrics_router(metrics).layer(middleware::from_fn_with_state(gate, authorize))
}

/// A certificate and its key, PEM.
#[derive(Clone, PartialEq, Eq)]
struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
}

async fn read_pem(dir: &Path) -> Result<Pem> {
    let read = |name: &'static str| {
        let path = dir.join(name);
        async move {
            tokio::fs::read(&path)
                .await
                .map_err(|source| Error::MetricsTls {
                    what: format!("reading {}", path.display()),
                    source,
                })
        }
    };
    Ok(Pem {
        cert: read(tls::CERT_KEY).await?,
        key: read(tls::KEY_KEY).await?,
    })
}

/// A certificate for `localhost` and `127.0.0.1`, signed by a CA nobody keeps: scrapers
/// skip verification (the token is what the server checks; TLS keeps it secret).
fn self_signed() -> Result<tls::ServingCert> {
    let now = chrono::Utc::now().timestamp();
    tls::generate_between(
        &SELF_SIGNED_HOSTS.map(String::from),
        now,
        now + SELF_SIGNED_VALIDITY.as_secs() as i64,
    )
}

/// The secure metrics server and the loop that reloads its certificate.
pub struct SecureServed {
    handle: axum_server::Handle<SocketAddr>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    reload: Option<tokio::task::JoinHandle<()>>,
}

impl SecureServed {
    /// Stops accepting, lets scrapes in flight finish (up to 5 s), stops the reloads.
    pub async fn shutdown(self) {
        if let Some(r) = self.reload {
            r.abort();
        }
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        let _ = self.server.await;
    }
}

/// Serves `/metrics` over HTTPS on `s.addr` for allowed tokens only (reviews through
/// `client`). Returns once listening.
pub async fn serve_secure(
    client: Client,
    metrics: Metrics,
    s: SecureSettings,
) -> Result<SecureServed> {
    let pem = match &s.cert_dir {
        Some(dir) => read_pem(dir).await?,
        None => {
            let cert = self_signed()?;
            Pem {
                cert: cert.cert_pem.into_bytes(),
                key: cert.key_pem.into_bytes(),
            }
        }
    };
    let what = match &s.cert_dir {
        Some(dir) => format!("loading the certificate of {}", dir.display()),
        None => "loading the self-signed certificate".to_string(),
    };
    let rustls = RustlsConfig::from_pem(pem.cert.clone(), pem.key.clone())
        .await
        .map_err(|source| Error::MetricsTls { what, source })?;
    let bind = |source: std::io::Error| Error::Bind {
        addr: s.addr.to_string(),
        source,
    };
    let listener = std::net::TcpListener::bind(s.addr).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let handle = axum_server::Handle::new();
    let app = secure_router(metrics, Gate::new(client));
    let server = axum_server::from_tcp_rustls(listener, rustls.clone())
        .map_err(bind)?
        .handle(handle.clone());
    let server = tokio::spawn(server.serve(app.into_make_service()));
    let reload = s
        .cert_dir
        .clone()
        .map(|dir| tokio::spawn(reload(dir, rustls, pem)));
    info!(
        addr = %s.addr,
        certificate = %s.cert_dir.as_deref().map_or("self-signed".into(), |d| d.display().to_string()),
        "secure metrics server: /metrics over HTTPS, for tokens allowed to get /metrics"
    );
    Ok(SecureServed {
        handle,
        server,
        reload,
    })
}

/// Every [`CERT_RELOAD_INTERVAL`]: reads the certificate files again and loads them when
/// they changed; a pair that does not load leaves the current one in use.
async fn reload(dir: PathBuf, rustls: RustlsConfig, mut serving: Pem) {
    loop {
        tokio::time::sleep(CERT_RELOAD_INTERVAL).await;
        let next = match read_pem(&dir).await {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "metrics certificate not read; serving the current one");
                continue;
            }
        };
        if next == serving {
            continue;
        }
        match rustls
            .reload_from_pem(next.cert.clone(), next.key.clone())
            .await
        {
            Ok(()) => {
                info!(dir = %dir.display(), "loaded a new metrics certificate");
                serving = next;
            }
            Err(e) => {
                warn!(error = %e, "could not load the new metrics certificate; serving the current one")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body as AxumBody;
    use http::{Request as HttpRequest, Response as HttpResponse};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    /// A client whose apiserver knows the tokens `reader` and `stranger` (users of the
    /// same names), lets only `reader` get /metrics, fails every review of `boom`, and
    /// records each review it answers as "TokenReview <token>" or
    /// "SubjectAccessReview <user>".
    fn apiserver() -> (Client, Arc<Mutex<Vec<String>>>) {
        let (service, mut handle) =
            tower_test::mock::pair::<HttpRequest<Body>, HttpResponse<Body>>();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let path = request.uri().path().to_string();
                let body = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .unwrap_or_default();
                let mut review: Value = serde_json::from_slice(&body).unwrap_or_default();
                let (code, answer) = if path == "/apis/authentication.k8s.io/v1/tokenreviews" {
                    let token = review["spec"]["token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    seen.lock().unwrap().push(format!("TokenReview {token}"));
                    review["status"] = match token.as_str() {
                        "reader" | "stranger" => json!({"authenticated": true,
                            "user": {"username": token, "groups": ["system:authenticated"]}}),
                        _ => json!({"authenticated": false, "error": "invalid bearer token"}),
                    };
                    match token.as_str() {
                        "boom" => (
                            500,
                            json!({"kind": "Status", "apiVersion": "v1",
                            "status": "Failure", "code": 500, "message": "etcd is gone"}),
                        ),
                        _ => (201, review),
                    }
                } else if path == "/apis/authorization.k8s.io/v1/subjectaccessreviews" {
                    let user = review["spec"]["user"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    assert_eq!(
                        review["spec"]["nonResourceAttributes"],
                        json!({"path": "/metrics", "verb": "get"})
                    );
                    assert_eq!(review["spec"]["groups"], json!(["system:authenticated"]));
                    seen.lock()
                        .unwrap()
                        .push(format!("SubjectAccessReview {user}"));
                    review["status"] = json!({"allowed": user == "reader"});
                    (201, review)
                } else {
                    (404, json!({"kind": "Status", "code": 404}))
                };
                let response = HttpResponse::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        (Client::new(service, "default"), calls)
    }

    /// Status, body and `WWW-Authenticate` of `GET path`.
    async fn get(
        app: &Router,
        path: &str,
        authorization: Option<&str>,
    ) -> (StatusCode, String, Option<String>) {
        let mut req = HttpRequest::get(path);
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let res = app
            .clone()
            .oneshot(req.body(AxumBody::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let www = res
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned(), www)
    }

    fn taken(calls: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        std::mem::take(&mut *calls.lock().unwrap())
    }

    #[tokio::test]
    async fn secure_metrics_answer_401_403_or_200_and_ask_the_apiserver_once_per_token() {
        let (client, calls) = apiserver();
        let app = secure_router(Metrics::new(true), Gate::new(client));

        // No token, or not a bearer one: 401 without asking anybody.
        for auth in [None, Some("Basic dXNlcjpwYXNz"), Some("Bearer ")] {
            let (status, _, www) = get(&app, "/metrics", auth).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(www.as_deref(), Some("Bearer"));
        }
        assert!(taken(&calls).is_empty());

        // A token the apiserver does not know: 401 after a TokenReview only.
        let (status, _, _) = get(&app, "/metrics", Some("Bearer garbage")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(taken(&calls), ["TokenReview garbage"]);

        // Someone who may not: 403.
        let (status, body, _) = get(&app, "/metrics", Some("Bearer stranger")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(!body.contains("datajob_build_info"));
        assert_eq!(
            taken(&calls),
            ["TokenReview stranger", "SubjectAccessReview stranger"]
        );

        // Someone who may: the metrics.
        let (status, body, _) = get(&app, "/metrics", Some("Bearer reader")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("datajob_build_info"), "{body}");
        assert_eq!(
            taken(&calls),
            ["TokenReview reader", "SubjectAccessReview reader"]
        );

        // Again, each answered from the cache.
        assert_eq!(
            get(&app, "/metrics", Some("Bearer reader")).await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(&app, "/metrics", Some("bearer stranger")).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            get(&app, "/metrics", Some("Bearer garbage")).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert!(taken(&calls).is_empty(), "answered from the cache");

        // The apiserver failing: 500, and not remembered.
        for _ in 0..2 {
            let (status, body, _) = get(&app, "/metrics", Some("Bearer boom")).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!body.contains("etcd"), "no detail for the caller: {body}");
        }
        assert_eq!(taken(&calls), ["TokenReview boom", "TokenReview boom"]);

        // Only /metrics is there.
        let (status, _, _) = get(&app, "/healthz", Some("Bearer reader")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_admin_server_serves_metrics_unless_they_are_served_securely() {
        let ready = Readiness::default();
        let lease = LeaseHealth::default();
        let with = router(Metrics::new(true), ready.clone(), lease.clone());
        let without = probes(ready.clone(), lease.clone());
        for app in [&with, &without] {
            assert_eq!(get(app, "/healthz", None).await.0, StatusCode::OK);
            assert_eq!(
                get(app, "/readyz", None).await.0,
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
        ready.set_ready();
        assert_eq!(get(&without, "/readyz", None).await.0, StatusCode::OK);
        let (status, body, _) = get(&with, "/metrics", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("datajob_build_info"));
        assert_eq!(
            get(&without, "/metrics", None).await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn healthz_fails_while_leading_on_a_stale_lease() {
        let lease = LeaseHealth::default();
        let app = probes(Readiness::default(), lease.clone());
        lease.set(Some(crate::leader::Renewed {
            at: Instant::now(),
            deadline: Duration::from_secs(10),
        }));
        assert_eq!(get(&app, "/healthz", None).await.0, StatusCode::OK);
        lease.set(Some(crate::leader::Renewed {
            at: Instant::now() - Duration::from_secs(12),
            deadline: Duration::from_secs(10),
        }));
        let (status, body, _) = get(&app, "/healthz", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("past the renew deadline"), "{body}");
        lease.set(None);
        assert_eq!(get(&app, "/healthz", None).await.0, StatusCode::OK);
    }

    #[test]
    fn the_self_signed_certificate_names_the_loopback_addresses_for_years() {
        let cert = self_signed().unwrap();
        let hosts = SELF_SIGNED_HOSTS.map(String::from);
        let years = Duration::from_secs(5 * 365 * 24 * 3600);
        let now = chrono::Utc::now().timestamp();
        assert_eq!(tls::check(&cert, &hosts, years, now), Ok(()));
    }
}

//! The validating admission webhook: refuses a bad DataJob at `kubectl apply` with the
//! same words `kubectl datajob plan` and the reconciler use ([`datajob_core::validation`], and
//! [`datajob_core::decide::dataflow::check_graph`] for inputs that do not exist or make a cycle).
pub mod serve;
pub mod tls;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, extract::State, routing::post};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use tokio::sync::Semaphore;

use kube::runtime::reflector::Store;

use crate::controller::Synced;
use crate::metrics::{AdmissionLabels, Metrics};
use datajob_api::{DataJob, NodeGroup};
use datajob_core::admission::resolve_and_place;
use datajob_core::decide::children::Guards;
use datajob_core::decide::nodegroup::{Group, usable_groups};
use datajob_core::validation::Limits;
use datajob_preflight::Preflight;

pub(crate) const PATH: &str = "/validate-datajob";
/// The largest admission review read: twice the apiserver's 3 MiB request limit, with room.
const MAX_REVIEW_BYTES: usize = 8 << 20;
/// How many reviews are read and judged at once. A review is read only once it has a
/// place, so at most this many bodies are in memory (8 × 8 MiB, well inside the
/// chart's 512Mi limit), however many callers post at once.
const MAX_CONCURRENT_REVIEWS: usize = 8;
/// Every review is answered within this, well inside the webhook's `timeoutSeconds` (5 s):
/// the cache waits, the look-ups of inputs and the preflight share it.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(4);

#[derive(Clone)]
struct WebhookState {
    limits: Arc<Limits>,
    guards: Arc<Guards>,
    groups: Store<NodeGroup>,
    groups_synced: Synced,
    /// Every DataJob: a DataJob's inputs must exist in its namespace and make no cycle.
    datajobs: Store<DataJob>,
    datajobs_synced: Synced,
    /// Asks the apiserver about an input the cache does not hold (yet): DataJobs applied
    /// together reach the webhook faster than its watch.
    client: Option<kube::Client>,
    metrics: Metrics,
    /// Looks up what an admitted spec refers to, for warnings; `None` when off.
    preflight: Option<Arc<Preflight>>,
}

/// The caches the webhook judges against, each with its sync signal.
pub struct Caches {
    pub groups: Store<NodeGroup>,
    pub groups_synced: Synced,
    pub datajobs: Store<DataJob>,
    pub datajobs_synced: Synced,
}

/// The webhook's routes. `groups` is the NodeGroup cache: a DataJob no group could ever
/// fit is refused (with no groups at all, admission does not guess). With `preflight`, an
/// admitted DataJob whose image, Secrets, ConfigMaps or service account are missing gets
/// warnings (kubectl prints them).
pub fn router(
    limits: Limits,
    guards: Guards,
    caches: Caches,
    client: Option<kube::Client>,
    metrics: Metrics,
    preflight: Option<Preflight>,
) -> Router {
    let state = WebhookState {
        limits: Arc::new(limits),
        guards: Arc::new(guards),
        groups: caches.groups,
        groups_synced: caches.groups_synced,
        datajobs: caches.datajobs,
        datajobs_synced: caches.datajobs_synced,
        client,
        metrics,
        preflight: preflight.map(Arc::new),
    };
    Router::new()
        .route(PATH, post(validate))
        // A review carries the object (and, on update, the old one). axum's default 2 MiB
        // would answer an oversized DataJob with 413, which the apiserver's `Ignore`
        // policy lets through to fail in etcd without a field; read it and refuse it
        // with the field and the limit instead.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(state)
        // Outermost: a review waits for a place before its body is read.
        .layer(middleware::from_fn_with_state(
            Arc::new(Semaphore::new(MAX_CONCURRENT_REVIEWS)),
            bounded,
        ))
}

/// At most [`MAX_CONCURRENT_REVIEWS`] reviews at once, each answered within
/// [`DEADLINE`]. One that finds no place within half the deadline (2 s), or is not answered in
/// time, gets 503: the apiserver then applies the webhook's `failurePolicy` (`Ignore`:
/// admitted, and the reconciler still refuses a bad spec; `Fail`: refused, try again),
/// as it would for a webhook that does not answer, but without holding the caller's
/// connection and body past the apiserver's own timeout.
async fn bounded(State(places): State<Arc<Semaphore>>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let busy = |why: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the DataJob webhook is busy ({why}); the apiserver applies its failurePolicy"),
        )
            .into_response()
    };
    let Ok(Ok(_place)) = tokio::time::timeout(DEADLINE / 2, places.acquire_owned()).await else {
        return busy("no place free within 2 s");
    };
    // A backstop: the handler bounds its own waits by the deadline (`remaining`).
    let backstop =
        DEADLINE.saturating_sub(started.elapsed()) + std::time::Duration::from_millis(500);
    match tokio::time::timeout(backstop, next.run(request)).await {
        Ok(response) => response,
        Err(_) => busy("no answer within the deadline"),
    }
}

/// What is left of the deadline of a review that started at `started`, at most `cap`.
fn remaining(started: std::time::Instant, cap: std::time::Duration) -> std::time::Duration {
    DEADLINE.saturating_sub(started.elapsed()).min(cap)
}

/// How long a review waits for the NodeGroup cache after the operator started.
const GROUPS_SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

async fn validate(
    State(s): State<WebhookState>,
    Json(review): Json<AdmissionReview<DataJob>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let started = std::time::Instant::now();
    let req: AdmissionRequest<DataJob> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return Json(
                AdmissionResponse::invalid(format!("not an admission review: {e}")).into_review(),
            );
        }
    };
    // Just after a start the NodeGroup cache may still be filling: wait a little, and
    // when it is still not there, judge without groups (as when there are none) rather
    // than refuse a DataJob against a partial list. The reconciler places it later.
    let synced = tokio::time::timeout(remaining(started, GROUPS_SYNC_WAIT), s.groups_synced.wait())
        .await
        .unwrap_or(false);
    let groups = match synced {
        true => usable_groups(s.groups.state().iter().map(|g| g.as_ref())),
        false => Vec::new(),
    };
    let mut response = review_datajob(&req, &s.limits, &s.guards, &groups);
    // Inputs against the namespace's DataJobs; a cache still filling judges nothing
    // (the reconciler marks a DataJob with a missing input Invalid with the same words).
    let datajobs_synced = tokio::time::timeout(
        remaining(started, GROUPS_SYNC_WAIT),
        s.datajobs_synced.wait(),
    )
    .await
    .unwrap_or(false);
    if let (true, Some(dj)) = (datajobs_synced, &req.object) {
        let ns = req.namespace.clone().unwrap_or_else(|| "default".into());
        let mut others = namespace_graph(&ns, &s.datajobs);
        if let Some(client) = &s.client {
            others.extend(missing_inputs(client, dj, &ns, &others, started).await);
        }
        let name = dj.metadata.name.clone().unwrap_or_default();
        let problems =
            datajob_core::decide::dataflow::check_graph(&name, &ns, &dj.spec.inputs, &others);
        if !problems.is_empty() {
            let words = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n");
            let message = match response.allowed {
                true => words,
                false => format!("{}\n{words}", response.result.message),
            };
            response = AdmissionResponse::from(&req).deny(message);
        }
    }
    if let (true, Some(pf), Some(dj)) = (response.allowed, &s.preflight, &req.object)
        && spec_changed(&req)
    {
        let ns = req.namespace.clone().unwrap_or_else(|| "default".into());
        // Bounded, whatever a look-up does: a review never waits past the limit.
        let limit = remaining(
            started,
            datajob_preflight::TIME_LIMIT + std::time::Duration::from_millis(500),
        );
        if let Ok(warnings) = tokio::time::timeout(limit, pf.warnings(&ns, &dj.spec)).await
            && !warnings.is_empty()
        {
            response.warnings = Some(warnings);
        }
    }
    s.metrics
        .admission_reviews
        .get_or_create(&AdmissionLabels {
            allowed: response.allowed.to_string(),
        })
        .inc();
    s.metrics
        .admission_duration
        .observe(started.elapsed().as_secs_f64());
    Json(response.into_review())
}

/// A create, or an update that changed the spec (not only its annotations or labels).
fn spec_changed(req: &AdmissionRequest<DataJob>) -> bool {
    match (&req.object, &req.old_object) {
        (Some(new), Some(old)) => {
            serde_json::to_value(&new.spec).ok() != serde_json::to_value(&old.spec).ok()
        }
        _ => true,
    }
}

/// The DataJobs of `ns` in the cache: (name, inputs).
fn namespace_graph(ns: &str, datajobs: &Store<DataJob>) -> Vec<(String, Vec<String>)> {
    datajobs
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns))
        .map(|d| {
            (
                d.metadata.name.clone().unwrap_or_default(),
                d.spec.inputs.clone(),
            )
        })
        .collect()
}

/// The inputs of `dj` the cache does not hold, as the apiserver has them: a DataJob
/// created a moment ago (`kubectl apply` of a file with its inputs first) may not have
/// reached the cache yet. Bounded in time (2 s each, all within the review's deadline);
/// what cannot be read counts as missing.
async fn missing_inputs(
    client: &kube::Client,
    dj: &DataJob,
    ns: &str,
    known: &[(String, Vec<String>)],
    started: std::time::Instant,
) -> Vec<(String, Vec<String>)> {
    let api: kube::Api<DataJob> = kube::Api::namespaced(client.clone(), ns);
    let mut found = Vec::new();
    for input in &dj.spec.inputs {
        if known.iter().any(|(n, _)| n == input) || dj.metadata.name.as_ref() == Some(input) {
            continue;
        }
        let params = kube::api::ListParams::default().fields(&format!("metadata.name={input}"));
        let limit = remaining(started, std::time::Duration::from_secs(2));
        let listed = tokio::time::timeout(limit, api.list(&params)).await;
        if let Ok(Ok(list)) = listed {
            found.extend(
                list.items
                    .into_iter()
                    .map(|d| (input.clone(), d.spec.inputs)),
            );
        }
    }
    found
}

/// The decision for one request, without HTTP.
pub fn review_datajob(
    req: &AdmissionRequest<DataJob>,
    limits: &Limits,
    guards: &Guards,
    groups: &[Group],
) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    match &req.object {
        Some(dj) => match resolve_and_place(dj, limits, guards, groups) {
            Ok(_) => response,
            Err(problems) => response.deny(problems.to_string()),
        },
        None => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// A route behind [`bounded`] with `places` places, whose handler takes `takes`.
    fn app(places: usize, takes: std::time::Duration) -> Router {
        Router::new()
            .route(
                "/",
                post(move || async move {
                    tokio::time::sleep(takes).await;
                    "judged"
                }),
            )
            .layer(middleware::from_fn_with_state(
                Arc::new(Semaphore::new(places)),
                bounded,
            ))
    }

    async fn post_to(app: Router) -> (StatusCode, String) {
        let request = Request::post("/").body(Body::empty()).unwrap_or_default();
        let Ok(response) = app.oneshot(request).await;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_review_waits_for_a_place_and_gets_503_past_the_deadline() {
        // A quick review passes.
        let quick = app(1, std::time::Duration::ZERO);
        assert_eq!(post_to(quick).await, (StatusCode::OK, "judged".into()));
        // One place, held by a review that never ends: it is cut at the deadline, and
        // one that waits for its place gets 503 after half of it, unread.
        let stuck = app(1, std::time::Duration::from_secs(3600));
        let started = std::time::Instant::now();
        let first = tokio::spawn(post_to(stuck.clone()));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (status, body) = post_to(stuck).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("no place free"), "{body}");
        let waited = started.elapsed();
        assert!(waited < DEADLINE, "waited {waited:?}");
        let (status, body) = first.await.unwrap_or_default();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("no answer within the deadline"), "{body}");
        assert!(started.elapsed() < DEADLINE + std::time::Duration::from_secs(1));
    }
}

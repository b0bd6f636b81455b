//! The validating admission webhook: refuses a bad DataJob at `kubectl apply` with the
//! same words `kubectl datajob plan` and the reconciler use ([`datajob_core::validation`], and
//! [`datajob_core::decide::dataflow::check_graph`] for inputs that do not exist or make a cycle).
pub mod access;
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
use datajob_api::{DataJob, NodeGroup, bounds};
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
    /// Asks what a review's user may read, so that the answer tells no more; `None`
    /// (no client): everything.
    access: Option<Arc<access::Access>>,
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
        access: client.clone().map(|c| Arc::new(access::Access::new(c))),
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

/// How long a review waits for the apiserver to say what its user may read.
const RIGHTS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

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
    // The checks are CPU work on an object as large as the schema allows: on the
    // blocking pool, so that the probes and the other reviews' I/O never wait behind
    // them on the runtime's few threads (`make bench-webhook`).
    let (limits, guards) = (s.limits.clone(), s.guards.clone());
    let judged = tokio::task::spawn_blocking(move || {
        let response = review_datajob(&req, &limits, &guards, &groups);
        (req, response)
    })
    .await;
    let (req, mut response) = match judged {
        Ok(done) => done,
        Err(e) => {
            return Json(
                AdmissionResponse::invalid(format!("the review could not be judged: {e}"))
                    .into_review(),
            );
        }
    };
    // What the review's user may read in its namespace: the answer tells no more. Asked
    // only when there is something to tell (inputs, or a preflight), within 1 s.
    let ns = req.namespace.clone().unwrap_or_else(|| "default".into());
    let tells = req
        .object
        .as_ref()
        .is_some_and(|dj| !dj.spec.inputs.is_empty())
        || (response.allowed && s.preflight.is_some() && spec_changed(&req));
    let rights = match (&s.access, tells) {
        (Some(a), true) => {
            a.rights_of(&req.user_info, &ns, remaining(started, RIGHTS_WAIT))
                .await
        }
        _ => access::Rights::ALL,
    };
    // Inputs against the namespace's DataJobs; a cache still filling judges nothing
    // (the reconciler marks a DataJob with a missing input Invalid with the same words).
    let datajobs_synced = tokio::time::timeout(
        remaining(started, GROUPS_SYNC_WAIT),
        s.datajobs_synced.wait(),
    )
    .await
    .unwrap_or(false);
    // Whether the inputs exist (and their own inputs) is told only to one who may read
    // the namespace's DataJobs; for anyone else the reconciler judges them.
    if let (true, true, Some(dj)) = (datajobs_synced, rights.datajobs, &req.object) {
        let mut others = namespace_graph(&ns, &s.datajobs);
        if let Some(client) = &s.client {
            others.extend(missing_inputs(client, dj, &ns, &others, started).await);
        }
        let name = dj.metadata.name.clone().unwrap_or_default();
        // The schema bounds the inputs; an object past it is refused by validation above,
        // and its graph is judged on the first inputs only, at a bounded cost.
        let inputs = &dj.spec.inputs[..dj.spec.inputs.len().min(bounds::MAX_INPUTS)];
        let problems = datajob_core::decide::dataflow::check_graph(&name, &ns, inputs, &others);
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
        // Bounded, whatever a look-up does: a review never waits past the limit.
        let limit = remaining(
            started,
            datajob_preflight::TIME_LIMIT + std::time::Duration::from_millis(500),
        );
        if let Ok(warnings) =
            tokio::time::timeout(limit, pf.warnings_for(&ns, &dj.spec, rights.readable)).await
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
/// reached the cache yet. One LIST per review, whatever the number of such inputs (issue
/// 25: each used to cost one): of the one name by field selector, or of the namespace.
/// Names no DataJob can have are not looked for. Bounded in time (2 s, within the
/// review's deadline); what cannot be read counts as missing.
async fn missing_inputs(
    client: &kube::Client,
    dj: &DataJob,
    ns: &str,
    known: &[(String, Vec<String>)],
    started: std::time::Instant,
) -> Vec<(String, Vec<String>)> {
    let unknown = unknown_inputs(dj, known);
    let params = match unknown.iter().next() {
        None => return Vec::new(),
        Some(only) if unknown.len() == 1 => {
            kube::api::ListParams::default().fields(&format!("metadata.name={only}"))
        }
        Some(_) => kube::api::ListParams::default(),
    };
    let api: kube::Api<DataJob> = kube::Api::namespaced(client.clone(), ns);
    let limit = remaining(started, std::time::Duration::from_secs(2));
    match tokio::time::timeout(limit, api.list(&params)).await {
        Ok(Ok(list)) => list
            .items
            .into_iter()
            .filter_map(|d| {
                let name = d.metadata.name?;
                unknown
                    .contains(name.as_str())
                    .then_some((name, d.spec.inputs))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The inputs of `dj` (within the schema's bound) that are neither in `known` nor `dj`
/// itself, and could be a DataJob's name: the names to ask the apiserver about.
fn unknown_inputs<'a>(
    dj: &'a DataJob,
    known: &[(String, Vec<String>)],
) -> std::collections::BTreeSet<&'a str> {
    let known: std::collections::HashSet<&str> = known.iter().map(|(n, _)| n.as_str()).collect();
    let me = dj.metadata.name.as_deref();
    dj.spec
        .inputs
        .iter()
        .take(bounds::MAX_INPUTS)
        .map(String::as_str)
        .filter(|i| Some(*i) != me && !known.contains(i) && could_be_a_name(i))
        .collect()
}

/// A DNS label of at most [`bounds::MAX_INPUT_LEN`] characters: what an input must be.
fn could_be_a_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= bounds::MAX_INPUT_LEN
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
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
    use crate::controller::Synced;
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

    /// A DataJob at the schema's bounds: every list full, long values, and inputs that
    /// all miss the namespace's DataJobs by one character (each gets a suggestion search).
    fn maximal_datajob(namespace_names: &[String]) -> DataJob {
        let long = |n: usize| "a".repeat(n);
        let mut inputs: Vec<String> = namespace_names
            .iter()
            .take(bounds::MAX_INPUTS - 1)
            .map(|n| format!("{n}x"))
            .collect();
        inputs.push("fresh-0".into());
        let spec = datajob_api::DataJobSpec {
            image: format!("registry.example.com:5000/{}/job:1.0", long(200)),
            command: vec![long(1024); bounds::MAX_COMMAND_ITEMS],
            args: vec![long(256); bounds::MAX_ARGS_ITEMS],
            env: (0..bounds::MAX_ENV_ITEMS)
                .map(|i| k8s_openapi::api::core::v1::EnvVar {
                    name: format!("VAR_{i}_{}", "X".repeat(100)),
                    value: Some(long(200)),
                    value_from: None,
                })
                .collect(),
            schedule: Some("0,5,10,15,20,25,30,35,40,45,50,55 */2 1-28 * *".into()),
            pod_annotations: (0..bounds::MAX_POD_ANNOTATIONS)
                .map(|i| (format!("example.com/note-{i}"), long(500)))
                .collect(),
            params: (0..bounds::MAX_PARAMS)
                .map(|i| (format!("p{i}"), long(1000)))
                .collect(),
            inputs,
            owner: Some(long(bounds::MAX_OWNER_LEN)),
            ..Default::default()
        };
        let mut dj = DataJob::new("victim", spec);
        dj.metadata.namespace = Some("analytics".into());
        dj
    }

    fn review_of(dj: &DataJob) -> AdmissionReview<DataJob> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "datajob.dev", "version": "v1alpha1", "kind": "DataJob"},
                "resource": {"group": "datajob.dev", "version": "v1alpha1", "resource": "datajobs"},
                "name": dj.metadata.name, "namespace": "analytics", "operation": "CREATE",
                "userInfo": {"username": "alice"}, "object": dj, "dryRun": false,
            }
        }))
        .unwrap_or_else(|e| panic!("a review: {e}"))
    }

    /// Issue 25: the webhook's answer to a DataJob at the schema's bounds, in a namespace
    /// of 2000 DataJobs with names one character off its inputs, takes under 50 ms (release
    /// build; 2 s in a debug build, still far inside the 4 s deadline), and the inputs the
    /// cache lacks cost one LIST in all (they cost one each: 64 here).
    #[tokio::test]
    #[allow(clippy::panic)]
    async fn a_maximal_review_is_answered_in_50_ms_with_one_list() {
        use crate::controller::mock;
        let names: Vec<String> = (0..2000)
            .map(|i| format!("churn-features-{i:04}-daily-{}", "x".repeat(20)))
            .collect();
        let cached: Vec<DataJob> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let spec = datajob_api::DataJobSpec {
                    image: "busybox".into(),
                    inputs: names[i.saturating_sub(3)..i].to_vec(),
                    ..Default::default()
                };
                let mut d = DataJob::new(n, spec);
                d.metadata.namespace = Some("analytics".into());
                d
            })
            .collect();
        let fresh = serde_json::json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJobList", "metadata": {},
            "items": [{"apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
                "metadata": {"name": "fresh-0", "namespace": "analytics"},
                "spec": {"image": "busybox"}}],
        });
        let list_path = "/apis/datajob.dev/v1alpha1/namespaces/analytics/datajobs";
        let (client, calls) =
            mock::client_holding(serde_json::json!({}), vec![(list_path.to_string(), fresh)]);
        let datajobs = mock::store_of(cached);
        let groups = mock::store_of(Vec::<NodeGroup>::new());
        let state = WebhookState {
            limits: Arc::new(Limits::default()),
            guards: Arc::new(Guards::default()),
            groups_synced: Synced::of(&groups),
            groups,
            datajobs_synced: Synced::of(&datajobs),
            datajobs,
            client: Some(client),
            metrics: Metrics::default(),
            preflight: None,
            access: None,
        };
        let dj = maximal_datajob(&names);
        // The first review warms the caches' sync signals and the regular expressions.
        let _ = validate(State(state.clone()), Json(review_of(&dj))).await;
        let lists_before = calls.lock().map(|c| c.len()).unwrap_or(0);
        let started = std::time::Instant::now();
        let Json(answer) = validate(State(state), Json(review_of(&dj))).await;
        let took = started.elapsed();
        let lists = calls.lock().map(|c| c.len()).unwrap_or(0) - lists_before;
        let response = answer.response.unwrap_or_else(|| panic!("an answer"));
        eprintln!(
            "a maximal review: {took:?}, {lists} LIST(s), allowed {}",
            response.allowed
        );
        assert_eq!(lists, 1, "one LIST for all the inputs the cache lacks");
        // The input only the apiserver knows is found; the others are refused by name.
        let message = &response.result.message;
        assert!(!message.contains("spec.inputs[63]"), "{message}");
        assert!(
            message.contains("spec.inputs[0]") && message.contains("did you mean"),
            "{message}"
        );
        let bound = match cfg!(debug_assertions) {
            false => std::time::Duration::from_millis(50),
            true => std::time::Duration::from_secs(2),
        };
        assert!(
            took < bound,
            "a maximal review took {took:?}, more than {bound:?}"
        );
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

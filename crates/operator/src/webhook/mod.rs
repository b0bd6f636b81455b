//! The validating admission webhook: refuses a bad DataJob at `kubectl apply` with the
//! same words `kubectl datajob plan` and the reconciler use ([`datajob_core::validation`], and
//! [`datajob_core::decide::dataflow::check_graph`] for inputs that do not exist or make a cycle).
pub mod serve;
pub mod tls;

use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::post};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

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
    let synced = tokio::time::timeout(GROUPS_SYNC_WAIT, s.groups_synced.wait())
        .await
        .unwrap_or(false);
    let groups = match synced {
        true => usable_groups(s.groups.state().iter().map(|g| g.as_ref())),
        false => Vec::new(),
    };
    let mut response = review_datajob(&req, &s.limits, &s.guards, &groups);
    // Inputs against the namespace's DataJobs; a cache still filling judges nothing
    // (the reconciler marks a DataJob with a missing input Invalid with the same words).
    let datajobs_synced = tokio::time::timeout(GROUPS_SYNC_WAIT, s.datajobs_synced.wait())
        .await
        .unwrap_or(false);
    if let (true, Some(dj)) = (datajobs_synced, &req.object) {
        let ns = req.namespace.clone().unwrap_or_else(|| "default".into());
        let mut others = namespace_graph(&ns, &s.datajobs);
        if let Some(client) = &s.client {
            others.extend(missing_inputs(client, dj, &ns, &others).await);
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
        let limit = datajob_preflight::TIME_LIMIT + std::time::Duration::from_millis(500);
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
/// reached the cache yet. Bounded in time; what cannot be read counts as missing.
async fn missing_inputs(
    client: &kube::Client,
    dj: &DataJob,
    ns: &str,
    known: &[(String, Vec<String>)],
) -> Vec<(String, Vec<String>)> {
    let api: kube::Api<DataJob> = kube::Api::namespaced(client.clone(), ns);
    let mut found = Vec::new();
    for input in &dj.spec.inputs {
        if known.iter().any(|(n, _)| n == input) || dj.metadata.name.as_ref() == Some(input) {
            continue;
        }
        let params = kube::api::ListParams::default().fields(&format!("metadata.name={input}"));
        let listed =
            tokio::time::timeout(std::time::Duration::from_secs(2), api.list(&params)).await;
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

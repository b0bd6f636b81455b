//! The validating admission webhook: refuses a bad DataJob at `kubectl apply` with the
//! same words `kubectl datajob plan` and the reconciler use ([`crate::validation`]).
pub mod serve;
pub mod tls;

use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::post};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

use kube::runtime::reflector::Store;

use crate::api::{DataJob, NodeGroup};
use crate::children::Guards;
use crate::metrics::{AdmissionLabels, Metrics};
use crate::nodegroups::{Group, resolve_and_place, usable_groups};
use crate::preflight::Preflight;
use crate::validation::Limits;

pub const PATH: &str = "/validate-datajob";
/// The largest admission review read: twice the apiserver's 3 MiB request limit, with room.
const MAX_REVIEW_BYTES: usize = 8 << 20;

#[derive(Clone)]
struct WebhookState {
    limits: Arc<Limits>,
    guards: Arc<Guards>,
    groups: Store<NodeGroup>,
    metrics: Metrics,
    /// Looks up what an admitted spec refers to, for warnings; `None` when off.
    preflight: Option<Arc<Preflight>>,
}

/// The webhook's routes. `groups` is the NodeGroup cache: a DataJob no group could ever
/// fit is refused (with no groups at all, admission does not guess). With `preflight`, an
/// admitted DataJob whose image, Secrets, ConfigMaps or service account are missing gets
/// warnings (kubectl prints them).
pub fn router(
    limits: Limits,
    guards: Guards,
    groups: Store<NodeGroup>,
    metrics: Metrics,
    preflight: Option<Preflight>,
) -> Router {
    let state = WebhookState {
        limits: Arc::new(limits),
        guards: Arc::new(guards),
        groups,
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
    let synced = tokio::time::timeout(GROUPS_SYNC_WAIT, s.groups.wait_until_ready())
        .await
        .is_ok();
    let groups = match synced {
        true => usable_groups(s.groups.state().iter().map(|g| g.as_ref())),
        false => Vec::new(),
    };
    let mut response = review_datajob(&req, &s.limits, &s.guards, &groups);
    if let (true, Some(pf), Some(dj)) = (response.allowed, &s.preflight, &req.object)
        && spec_changed(&req)
    {
        let ns = req.namespace.clone().unwrap_or_else(|| "default".into());
        // Bounded, whatever a look-up does: a review never waits past the limit.
        let limit = crate::preflight::TIME_LIMIT + std::time::Duration::from_millis(500);
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

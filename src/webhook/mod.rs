//! The validating admission webhook: refuses a bad DataJob at `kubectl apply` with the
//! same words `kubectl datajob plan` and the reconciler use ([`crate::validation`]).
pub mod tls;

use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::post};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

use crate::api::DataJob;
use crate::metrics::{AdmissionLabels, Metrics};
use crate::validation::{Limits, resolve};

pub const PATH: &str = "/validate-datajob";

#[derive(Clone)]
struct WebhookState {
    limits: Arc<Limits>,
    metrics: Metrics,
}

pub fn router(limits: Limits, metrics: Metrics) -> Router {
    Router::new()
        .route(PATH, post(validate))
        .with_state(WebhookState {
            limits: Arc::new(limits),
            metrics,
        })
}

async fn validate(
    State(s): State<WebhookState>,
    Json(review): Json<AdmissionReview<DataJob>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let req: AdmissionRequest<DataJob> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return Json(
                AdmissionResponse::invalid(format!("not an admission review: {e}")).into_review(),
            );
        }
    };
    let response = review_datajob(&req, &s.limits);
    s.metrics
        .admission_reviews
        .get_or_create(&AdmissionLabels {
            allowed: response.allowed.to_string(),
        })
        .inc();
    Json(response.into_review())
}

/// The decision for one request, without HTTP.
pub fn review_datajob(req: &AdmissionRequest<DataJob>, limits: &Limits) -> AdmissionResponse {
    let response = AdmissionResponse::from(req);
    match &req.object {
        Some(dj) => match resolve(dj, limits) {
            Ok(_) => response,
            Err(problems) => response.deny(problems.to_string()),
        },
        None => response,
    }
}

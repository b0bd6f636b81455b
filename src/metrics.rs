//! Prometheus metrics (prometheus-client). Names are documented in docs/operations.md.
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub namespace: String,
    pub datajob: String,
    pub state: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub nodegroup: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CostLabels {
    pub namespace: String,
    pub datajob: String,
    pub nodegroup: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub allowed: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub reconciliations: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub runs_finished: Family<RunLabels, Counter>,
    pub admission_reviews: Family<AdmissionLabels, Counter>,
    pub runs_ended: Family<ReasonLabels, Counter>,
    pub attempts_failed: Family<ReasonLabels, Counter>,
    pub pvcs_deleted: Counter,
    pub jobs_pruned: Counter,
    pub nodegroup_desired: Family<GroupLabels, Gauge>,
    pub nodegroup_current: Family<GroupLabels, Gauge>,
    pub node_seconds: Family<GroupLabels, Counter<f64, AtomicU64>>,
    pub idle_node_seconds: Family<GroupLabels, Counter<f64, AtomicU64>>,
    pub idle_cost: Family<GroupLabels, Counter<f64, AtomicU64>>,
    pub run_cost: Family<CostLabels, Counter<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("datajob");
        let reconciliations = Family::<ControllerLabels, Counter>::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_duration =
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 12))
            });
        let runs_finished = Family::<RunLabels, Counter>::default();
        let admission_reviews = Family::<AdmissionLabels, Counter>::default();
        let runs_ended = Family::<ReasonLabels, Counter>::default();
        let attempts_failed = Family::<ReasonLabels, Counter>::default();
        let pvcs_deleted = Counter::default();
        let jobs_pruned = Counter::default();
        let nodegroup_desired = Family::<GroupLabels, Gauge>::default();
        let nodegroup_current = Family::<GroupLabels, Gauge>::default();
        let node_seconds = Family::<GroupLabels, Counter<f64, AtomicU64>>::default();
        let idle_node_seconds = Family::<GroupLabels, Counter<f64, AtomicU64>>::default();
        let idle_cost = Family::<GroupLabels, Counter<f64, AtomicU64>>::default();
        let run_cost = Family::<CostLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "reconciliations",
            "Reconciliations by controller",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by controller and error",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconciliation took",
            reconcile_duration.clone(),
        );
        registry.register(
            "runs_finished",
            "Runs that finished, by state and reason",
            runs_finished.clone(),
        );
        registry.register(
            "admission_reviews",
            "DataJob admission reviews by outcome",
            admission_reviews.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            runs_finished,
            admission_reviews,
            runs_ended,
            attempts_failed,
            pvcs_deleted,
            jobs_pruned,
            nodegroup_desired,
            nodegroup_current,
            node_seconds,
            idle_node_seconds,
            idle_cost,
            run_cost,
        }
    }
}

impl Metrics {
    /// Counts a reconciliation and times it until the guard drops.
    pub fn reconcile(&self, controller: &str) -> ReconcileTimer {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.reconciliations.get_or_create(&labels).inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.reconcile_duration.get_or_create(&labels).clone(),
        }
    }

    pub fn reconcile_failure(&self, controller: &str, error: &crate::Error) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.into(),
                error: error.metric_label().into(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

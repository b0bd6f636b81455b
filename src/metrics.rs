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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub reconciliations: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub runs_finished: Family<RunLabels, Counter>,
    pub admission_reviews: Family<AdmissionLabels, Counter>,
    pub admission_duration: Histogram,
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
    pub leader: Gauge,
    pub build_info: Family<BuildLabels, Gauge>,
    pub webhook_cert_expiry: Gauge,
}

/// Registers `metric` under `name` (prefixed `datajob_`; counters get `_total`) and
/// hands it back, so a metric cannot exist without being exposed.
fn registered<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("datajob");
        let reg = &mut r;
        let reconciliations = registered(
            reg,
            "reconciliations",
            "Reconciliations started, by controller",
            Family::default(),
        );
        let reconcile_errors = registered(
            reg,
            "reconcile_errors",
            "Failed reconciliations, by controller and error",
            Family::default(),
        );
        let reconcile_duration = registered(
            reg,
            "reconcile_duration_seconds",
            "Time one reconciliation took, by controller",
            Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 12))
            }),
        );
        let runs_finished = registered(
            reg,
            "runs_finished",
            "Runs that finished, by DataJob, state and reason",
            Family::default(),
        );
        let admission_reviews = registered(
            reg,
            "admission_reviews",
            "DataJob admission reviews, by outcome",
            Family::default(),
        );
        let admission_duration = registered(
            reg,
            "admission_review_duration_seconds",
            "Time the webhook took to answer one admission review",
            Histogram::new(exponential_buckets(0.001, 2.0, 14)),
        );
        let runs_ended = registered(
            reg,
            "runs_ended",
            "Runs the watchdog ended, by reason",
            Family::default(),
        );
        let attempts_failed = registered(
            reg,
            "attempts_failed",
            "Failed attempts the watchdog recorded without ending the run, by reason",
            Family::default(),
        );
        let pvcs_deleted = registered(
            reg,
            "pvcs_deleted",
            "Leftover PVCs of runs deleted by the clean-up",
            Counter::default(),
        );
        let jobs_pruned = registered(
            reg,
            "jobs_pruned",
            "Finished Jobs deleted beyond a DataJob's history",
            Counter::default(),
        );
        let nodegroup_desired = registered(
            reg,
            "nodegroup_desired_nodes",
            "Nodes a NodeGroup should have, by node group",
            Family::default(),
        );
        let nodegroup_current = registered(
            reg,
            "nodegroup_current_nodes",
            "Nodes a NodeGroup has, by node group",
            Family::default(),
        );
        let node_seconds = registered(
            reg,
            "nodegroup_node_seconds",
            "Node-seconds a NodeGroup's nodes existed, by node group",
            Family::default(),
        );
        let idle_node_seconds = registered(
            reg,
            "nodegroup_idle_node_seconds",
            "Node-seconds a NodeGroup's nodes existed without DataJob pods, by node group",
            Family::default(),
        );
        let idle_cost = registered(
            reg,
            "nodegroup_idle_cost",
            "Estimated price of the idle node-seconds (pricePerHour), by node group",
            Family::default(),
        );
        let run_cost = registered(
            reg,
            "run_cost",
            "Estimated cost of finished runs (their share of a node's price for their duration), by DataJob and node group",
            Family::default(),
        );
        let leader = registered(
            reg,
            "leader",
            "1 while this replica holds the leader Lease and runs the controllers, else 0",
            Gauge::default(),
        );
        let build_info = registered(
            reg,
            "build_info",
            "Always 1; the operator's version as a label",
            Family::<BuildLabels, Gauge>::default(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        let webhook_cert_expiry = registered(
            reg,
            "webhook_certificate_expiry_timestamp_seconds",
            "When the webhook's serving certificate in use expires (Unix seconds)",
            Gauge::default(),
        );
        Metrics {
            registry: Arc::new(r),
            leader,
            build_info,
            webhook_cert_expiry,
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            runs_finished,
            admission_reviews,
            admission_duration,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The `datajob_*` names in the exposition.
    fn exposed(m: &Metrics) -> Vec<String> {
        m.encode()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    /// Families appear in the exposition once they have a series: give each one.
    fn touch_all(m: &Metrics) {
        let c = ControllerLabels {
            controller: "datajob".into(),
        };
        m.reconciliations.get_or_create(&c).inc();
        m.reconcile_duration.get_or_create(&c).observe(0.1);
        m.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: "datajob".into(),
                error: "api".into(),
            })
            .inc();
        m.runs_finished
            .get_or_create(&RunLabels {
                namespace: "ns".into(),
                datajob: "dj".into(),
                state: "Failed".into(),
                reason: "ImageNotFound".into(),
            })
            .inc();
        m.admission_reviews
            .get_or_create(&AdmissionLabels {
                allowed: "true".into(),
            })
            .inc();
        m.admission_duration.observe(0.01);
        let r = ReasonLabels {
            reason: "OutOfMemory".into(),
        };
        m.runs_ended.get_or_create(&r).inc();
        m.attempts_failed.get_or_create(&r).inc();
        let g = GroupLabels {
            nodegroup: "general".into(),
        };
        m.nodegroup_desired.get_or_create(&g).set(1);
        m.nodegroup_current.get_or_create(&g).set(1);
        m.node_seconds.get_or_create(&g).inc_by(1.0);
        m.idle_node_seconds.get_or_create(&g).inc_by(1.0);
        m.idle_cost.get_or_create(&g).inc_by(1.0);
        m.run_cost
            .get_or_create(&CostLabels {
                namespace: "ns".into(),
                datajob: "dj".into(),
                nodegroup: "general".into(),
            })
            .inc_by(0.5);
    }

    #[test]
    fn every_metric_is_exposed_and_documented() {
        let m = Metrics::default();
        touch_all(&m);
        let names = exposed(&m);
        // One per field of `Metrics` but the registry.
        assert_eq!(names.len(), 19, "{names:?}");
        let docs = include_str!("../docs/operations.md");
        for name in &names {
            assert!(name.starts_with("datajob_"), "{name}");
            // Counters are exposed with `_total`, as the docs name them.
            let shown = match m.encode().contains(&format!("# TYPE {name} counter")) {
                true => format!("`{name}_total`"),
                false => format!("`{name}`"),
            };
            assert!(docs.contains(&shown), "docs/operations.md lacks {shown}");
        }
    }

    #[test]
    fn counters_are_exposed_with_their_labels() {
        let m = Metrics::default();
        m.runs_ended
            .get_or_create(&ReasonLabels {
                reason: "ImageNotFound".into(),
            })
            .inc();
        m.node_seconds
            .get_or_create(&GroupLabels {
                nodegroup: "general".into(),
            })
            .inc_by(1.5);
        let text = m.encode();
        assert!(
            text.contains("datajob_runs_ended_total{reason=\"ImageNotFound\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("datajob_nodegroup_node_seconds_total{nodegroup=\"general\"} 1.5"),
            "{text}"
        );
    }
}

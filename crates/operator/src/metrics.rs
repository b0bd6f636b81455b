//! Prometheus metrics (prometheus-client). Every metric, its type, labels and
//! cardinality is in the table of docs/operations.md#metrics (a test holds them equal).
//!
//! Three kinds:
//! * counters and histograms the controllers and the webhook update as things happen;
//! * gauges that describe objects (active runs, the last run's outcome, node-group
//!   sizes), read at scrape time from the leader's caches ([`Caches`]), so a deleted
//!   DataJob or NodeGroup leaves no series behind and followers expose none;
//! * the process's own figures (`process_*`, the standard names) and its heap, read at
//!   scrape time ([`crate::process_metrics`]).
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use datajob_api::{DataJob, NodeGroup, RunState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `Archived`, `Cut`, `NotKept` or `Empty` (datajob_core::decide::archive::Kept).
    pub outcome: String,
}

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

/// One DataJob (or, with `--metrics-per-datajob=false`, one namespace: `datajob` is "").
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DataJobLabels {
    pub namespace: String,
    pub datajob: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub namespace: String,
    pub datajob: String,
    pub state: String,
}

/// A DataJob and a reason: the watchdog's decisions, the last run's failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub namespace: String,
    pub datajob: String,
    pub reason: String,
}

/// What is known of a DataJob beyond its name: who owns it (`spec.owner`, "" when unset).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub namespace: String,
    pub datajob: String,
    pub owner: String,
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
    /// The git revision built from (12 hex digits), or `unknown` (see `build.rs`).
    pub revision: String,
}

/// Buckets of `datajob_schedule_lag_seconds`, in seconds: round numbers, so that an
/// alert can ask "later than 5 minutes" (`le="300"`).
pub(crate) const LAG_BUCKETS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    14400.0,
];

/// Buckets of `datajob_run_duration_seconds`, in seconds (1 s to the 24 h deadline cap).
pub(crate) const DURATION_BUCKETS: [f64; 16] = [
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
    28800.0, 57600.0, 86400.0,
];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    /// The length of the last `/metrics` text: the next one is written into a buffer of
    /// about that size, not grown by doubling (which at 2,000 DataJobs held the old and
    /// the new buffer at once, up to three times the text).
    last_len: Arc<AtomicUsize>,
    /// `--metrics-per-datajob`: label series with the DataJob's name; else "".
    pub per_datajob: bool,
    pub reconciliations: Family<ControllerLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub runs_started: Family<DataJobLabels, Counter>,
    pub runs_finished: Family<RunLabels, Counter>,
    pub run_duration: Family<StateLabels, Histogram>,
    pub schedule_lag: Family<DataJobLabels, Histogram>,
    pub schedule_missed: Family<DataJobLabels, Counter>,
    pub spec_changes: Counter,
    pub admission_reviews: Family<AdmissionLabels, Counter>,
    pub admission_duration: Histogram,
    pub runs_ended: Family<ReasonLabels, Counter>,
    pub attempts_failed: Family<ReasonLabels, Counter>,
    pub pvcs_deleted: Counter,
    pub jobs_pruned: Counter,
    pub node_seconds: Family<GroupLabels, Counter<f64, AtomicU64>>,
    pub idle_node_seconds: Family<GroupLabels, Counter<f64, AtomicU64>>,
    pub idle_cost: Family<GroupLabels, Counter<f64, AtomicU64>>,
    pub run_cost: Family<CostLabels, Counter<f64, AtomicU64>>,
    pub leader: Gauge,
    pub build_info: Family<BuildLabels, Gauge>,
    pub webhook_cert_expiry: Gauge,
    pub log_copies: Family<OutcomeLabels, Counter>,
    pub log_archive_bytes: Gauge,
    pub log_archive_objects: Gauge,
    /// The leader's caches the object gauges are read from.
    pub caches: Caches,
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
        Metrics::new(true)
    }
}

impl Metrics {
    /// Every metric, registered. `per_datajob` is `--metrics-per-datajob`.
    ///
    /// It stays whole: one registration per metric, name and help side by side in the
    /// one list (docs/operations.md has the table), so a metric is added or renamed in one
    /// place; it holds no logic to split.
    pub fn new(per_datajob: bool) -> Self {
        let mut root = Registry::default();
        let r = root.sub_registry_with_prefix("datajob");
        let reg = &mut *r;
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
        let runs_started = registered(
            reg,
            "runs_started",
            "Runs created (scheduled, one-off or triggered), counted when the status first lists them, by DataJob",
            Family::default(),
        );
        let runs_finished = registered(
            reg,
            "runs_finished",
            "Runs that finished, by DataJob, state and reason",
            Family::default(),
        );
        let run_duration = registered(
            reg,
            "run_duration_seconds",
            "Duration of finished runs (from the Job's start, waiting for a node included, to its end), by DataJob and state",
            Family::<StateLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(DURATION_BUCKETS)
            }),
        );
        let schedule_lag = registered(
            reg,
            "schedule_lag_seconds",
            "Time from a scheduled run's logical time to its first container start, by DataJob",
            Family::<DataJobLabels, Histogram>::new_with_constructor(|| {
                Histogram::new(LAG_BUCKETS)
            }),
        );
        let schedule_missed = registered(
            reg,
            "schedule_missed",
            "Scheduled times that got no run before the CronJob's startingDeadlineSeconds passed, by DataJob",
            Family::default(),
        );
        let spec_changes = registered(
            reg,
            "spec_changes",
            "DataJobs created or changed (a generation newer than status.observedGeneration), counted when the status is written",
            Counter::default(),
        );
        let admission_reviews = registered(
            reg,
            "admission_reviews",
            "DataJob admission reviews, by outcome",
            Family::<AdmissionLabels, Counter>::default(),
        );
        // Both outcomes exist from the start, so that "no review" is a 0, not an absence.
        for allowed in ["true", "false"] {
            drop(admission_reviews.get_or_create(&AdmissionLabels {
                allowed: allowed.into(),
            }));
        }
        let admission_duration = registered(
            reg,
            "admission_review_duration_seconds",
            "Time the webhook took to answer one admission review",
            Histogram::new(exponential_buckets(0.001, 2.0, 14)),
        );
        let runs_ended = registered(
            reg,
            "runs_ended",
            "Runs the watchdog ended, by DataJob and reason",
            Family::default(),
        );
        let attempts_failed = registered(
            reg,
            "attempts_failed",
            "Failed attempts the watchdog recorded without ending the run, by DataJob and reason",
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
        // Costs are in the currency of the NodeGroups' pricePerHour: the unit `currency`
        // (`datajob_nodegroup_idle_cost_currency_total`).
        let idle_cost: Family<GroupLabels, Counter<f64, AtomicU64>> = Family::default();
        reg.register_with_unit(
            "nodegroup_idle_cost",
            "Estimated price of the idle node-seconds, in the currency of the node group's pricePerHour, by node group",
            Unit::Other("currency".into()),
            idle_cost.clone(),
        );
        let run_cost: Family<CostLabels, Counter<f64, AtomicU64>> = Family::default();
        reg.register_with_unit(
            "run_cost",
            "Estimated cost of finished runs (their share of a node's price for their duration), in the currency of the node group's pricePerHour, by DataJob and node group",
            Unit::Other("currency".into()),
            run_cost.clone(),
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
            "Always 1; the operator's version and git revision as labels",
            Family::<BuildLabels, Gauge>::default(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                revision: env!("DATAJOB_GIT_REVISION").into(),
            })
            .set(1);
        let webhook_cert_expiry = registered(
            reg,
            "webhook_certificate_expiry_timestamp_seconds",
            "When the webhook's serving certificate in use expires (Unix seconds)",
            Gauge::default(),
        );
        let log_copies = registered(
            reg,
            "log_archive_copies",
            "Run pods whose logs the log archive took (outcome Archived or Cut), did not keep (NotKept) or found empty (Empty), by outcome",
            Family::<OutcomeLabels, Counter>::default(),
        );
        // Every outcome from the start, so a rate of 0 is a rate and not "no data".
        for outcome in ["Archived", "Cut", "NotKept", "Empty"] {
            drop(log_copies.get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            }));
        }
        let log_archive_bytes = registered(
            reg,
            "log_archive_bytes",
            "Bytes of run logs in the log archive after its last retention pass",
            Gauge::default(),
        );
        let log_archive_objects = registered(
            reg,
            "log_archive_objects",
            "Log objects (one per attempt and container) in the log archive after its last retention pass",
            Gauge::default(),
        );
        let caches = Caches::default();
        r.register_collector(Box::new(ObjectGauges {
            per_datajob,
            caches: caches.clone(),
        }));
        r.register_collector(Box::new(crate::process_metrics::HeapMetrics));
        root.register_collector(Box::new(crate::process_metrics::ProcessMetrics));
        Metrics {
            registry: Arc::new(root),
            last_len: Arc::default(),
            per_datajob,
            leader,
            build_info,
            webhook_cert_expiry,
            log_copies,
            log_archive_bytes,
            log_archive_objects,
            reconciliations,
            reconcile_errors,
            reconcile_duration,
            runs_started,
            runs_finished,
            run_duration,
            schedule_lag,
            schedule_missed,
            spec_changes,
            admission_reviews,
            admission_duration,
            runs_ended,
            attempts_failed,
            pvcs_deleted,
            jobs_pruned,
            node_seconds,
            idle_node_seconds,
            idle_cost,
            run_cost,
            caches,
        }
    }

    /// The `datajob` label of a DataJob: its name, or "" with `--metrics-per-datajob=false`.
    pub(crate) fn datajob(&self, name: &str) -> String {
        datajob_label(self.per_datajob, name)
    }

    /// The labels of one DataJob's series.
    pub(crate) fn datajob_labels(&self, namespace: &str, name: &str) -> DataJobLabels {
        DataJobLabels {
            namespace: namespace.into(),
            datajob: self.datajob(name),
        }
    }

    /// Counts a reconciliation and times it until the guard drops.
    pub(crate) fn reconcile(&self, controller: &str) -> ReconcileTimer {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.reconciliations.get_or_create(&labels).inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.reconcile_duration.get_or_create(&labels).clone(),
        }
    }

    pub(crate) fn reconcile_failure(&self, controller: &str, error: &crate::Error) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.into(),
                error: error.metric_label().into(),
            })
            .inc();
    }

    pub(crate) fn encode(&self) -> String {
        let last = self.last_len.load(Ordering::Relaxed);
        let mut out = String::with_capacity(last + last / 16);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        self.last_len.store(out.len(), Ordering::Relaxed);
        out
    }
}

fn datajob_label(per_datajob: bool, name: &str) -> String {
    match per_datajob {
        true => name.to_string(),
        false => String::new(),
    }
}

pub(crate) struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// A cache a controller lends to the metrics while it runs.
pub struct Slot<K: Resource<DynamicType = ()> + Clone + 'static>(Arc<RwLock<Option<Store<K>>>>);

impl<K: Resource<DynamicType = ()> + Clone + 'static> Default for Slot<K> {
    fn default() -> Self {
        Slot(Arc::new(RwLock::new(None)))
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Slot<K> {
    fn clone(&self) -> Self {
        Slot(self.0.clone())
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Slot<K> {
    /// Reads `store` at each scrape until the returned guard drops (the controller stopped).
    pub(crate) fn serve(&self, store: Store<K>) -> Served<K> {
        if let Ok(mut slot) = self.0.write() {
            *slot = Some(store);
        }
        Served(self.clone())
    }

    /// What the cache holds now; `None` while no controller lends one (a follower).
    fn objects(&self) -> Option<Vec<Arc<K>>> {
        self.0.read().ok()?.as_ref().map(|s| s.state())
    }
}

/// Lends a cache to the metrics; taken back when dropped.
pub(crate) struct Served<K: Resource<DynamicType = ()> + Clone + 'static>(Slot<K>);

impl<K: Resource<DynamicType = ()> + Clone + 'static> Drop for Served<K> {
    fn drop(&mut self) {
        if let Ok(mut slot) = (self.0).0.write() {
            *slot = None;
        }
    }
}

/// The caches of the controllers the leader runs.
#[derive(Clone, Default)]
pub struct Caches {
    pub datajobs: Slot<DataJob>,
    pub nodegroups: Slot<NodeGroup>,
}

/// Gauge values by label set.
pub(crate) type Series<L> = Vec<(L, i64)>;

/// Gauges of each DataJob: (active runs, whether its last run failed and why).
pub(crate) fn datajob_gauges(
    datajobs: &[&DataJob],
    per_datajob: bool,
) -> (Series<DataJobLabels>, Series<ReasonLabels>) {
    let mut active = Vec::new();
    let mut failed = Vec::new();
    for dj in datajobs {
        let namespace = dj.namespace().unwrap_or_default();
        let datajob = datajob_label(per_datajob, &dj.name_any());
        let status = dj.status.as_ref();
        let running = status.map_or(0, |s| s.active_runs.len());
        active.push((
            DataJobLabels {
                namespace: namespace.clone(),
                datajob: datajob.clone(),
            },
            i64::try_from(running).unwrap_or(i64::MAX),
        ));
        let last = status.and_then(|s| s.last_run.as_ref());
        let (value, reason) = match last {
            Some(r) if r.state == RunState::Failed => {
                (1, r.reason.clone().unwrap_or_else(|| "Failed".into()))
            }
            _ => (0, String::new()),
        };
        failed.push((
            ReasonLabels {
                namespace,
                datajob,
                reason,
            },
            value,
        ));
    }
    (active, failed)
}

/// `datajob_late`: 1 for a DataJob whose `Late` condition is true (`spec.expectBy`), else
/// 0; summed per namespace without per-DataJob labels.
pub(crate) fn late_gauges(datajobs: &[&DataJob], per_datajob: bool) -> Series<DataJobLabels> {
    datajobs
        .iter()
        .map(|dj| {
            let late = dj.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Late" && c.status == "True")
            });
            let labels = DataJobLabels {
                namespace: dj.namespace().unwrap_or_default(),
                datajob: datajob_label(per_datajob, &dj.name_any()),
            };
            (labels, i64::from(late))
        })
        .collect()
}

/// `datajob_info`: 1 for each DataJob, with its owner, for alerts to join on
/// (namespace, datajob). Without per-DataJob labels, one series per namespace and no owner
/// (an owner is per DataJob).
pub(crate) fn datajob_info(datajobs: &[&DataJob], per_datajob: bool) -> Series<InfoLabels> {
    let mut seen = std::collections::HashSet::new();
    let mut series = Vec::new();
    for dj in datajobs {
        let labels = InfoLabels {
            namespace: dj.namespace().unwrap_or_default(),
            datajob: datajob_label(per_datajob, &dj.name_any()),
            owner: match per_datajob {
                true => dj.spec.owner.clone().unwrap_or_default(),
                false => String::new(),
            },
        };
        if seen.insert(labels.clone()) {
            series.push((labels, 1));
        }
    }
    series
}

/// What a NodeGroup's status and spec say, for its gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupFigures {
    pub desired: i64,
    pub current: i64,
    pub ready: i64,
    pub pending_pods: i64,
    pub max: i64,
}

pub(crate) fn nodegroup_gauges(groups: &[&NodeGroup]) -> Vec<(GroupLabels, GroupFigures)> {
    groups
        .iter()
        .map(|g| {
            let s = g.status.clone().unwrap_or_default();
            (
                GroupLabels {
                    nodegroup: g.name_any(),
                },
                GroupFigures {
                    desired: s.desired.into(),
                    current: s.current.into(),
                    ready: s.ready.into(),
                    pending_pods: s.pending_pods.into(),
                    max: g.spec.max_size.into(),
                },
            )
        })
        .collect()
}

/// Encodes `series` as one gauge family; series with equal labels are summed (several
/// DataJobs of a namespace with `--metrics-per-datajob=false`).
fn encode_gauges<L>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error>
where
    L: EncodeLabelSet + Clone + Hash + Eq + Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    for (labels, value) in series {
        family.get_or_create(&labels).inc_by(value);
    }
    let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
    family.encode(metric)
}

/// A node-group gauge: name, help, and which figure it shows.
type GroupGauge = (&'static str, &'static str, fn(&GroupFigures) -> i64);

/// The gauges read from the leader's caches at scrape time.
struct ObjectGauges {
    per_datajob: bool,
    caches: Caches,
}

impl Debug for ObjectGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ObjectGauges")
    }
}

impl Collector for ObjectGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(datajobs) = self.caches.datajobs.objects() {
            let refs: Vec<&DataJob> = datajobs.iter().map(Arc::as_ref).collect();
            let (active, failed) = datajob_gauges(&refs, self.per_datajob);
            encode_gauges(
                &mut encoder,
                "runs_active",
                "Runs not finished (pending or running), by DataJob",
                active,
            )?;
            encode_gauges(
                &mut encoder,
                "last_run_failed",
                "1 when a DataJob's last run failed (reason: why), else 0; summed per namespace without per-DataJob labels",
                failed,
            )?;
            encode_gauges(
                &mut encoder,
                "late",
                "1 when a DataJob is Late: the run due by its spec.expectBy has not succeeded; summed per namespace without per-DataJob labels",
                late_gauges(&refs, self.per_datajob),
            )?;
            encode_gauges(
                &mut encoder,
                "info",
                "1 for each DataJob, with its owner (spec.owner), which the DataJob alerts join on (namespace, datajob)",
                datajob_info(&refs, self.per_datajob),
            )?;
        }
        if let Some(groups) = self.caches.nodegroups.objects() {
            let refs: Vec<&NodeGroup> = groups.iter().map(Arc::as_ref).collect();
            let figures = nodegroup_gauges(&refs);
            let gauges: [GroupGauge; 5] = [
                (
                    "nodegroup_desired_nodes",
                    "Nodes a NodeGroup should have (status.desired), by node group",
                    |f| f.desired,
                ),
                (
                    "nodegroup_current_nodes",
                    "Nodes a NodeGroup has (status.current), by node group",
                    |f| f.current,
                ),
                (
                    "nodegroup_ready_nodes",
                    "Ready nodes of a NodeGroup (status.ready), by node group",
                    |f| f.ready,
                ),
                (
                    "nodegroup_pending_pods",
                    "DataJob pods placed on a NodeGroup that wait for a node (status.pendingPods), by node group",
                    |f| f.pending_pods,
                ),
                (
                    "nodegroup_max_nodes",
                    "The most nodes a NodeGroup may have (spec.maxSize), by node group",
                    |f| f.max,
                ),
            ];
            for (name, help, pick) in gauges {
                let series = figures.iter().map(|(l, f)| (l.clone(), pick(f)));
                encode_gauges(&mut encoder, name, help, series)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::{DataJobStatus, NodeGroupStatus, RunRecord};
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    /// Sums of series by label set, as the exposition shows them.
    fn by_labels<L: Clone + Hash + Eq>(series: &[(L, i64)]) -> HashMap<L, i64> {
        let mut out = HashMap::new();
        for (l, v) in series {
            *out.entry(l.clone()).or_insert(0) += v;
        }
        out
    }

    /// Families and their types in the exposition.
    fn exposed(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.to_string(), w.next()?.to_string()))
            })
            .collect()
    }

    /// The label names of a family's samples (`le` of histogram buckets left out).
    fn label_names(text: &str, family: &str, kind: &str) -> BTreeSet<String> {
        let sample = match kind {
            "counter" => format!("{family}_total"),
            "histogram" => format!("{family}_bucket"),
            _ => family.to_string(),
        };
        let mut names = BTreeSet::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&sample) else {
                continue;
            };
            let Some(set) = rest.strip_prefix('{').and_then(|r| r.split_once('}')) else {
                continue;
            };
            for pair in set.0.split(',') {
                if let Some((k, _)) = pair.split_once('=')
                    && k != "le"
                {
                    names.insert(k.to_string());
                }
            }
        }
        names
    }

    fn datajob(ns: &str, name: &str, status: DataJobStatus) -> DataJob {
        let mut dj: DataJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
            "metadata": {"name": name, "namespace": ns, "uid": format!("{ns}-{name}")},
            "spec": {"image": "busybox"},
        }))
        .unwrap();
        dj.status = Some(status);
        dj
    }

    fn nodegroup(name: &str, max: i32, status: NodeGroupStatus) -> NodeGroup {
        let mut ng: NodeGroup = serde_json::from_value(serde_json::json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup",
            "metadata": {"name": name, "uid": name},
            "spec": {"node": {"cpu": 4, "memory": "16Gi"}, "maxSize": max, "provider": {"kwok": {}}},
        }))
        .unwrap();
        ng.status = Some(status);
        ng
    }

    fn failed_run(reason: &str) -> RunRecord {
        RunRecord {
            name: "r".into(),
            state: RunState::Failed,
            reason: Some(reason.into()),
            ..Default::default()
        }
    }

    /// Families appear in the exposition once they have a series: give each one, and
    /// lend the collectors caches with one object each.
    fn touch_all(m: &Metrics) -> (Served<DataJob>, Served<NodeGroup>) {
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
        let dj = m.datajob_labels("ns", "dj");
        m.runs_started.get_or_create(&dj).inc();
        m.runs_finished
            .get_or_create(&RunLabels {
                namespace: "ns".into(),
                datajob: "dj".into(),
                state: "Failed".into(),
                reason: "ImageNotFound".into(),
            })
            .inc();
        m.run_duration
            .get_or_create(&StateLabels {
                namespace: "ns".into(),
                datajob: "dj".into(),
                state: "Succeeded".into(),
            })
            .observe(12.0);
        m.schedule_lag.get_or_create(&dj).observe(3.0);
        m.schedule_missed.get_or_create(&dj).inc();
        m.spec_changes.inc();
        m.admission_duration.observe(0.01);
        let r = ReasonLabels {
            namespace: "ns".into(),
            datajob: "dj".into(),
            reason: "OutOfMemory".into(),
        };
        m.runs_ended.get_or_create(&r).inc();
        m.attempts_failed.get_or_create(&r).inc();
        m.pvcs_deleted.inc();
        m.jobs_pruned.inc();
        let g = GroupLabels {
            nodegroup: "general".into(),
        };
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
        let status = DataJobStatus {
            last_run: Some(failed_run("OutOfMemory")),
            ..Default::default()
        };
        let djs = m
            .caches
            .datajobs
            .serve(crate::controller::mock::store_of(vec![datajob(
                "ns", "dj", status,
            )]));
        let ngs = m
            .caches
            .nodegroups
            .serve(crate::controller::mock::store_of(vec![nodegroup(
                "general",
                5,
                NodeGroupStatus::default(),
            )]));
        (djs, ngs)
    }

    /// The rows of the metrics table in docs/operations.md: name → (type, label names).
    fn documented() -> BTreeMap<String, (String, BTreeSet<String>)> {
        let docs = include_str!("../../../docs/operations.md");
        let section = docs
            .split("\n## Metrics\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("docs/operations.md has a Metrics section");
        let ticked = |cell: &str| -> BTreeSet<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        section
            .lines()
            .filter(|l| l.starts_with("| `datajob_") || l.starts_with("| `process_"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells[1].trim_matches('`').to_string();
                (name, (cells[2].to_string(), ticked(cells[3])))
            })
            .collect()
    }

    #[test]
    fn every_metric_is_documented_with_its_type_and_labels() {
        let m = Metrics::default();
        let _served = touch_all(&m);
        let text = m.encode();
        let families = exposed(&text);
        // One per field of `Metrics` but the registry, the flag and the caches, plus the
        // nine gauges read from the caches (`datajob_info` and `datajob_late` among
        // them), the heap and its peak (the unit tests run on the operator's counting
        // allocator) and the six standard `process_*` metrics.
        assert_eq!(families.len(), 25 + 9 + 2 + 6, "{families:?}");
        let docs = documented();
        let mut shown = BTreeSet::new();
        for (family, kind) in &families {
            assert!(
                family.starts_with("datajob_") || family.starts_with("process_"),
                "{family}"
            );
            // Counters are exposed (and documented) with `_total`.
            let name = match kind.as_str() {
                "counter" => format!("{family}_total"),
                _ => family.clone(),
            };
            let (doc_kind, doc_labels) = docs
                .get(&name)
                .unwrap_or_else(|| panic!("docs/operations.md#metrics lacks `{name}`"));
            assert_eq!(doc_kind, kind, "the type of {name} in docs/operations.md");
            assert_eq!(
                doc_labels,
                &label_names(&text, family, kind),
                "the labels of {name} in docs/operations.md"
            );
            shown.insert(name);
        }
        let extra: Vec<&String> = docs.keys().filter(|n| !shown.contains(*n)).collect();
        assert!(
            extra.is_empty(),
            "docs/operations.md lists metrics the operator does not have: {extra:?}"
        );
    }

    #[test]
    fn build_info_names_the_version_and_the_git_revision() {
        let text = Metrics::default().encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("datajob_build_info{"))
            .unwrap_or_default();
        let revision = line
            .split("revision=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        assert!(
            line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
        assert!(
            revision == "unknown"
                || (revision.len() == 12 && revision.bytes().all(|b| b.is_ascii_hexdigit())),
            "{line}"
        );
        assert!(line.ends_with(" 1"), "{line}");
    }

    #[test]
    fn counters_are_exposed_with_their_labels() {
        let m = Metrics::default();
        m.runs_ended
            .get_or_create(&ReasonLabels {
                namespace: "ns".into(),
                datajob: "dj".into(),
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
            text.contains(
                "datajob_runs_ended_total{namespace=\"ns\",datajob=\"dj\",reason=\"ImageNotFound\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("datajob_nodegroup_node_seconds_total{nodegroup=\"general\"} 1.5"),
            "{text}"
        );
        // Both admission outcomes exist before the first review.
        assert!(
            text.contains("datajob_admission_reviews_total{allowed=\"false\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn without_per_datajob_labels_the_datajob_label_is_empty() {
        let m = Metrics::new(false);
        assert_eq!(m.datajob("churn"), "");
        assert_eq!(m.datajob_labels("ns", "churn").datajob, "");
        assert_eq!(Metrics::new(true).datajob("churn"), "churn");
        // Gauges of the namespace's DataJobs are summed into one series per namespace.
        let running = DataJobStatus {
            active_runs: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let failed = DataJobStatus {
            last_run: Some(failed_run("OutOfMemory")),
            ..Default::default()
        };
        let djs = [
            datajob("ns", "a", running),
            datajob("ns", "b", failed.clone()),
            datajob("ns", "c", failed),
            datajob("other", "d", DataJobStatus::default()),
        ];
        let refs: Vec<&DataJob> = djs.iter().collect();
        let (active, last_failed) = datajob_gauges(&refs, false);
        let active = by_labels(&active);
        assert_eq!(active.len(), 2);
        assert_eq!(active[&m.datajob_labels("ns", "a")], 2);
        let last_failed = by_labels(&last_failed);
        let key = |ns: &str, reason: &str| ReasonLabels {
            namespace: ns.into(),
            datajob: String::new(),
            reason: reason.into(),
        };
        assert_eq!(last_failed[&key("ns", "OutOfMemory")], 2);
        assert_eq!(last_failed[&key("ns", "")], 0);
        assert_eq!(last_failed[&key("other", "")], 0);
        // ... and per DataJob otherwise.
        let (_, per) = datajob_gauges(&refs, true);
        let per = by_labels(&per);
        assert_eq!(per.len(), 4);
        assert_eq!(
            per[&ReasonLabels {
                namespace: "ns".into(),
                datajob: "b".into(),
                reason: "OutOfMemory".into()
            }],
            1
        );
    }

    #[test]
    fn the_info_series_says_who_owns_each_datajob_once() {
        let mut owned = datajob("ns", "a", DataJobStatus::default());
        owned.spec.owner = Some("team-a".into());
        let djs = [
            owned,
            datajob("ns", "b", DataJobStatus::default()),
            datajob("other", "c", DataJobStatus::default()),
        ];
        let refs: Vec<&DataJob> = djs.iter().collect();
        let info = |ns: &str, dj: &str, owner: &str| InfoLabels {
            namespace: ns.into(),
            datajob: dj.into(),
            owner: owner.into(),
        };
        let per = by_labels(&datajob_info(&refs, true));
        assert_eq!(per.len(), 3);
        assert_eq!(per[&info("ns", "a", "team-a")], 1);
        assert_eq!(per[&info("ns", "b", "")], 1);
        // Without per-DataJob labels: one series of value 1 per namespace, no owner.
        let folded = by_labels(&datajob_info(&refs, false));
        assert_eq!(folded.len(), 2);
        assert_eq!(folded[&info("ns", "", "")], 1);
        // What Prometheus reads, from the leader's cache.
        let m = Metrics::default();
        let served = m
            .caches
            .datajobs
            .serve(crate::controller::mock::store_of(djs.to_vec()));
        let text = m.encode();
        let line = "datajob_info{namespace=\"ns\",datajob=\"a\",owner=\"team-a\"} 1\n";
        assert!(text.contains(line), "{line} in {text}");
        drop(served);
    }

    #[test]
    fn a_late_datajob_shows_as_late() {
        let mut status = DataJobStatus::default();
        status
            .conditions
            .push(datajob_core::decide::runs::condition(
                &[],
                "Late",
                true,
                "Late",
                "the run of 2026-12-01T03:00:00Z was expected by 06:00 UTC".into(),
                None,
                chrono::Utc::now(),
            ));
        let djs = [
            datajob("ns", "late", status),
            datajob("ns", "fine", DataJobStatus::default()),
        ];
        let refs: Vec<&DataJob> = djs.iter().collect();
        let m = Metrics::default();
        let per = by_labels(&late_gauges(&refs, true));
        assert_eq!(per[&m.datajob_labels("ns", "late")], 1);
        assert_eq!(per[&m.datajob_labels("ns", "fine")], 0);
        let folded = by_labels(&late_gauges(&refs, false));
        assert_eq!(folded.values().sum::<i64>(), 1);
    }

    #[test]
    fn object_gauges_follow_the_cache_and_vanish_with_it() {
        let m = Metrics::default();
        assert!(!m.encode().contains("datajob_runs_active"), "a follower");
        let ng = nodegroup(
            "general",
            5,
            NodeGroupStatus {
                desired: 3,
                current: 2,
                ready: 1,
                pending_pods: 4,
                ..Default::default()
            },
        );
        let served = m
            .caches
            .nodegroups
            .serve(crate::controller::mock::store_of(vec![ng]));
        let text = m.encode();
        for (name, value) in [
            ("desired_nodes", 3),
            ("current_nodes", 2),
            ("ready_nodes", 1),
            ("pending_pods", 4),
            ("max_nodes", 5),
        ] {
            let line = format!("datajob_nodegroup_{name}{{nodegroup=\"general\"}} {value}\n");
            assert!(text.contains(&line), "{line} in {text}");
        }
        drop(served);
        assert!(!m.encode().contains("datajob_nodegroup_desired_nodes"));
    }
}

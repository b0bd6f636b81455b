//! Benchmark: six node-group scalers on one trace of scheduled DataJobs and ad-hoc runs.
//!
//! The trace (`TRACE`): hourly DataJobs at different minutes, daily ones, and one-off
//! DataJobs created at odd times, as a platform with a few data teams sees them. It is
//! replayed once, on the local control plane with the operator running, into one
//! namespace per scaler at the same time; each namespace has its own NodeGroup of 4-CPU,
//! 16Gi nodes (`spec.namespaces`), so every scaler sees exactly the same runs at exactly
//! the same moments:
//!
//! * `schedule-aware`: `scaleDownPolicy: Schedule`, `warmUpBefore` = the boot time,
//!   `scaleDownAfter: 2m` as the longest wait;
//! * `fixed-2m`: `scaleDownPolicy: Idle`, `scaleDownAfter: 2m` (the scaler before
//!   `Schedule`), with the same warm-up;
//! * `karpenter-like`: every empty node goes at once (`Schedule` with
//!   `scaleDownAfter: 0s`, no warm-up: Karpenter's `consolidateAfter: 0s`);
//! * `cluster-autoscaler-like`: `minSize: 1`, `Idle` after 10 minutes, no warm-up;
//! * `karpenter-real`: real Karpenter (its kwok provider) makes and removes the nodes of
//!   a NodePool with `consolidateAfter: 0s`; the NodeGroup on it makes no buffers;
//! * `karpenter-buffers`: the same, plus DataJob's schedule-aware CapacityBuffers
//!   (`scaleDownPolicy: Schedule`, `warmUpBefore` = the boot time).
//!
//! `karpenter-like` and `cluster-autoscaler-like` are simulations: DataJob's own scaler
//! with those autoscalers' settings. The two `karpenter-*` columns are the real program
//! (the cluster is started with `DATAJOB_KARPENTER=1`); their nodes are paid from a
//! NodeClaim's creation to its deletion.
//!
//! Time is compressed: one real second stands for `SPEED` (10) simulated seconds, so a
//! simulated hour takes 6 real minutes, an hourly schedule is a real `*/6` one, and a
//! 4-minute boot is a 24 s kwok `bootDelay`. Every figure printed is in simulated time.
//! A node is paid for from the decision to make it (its boot) until it is deleted:
//! max(`status.desired`, nodes that exist) over time.
//!
//! Run it with `bash e2e/bench/scaling.sh` (starts the cluster and the operator, and stops
//! them). Settings: `BENCH_HOURS` (simulated hours of trace, default 2), `BENCH_BOOT`
//! (simulated boot time, default `4m`), `BENCH_ONLY` (comma-separated scaler names),
//! `BENCH_VERBOSE=1` (each run and each change of size on stderr). Results and how to
//! read them: docs/benchmarks.md.
// A test: a failed expectation is meant to stop it (production code denies these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use datajob_api::{DataJob, NodeGroup};
use datajob_core::decide::nodegroup::{
    self, GROUP_LABEL, Group, GroupState, ScaleDownPolicy, packing::place_packed,
};
use datajob_core::decide::watchdog::unschedulable_condition;
use datajob_core::labels::{self, LOGICAL_TIME, NAME};
use datajob_core::resources::Request;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// Simulated seconds per real second.
const SPEED: u32 = 10;
const NODE_CPU: u32 = 4;
const NODE_MEMORY: &str = "16Gi";
/// Per simulated hour, per node.
const PRICE_PER_HOUR: f64 = 0.20;
const DURATION_ANNOTATION: &str = "kwok.datajob.dev/duration";
/// The label Karpenter puts on its NodeClaims and nodes.
const NODEPOOL_LABEL: &str = "karpenter.sh/nodepool";
/// Karpenter's instance type for the benchmark (e2e/karpenter/instance_types.json):
/// after the kwok provider's kube-reserved, exactly `NODE_CPU` and `NODE_MEMORY`.
const INSTANCE_TYPE: &str = "b-4x-amd64-linux";
/// What a Karpenter boot takes beyond the node class's registration delay, in real
/// time: the provisioner's batch window (2 s at most here) and kwok marking the node
/// Ready. The buffers' NodeGroup declares it in its `bootTime`.
const KARPENTER_BATCH: Duration = Duration::from_secs(3);

/// When a DataJob of the trace runs, in simulated time from the start of the trace.
#[derive(Clone, Copy)]
enum When {
    /// Every hour at this minute (a multiple of 10: real cron minutes are 10 simulated).
    Hourly(u32),
    /// Once a day, this many minutes after the start (a multiple of 10).
    Daily(u32),
    /// A one-off DataJob created this many seconds after the start.
    AdHoc(u32),
}

struct Entry {
    name: &'static str,
    when: When,
    cpu: u32,
    memory_gi: u32,
    /// How long it runs, in simulated minutes.
    minutes: u32,
}

const fn e(name: &'static str, when: When, cpu: u32, memory_gi: u32, minutes: u32) -> Entry {
    Entry {
        name,
        when,
        cpu,
        memory_gi,
        minutes,
    }
}

/// Three teams' pipelines on a shared group: ingestion on the hour, a transform after it,
/// features and checks at half past, reports before the hour; two daily jobs; and
/// analysts' one-off runs.
const TRACE: &[Entry] = &[
    e("ingest", When::Hourly(0), 2, 4, 8),
    e("sessions", When::Hourly(0), 2, 4, 7),
    e("transform", When::Hourly(10), 4, 12, 14),
    e("features", When::Hourly(30), 3, 8, 12),
    e("quality", When::Hourly(30), 1, 2, 9),
    e("report", When::Hourly(50), 2, 4, 6),
    e("metrics", When::Hourly(50), 2, 4, 5),
    e("export", When::Daily(40), 4, 12, 25),
    e("train", When::Daily(80), 4, 14, 30),
    e("adhoc-a", When::AdHoc(15 * 60), 2, 4, 6),
    e("adhoc-b", When::AdHoc(47 * 60), 2, 4, 8),
    e("adhoc-c", When::AdHoc(72 * 60), 3, 6, 5),
    e("adhoc-d", When::AdHoc(93 * 60), 2, 4, 7),
    e("adhoc-e", When::AdHoc(115 * 60), 4, 8, 5),
];

struct Scaler {
    name: &'static str,
    /// In the table.
    label: &'static str,
    /// Real Karpenter makes the nodes (a NodePool named like the group).
    karpenter: bool,
    policy: ScaleDownPolicy,
    min_size: i32,
    /// Simulated.
    scale_down_after: Duration,
    warm_up: bool,
}

const SCALERS: &[Scaler] = &[
    Scaler {
        name: "schedule-aware",
        label: "schedule-aware",
        karpenter: false,
        policy: ScaleDownPolicy::Schedule,
        min_size: 0,
        scale_down_after: Duration::from_secs(120),
        warm_up: true,
    },
    Scaler {
        name: "fixed-2m",
        label: "fixed-2m",
        karpenter: false,
        policy: ScaleDownPolicy::Idle,
        min_size: 0,
        scale_down_after: Duration::from_secs(120),
        warm_up: true,
    },
    Scaler {
        name: "karpenter-like",
        label: "karpenter-like (simulated)",
        karpenter: false,
        policy: ScaleDownPolicy::Schedule,
        min_size: 0,
        scale_down_after: Duration::ZERO,
        warm_up: false,
    },
    Scaler {
        name: "cluster-autoscaler-like",
        label: "cluster-autoscaler-like (simulated)",
        karpenter: false,
        policy: ScaleDownPolicy::Idle,
        min_size: 1,
        scale_down_after: Duration::from_secs(600),
        warm_up: false,
    },
    Scaler {
        name: "karpenter-real",
        label: "real Karpenter alone",
        karpenter: true,
        // No keep, no warm-up: the NodeGroup makes no buffers.
        policy: ScaleDownPolicy::Idle,
        min_size: 0,
        scale_down_after: Duration::ZERO,
        warm_up: false,
    },
    Scaler {
        name: "karpenter-buffers",
        label: "real Karpenter + DataJob buffers",
        karpenter: true,
        policy: ScaleDownPolicy::Schedule,
        min_size: 0,
        scale_down_after: Duration::from_secs(120),
        warm_up: true,
    },
];

/// A simulated duration as real time.
fn real(d: Duration) -> Duration {
    d / SPEED
}

/// A simulated duration as a real one the way durations are written (whole seconds).
fn real_secs(d: Duration) -> String {
    format!("{}s", real(d).as_secs_f64().round() as u64)
}

fn sim(d: Duration) -> String {
    datajob_core::units::format_duration(d)
}

#[tokio::main]
async fn main() {
    print_packing_trace();
    if let Err(e) = bench().await {
        eprintln!("scaling bench: {e}");
        std::process::exit(1);
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

/// When a node existed: from, until (`None`: still there).
type Spans = Vec<(Instant, Option<Instant>)>;

/// What the watches saw.
#[derive(Default)]
struct Seen {
    /// Per group: per node, the intervals it existed.
    nodes: BTreeMap<String, BTreeMap<String, Spans>>,
    /// Per group: `status.desired` over time.
    desired: BTreeMap<String, Vec<(Instant, i32)>>,
    /// Per namespace and pod.
    pods: BTreeMap<(String, String), PodSeen>,
}

#[derive(Default, Clone)]
struct PodSeen {
    datajob: String,
    logical_time: Option<DateTime<Utc>>,
    cpu: f64,
    unschedulable: bool,
    running: Option<Instant>,
    finished: Option<Instant>,
    succeeded: bool,
    node: Option<String>,
}

struct Plan {
    /// The start of the trace, as an instant and as wall-clock time.
    t0: Instant,
    t0_utc: DateTime<Utc>,
    /// Simulated hours.
    hours: u32,
    boot: Duration,
}

impl Plan {
    fn at(&self, sim_secs: u32) -> Instant {
        self.t0 + real(Duration::from_secs(u64::from(sim_secs)))
    }
    fn instant_of(&self, t: DateTime<Utc>) -> Instant {
        let d = (t - self.t0_utc).num_milliseconds();
        if d >= 0 {
            self.t0 + Duration::from_millis(d as u64)
        } else {
            self.t0 - Duration::from_millis((-d) as u64)
        }
    }
    /// The trace's runs: (name, due in simulated seconds from the start).
    fn runs(&self) -> Vec<(&'static str, u32)> {
        let window = self.hours * 3600;
        let mut out = Vec::new();
        for t in TRACE {
            match t.when {
                When::Hourly(m) => {
                    for h in 0..self.hours {
                        out.push((t.name, h * 3600 + m * 60));
                    }
                }
                When::Daily(m) if m * 60 < window => out.push((t.name, m * 60)),
                When::AdHoc(s) if s < window => out.push((t.name, s)),
                _ => {}
            }
        }
        out.sort_by_key(|r| r.1);
        out
    }
    /// The real cron expression of a scheduled entry.
    fn cron(&self, when: When) -> Option<String> {
        let minute0 = self.t0_utc.minute();
        match when {
            When::Hourly(m) => {
                let o = (minute0 + m / 10) % 6;
                Some(format!("{o}-59/6 * * * *"))
            }
            When::Daily(m) if m * 60 < self.hours * 3600 => {
                let at = self.t0_utc + chrono::Duration::minutes(i64::from(m / 10));
                Some(format!("{} {} * * *", at.minute(), at.hour()))
            }
            _ => None,
        }
    }
}

async fn bench() -> Result<()> {
    let client = Client::try_default().await?;
    let hours: u32 = env_or("BENCH_HOURS", "2").parse()?;
    let boot = datajob_core::units::parse_duration(&env_or("BENCH_BOOT", "4m"))?;
    let only = std::env::var("BENCH_ONLY").ok();
    let scalers: Vec<&Scaler> = SCALERS
        .iter()
        .filter(|s| {
            only.as_deref()
                .is_none_or(|o| o.split(',').any(|n| n.trim() == s.name))
        })
        .collect();
    if scalers.is_empty() {
        return Err(format!("BENCH_ONLY={only:?} names no scaler").into());
    }
    let id = std::process::id();
    let name_of = |s: &Scaler| format!("bench-{}-{id}", s.name);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let watches = spawn_watches(&client, seen.clone(), scalers.iter().any(|s| s.karpenter));

    let result = async {
        for s in &scalers {
            create_group(&client, s, &name_of(s), boot).await?;
        }
        for s in &scalers {
            settle(&client, s, &name_of(s)).await?;
        }
        // The trace starts on a whole minute 40 to 100 s away (DataJobs placed and the
        // warm-up ahead of the first runs), and the DataJobs are made less than a
        // minute before it (so that no cron time before the start falls after them).
        let now = Utc::now();
        let t0_utc = labels::truncate_to_minute(now + chrono::Duration::seconds(100));
        let t0 = Instant::now() + (t0_utc - now).to_std()?;
        let plan = Plan {
            t0,
            t0_utc,
            hours,
            boot,
        };
        let runs = plan.runs();
        eprintln!(
            "trace: {} runs in {hours} simulated hour(s) ({} real minutes) from {}; time ×{SPEED}; 4-CPU nodes booting in {}",
            runs.len(),
            hours * 6,
            labels::rfc3339(t0_utc),
            sim(boot),
        );
        tokio::time::sleep_until((t0 - Duration::from_secs(50)).into()).await;
        for s in &scalers {
            for t in TRACE {
                if let Some(cron) = plan.cron(t.when) {
                    create_datajob(&client, &name_of(s), t, Some(&cron)).await?;
                }
            }
        }
        eprintln!("scheduled DataJobs made; the trace starts at {}", labels::rfc3339(t0_utc));
        // Ad-hoc runs at their times; then the schedules are suspended at the end.
        let mut adhoc: Vec<&Entry> = TRACE
            .iter()
            .filter(|t| matches!(t.when, When::AdHoc(s) if s < hours * 3600))
            .collect();
        adhoc.sort_by_key(|t| match t.when {
            When::AdHoc(s) => s,
            _ => 0,
        });
        let mut created: BTreeMap<String, Instant> = BTreeMap::new();
        for t in adhoc {
            let When::AdHoc(at) = t.when else { continue };
            tokio::time::sleep_until(plan.at(at).into()).await;
            let now = Instant::now();
            for s in &scalers {
                create_datajob(&client, &name_of(s), t, None).await?;
            }
            created.insert(t.name.to_string(), now);
        }
        // Suspend before a warm-up for the next simulated hour's first runs begins (the
        // last runs of the trace, at :50, have started by then).
        let end = plan.at(hours * 3600 - boot.as_secs() as u32 - 60);
        tokio::time::sleep_until(end.into()).await;
        for s in &scalers {
            for t in TRACE.iter().filter(|t| plan.cron(t.when).is_some()) {
                let patch = json!({"spec": {"suspend": true}});
                Api::<DataJob>::namespaced(client.clone(), &name_of(s))
                    .patch(t.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        }
        eprintln!("trace over; schedules suspended; waiting for the last runs and every group at rest");
        let rest = wait_for_rest(&seen, &scalers, &name_of, &plan, runs.len()).await;
        Ok::<_, Error>((plan, created, rest))
    }
    .await;
    for s in &scalers {
        cleanup(&client, &name_of(s)).await;
    }
    watches.abort();
    let (plan, created, rest) = result?;
    let seen = seen.lock().map_err(|_| "the watch state is poisoned")?;
    print_table(&seen, &scalers, &name_of, &plan, &created, rest);
    Ok(())
}

/// Watches pods, nodes and NodeGroups, and records when things happened.
fn spawn_watches(
    client: &Client,
    seen: Arc<Mutex<Seen>>,
    karpenter: bool,
) -> tokio::task::JoinHandle<()> {
    let pods = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(&labels::managed_selector()),
    );
    let nodes = watcher(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().labels(GROUP_LABEL),
    );
    let groups = watcher(
        Api::<NodeGroup>::all(client.clone()),
        watcher::Config::default(),
    );
    enum Ev {
        Pod(Box<watcher::Event<Pod>>),
        Node(Box<watcher::Event<Node>>),
        Group(Box<watcher::Event<NodeGroup>>),
        /// A Karpenter NodeClaim: a machine paid from its creation to its deletion.
        Claim(Box<watcher::Event<DynamicObject>>),
    }
    let mut streams = vec![
        pods.map(|e| e.map(|e| Ev::Pod(Box::new(e)))).boxed(),
        nodes.map(|e| e.map(|e| Ev::Node(Box::new(e)))).boxed(),
        groups.map(|e| e.map(|e| Ev::Group(Box::new(e)))).boxed(),
    ];
    if karpenter {
        let claims = watcher(
            node_claims(client),
            watcher::Config::default().labels(NODEPOOL_LABEL),
        )
        .default_backoff();
        streams.push(claims.map(|e| e.map(|e| Ev::Claim(Box::new(e)))).boxed());
    }
    let all = futures::stream::select_all(streams);
    tokio::spawn(async move {
        let mut all = all;
        while let Some(ev) = all.next().await {
            let now = Instant::now();
            let Ok(ev) = ev else {
                continue;
            };
            let Ok(mut s) = seen.lock() else {
                return;
            };
            match ev {
                Ev::Pod(e) => {
                    if let watcher::Event::Apply(p) | watcher::Event::InitApply(p) = *e {
                        pod_seen(&mut s, &p, now)
                    }
                }
                Ev::Node(e) => machine_seen(&mut s, *e, GROUP_LABEL, now),
                Ev::Claim(e) => machine_seen(&mut s, *e, NODEPOOL_LABEL, now),
                Ev::Group(e) => {
                    if let watcher::Event::Apply(g) | watcher::Event::InitApply(g) = *e {
                        let desired = g.status.as_ref().map_or(0, |st| st.desired);
                        let series = s.desired.entry(g.name_any()).or_default();
                        if series.last().is_none_or(|(_, d)| *d != desired) {
                            series.push((now, desired));
                        }
                    }
                }
            }
        }
    })
}

/// A node (kwok groups, by its group label) or a NodeClaim (Karpenter's, by its
/// NodePool label, which the benchmark names like the group) appeared or went.
fn machine_seen<K: ResourceExt>(s: &mut Seen, e: watcher::Event<K>, label: &str, now: Instant) {
    let (k, gone) = match e {
        watcher::Event::Apply(k) | watcher::Event::InitApply(k) => (k, false),
        watcher::Event::Delete(k) => (k, true),
        _ => return,
    };
    let Some(group) = k.labels().get(label).cloned() else {
        return;
    };
    let spans = s
        .nodes
        .entry(group)
        .or_default()
        .entry(k.name_any())
        .or_default();
    let open = spans.last_mut().filter(|(_, end)| end.is_none());
    match (open, gone) {
        (Some(span), true) => span.1 = Some(now),
        (None, false) => spans.push((now, None)),
        _ => {}
    }
}

fn node_claims(client: &Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("karpenter.sh", "v1", "NodeClaim");
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "nodeclaims"),
    )
}

/// Karpenter's cluster-scoped kinds the benchmark makes.
#[derive(Clone, Copy)]
enum Karpenter {
    NodePool,
    NodeClass,
}

fn karpenter_api(client: &Client, kind: Karpenter) -> Api<DynamicObject> {
    let (group, version, kind, plural) = match kind {
        Karpenter::NodePool => ("karpenter.sh", "v1", "NodePool", "nodepools"),
        Karpenter::NodeClass => (
            "karpenter.kwok.sh",
            "v1alpha1",
            "KWOKNodeClass",
            "kwoknodeclasses",
        ),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// The node class (a registration delay of one boot) and the NodePool of a Karpenter
/// scaler, both named `name`: the benchmark's 4-CPU/16Gi machine at the same price,
/// emptied nodes consolidated at once.
async fn create_node_pool(client: &Client, name: &str, boot: Duration) -> Result<()> {
    let class: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "karpenter.kwok.sh/v1alpha1", "kind": "KWOKNodeClass",
        "metadata": {"name": name},
        "spec": {"nodeRegistrationDelay": real_secs(boot)},
    }))?;
    karpenter_api(client, Karpenter::NodeClass)
        .create(&PostParams::default(), &class)
        .await
        .map_err(|e| {
            format!("KWOKNodeClass {name} (is Karpenter installed? DATAJOB_KARPENTER=1): {e}")
        })?;
    let pool: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {
                "nodeClassRef": {"group": "karpenter.kwok.sh", "kind": "KWOKNodeClass", "name": name},
                "requirements": [
                    {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [INSTANCE_TYPE]},
                    {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                ],
                "expireAfter": "Never",
            }},
            "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "0s"},
            // 8 machines of 4.1 CPU, like the kwok groups' maxSize.
            "limits": {"cpu": "33"},
        },
    }))?;
    karpenter_api(client, Karpenter::NodePool)
        .create(&PostParams::default(), &pool)
        .await?;
    Ok(())
}

fn pod_seen(s: &mut Seen, p: &Pod, now: Instant) {
    let Some(ns) = p.namespace() else { return };
    let seen = s.pods.entry((ns, p.name_any())).or_insert_with(|| PodSeen {
        datajob: p.labels().get(NAME).cloned().unwrap_or_default(),
        logical_time: p
            .annotations()
            .get(LOGICAL_TIME)
            .and_then(|t| labels::parse_rfc3339(t)),
        cpu: Request::of(p).cpu_millis as f64 / 1000.0,
        ..PodSeen::default()
    });
    let phase = p
        .status
        .as_ref()
        .and_then(|st| st.phase.clone())
        .unwrap_or_default();
    if unschedulable_condition(p).is_some() {
        seen.unschedulable = true;
    }
    if seen.node.is_none() {
        seen.node = p.spec.as_ref().and_then(|s| s.node_name.clone());
    }
    if seen.running.is_none() && (phase == "Running" || phase == "Succeeded") {
        seen.running = Some(now);
    }
    if seen.finished.is_none() && (phase == "Succeeded" || phase == "Failed") {
        seen.finished = Some(now);
        seen.succeeded = phase == "Succeeded";
    }
}

async fn create_group(client: &Client, s: &Scaler, name: &str, boot: Duration) -> Result<()> {
    let mut spec = json!({
        "node": {"cpu": NODE_CPU, "memory": NODE_MEMORY},
        "minSize": s.min_size, "maxSize": 8, "pricePerHour": PRICE_PER_HOUR.to_string(),
        "scaleDownPolicy": s.policy,
        "scaleDownAfter": real_secs(s.scale_down_after),
        "namespaces": [name],
        "taints": [{"key": "datajob.dev/dedicated", "value": "bench", "effect": "NoSchedule"}],
        "provider": {"kwok": {"bootDelay": real_secs(boot)}},
    });
    let mut warm_up = real_secs(boot);
    if s.karpenter {
        create_node_pool(client, name, boot).await?;
        let obj = spec.as_object_mut().ok_or("a spec is an object")?;
        obj.remove("taints");
        obj.insert("provider".into(), json!({"karpenter": {"nodePool": name}}));
        let karpenter_boot = format!("{}s", (real(boot) + KARPENTER_BATCH).as_secs());
        obj.insert("bootTime".into(), json!(karpenter_boot));
        warm_up = karpenter_boot;
    }
    if s.warm_up {
        spec["warmUpBefore"] = json!(warm_up);
    }
    let ng: NodeGroup = serde_json::from_value(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup", "metadata": {"name": name},
        "spec": spec,
    }))?;
    Api::<NodeGroup>::all(client.clone())
        .create(&PostParams::default(), &ng)
        .await?;
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}}))?,
        )
        .await?;
    eprintln!(
        "== {}: scaleDownPolicy {:?}, minSize {}, scaleDownAfter {}, warm-up {}",
        s.name,
        s.policy,
        s.min_size,
        sim(s.scale_down_after),
        if !s.warm_up {
            "none".into()
        } else if s.karpenter {
            format!(
                "{} (bootTime: a boot and Karpenter's batch)",
                sim(boot + KARPENTER_BATCH * SPEED)
            )
        } else {
            sim(boot)
        }
    );
    Ok(())
}

/// The group at its resting size and the namespace ready for pods.
async fn settle(client: &Client, s: &Scaler, name: &str) -> Result<()> {
    let groups: Api<NodeGroup> = Api::all(client.clone());
    let start = Instant::now();
    loop {
        let g = groups.get(name).await?;
        let ready = g.status.as_ref().is_some_and(|st| {
            st.desired == s.min_size
                && st.ready == s.min_size
                && st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        let sa = Api::<ServiceAccount>::namespaced(client.clone(), name)
            .get_opt("default")
            .await?;
        if ready && sa.is_some() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("NodeGroup {name} did not settle at {} nodes", s.min_size).into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn create_datajob(client: &Client, ns: &str, t: &Entry, cron: Option<&str>) -> Result<()> {
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns);
    let mut spec = json!({
        "image": "busybox", "deadline": "1h",
        "resources": {"cpu": t.cpu, "memory": format!("{}Gi", t.memory_gi)},
        "podAnnotations": {DURATION_ANNOTATION: real_secs(Duration::from_secs(u64::from(t.minutes) * 60))},
    });
    if let Some(cron) = cron {
        spec["schedule"] = json!(cron);
        spec["timeZone"] = json!("UTC");
    }
    let dj: DataJob = serde_json::from_value(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": t.name},
        "spec": spec,
    }))?;
    // Right after the group appears the webhook's cache may not have it yet.
    for _ in 0..40 {
        match api.create(&PostParams::default(), &dj).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.message.contains("node group") => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Err(e) => return Err(format!("DataJob {ns}/{}: {e}", t.name).into()),
        }
    }
    Err(format!("DataJob {ns}/{} was refused for 10 s", t.name).into())
}

/// Waits until every run has finished and every group is at its resting size; returns
/// when that was, or `None` when it gave up.
async fn wait_for_rest(
    seen: &Mutex<Seen>,
    scalers: &[&Scaler],
    name_of: &dyn Fn(&Scaler) -> String,
    plan: &Plan,
    runs: usize,
) -> Option<Instant> {
    let give_up = plan.at(plan.hours * 3600) + Duration::from_secs(300);
    loop {
        let now = Instant::now();
        let at_rest = seen.lock().ok().is_some_and(|s| {
            scalers.iter().all(|sc| {
                let name = name_of(sc);
                let finished = s
                    .pods
                    .iter()
                    .filter(|((ns, _), p)| *ns == name && p.finished.is_some())
                    .count();
                let nodes = s.nodes.get(&name).map_or(0, |n| {
                    n.values()
                        .filter(|spans| spans.last().is_some_and(|(_, e)| e.is_none()))
                        .count()
                });
                // Karpenter's machines are its NodeClaims, whatever the group wants.
                let desired = s
                    .desired
                    .get(&name)
                    .and_then(|d| d.last())
                    .filter(|_| !sc.karpenter)
                    .map_or(0, |(_, d)| *d);
                finished >= runs && nodes == sc.min_size as usize && desired == sc.min_size
            })
        });
        if at_rest {
            return Some(now);
        }
        if now > give_up {
            eprintln!("gave up waiting for every group to rest");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn cleanup(client: &Client, name: &str) {
    // Whatever happened: the namespace (DataJobs, Jobs, pods), then the group and its
    // nodes. Failures are reported: a leftover would distort the next run.
    let report = |what: &str, r: Result<(), kube::Error>| {
        if let Err(e) = r {
            eprintln!("clean-up of {what} {name}: {e}");
        }
    };
    report(
        "namespace",
        Api::<Namespace>::all(client.clone())
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ()),
    );
    report(
        "NodeGroup",
        Api::<NodeGroup>::all(client.clone())
            .delete(name, &DeleteParams::default())
            .await
            .map(|_| ()),
    );
    // A Karpenter scaler's NodePool and node class: Karpenter removes their machines.
    for (kind, what) in [
        (Karpenter::NodePool, "NodePool"),
        (Karpenter::NodeClass, "KWOKNodeClass"),
    ] {
        let api = karpenter_api(client, kind);
        if let Ok(Some(_)) = api.get_opt(name).await {
            report(
                what,
                api.delete(name, &DeleteParams::default()).await.map(|_| ()),
            );
        }
    }
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes
        .list(&ListParams::default().labels(&format!("{GROUP_LABEL}={name}")))
        .await
    {
        Ok(list) => {
            for n in list.items {
                report(
                    "node of",
                    nodes
                        .delete(&n.name_any(), &DeleteParams::default())
                        .await
                        .map(|_| ()),
                );
            }
        }
        Err(e) => eprintln!("clean-up: listing the nodes of {name}: {e}"),
    }
}

/// The figures of one scaler.
struct Summary {
    runs_ok: usize,
    utilisation: f64,
    /// Simulated.
    node_seconds: f64,
    cost: f64,
    peak: i32,
    delays: Vec<f64>,
    waited: usize,
}

fn summarise(
    seen: &Seen,
    group: &str,
    karpenter: bool,
    plan: &Plan,
    created: &BTreeMap<String, Instant>,
    window: (Instant, Instant),
) -> Summary {
    let (from, to) = window;
    // Paid nodes: max(desired, existing) between every two events.
    let mut events: Vec<(Instant, i32, i32)> = Vec::new(); // (when, Δnodes, desired or -1)
    for spans in seen.nodes.get(group).into_iter().flat_map(|n| n.values()) {
        for (start, end) in spans {
            events.push((*start, 1, -1));
            if let Some(end) = end {
                events.push((*end, -1, -1));
            }
        }
    }
    // A kwok group pays for what it decided to make; Karpenter for its NodeClaims.
    for (t, d) in seen.desired.get(group).into_iter().flatten() {
        if !karpenter {
            events.push((*t, 0, *d));
        }
    }
    events.sort_by_key(|e| e.0);
    let (mut nodes, mut desired, mut last, mut paid, mut peak) = (0i32, 0i32, from, 0.0, 0);
    for (t, dn, d) in events {
        let t = t.clamp(from, to);
        paid += f64::from(nodes.max(desired)) * (t - last).as_secs_f64();
        last = t;
        nodes += dn;
        if d >= 0 {
            desired = d;
        }
        peak = peak.max(nodes.max(desired));
    }
    paid += f64::from(nodes.max(desired)) * (to - last).as_secs_f64();
    let pods: Vec<&PodSeen> = seen
        .pods
        .iter()
        .filter(|((ns, _), _)| ns == group)
        .map(|(_, p)| p)
        .collect();
    let cpu_seconds: f64 = pods
        .iter()
        .filter_map(|p| {
            let a = p.running?.clamp(from, to);
            let b = p.finished.unwrap_or(to).clamp(from, to);
            Some(p.cpu * (b - a).as_secs_f64())
        })
        .sum();
    let delays = pods
        .iter()
        .filter_map(|p| {
            let due = match created.get(&p.datajob) {
                Some(c) => *c,
                None => plan.instant_of(p.logical_time?),
            };
            Some(p.running?.saturating_duration_since(due).as_secs_f64() * f64::from(SPEED))
        })
        .collect();
    let node_seconds = paid * f64::from(SPEED);
    Summary {
        runs_ok: pods.iter().filter(|p| p.succeeded).count(),
        utilisation: if paid > 0.0 {
            cpu_seconds / (paid * f64::from(NODE_CPU))
        } else {
            0.0
        },
        node_seconds,
        cost: node_seconds / 3600.0 * PRICE_PER_HOUR,
        peak,
        delays,
        waited: pods.iter().filter(|p| p.unschedulable).count(),
    }
}

fn percentile(v: &[f64], p: f64) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied()
}

fn print_table(
    seen: &Seen,
    scalers: &[&Scaler],
    name_of: &dyn Fn(&Scaler) -> String,
    plan: &Plan,
    created: &BTreeMap<String, Instant>,
    rest: Option<Instant>,
) {
    let runs = plan.runs().len();
    // One window for all: from the first warm-up to when the last group came to rest.
    let from = plan.t0 - real(plan.boot);
    let to = rest.unwrap_or_else(Instant::now);
    let secs = |v: Option<f64>| v.map_or("-".into(), |s| format!("{s:.0} s"));
    println!();
    println!(
        "Trace: {runs} runs in {} simulated hour(s) (time ×{SPEED}); 4-CPU, 16Gi nodes at {PRICE_PER_HOUR:.2} an hour, booting in {}; window {} (simulated) from the first warm-up until every group rested.",
        plan.hours,
        sim(plan.boot),
        sim(Duration::from_secs_f64(
            (to - from).as_secs_f64() * f64::from(SPEED)
        )),
    );
    println!();
    println!(
        "| scaler | runs ok | utilisation | node-seconds | cost | peak nodes | start delay p50 / p99 | runs that waited for a boot |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for s in scalers {
        let name = name_of(s);
        let m = summarise(seen, &name, s.karpenter, plan, created, (from, to));
        println!(
            "| {} | {}/{runs} | {:.0} % | {:.0} | {:.3} | {} | {} / {} | {} |",
            s.label,
            m.runs_ok,
            m.utilisation * 100.0,
            m.node_seconds,
            m.cost,
            m.peak,
            secs(percentile(&m.delays, 0.5)),
            secs(percentile(&m.delays, 0.99)),
            m.waited,
        );
    }
    println!();
    println!(
        "Utilisation: the runs' CPU-seconds ÷ the paid nodes' CPU-seconds. A node is paid from the decision to make it until it is deleted. Start delay: from a run's scheduled time (or a one-off DataJob's creation) to its pod running, boots included. Every figure is in simulated time (measured × {SPEED})."
    );
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        for s in scalers {
            let name = name_of(s);
            eprintln!("== {} ({name})", s.name);
            let at = |t: Instant| {
                let d = t.saturating_duration_since(from).as_secs_f64() * f64::from(SPEED);
                format!("{:>6.0}", d)
            };
            let mut pods: Vec<&PodSeen> = seen
                .pods
                .iter()
                .filter(|((ns, _), _)| *ns == name)
                .map(|(_, p)| p)
                .collect();
            pods.sort_by_key(|p| p.running);
            eprintln!(
                "   run: running .. finished (simulated s from the window start), node, waited for a boot"
            );
            for p in pods {
                eprintln!(
                    "   {:<10} {} .. {} {} {}",
                    p.datajob,
                    p.running.map_or("     -".into(), at),
                    p.finished.map_or("     -".into(), at),
                    p.node.as_deref().unwrap_or("-"),
                    if p.unschedulable { "waited" } else { "" }
                );
            }
            for (t, d) in seen.desired.get(&name).into_iter().flatten() {
                eprintln!("   {}: desired {d}", at(*t));
            }
            // The machines paid for: nodes (kwok groups) or NodeClaims (Karpenter's).
            for (machine, spans) in seen.nodes.get(&name).into_iter().flatten() {
                for (start, end) in spans {
                    eprintln!(
                        "   machine {machine}: {} .. {}",
                        at(*start),
                        end.map_or("     -".into(), at)
                    );
                }
            }
        }
    }
}

/// The packing trace (pure, from the operator's own functions): a 40Gi run only the
/// high-memory group fits, then a small run. Cheapest-per-node placement leaves two
/// half-empty nodes; placement that reads the groups' room leaves one full node.
fn print_packing_trace() {
    let shape = |cpu: u64, gi: u64| Request {
        cpu_millis: cpu * 1000,
        memory: gi << 30,
        ephemeral: 0,
        gpu: 0,
    };
    let group = |name: &str, gi: u64, price: f64| Group {
        name: name.into(),
        shape: shape(8, gi),
        max_size: 5,
        price_per_hour: price,
        boot_time: Duration::from_secs(120),
        ..Group::default()
    };
    let runs = [
        ("big (4 CPU, 40Gi)", shape(4, 40)),
        ("small (4 CPU, 8Gi)", shape(4, 8)),
    ];
    println!(
        "Packing trace: groups general (8 CPU, 32Gi, 0.34/h) and highmem (8 CPU, 64Gi, 0.50/h); runs placed one after the other."
    );
    println!();
    println!(
        "| placement | big goes to | small goes to | nodes | CPU used on each | cost per hour |"
    );
    println!("|---|---|---|---|---|---|");
    for packed in [false, true] {
        let mut groups = vec![group("general", 32, 0.34), group("highmem", 64, 0.50)];
        let mut placed: Vec<Vec<Request>> = vec![Vec::new(); 2];
        let mut choice = Vec::new();
        for (_, r) in &runs {
            let g = if packed {
                place_packed(r, &groups)
            } else {
                nodegroup::place(r, &groups)
            };
            let i = g
                .and_then(|g| groups.iter().position(|x| x.name == g.name))
                .unwrap_or(0);
            choice.push(groups[i].name.clone());
            placed[i].push(*r);
            for (j, g) in groups.iter_mut().enumerate() {
                let state = GroupState {
                    pending: placed[j].clone(),
                    active: placed[j].len(),
                    ..GroupState::default()
                };
                g.room = nodegroup::decide(g, &state, Utc::now()).room;
            }
        }
        let (mut nodes, mut cost, mut used) = (0, 0.0, Vec::new());
        for (j, g) in groups.iter().enumerate() {
            let state = GroupState {
                pending: placed[j].clone(),
                active: placed[j].len(),
                ..GroupState::default()
            };
            let n = nodegroup::decide(g, &state, Utc::now()).desired;
            nodes += n;
            cost += f64::from(n) * g.price_per_hour;
            if n > 0 {
                let cpu: u64 = placed[j].iter().map(|r| r.cpu_millis).sum();
                used.push(format!(
                    "{}: {:.0} %",
                    g.name,
                    cpu as f64 / (f64::from(n) * g.shape.cpu_millis as f64) * 100.0
                ));
            }
        }
        println!(
            "| {} | {} | {} | {nodes} | {} | {cost:.2} |",
            if packed {
                "room-aware (now)"
            } else {
                "cheapest per node (before)"
            },
            choice[0],
            choice[1],
            used.join(", ")
        );
    }
    println!();
}

//! Node groups as decisions: which group a run goes to (the cheapest that fits, or one
//! whose nodes already have room: [`packing`]), whether any group could ever fit it
//! (admission), and how many nodes a group needs (first-fit-decreasing packing; scale
//! down when empty unless a scheduled run due soon makes keeping a node cheaper than
//! booting another: [`keep`]; or after a fixed idle time), and which waiting runs a new
//! node is for ([`reserve`]). Pure functions.
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use crate::problem::Problem;
use crate::resources::Request;
use crate::units::{self, format_bytes, format_cpu};
use datajob_api::NodeGroup;
pub use datajob_api::nodegroup::ScaleDownPolicy;

pub mod keep;
pub mod packing;
pub mod reserve;

/// The label every node of a group carries, and runs placed there select.
pub const GROUP_LABEL: &str = "datajob.dev/node-group";
const DEFAULT_SCALE_DOWN_AFTER: Duration = Duration::from_secs(120);
const DEFAULT_BOOT_TIME: Duration = Duration::from_secs(120);
const DEFAULT_PROVISIONING_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_EPHEMERAL: u64 = 100 << 30;

#[derive(Clone, Debug, PartialEq, Default)]
pub enum ProviderKind {
    ClusterApi {
        api_version: String,
        kind: String,
        namespace: String,
        name: String,
    },
    #[default]
    Static,
    Kwok {
        boot_delay: Duration,
    },
}

/// A NodeGroup with its strings parsed.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Group {
    pub name: String,
    pub shape: Request,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<datajob_api::nodegroup::NodeTaint>,
    pub min_size: i32,
    pub max_size: i32,
    pub price_per_hour: f64,
    pub scale_down_after: Duration,
    pub provisioning_timeout: Duration,
    /// Lead time for scheduled runs (`spec.warmUpBefore`); `None`: no warm-up.
    pub warm_up_before: Option<Duration>,
    pub provider: ProviderKind,
    /// When nodes go (`spec.scaleDownPolicy`).
    pub scale_down_policy: ScaleDownPolicy,
    /// How long a new node takes to be Ready (`spec.bootTime`, or its default).
    pub boot_time: Duration,
    /// The namespaces whose DataJobs it takes; empty: every namespace.
    pub namespaces: Vec<String>,
    /// Free room on the nodes that stay, as the NodeGroup controller last wrote it
    /// (`status.room`): what [`packing::place_packed`] reads.
    pub room: Vec<Room>,
}

/// Free room on one node of a group (`status.room`).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Room {
    /// The node; `None` for one still on its way.
    pub node: Option<String>,
    pub ready: bool,
    pub free: Request,
}

impl Group {
    /// Whether DataJobs of `namespace` may be placed here.
    pub fn serves(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }
}

/// Parses a NodeGroup; the error says what is wrong in words for its status.
pub fn resolve_group(ng: &NodeGroup) -> Result<Group, String> {
    let name = ng.name_any();
    let s = &ng.spec;
    let cpu = units::parse_cpu_millis(s.node.cpu.as_str())
        .map_err(|e| format!("spec.node.cpu {:?} {e}", s.node.cpu.as_str()))?;
    let memory = units::parse_bytes(s.node.memory.as_str())
        .map_err(|e| format!("spec.node.memory {:?} {e}", s.node.memory.as_str()))?;
    let ephemeral = match &s.node.ephemeral_storage {
        Some(q) => units::parse_bytes(q.as_str())
            .map_err(|e| format!("spec.node.ephemeralStorage {:?} {e}", q.as_str()))?,
        None => DEFAULT_EPHEMERAL,
    };
    let gpu = u64::try_from(s.node.gpu.unwrap_or(0))
        .map_err(|_| "spec.node.gpu is negative".to_string())?;
    let duration =
        |field: &str, v: &Option<String>, default: Duration| -> Result<Duration, String> {
            v.as_deref().map_or(Ok(default), |d| {
                units::parse_duration(d).map_err(|e| format!("{field} {d:?} {e}"))
            })
        };
    let price_per_hour = match &s.price_per_hour {
        Some(p) => p
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|p| p.is_finite() && *p >= 0.0)
            .ok_or_else(|| format!("spec.pricePerHour {p:?} is not a non-negative number"))?,
        None => 0.0,
    };
    let min_size = s.min_size.unwrap_or(0);
    if min_size < 0 || s.max_size < min_size {
        return Err(format!(
            "spec.minSize {min_size} and spec.maxSize {} must satisfy 0 <= minSize <= maxSize",
            s.max_size
        ));
    }
    let p = &s.provider;
    let provider = match (&p.cluster_api, &p.r#static, &p.kwok) {
        (Some(c), None, None) => ProviderKind::ClusterApi {
            api_version: c
                .api_version
                .clone()
                .unwrap_or_else(|| "cluster.x-k8s.io/v1beta1".into()),
            kind: c.kind.clone().unwrap_or_else(|| "MachineDeployment".into()),
            namespace: c.namespace.clone(),
            name: c.name.clone(),
        },
        (None, Some(_), None) => ProviderKind::Static,
        (None, None, Some(k)) => ProviderKind::Kwok {
            boot_delay: duration(
                "spec.provider.kwok.bootDelay",
                &k.boot_delay,
                Duration::from_secs(5),
            )?,
        },
        _ => return Err("spec.provider must set exactly one of clusterAPI, static, kwok".into()),
    };
    // Runs placed here tolerate these taints: an effect Kubernetes does not know would
    // make it refuse every one of their Jobs (found by tests/e2e_generated_specs.rs).
    if let Some(t) = s.taints.iter().find(|t| {
        !matches!(
            t.effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        )
    }) {
        return Err(format!(
            "spec.taints effect {:?} of {:?} is not NoSchedule, PreferNoSchedule or NoExecute",
            t.effect, t.key
        ));
    }
    let mut labels = s.labels.clone();
    labels.insert(GROUP_LABEL.into(), name.clone());
    let warm_up_before = match &s.warm_up_before {
        Some(d) => {
            Some(units::parse_duration(d).map_err(|e| format!("spec.warmUpBefore {d:?} {e}"))?)
        }
        None => None,
    };
    let boot_default = match &provider {
        ProviderKind::Kwok { boot_delay } => *boot_delay,
        _ => warm_up_before.unwrap_or(DEFAULT_BOOT_TIME),
    };
    Ok(Group {
        shape: Request {
            cpu_millis: cpu,
            memory,
            ephemeral,
            gpu,
        },
        labels,
        taints: s.taints.clone(),
        min_size,
        max_size: s.max_size,
        price_per_hour,
        // `0s` is a wait too: none (every empty node goes at once).
        scale_down_after: match s.scale_down_after.as_deref().map(str::trim) {
            Some(z) if is_zero(z) => Duration::ZERO,
            _ => duration(
                "spec.scaleDownAfter",
                &s.scale_down_after,
                DEFAULT_SCALE_DOWN_AFTER,
            )?,
        },
        provisioning_timeout: duration(
            "spec.provisioningTimeout",
            &s.provisioning_timeout,
            DEFAULT_PROVISIONING_TIMEOUT,
        )?,
        warm_up_before,
        scale_down_policy: s.scale_down_policy.unwrap_or_default(),
        boot_time: duration("spec.bootTime", &s.boot_time, boot_default)?,
        namespaces: s.namespaces.clone(),
        room: ng
            .status
            .as_ref()
            .map(|st| st.room.iter().filter_map(room_of).collect())
            .unwrap_or_default(),
        provider,
        name,
    })
}

/// `0`, `0s`, `0m`, …: no time at all.
fn is_zero(d: &str) -> bool {
    let digits = d.trim_end_matches(['s', 'm', 'h', 'd']);
    d.len() - digits.len() <= 1 && !digits.is_empty() && digits.bytes().all(|b| b == b'0')
}

/// A `status.room` entry read back; `None` when it does not parse (then it is no room).
fn room_of(r: &datajob_api::nodegroup::NodeRoom) -> Option<Room> {
    Some(Room {
        node: r.node.clone(),
        ready: r.ready,
        free: Request {
            cpu_millis: units::parse_cpu_millis(r.cpu.as_str()).ok()?,
            memory: units::parse_bytes(r.memory.as_str()).ok()?,
            ephemeral: match &r.ephemeral_storage {
                Some(q) => units::parse_bytes(q.as_str()).ok()?,
                None => 0,
            },
            gpu: u64::try_from(r.gpu.unwrap_or(0)).ok()?,
        },
    })
}

/// `status.room` of the rooms a decision leaves.
pub fn room_status(room: &[Room]) -> Vec<datajob_api::nodegroup::NodeRoom> {
    room.iter()
        .map(|r| datajob_api::nodegroup::NodeRoom {
            node: r.node.clone(),
            ready: r.ready,
            cpu: format_cpu(r.free.cpu_millis).as_str().into(),
            memory: format_bytes(r.free.memory).as_str().into(),
            ephemeral_storage: (r.free.ephemeral > 0)
                .then(|| format_bytes(r.free.ephemeral).as_str().into()),
            gpu: (r.free.gpu > 0).then(|| i64::try_from(r.free.gpu).unwrap_or(i64::MAX)),
        })
        .collect()
}

/// The cheapest group whose node fits `request`; GPU groups only for GPU work unless no
/// other group fits. `None` when no group fits (or there are none).
pub fn place<'a>(request: &Request, groups: &'a [Group]) -> Option<&'a Group> {
    candidates(request, groups).min_by(|a, b| cheaper(a, b))
}

/// The groups whose node fits `request`; GPU groups only for GPU work unless no other
/// group fits.
pub fn candidates<'a>(request: &Request, groups: &'a [Group]) -> impl Iterator<Item = &'a Group> {
    let fits: Vec<&Group> = groups.iter().filter(|g| request.fits(&g.shape)).collect();
    let cpu_only = request.gpu == 0 && fits.iter().any(|g| g.shape.gpu == 0);
    fits.into_iter()
        .filter(move |g| !cpu_only || g.shape.gpu == 0)
}

/// Price per node, then fewer CPUs, less memory, name.
fn cheaper(a: &Group, b: &Group) -> std::cmp::Ordering {
    a.price_per_hour
        .total_cmp(&b.price_per_hour)
        .then(a.shape.cpu_millis.cmp(&b.shape.cpu_millis))
        .then(a.shape.memory.cmp(&b.shape.memory))
        .then(a.name.cmp(&b.name))
}

/// Admission: the problem with a request no group could ever fit. `None` when one fits or
/// when there are no groups at all (then nothing is known, and the watchdog decides).
pub fn admission_problem(request: &Request, groups: &[Group]) -> Option<Problem> {
    if groups.is_empty() || place(request, groups).is_some() {
        return None;
    }
    type Dim = (&'static str, fn(&Request) -> u64, fn(u64) -> String);
    let dims: [Dim; 4] = [
        ("spec.resources.memory", |r| r.memory, format_bytes),
        ("spec.resources.cpu", |r| r.cpu_millis, format_cpu),
        ("spec.resources.gpu", |r| r.gpu, |v| v.to_string()),
        ("spec.resources.disk", |r| r.ephemeral, format_bytes),
    ];
    for (field, get, fmt) in dims {
        let Some(largest) = groups.iter().max_by_key(|g| get(&g.shape)) else {
            continue;
        };
        if get(request) > get(&largest.shape) {
            return Some(Problem {
                field: field.into(),
                value: fmt(get(request)),
                problem: format!(
                    "is more than any node group offers (largest: {}, {} allocatable)",
                    largest.name,
                    fmt(get(&largest.shape))
                ),
                fix: format!(
                    "ask for at most {}, or ask your platform team for a bigger node group",
                    fmt(get(&largest.shape))
                ),
            });
        }
    }
    let shapes: Vec<String> = groups
        .iter()
        .map(|g| format!("{}: {}", g.name, g.shape))
        .collect();
    Some(Problem {
        field: "spec.resources".into(),
        value: request.to_string(),
        problem: format!("fits no single node group ({})", shapes.join("; ")),
        fix: "lower one of the resources so the run fits one group's node".into(),
    })
}

/// The groups of `NodeGroup`s that parse; the others are reported on their own status.
pub fn usable_groups<'a>(groups: impl IntoIterator<Item = &'a NodeGroup>) -> Vec<Group> {
    groups.into_iter().filter_map(usable).collect()
}

/// A group that can take work: its spec parses and it is not being deleted (a group
/// being deleted takes no new work; its nodes go with it).
pub fn usable(ng: &NodeGroup) -> Option<Group> {
    if ng.metadata.deletion_timestamp.is_some() {
        return None;
    }
    resolve_group(ng).ok()
}

/// A node of a group as the scaler sees it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NodeView {
    pub name: String,
    pub ready: bool,
    /// Allocatable minus what bound pods request.
    pub free: Request,
    pub datajob_pods: usize,
    /// Pods that are neither DataJob's nor a DaemonSet's: the node is never removed.
    pub foreign_pods: usize,
    /// When the runs on it are expected to have ended ([`expected_end`]); `None`: not
    /// known (or someone else's pods are on it). A run due after that can take the
    /// whole node.
    pub frees_at: Option<DateTime<Utc>>,
}

/// When a run that started at `started` is expected to end: after the longest of its
/// DataJob's recent successful runs (`None` without any).
pub fn expected_end(
    started: DateTime<Utc>,
    recent: impl IntoIterator<Item = Duration>,
) -> Option<DateTime<Utc>> {
    let longest = recent.into_iter().max()?;
    Some(started + chrono::Duration::from_std(longest).ok()?)
}

/// The taint the scaler puts on a node it is about to remove, so that no pod is bound
/// to it meanwhile.
pub const SCALE_DOWN_TAINT: &str = "datajob.dev/scale-down";

/// `taints` with the scale-down taint added (`on`) or removed; `None` when they already
/// are so.
pub fn with_scale_down_taint(
    taints: &[k8s_openapi::api::core::v1::Taint],
    on: bool,
) -> Option<Vec<k8s_openapi::api::core::v1::Taint>> {
    let has = taints.iter().any(|t| t.key == SCALE_DOWN_TAINT);
    match (on, has) {
        (true, false) => {
            let mut t = taints.to_vec();
            t.push(k8s_openapi::api::core::v1::Taint {
                key: SCALE_DOWN_TAINT.into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
            Some(t)
        }
        (false, true) => Some(
            taints
                .iter()
                .filter(|t| t.key != SCALE_DOWN_TAINT)
                .cloned()
                .collect(),
        ),
        _ => None,
    }
}

/// Names for `n` new nodes of `group`: `<group>-<i>` with the lowest `i` that no node
/// in `existing` has. Deterministic, so a scaler acting on a cache that has not seen its
/// last nodes yet collides on a name instead of making a node twice.
pub fn new_node_names(group: &str, existing: &[&str], n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{group}-{i}"))
        .filter(|name| !existing.contains(&name.as_str()))
        .take(n)
        .collect()
}

/// What the scaler knows about a group now.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GroupState {
    pub desired: i32,
    pub nodes: Vec<NodeView>,
    /// Requests of DataJob pods placed on the group that no node has taken yet.
    pub pending: Vec<Request>,
    /// DataJob pods placed on the group, running or pending.
    pub active: usize,
    /// The next run of each scheduled DataJob placed on the group that has no pod yet
    /// ([`next_runs`]): the warm-up makes nodes for those due within `warmUpBefore`
    /// ([`warm_up`]), and the `Schedule` policy keeps empty nodes for those due soon.
    pub due: Vec<DueRun>,
    pub idle_since: Option<DateTime<Utc>>,
    /// When the group's size last changed (`status.lastScaleTime`): nodes on their way
    /// were asked for then or before, so they are up a boot time after it at the latest.
    pub last_scale: Option<DateTime<Utc>>,
}

/// The scaler's decision.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ScaleDecision {
    pub desired: i32,
    /// Why the size changes; `None` when it does not.
    pub reason: Option<String>,
    pub idle_since: Option<DateTime<Utc>>,
    /// Nodes that may go when the group shrinks, in the order they go (not Ready first).
    pub removable: Vec<String>,
    /// Free room on the nodes that stay, once pending and warm-up work is packed in.
    pub room: Vec<Room>,
    /// The scheduled runs empty nodes are kept for, in words (`Schedule` policy).
    pub kept_for: Vec<String>,
    /// When to decide again though nothing else changes: a warm-up begins, a run a
    /// node is kept for is overdue, the idle wait ends.
    pub recheck_at: Option<DateTime<Utc>>,
}

/// A node, or one on its way, as room to pack runs into.
#[derive(Clone, Debug)]
struct Bin {
    node: Option<String>,
    ready: bool,
    free: Request,
    /// Pods are on it: it stays.
    busy: bool,
    /// Pending, warm-up or due work was packed into it: it stays.
    used: bool,
    /// When the runs on it are expected to end (busy nodes).
    frees_at: Option<DateTime<Utc>>,
    /// Pending pods were packed into it: they run from now, for a time not known.
    took_pending: bool,
    /// Busy (or, for pending pods packed into it, about to be) with DataJob runs alone
    /// whose end is not known: it may free up at any moment.
    ends_unknown: bool,
    /// What scheduled runs packed into it will take when they are due.
    later: Request,
}

impl Bin {
    fn kept(&self) -> bool {
        self.busy || self.used
    }

    fn new(node: Option<String>, ready: bool, free: Request) -> Bin {
        Bin {
            node,
            ready,
            free,
            busy: false,
            used: false,
            frees_at: None,
            took_pending: false,
            ends_unknown: false,
            later: Request::default(),
        }
    }

    /// Whether the run `request` could take this node once the runs of unknown length on
    /// it end (less what runs due before took).
    fn may_free_for(&self, shape: &Request, request: &Request) -> bool {
        self.ends_unknown && request.fits(&shape.minus(&self.later))
    }

    /// The room for a run due at `at`: the whole node when its runs will have ended by
    /// then, else what is free now; less what runs due before took.
    fn room_at(&self, shape: &Request, at: DateTime<Utc>) -> Request {
        let base = match self.frees_at {
            Some(t) if t <= at && !self.took_pending => *shape,
            _ => self.free,
        };
        base.minus(&self.later)
    }

    /// The room left now for others.
    fn room_now(&self) -> Request {
        self.free.minus(&self.later)
    }
}

/// When a node booted now would be up, and the moment that is measured from: a pending
/// pod waits for a busy node whose runs are expected to end after `now` and by `up`
/// rather than booting one.
#[derive(Clone, Copy)]
struct BootWindow {
    now: DateTime<Utc>,
    up: DateTime<Utc>,
}

/// First fit decreasing of `demand` (pods that wait now) into `bins`, in their order. A
/// pod that fits in none now waits, with `window`, for a busy node whose runs are
/// expected to end before a node booted now would be up (it starts no later, and no
/// boot is paid); else a new bin of `shape` is opened for it. Requests larger than
/// `shape` are left out. Returns when the first node waited for is expected to free up
/// (to decide again then: if it has not, a node boots).
fn pack(
    bins: &mut Vec<Bin>,
    shape: &Request,
    demand: &[Request],
    window: Option<BootWindow>,
) -> Option<DateTime<Utc>> {
    let mut sorted: Vec<&Request> = demand.iter().filter(|r| r.fits(shape)).collect();
    sorted.sort_by(|a, b| b.share_of(shape).total_cmp(&a.share_of(shape)));
    let mut first_wait: Option<DateTime<Utc>> = None;
    for r in sorted {
        let ends_in_time = |b: &Bin| {
            window
                .zip(b.frees_at)
                .is_some_and(|(w, t)| w.now < t && t <= w.up && r.fits(&b.room_at(shape, t)))
        };
        let i = match bins.iter().position(|b| r.fits(&b.room_now())) {
            Some(i) => i,
            None => {
                if let Some(i) = bins.iter().position(ends_in_time) {
                    let b = &mut bins[i];
                    b.later = b.later.plus(r);
                    b.used = true;
                    if let Some(t) = b.frees_at {
                        first_wait = Some(first_wait.map_or(t, |f| f.min(t)));
                    }
                    continue;
                }
                bins.push(Bin::new(None, false, *shape));
                bins.len() - 1
            }
        };
        let b = &mut bins[i];
        b.free = b.free.minus(r);
        b.used = true;
        b.took_pending = true;
        // A pod that waits runs for a time not known: an empty or booting node that
        // takes it is, from then, a node busy with a run of unknown length.
        b.ends_unknown |= !b.busy;
    }
    first_wait
}

/// When the pods that wait for a node now will have one: a quarter of a boot after the
/// last node on its way is up (`booting` nodes asked for at `last_scale` at the latest,
/// or `boots_now` nodes asked for now). `None`: no pod waits.
fn waiting_served_by(
    group: &Group,
    state: &GroupState,
    booting: usize,
    boots_now: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if state.pending.is_empty() && booting == 0 && !boots_now {
        return None;
    }
    let boot = chrono::Duration::from_std(group.boot_time).unwrap_or_default();
    let asked = match (boots_now, booting) {
        (true, _) => now,
        (false, 0) => now - boot,
        (false, _) => state.last_scale.map_or(now, |t| t.min(now)),
    };
    Some(asked + boot + boot / 4)
}

/// First fit decreasing of scheduled runs into `bins` at their due times (a busy node
/// whose runs end before a run is due has room for it then). A run that fits in none
/// waits for a node busy with runs of unknown length ([`Bin::may_free_for`]) when one
/// could take it: no node is booted ahead for it, and if that node is still busy at its
/// time, its pending pod boots one then. A warm-up boot is paid only for a run that
/// surely needs it; the price is at most one boot of lateness when the unknown run
/// outlasts the due time. Only when the pods that wait for a node now have theirs before
/// the run is due ([`waiting_served_by`]): else the run, once due,
/// would compete for the nodes booting for pods that waited longer (the scheduler may
/// give it theirs, and they wait another boot). A run waits so only until its time: once
/// due (`now`), with that node still busy, the node it needs boots at once rather than
/// once its pod waits. Else a new bin of `shape` is opened. Returns when the first run
/// that waits is due (to decide again then).
fn pack_due(
    bins: &mut Vec<Bin>,
    shape: &Request,
    due: &[&DueRun],
    waiting_served_by: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut first_wait: Option<DateTime<Utc>> = None;
    let mut sorted: Vec<&&DueRun> = due.iter().filter(|d| d.request.fits(shape)).collect();
    sorted.sort_by(|a, b| {
        b.request
            .share_of(shape)
            .total_cmp(&a.request.share_of(shape))
    });
    for d in sorted {
        let i = match bins
            .iter()
            .position(|b| d.request.fits(&b.room_at(shape, d.due)))
        {
            Some(i) => i,
            None => match bins.iter().position(|b| {
                d.due > now
                    && waiting_served_by.is_none_or(|t| t <= d.due)
                    && b.may_free_for(shape, &d.request)
            }) {
                Some(i) => {
                    first_wait = Some(first_wait.map_or(d.due, |t| t.min(d.due)));
                    i
                }
                None => {
                    bins.push(Bin::new(None, false, *shape));
                    bins.len() - 1
                }
            },
        };
        let b = &mut bins[i];
        b.later = b.later.plus(&d.request);
        b.used = true;
    }
    first_wait
}

/// How many new nodes of `shape` the `pending` requests need beyond the free room of
/// existing nodes and of `booting` nodes still on their way (first-fit decreasing).
pub fn nodes_needed(
    shape: &Request,
    existing_free: &[Request],
    booting: usize,
    pending: &[Request],
) -> usize {
    let mut bins: Vec<Bin> = existing_free
        .iter()
        .map(|f| (*f, true))
        .chain(std::iter::repeat_n((*shape, false), booting))
        .map(|(free, ready)| Bin::new(None, ready, free))
        .collect();
    let first_new = bins.len();
    pack(&mut bins, shape, pending, None);
    bins.len() - first_new
}

/// The group's nodes and the nodes on their way as bins, in the order work fills them:
/// nodes with pods, empty Ready nodes, empty nodes not Ready yet, nodes on their way.
fn bins_of(state: &GroupState, shape: &Request, booting: usize) -> Vec<Bin> {
    let bin = |n: &NodeView| {
        let busy = n.datajob_pods > 0 || n.foreign_pods > 0;
        let own = busy && n.foreign_pods == 0;
        Bin {
            busy,
            frees_at: n.frees_at.filter(|_| own),
            ends_unknown: own && n.frees_at.is_none(),
            ..Bin::new(Some(n.name.clone()), n.ready, n.free)
        }
    };
    let mut bins: Vec<Bin> = state.nodes.iter().map(bin).collect();
    bins.sort_by_key(|b| (!b.busy, !b.ready));
    bins.extend(std::iter::repeat_n(Bin::new(None, false, *shape), booting));
    bins
}

/// The room left in `bins` that stay, worth publishing (some CPU and memory free).
fn room_left<'a>(bins: impl IntoIterator<Item = &'a Bin>) -> Vec<Room> {
    bins.into_iter()
        .map(|b| (b, b.room_now()))
        .filter(|(_, free)| free.cpu_millis > 0 && free.memory > 0)
        .map(|(b, free)| Room {
            node: b.node.clone(),
            ready: b.ready,
            free,
        })
        .collect()
}

/// Scale up for pending work and for scheduled runs due within `warmUpBefore`, never
/// below `minSize`, and down by the group's policy: `Schedule`, every empty node goes at
/// once unless a run due soon will use it and [`keep::keep_or_boot`] says keeping it
/// costs no more than booting another (at most `scaleDownAfter`); `Idle`, the group
/// shrinks to `minSize` after `scaleDownAfter` without DataJob pods. Every change of
/// size carries a reason (the kwok provider's boot clock starts with it).
pub fn decide(group: &Group, state: &GroupState, now: DateTime<Utc>) -> ScaleDecision {
    let current = state.nodes.len() as i32;
    let desired = state.desired.max(group.min_size);
    let raised_to_min = (desired > state.desired).then(|| format!("minSize is {}", group.min_size));
    let booting = (desired - current).max(0) as usize;
    let (warm, later, next_warm_up) = split_due(group, &state.due, now);
    let mut bins = bins_of(state, &group.shape, booting);
    let before = bins.len();
    let window = chrono::Duration::from_std(group.boot_time)
        .ok()
        .map(|boot| BootWindow {
            now,
            up: now + boot,
        });
    let pending_wait = pack(&mut bins, &group.shape, &state.pending, window);
    let served_by = waiting_served_by(group, state, booting, bins.len() > before, now);
    let first_wait = pack_due(&mut bins, &group.shape, &warm, served_by, now);
    let next_warm_up = [next_warm_up, first_wait, pending_wait]
        .into_iter()
        .flatten()
        .min();
    let needed = bins.len() - before;
    let idle_since =
        (state.active == 0 && warm.is_empty()).then(|| state.idle_since.unwrap_or(now));
    if needed > 0 {
        let want = current.max(desired) + needed as i32;
        let capped = want.min(group.max_size);
        let reason = if capped > desired {
            let what = match (state.pending.len(), warm.len()) {
                (p, 0) => format!("{p} pending run pod(s)"),
                (0, w) => format!("warm-up: {w} scheduled run(s) due soon"),
                (p, w) => format!("{p} pending run pod(s) and {w} scheduled run(s) due soon"),
            };
            let mut reason = format!("{what} need {needed} more node(s)");
            if capped < want {
                reason.push_str(&format!("; capped at maxSize {}", group.max_size));
            }
            Some(reason)
        } else {
            raised_to_min
        };
        let desired = capped.max(desired);
        return ScaleDecision {
            desired,
            reason,
            idle_since: None,
            removable: removal_order(&state.nodes),
            room: room_left(bins.iter().take(desired.max(current) as usize)),
            kept_for: Vec::new(),
            recheck_at: next_warm_up,
        };
    }
    match group.scale_down_policy {
        ScaleDownPolicy::Idle => {
            decide_idle(group, state, desired, raised_to_min, idle_since, &bins, now)
                .with_recheck(next_warm_up)
        }
        ScaleDownPolicy::Schedule => {
            let mut d = decide_schedule(group, state, desired, bins, &later, now);
            d.reason = d.reason.or(raised_to_min);
            d.idle_since = idle_since;
            d.with_recheck(next_warm_up)
        }
    }
}

impl ScaleDecision {
    fn with_recheck(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.recheck_at = match (self.recheck_at, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }
}

/// Empty nodes, not Ready first: the order nodes go in.
fn removal_order(nodes: &[NodeView]) -> Vec<String> {
    let mut r: Vec<&NodeView> = nodes
        .iter()
        .filter(|n| n.datajob_pods == 0 && n.foreign_pods == 0)
        .collect();
    r.sort_by_key(|n| (n.ready, n.name.clone()));
    r.into_iter().map(|n| n.name.clone()).collect()
}

/// The `Idle` policy: down to `minSize` (and the nodes with others' pods) once the group
/// has had no DataJob pod and no warm-up for `scaleDownAfter`.
fn decide_idle(
    group: &Group,
    state: &GroupState,
    desired: i32,
    raised_to_min: Option<String>,
    idle_since: Option<DateTime<Utc>>,
    bins: &[Bin],
    now: DateTime<Utc>,
) -> ScaleDecision {
    let current = state.nodes.len() as i32;
    let removable = removal_order(&state.nodes);
    let stay = |d: ScaleDecision| ScaleDecision {
        room: room_left(bins.iter().take(desired.max(current) as usize)),
        ..d
    };
    let Some(since) = idle_since else {
        return stay(ScaleDecision {
            desired,
            reason: raised_to_min,
            removable,
            ..ScaleDecision::default()
        });
    };
    let idle_for = (now - since).to_std().unwrap_or_default();
    let keep = state.nodes.iter().filter(|n| n.foreign_pods > 0).count() as i32;
    let floor = group.min_size.max(keep);
    if idle_for >= group.scale_down_after && desired > floor {
        let gone: Vec<&String> = removable
            .iter()
            .take((current - floor).max(0) as usize)
            .collect();
        let staying = bins.iter().filter(|b| match &b.node {
            Some(n) => !gone.contains(&n),
            None => true,
        });
        return ScaleDecision {
            desired: floor,
            reason: Some(format!(
                "no DataJob work for {}",
                units::format_duration(group.scale_down_after)
            )),
            idle_since: Some(since),
            room: room_left(staying.take(floor.max(0) as usize)),
            removable,
            ..ScaleDecision::default()
        };
    }
    let wait_ends = chrono::Duration::from_std(group.scale_down_after)
        .ok()
        .map(|d| since + d)
        .filter(|_| desired > floor);
    stay(ScaleDecision {
        desired,
        reason: raised_to_min,
        idle_since: Some(since),
        removable,
        recheck_at: wait_ends,
        ..ScaleDecision::default()
    })
}

/// The `Schedule` policy: the nodes with pods stay, and so do the empty ones pending and
/// warm-up work was packed into (`bins`); an empty node stays for a later scheduled run
/// only when it is due within `scaleDownAfter` and [`keep::keep_or_boot`] says keeping
/// the node until then costs no more than booting another. Every other empty node goes
/// now. A Cluster API group, whose machines the operator cannot pick, shrinks only
/// while none of its nodes has pods.
fn decide_schedule(
    group: &Group,
    state: &GroupState,
    desired: i32,
    mut bins: Vec<Bin>,
    later: &[&DueRun],
    now: DateTime<Utc>,
) -> ScaleDecision {
    let current = state.nodes.len() as i32;
    let mut kept_for = Vec::new();
    let mut recheck_at: Option<DateTime<Utc>> = None;
    let grace = chrono::Duration::from_std(WARM_GRACE).unwrap_or_default();
    for d in later {
        let until = (d.due - now).to_std().unwrap_or_default();
        if until >= group.scale_down_after {
            continue;
        }
        let c = keep::keep_or_boot(
            group.price_per_hour,
            until,
            group.boot_time,
            group.warm_up_before,
        );
        if !c.keep() {
            continue;
        }
        // Room on a node that stays anyway first (by the time the run is due); an empty
        // node only if none has it.
        let fits = |b: &Bin| d.request.fits(&b.room_at(&group.shape, d.due));
        let slot = bins
            .iter()
            .position(|b| b.kept() && fits(b))
            .or_else(|| bins.iter().position(fits));
        let Some(i) = slot else {
            continue;
        };
        if !bins[i].kept() {
            kept_for.push(format!(
                "{} due in {}: keeping {} costs {:.4}, booting another {:.4}{}",
                d.datajob,
                units::format_duration(until),
                bins[i].node.as_deref().unwrap_or("a node on its way"),
                c.keep_cost,
                c.boot_cost,
                if c.lateness.is_zero() {
                    String::new()
                } else {
                    format!(" and {} late", units::format_duration(c.lateness))
                },
            ));
            let lapses = d.due + grace;
            recheck_at = Some(recheck_at.map_or(lapses, |t| t.min(lapses)));
        }
        bins[i].later = bins[i].later.plus(&d.request);
        bins[i].used = true;
    }
    // minSize: empty nodes stay too, Ready ones first (the bins' order).
    let mut short = group.min_size - bins.iter().filter(|b| b.kept()).count() as i32;
    for b in bins.iter_mut().filter(|b| !b.kept()) {
        if short <= 0 {
            break;
        }
        b.used = true;
        short -= 1;
    }
    let busy = bins.iter().any(|b| b.busy);
    let mut wanted = (bins.iter().filter(|b| b.kept()).count() as i32).min(desired);
    if busy && matches!(group.provider, ProviderKind::ClusterApi { .. }) {
        wanted = wanted.max(current.min(desired));
    }
    let kept: Vec<&String> = bins
        .iter()
        .filter(|b| b.kept())
        .filter_map(|b| b.node.as_ref())
        .collect();
    let removable: Vec<String> = removal_order(&state.nodes)
        .into_iter()
        .filter(|n| !kept.contains(&n))
        .collect();
    let reason = (wanted < desired).then(|| {
        format!(
            "{} node(s) not needed: no pending run, and no scheduled run due soon that keeping them would pay for",
            desired - wanted
        )
    });
    ScaleDecision {
        desired: wanted,
        reason,
        idle_since: None,
        removable,
        room: room_left(bins.iter().filter(|b| b.kept())),
        kept_for,
        recheck_at,
    }
}

/// The kwok provider's boot clocks: `queue` holds when each node on its way started to
/// boot, oldest first. It is made to hold `wanted` clocks (new ones start at `start`;
/// nodes no longer wanted are the newest, and their clocks go). Returns how many nodes
/// have booted (`delay` passed; the caller makes them and drops their clocks) and when
/// the next one will.
pub fn boots(
    queue: &mut Vec<DateTime<Utc>>,
    wanted: usize,
    start: DateTime<Utc>,
    delay: Duration,
    now: DateTime<Utc>,
) -> (usize, Option<DateTime<Utc>>) {
    queue.truncate(wanted);
    while queue.len() < wanted {
        queue.push(start);
    }
    let delay = chrono::Duration::from_std(delay).unwrap_or_default();
    let booted = queue.iter().take_while(|t| **t + delay <= now).count();
    (booted, queue.get(booted).map(|t| *t + delay))
}

/// How long after a scheduled time its run still counts as due (its pod is on the way).
pub const WARM_GRACE: Duration = Duration::from_secs(60);

/// A scheduled DataJob placed on a group: what one run asks for, and when it runs.
pub struct Scheduled<'a> {
    /// `namespace/name`, as the status names it.
    pub datajob: String,
    pub request: Request,
    pub schedule: &'a crate::schedule::Schedule,
    /// The logical time of its latest run: a due time it has reached has run.
    pub last_run: Option<DateTime<Utc>>,
    /// That run was started and has not ended yet (`Pending` or `Running`): its pod is
    /// on the way, so its due time still counts (for [`WARM_GRACE`]).
    pub last_run_in_flight: bool,
    /// When the DataJob was made: its schedule's times before that never run.
    pub since: Option<DateTime<Utc>>,
}

/// A scheduled run that has no pod yet.
#[derive(Clone, Debug, PartialEq)]
pub struct DueRun {
    /// `namespace/name` of its DataJob.
    pub datajob: String,
    pub request: Request,
    pub due: DateTime<Utc>,
}

/// The next run of each scheduled DataJob: its first due time since [`WARM_GRACE`] ago
/// (a run due that little ago still counts: its pod is on the way) and since the DataJob
/// was made, that it has not run. Callers leave out DataJobs that already have a pod.
pub fn next_runs(scheduled: &[Scheduled<'_>], now: DateTime<Utc>) -> Vec<DueRun> {
    let grace = chrono::Duration::from_std(WARM_GRACE).unwrap_or_default();
    scheduled
        .iter()
        .filter_map(|s| {
            let from = s.since.map_or(now - grace, |t| t.max(now - grace));
            let mut due = s.schedule.next_after(from)?;
            // The run at `due` has run, or has started and its pod is not coming (any
            // more): the one after it is next.
            let coming = s.last_run_in_flight && s.last_run == Some(due);
            if s.last_run.is_some_and(|l| l >= due) && !coming {
                due = s.schedule.next_after(due)?;
            }
            Some(DueRun {
                datajob: s.datajob.clone(),
                request: s.request,
                due,
            })
        })
        .collect()
}

/// The runs due within `warmUpBefore` (or overdue, within [`WARM_GRACE`]), the runs due
/// later, and when the next warm-up begins. Without `warmUpBefore` every run is later.
fn split_due<'a>(
    group: &Group,
    due: &'a [DueRun],
    now: DateTime<Utc>,
) -> (Vec<&'a DueRun>, Vec<&'a DueRun>, Option<DateTime<Utc>>) {
    let lead = group
        .warm_up_before
        .and_then(|d| chrono::Duration::from_std(d).ok());
    let mut warm = Vec::new();
    let mut later: Vec<&DueRun> = Vec::new();
    let mut next: Option<DateTime<Utc>> = None;
    for d in due {
        match lead {
            Some(lead) if d.due - lead <= now => warm.push(d),
            Some(lead) => {
                later.push(d);
                next = Some(next.map_or(d.due - lead, |n| n.min(d.due - lead)));
            }
            None => later.push(d),
        }
    }
    later.sort_by_key(|d| d.due);
    (warm, later, next)
}

/// Warm-up for scheduled runs: the requests of runs due within the group's
/// `warmUpBefore` (or due less than [`WARM_GRACE`] ago, while their pods are made), and
/// when the next warm-up begins.
pub fn warm_up(
    group: &Group,
    due: &[DueRun],
    now: DateTime<Utc>,
) -> (Vec<Request>, Option<DateTime<Utc>>) {
    let (warm, _, next) = split_due(group, due, now);
    (warm.into_iter().map(|d| d.request).collect(), next)
}

/// A run's estimated cost: its largest share of a node times the node's price, for its duration.
pub fn run_cost(request: &Request, group: &Group, duration: Duration) -> f64 {
    request.share_of(&group.shape).min(1.0) * group.price_per_hour * duration.as_secs_f64() / 3600.0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn req(cpu: u64, mem_gi: u64, gpu: u64) -> Request {
        Request {
            cpu_millis: cpu * 1000,
            memory: mem_gi << 30,
            ephemeral: 0,
            gpu,
        }
    }
    /// A group with the `Idle` policy (the behaviour before `Schedule`), which the
    /// older tests describe.
    pub(crate) fn group(name: &str, shape: Request, price: f64, max: i32) -> Group {
        Group {
            name: name.into(),
            shape,
            labels: BTreeMap::from([(GROUP_LABEL.to_string(), name.to_string())]),
            taints: vec![],
            min_size: 0,
            max_size: max,
            price_per_hour: price,
            scale_down_after: Duration::from_secs(120),
            provisioning_timeout: Duration::from_secs(600),
            warm_up_before: None,
            provider: ProviderKind::Kwok {
                boot_delay: Duration::from_secs(1),
            },
            scale_down_policy: ScaleDownPolicy::Idle,
            boot_time: Duration::from_secs(1),
            namespaces: vec![],
            room: vec![],
        }
    }
    fn groups() -> Vec<Group> {
        vec![
            group("small", req(4, 16, 0), 0.2, 10),
            group("large", req(32, 248, 0), 2.0, 10),
            group("gpu", req(8, 64, 1), 3.0, 4),
            group("cheap-gpu", req(8, 64, 2), 0.1, 4),
        ]
    }
    fn now() -> DateTime<Utc> {
        crate::labels::parse_rfc3339("2026-11-25T10:00:00Z").unwrap()
    }

    #[test]
    fn the_scale_down_taint_is_added_and_removed_and_nothing_else_changes() {
        use k8s_openapi::api::core::v1::Taint;
        let theirs = Taint {
            key: "node.kubernetes.io/not-ready".into(),
            effect: "NoExecute".into(),
            ..Default::default()
        };
        let on = with_scale_down_taint(std::slice::from_ref(&theirs), true).unwrap();
        assert_eq!(on.len(), 2);
        assert_eq!(on[0], theirs);
        assert_eq!(
            (on[1].key.as_str(), on[1].effect.as_str()),
            (SCALE_DOWN_TAINT, "NoSchedule")
        );
        assert_eq!(with_scale_down_taint(&on, true), None, "already on");
        assert_eq!(
            with_scale_down_taint(&on, false),
            Some(vec![theirs.clone()])
        );
        assert_eq!(with_scale_down_taint(&[theirs], false), None, "already off");
    }

    #[test]
    fn new_nodes_take_the_lowest_free_names() {
        assert_eq!(new_node_names("g", &[], 2), vec!["g-0", "g-1"]);
        assert_eq!(
            new_node_names("g", &["g-0", "g-2", "other-1"], 3),
            vec!["g-1", "g-3", "g-4"]
        );
        // The same cache gives the same names: a second pass collides, never doubles.
        let existing = ["g-0"];
        assert_eq!(
            new_node_names("g", &existing, 1),
            new_node_names("g", &existing, 1)
        );
        assert!(new_node_names("g", &["g-0"], 0).is_empty());
    }

    #[test]
    fn cheapest_fit_and_gpu_only_for_gpu_work() {
        let g = groups();
        assert_eq!(place(&req(2, 8, 0), &g).unwrap().name, "small");
        assert_eq!(
            place(&req(16, 100, 0), &g).unwrap().name,
            "large",
            "cheap GPU nodes are kept for GPU work"
        );
        assert_eq!(place(&req(2, 8, 1), &g).unwrap().name, "cheap-gpu");
        assert_eq!(place(&req(2, 8, 2), &g).unwrap().name, "cheap-gpu");
        assert!(place(&req(2, 8, 3), &g).is_none());
    }

    #[test]
    fn a_group_being_deleted_takes_no_new_work() {
        let ng = |name: &str, deleting: bool| {
            let mut g: NodeGroup = serde_json::from_value(serde_json::json!({
                "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup",
                "metadata": {"name": name},
                "spec": {"node": {"cpu": 4, "memory": "16Gi"}, "maxSize": 3, "pricePerHour": "0.2",
                         "provider": {"static": {}}},
            }))
            .unwrap();
            if deleting {
                g.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                    ));
            }
            g
        };
        let all = [ng("going", true), ng("staying", false)];
        let names: Vec<String> = usable_groups(&all).into_iter().map(|g| g.name).collect();
        assert_eq!(names, ["staying"]);
    }

    fn node_group(spec: serde_json::Value, status: serde_json::Value) -> NodeGroup {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup",
            "metadata": {"name": "g"}, "spec": spec, "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn the_scale_down_settings_parse_with_their_defaults() {
        let base = serde_json::json!({"node": {"cpu": 4, "memory": "16Gi"}, "maxSize": 3,
            "provider": {"kwok": {"bootDelay": "20s"}}});
        let g = resolve_group(&node_group(base.clone(), serde_json::json!({}))).unwrap();
        assert_eq!(
            g.scale_down_policy,
            ScaleDownPolicy::Schedule,
            "the default"
        );
        assert_eq!(g.boot_time, Duration::from_secs(20), "kwok: its bootDelay");
        assert_eq!(g.scale_down_after, Duration::from_secs(120));
        assert!(g.serves("anywhere"));
        let mut spec = base.clone();
        spec["provider"] = serde_json::json!({"static": {}});
        spec["warmUpBefore"] = serde_json::json!("3m");
        spec["scaleDownAfter"] = serde_json::json!("0s");
        spec["scaleDownPolicy"] = serde_json::json!("Idle");
        spec["namespaces"] = serde_json::json!(["team-a"]);
        let g = resolve_group(&node_group(spec.clone(), serde_json::json!({}))).unwrap();
        assert_eq!(g.scale_down_policy, ScaleDownPolicy::Idle);
        assert_eq!(g.boot_time, Duration::from_secs(180), "else warmUpBefore");
        assert_eq!(g.scale_down_after, Duration::ZERO, "0s is no wait");
        assert!(g.serves("team-a") && !g.serves("team-b"));
        spec["bootTime"] = serde_json::json!("90s");
        assert_eq!(
            resolve_group(&node_group(spec.clone(), serde_json::json!({})))
                .unwrap()
                .boot_time,
            Duration::from_secs(90)
        );
        spec["bootTime"] = serde_json::json!("soon");
        assert!(
            resolve_group(&node_group(spec, serde_json::json!({})))
                .unwrap_err()
                .starts_with("spec.bootTime \"soon\"")
        );
        // The room in the status is read back; an entry that does not parse is none.
        let room = serde_json::json!({"room": [
            {"node": "g-0", "ready": true, "cpu": "1500m", "memory": "6Gi"},
            {"ready": false, "cpu": "4", "memory": "16Gi", "gpu": 1},
            {"ready": true, "cpu": "lots", "memory": "1Gi"},
        ]});
        let g = resolve_group(&node_group(base, room)).unwrap();
        assert_eq!(
            g.room,
            vec![
                Room {
                    node: Some("g-0".into()),
                    ready: true,
                    free: Request {
                        cpu_millis: 1500,
                        memory: 6 << 30,
                        ephemeral: 0,
                        gpu: 0
                    }
                },
                Room {
                    node: None,
                    ready: false,
                    free: Request {
                        cpu_millis: 4000,
                        memory: 16 << 30,
                        ephemeral: 0,
                        gpu: 1
                    }
                },
            ]
        );
        // And written as it is read.
        let again: Vec<Room> = room_status(&g.room).iter().filter_map(room_of).collect();
        assert_eq!(again, g.room);
    }

    #[test]
    fn admission_names_the_largest_group() {
        let g = groups();
        let p = admission_problem(&req(4, 500, 0), &g).unwrap();
        assert_eq!(p.field, "spec.resources.memory");
        assert_eq!(
            p.to_string(),
            "spec.resources.memory \"500Gi\" is more than any node group offers (largest: large, 248Gi allocatable); ask for at most 248Gi, or ask your platform team for a bigger node group"
        );
        assert_eq!(
            admission_problem(&req(64, 1, 0), &g).unwrap().field,
            "spec.resources.cpu"
        );
        assert_eq!(
            admission_problem(&req(1, 1, 8), &g).unwrap().field,
            "spec.resources.gpu"
        );
        // Each dimension fits some group, but no single one.
        assert_eq!(
            admission_problem(&req(30, 200, 2), &g).unwrap().field,
            "spec.resources"
        );
        assert!(
            admission_problem(&req(4, 500, 0), &[]).is_none(),
            "no groups: admission does not guess"
        );
    }

    #[test]
    fn first_fit_decreasing_packs_mixed_sizes() {
        let shape = req(4, 16, 0);
        // 3 + 1 + 2 + 2 CPUs: two nodes, not three.
        let pending = vec![req(1, 1, 0), req(3, 1, 0), req(2, 1, 0), req(2, 1, 0)];
        assert_eq!(nodes_needed(&shape, &[], 0, &pending), 2);
        // Room on an existing node and a booting node absorbs work.
        assert_eq!(nodes_needed(&shape, &[req(3, 8, 0)], 1, &pending), 1);
        assert_eq!(nodes_needed(&shape, &[], 2, &pending), 0);
        // Too big for the shape: never counted.
        assert_eq!(nodes_needed(&shape, &[], 0, &[req(8, 1, 0)]), 0);
        // GPUs are a dimension like any other.
        assert_eq!(
            nodes_needed(&req(8, 64, 1), &[], 0, &[req(1, 1, 1), req(1, 1, 1)]),
            2
        );
    }

    #[test]
    fn scale_up_is_capped_at_max_size() {
        let g = group("small", req(4, 16, 0), 0.2, 3);
        let state = GroupState {
            desired: 0,
            nodes: vec![],
            pending: vec![req(4, 1, 0); 5],
            active: 5,
            due: vec![],
            idle_since: None,
            last_scale: None,
        };
        let d = decide(&g, &state, now());
        assert_eq!(d.desired, 3);
        assert!(d.reason.unwrap().contains("capped at maxSize 3"));
        // Asked again while nodes boot: no second increase.
        let again = decide(
            &g,
            &GroupState {
                desired: 3,
                ..state
            },
            now(),
        );
        assert_eq!((again.desired, again.reason), (3, None));
    }

    #[test]
    fn a_group_is_raised_to_min_size_with_a_reason_and_kept_there_when_idle() {
        let g = Group {
            min_size: 1,
            ..group("small", req(4, 16, 0), 0.2, 3)
        };
        let new = GroupState::default();
        let d = decide(&g, &new, now());
        assert_eq!(d.desired, 1);
        assert_eq!(d.reason.as_deref(), Some("minSize is 1"));
        // Once there, idle for long: it stays, and says nothing.
        let idle = GroupState {
            desired: 1,
            nodes: vec![NodeView {
                name: "a".into(),
                ready: true,
                free: req(4, 16, 0),
                datajob_pods: 0,
                foreign_pods: 0,
                frees_at: None,
            }],
            idle_since: Some(now()),
            ..new
        };
        let d = decide(&g, &idle, now() + chrono::Duration::hours(1));
        assert_eq!((d.desired, d.reason), (1, None));
    }

    #[test]
    fn scale_down_after_idle_never_with_work_or_foreign_pods() {
        let g = group("small", req(4, 16, 0), 0.2, 3);
        let node = |name: &str, dj: usize, foreign: usize| NodeView {
            name: name.into(),
            ready: true,
            free: req(4, 16, 0),
            datajob_pods: dj,
            foreign_pods: foreign,
            frees_at: None,
        };
        let idle = GroupState {
            desired: 2,
            nodes: vec![node("a", 0, 0), node("b", 0, 0)],
            pending: vec![],
            active: 0,
            due: vec![],
            idle_since: None,
            last_scale: None,
        };
        let first = decide(&g, &idle, now());
        assert_eq!(
            (first.desired, first.idle_since),
            (2, Some(now())),
            "idle clock starts"
        );
        let later = now() + chrono::Duration::seconds(121);
        let d = decide(
            &g,
            &GroupState {
                idle_since: first.idle_since,
                ..idle.clone()
            },
            later,
        );
        assert_eq!(d.desired, 0);
        assert_eq!(d.removable, vec!["a", "b"]);
        // Active work: never.
        let busy = GroupState {
            active: 1,
            nodes: vec![node("a", 1, 0), node("b", 0, 0)],
            idle_since: Some(now()),
            ..idle.clone()
        };
        assert_eq!(decide(&g, &busy, later).desired, 2);
        // A node with someone else's pod stays.
        let foreign = GroupState {
            nodes: vec![node("a", 0, 1), node("b", 0, 0)],
            idle_since: Some(now()),
            ..idle
        };
        let d = decide(&g, &foreign, later);
        assert_eq!((d.desired, d.removable), (1, vec!["b".to_string()]));
    }

    fn due(who: &str, request: Request, at: DateTime<Utc>) -> DueRun {
        DueRun {
            datajob: who.into(),
            request,
            due: at,
        }
    }

    #[test]
    fn scheduled_runs_warm_their_group_up_ahead_of_time() {
        let mut g = group("small", req(4, 16, 0), 0.2, 3);
        let nightly = crate::schedule::Schedule::parse("0 3 * * *", chrono_tz::UTC).unwrap();
        let mut runs = [Scheduled {
            datajob: "analytics/nightly".into(),
            request: req(2, 8, 0),
            schedule: &nightly,
            last_run: None,
            last_run_in_flight: false,
            since: None,
        }];
        let at = |s: &str| crate::labels::parse_rfc3339(s).unwrap();
        let warm = |g: &Group, runs: &[Scheduled<'_>], t: DateTime<Utc>| {
            warm_up(g, &next_runs(runs, t), t)
        };
        // No warmUpBefore: nothing ahead of time.
        assert_eq!(warm(&g, &runs, at("2026-11-25T02:59:00Z")), (vec![], None));
        g.warm_up_before = Some(Duration::from_secs(180));
        // Before the window: nothing yet, and when it opens.
        assert_eq!(
            warm(&g, &runs, at("2026-11-25T02:00:00Z")),
            (vec![], Some(at("2026-11-25T02:57:00Z")))
        );
        // In the window, and for a minute after the run is due.
        for t in [
            "2026-11-25T02:57:00Z",
            "2026-11-25T03:00:00Z",
            "2026-11-25T03:00:59Z",
        ] {
            assert_eq!(warm(&g, &runs, at(t)).0, vec![req(2, 8, 0)], "{t}");
        }
        assert_eq!(
            warm(&g, &runs, at("2026-11-25T03:01:01Z")),
            (vec![], Some(at("2026-11-26T02:57:00Z")))
        );
        // Started and its pod not there yet: still due (the node waits for it).
        runs[0].last_run = Some(at("2026-11-25T03:00:00Z"));
        runs[0].last_run_in_flight = true;
        assert_eq!(
            next_runs(&runs, at("2026-11-25T03:00:30Z"))[0].due,
            at("2026-11-25T03:00:00Z")
        );
        assert_eq!(
            next_runs(&runs, at("2026-11-25T03:01:30Z"))[0].due,
            at("2026-11-26T03:00:00Z"),
            "not for longer than the grace"
        );
        // Once the due run has run, it is not warmed for any more: the next one is due.
        runs[0].last_run_in_flight = false;
        assert_eq!(
            next_runs(&runs, at("2026-11-25T03:00:30Z")),
            vec![due(
                "analytics/nightly",
                req(2, 8, 0),
                at("2026-11-26T03:00:00Z")
            )]
        );
        assert_eq!(warm(&g, &runs, at("2026-11-25T03:00:30Z")).0, vec![]);
        // A DataJob made after a due time never runs it (the CronJob starts later).
        runs[0].last_run = None;
        runs[0].since = Some(at("2026-11-25T03:00:10Z"));
        assert_eq!(
            next_runs(&runs, at("2026-11-25T03:00:30Z"))[0].due,
            at("2026-11-26T03:00:00Z")
        );

        // The decision: a node from zero, said as a warm-up, and no scale-down meanwhile.
        let state = GroupState {
            desired: 0,
            nodes: vec![],
            pending: vec![],
            active: 0,
            due: vec![due(
                "analytics/nightly",
                req(2, 8, 0),
                now() + chrono::Duration::seconds(60),
            )],
            idle_since: None,
            last_scale: None,
        };
        let d = decide(&g, &state, now());
        assert_eq!(d.desired, 1);
        assert_eq!(
            d.reason.as_deref(),
            Some("warm-up: 1 scheduled run(s) due soon need 1 more node(s)")
        );
        let warmed = GroupState {
            desired: 1,
            nodes: vec![NodeView {
                name: "a".into(),
                ready: true,
                free: req(4, 16, 0),
                datajob_pods: 0,
                foreign_pods: 0,
                frees_at: None,
            }],
            idle_since: Some(now() - chrono::Duration::hours(1)),
            ..state
        };
        let d = decide(&g, &warmed, now());
        assert_eq!(
            (d.desired, d.reason),
            (1, None),
            "kept for the run, not a second node"
        );
        // Once the run is gone from the due list and the group idles, it shrinks as usual.
        let idle = GroupState {
            due: vec![],
            ..warmed
        };
        assert_eq!(decide(&g, &idle, now()).desired, 0);
    }

    /// A group with the `Schedule` policy: nodes of 4 CPUs at 0.34 an hour that take
    /// 90 s to boot, no warm-up, and at most 10 minutes of waiting.
    fn scheduled_group() -> Group {
        Group {
            scale_down_policy: ScaleDownPolicy::Schedule,
            boot_time: Duration::from_secs(90),
            scale_down_after: Duration::from_secs(600),
            ..group("general", req(4, 16, 0), 0.34, 5)
        }
    }
    fn node(name: &str, ready: bool, free: Request, pods: usize) -> NodeView {
        NodeView {
            name: name.into(),
            ready,
            free,
            datajob_pods: pods,
            foreign_pods: 0,
            frees_at: None,
        }
    }
    fn secs(s: i64) -> chrono::Duration {
        chrono::Duration::seconds(s)
    }

    #[test]
    fn an_empty_node_goes_at_once_when_no_run_is_due() {
        let g = scheduled_group();
        let state = GroupState {
            desired: 2,
            nodes: vec![
                node("a", true, req(1, 8, 0), 1),
                node("b", true, req(4, 16, 0), 0),
            ],
            active: 1,
            ..GroupState::default()
        };
        let d = decide(&g, &state, now());
        assert_eq!((d.desired, d.removable.clone()), (1, vec!["b".to_string()]));
        assert!(d.reason.unwrap().contains("1 node(s) not needed"));
        assert!(d.kept_for.is_empty());
        // The run on `a` is what is left; its room is published, b's is not.
        assert_eq!(
            d.room,
            vec![Room {
                node: Some("a".into()),
                ready: true,
                free: req(1, 8, 0)
            }]
        );
        // The last empty node goes too, without waiting for scaleDownAfter.
        let idle = GroupState {
            desired: 1,
            nodes: vec![node("a", true, req(4, 16, 0), 0)],
            ..GroupState::default()
        };
        let d = decide(&g, &idle, now());
        assert_eq!((d.desired, d.idle_since), (0, Some(now())));
        // The Idle policy waits instead.
        let idle_policy = Group {
            scale_down_policy: ScaleDownPolicy::Idle,
            ..g
        };
        let d = decide(&idle_policy, &idle, now());
        assert_eq!(d.desired, 1);
        assert_eq!(d.recheck_at, Some(now() + secs(600)), "when the wait ends");
    }

    #[test]
    fn an_empty_node_stays_for_a_run_due_soon_that_fits_it_and_that_run_reuses_it() {
        let g = scheduled_group();
        let idle = |due_in: i64, request: Request| GroupState {
            desired: 1,
            nodes: vec![node("a", true, req(4, 16, 0), 0)],
            due: vec![due("analytics/hourly", request, now() + secs(due_in))],
            ..GroupState::default()
        };
        // Due in 2 minutes: idling 120 s costs less than 90 s of boot and 90 s late.
        let d = decide(&g, &idle(120, req(3, 8, 0)), now());
        assert_eq!(d.desired, 1);
        assert_eq!(d.reason, None);
        assert_eq!(
            d.kept_for,
            vec![
                "analytics/hourly due in 2m: keeping a costs 0.0113, booting another 0.0170 and 1m30s late"
            ]
        );
        assert_eq!(
            d.recheck_at,
            Some(now() + secs(120 + 60)),
            "when the run is overdue"
        );
        // The room the run will take is not offered to others.
        assert_eq!(
            d.room,
            vec![Room {
                node: Some("a".into()),
                ready: true,
                free: req(1, 8, 0)
            }]
        );
        // Its pod comes and binds there: nothing changes, no node is made.
        let bound = GroupState {
            desired: 1,
            nodes: vec![node("a", true, req(1, 8, 0), 1)],
            active: 1,
            ..GroupState::default()
        };
        assert_eq!(decide(&g, &bound, now() + secs(121)).desired, 1);
        // Pending before it binds: the kept node takes it, none is added.
        let pending = GroupState {
            pending: vec![req(3, 8, 0)],
            active: 1,
            due: vec![],
            ..idle(0, req(3, 8, 0))
        };
        let d = decide(&g, &pending, now());
        assert_eq!((d.desired, d.reason), (1, None));
        // Due in 4 minutes: booting again is cheaper; the node goes now.
        let d = decide(&g, &idle(240, req(3, 8, 0)), now());
        assert_eq!(d.desired, 0);
        assert!(d.kept_for.is_empty());
        // A run too big for the node's room keeps nothing.
        assert_eq!(decide(&g, &idle(60, req(8, 8, 0)), now()).desired, 0);
        // scaleDownAfter is the longest wait.
        let short = Group {
            scale_down_after: Duration::from_secs(60),
            ..g.clone()
        };
        assert_eq!(decide(&short, &idle(120, req(3, 8, 0)), now()).desired, 0);
        assert_eq!(decide(&short, &idle(30, req(3, 8, 0)), now()).desired, 1);
        // scaleDownAfter 0s: every empty node goes at once (Karpenter's WhenEmpty).
        let at_once = Group {
            scale_down_after: Duration::ZERO,
            ..g
        };
        assert_eq!(decide(&at_once, &idle(5, req(3, 8, 0)), now()).desired, 0);
    }

    #[test]
    fn a_due_run_that_fits_beside_running_work_keeps_no_empty_node() {
        let g = scheduled_group();
        let state = GroupState {
            desired: 2,
            nodes: vec![
                node("a", true, req(2, 8, 0), 1),
                node("b", true, req(4, 16, 0), 0),
            ],
            active: 1,
            due: vec![due("analytics/small", req(2, 4, 0), now() + secs(60))],
            ..GroupState::default()
        };
        let d = decide(&g, &state, now());
        assert_eq!((d.desired, d.removable), (1, vec!["b".to_string()]));
        assert!(d.kept_for.is_empty(), "a has the room");
        // Two runs due: one beside the work, one on the empty node.
        let two = GroupState {
            due: vec![
                due("analytics/small", req(2, 4, 0), now() + secs(60)),
                due("analytics/big", req(4, 4, 0), now() + secs(90)),
            ],
            ..state
        };
        let d = decide(&g, &two, now());
        assert_eq!(d.desired, 2);
        assert_eq!(d.kept_for.len(), 1);
        assert!(
            d.kept_for[0].starts_with("analytics/big due in 1m30s: keeping b"),
            "{:?}",
            d.kept_for
        );
    }

    #[test]
    fn pending_work_keeps_the_empty_nodes_it_needs_ready_ones_first() {
        let g = scheduled_group();
        let state = GroupState {
            desired: 3,
            nodes: vec![
                node("a", false, req(4, 16, 0), 0),
                node("b", true, req(4, 16, 0), 0),
                node("c", true, req(4, 16, 0), 0),
            ],
            pending: vec![req(3, 8, 0)],
            active: 1,
            ..GroupState::default()
        };
        let d = decide(&g, &state, now());
        assert_eq!(d.desired, 1);
        assert_eq!(
            d.removable,
            vec!["a", "c"],
            "not Ready first; b takes the pod"
        );
        // Nodes on their way that no work needs any more are not made.
        let booting = GroupState {
            desired: 3,
            nodes: vec![node("b", true, req(4, 16, 0), 0)],
            pending: vec![req(3, 8, 0)],
            active: 1,
            ..GroupState::default()
        };
        assert_eq!(decide(&g, &booting, now()).desired, 1);
    }

    #[test]
    fn the_schedule_policy_keeps_min_size_and_nodes_with_others_pods() {
        let g = Group {
            min_size: 1,
            ..scheduled_group()
        };
        let mut foreign = node("c", true, req(4, 16, 0), 0);
        foreign.foreign_pods = 1;
        let state = GroupState {
            desired: 3,
            nodes: vec![
                node("a", false, req(4, 16, 0), 0),
                node("b", true, req(4, 16, 0), 0),
                foreign,
            ],
            ..GroupState::default()
        };
        let d = decide(&g, &state, now());
        // c stays (someone else's pod) and counts towards minSize; a and b go.
        assert_eq!(
            (d.desired, d.removable),
            (1, vec!["a".to_string(), "b".to_string()])
        );
        let two = Group { min_size: 2, ..g };
        let d = decide(&two, &state, now());
        assert_eq!(
            (d.desired, d.removable[0].as_str()),
            (2, "a"),
            "Ready b stays for minSize"
        );
    }

    #[test]
    fn a_cluster_api_group_shrinks_only_while_no_node_has_pods() {
        let g = Group {
            provider: ProviderKind::ClusterApi {
                api_version: "cluster.x-k8s.io/v1beta1".into(),
                kind: "MachineDeployment".into(),
                namespace: "capi".into(),
                name: "workers".into(),
            },
            ..scheduled_group()
        };
        let busy = GroupState {
            desired: 2,
            nodes: vec![
                node("a", true, req(1, 8, 0), 1),
                node("b", true, req(4, 16, 0), 0),
            ],
            active: 1,
            ..GroupState::default()
        };
        assert_eq!(
            decide(&g, &busy, now()).desired,
            2,
            "Cluster API picks the machine: it could pick a"
        );
        let idle = GroupState {
            nodes: vec![
                node("a", true, req(4, 16, 0), 0),
                node("b", true, req(4, 16, 0), 0),
            ],
            active: 0,
            ..busy
        };
        assert_eq!(decide(&g, &idle, now()).desired, 0);
    }

    #[test]
    fn warm_up_and_the_schedule_rule_work_together() {
        // Boot 90 s, warm-up 2 minutes: a node is made 2 minutes ahead of a run, kept
        // for a next run due within 2 minutes, and removed when the next is later.
        let g = Group {
            warm_up_before: Some(Duration::from_secs(120)),
            ..scheduled_group()
        };
        let empty = |due_in: i64| GroupState {
            desired: 1,
            nodes: vec![node("a", true, req(4, 16, 0), 0)],
            due: vec![due("analytics/next", req(2, 8, 0), now() + secs(due_in))],
            ..GroupState::default()
        };
        let d = decide(&g, &empty(110), now());
        assert_eq!((d.desired, d.idle_since), (1, None), "within the warm-up");
        let d = decide(&g, &empty(130), now());
        assert_eq!(d.desired, 0, "a warm-up will start one in 10 s, on time");
        assert_eq!(d.recheck_at, Some(now() + secs(10)), "when it begins");
        // From zero, the warm-up makes it again.
        let zero = GroupState {
            nodes: vec![],
            desired: 0,
            ..empty(120)
        };
        assert_eq!(decide(&g, &zero, now()).desired, 1);
    }

    #[test]
    fn a_node_whose_runs_end_before_a_run_is_due_takes_it_and_no_node_is_booted() {
        // Warm-up 4 minutes; ingest (2 CPUs) runs on `a` and has always taken 8 minutes,
        // so it ends in 2; transform (4 CPUs) is due in 3.
        let g = Group {
            warm_up_before: Some(Duration::from_secs(240)),
            ..scheduled_group()
        };
        let busy = |frees_in: Option<i64>| GroupState {
            desired: 1,
            nodes: vec![NodeView {
                frees_at: frees_in.map(|s| now() + secs(s)),
                ..node("a", true, req(2, 8, 0), 1)
            }],
            active: 1,
            due: vec![due("analytics/transform", req(4, 12, 0), now() + secs(180))],
            ..GroupState::default()
        };
        let d = decide(&g, &busy(Some(120)), now());
        assert_eq!((d.desired, d.reason), (1, None), "a takes it when due");
        // The room left now is not promised to anyone else.
        assert_eq!(d.room, vec![]);
        // Ending after the run is due: a node is booted for it.
        assert_eq!(decide(&g, &busy(Some(200)), now()).desired, 2);
        // Not known (ingest has no history): `a` may free up in time, so no node is
        // booted ahead; the run waits for `a`.
        let d = decide(&g, &busy(None), now());
        assert_eq!((d.desired, d.reason), (1, None), "waits for a");
        // Until its time, when the scaler looks again: `a` still busy then, the node the
        // run needs boots at once, before its pod even waits.
        assert_eq!(d.recheck_at, Some(now() + secs(180)));
        let d = decide(&g, &busy(None), now() + secs(180));
        assert_eq!(
            (d.desired, d.reason.as_deref()),
            (
                2,
                Some("warm-up: 1 scheduled run(s) due soon need 1 more node(s)")
            )
        );
        // Someone else's pod on `a`: it never frees for the run, a node is booted.
        let mut foreign = busy(None);
        foreign.nodes[0].foreign_pods = 1;
        assert_eq!(decide(&g, &foreign, now()).desired, 2);
        // Two runs due that would both need all of `a`: one waits for it, one boots.
        let mut two = busy(None);
        two.due
            .push(due("analytics/report", req(4, 12, 0), now() + secs(180)));
        assert_eq!(decide(&g, &two, now()).desired, 2);
        // A pod already waits for a node, whose node is not up a quarter of a boot (90 s
        // here) before the run is due in 100 s: the run does not wait for `a` (once due,
        // it could take the node booting for that pod); a node is booted for it too.
        let waiting = GroupState {
            desired: 2,
            pending: vec![req(4, 12, 0)],
            active: 2,
            last_scale: Some(now()),
            due: vec![due("analytics/transform", req(4, 12, 0), now() + secs(100))],
            ..busy(None)
        };
        assert_eq!(decide(&g, &waiting, now()).desired, 3);
        // When the last scale-up is not known, it counts as made now.
        let unknown = GroupState {
            last_scale: None,
            ..waiting.clone()
        };
        assert_eq!(decide(&g, &unknown, now()).desired, 3);
        // Asked for a minute ago: up in 30 s, its pod bound by 53 s; the run waits for `a`.
        let served = GroupState {
            last_scale: Some(now() - secs(60)),
            ..waiting.clone()
        };
        let d = decide(&g, &served, now());
        assert_eq!((d.desired, d.reason), (2, None), "waits for a");
        // Its node not asked for yet: asked for now, it serves its pod by 113 s, in time
        // for a run due in 180 s (the run waits for `a`), not for the one due in 100 s.
        let not_asked = GroupState {
            desired: 1,
            ..waiting.clone()
        };
        assert_eq!(decide(&g, &not_asked, now()).desired, 3);
        let later = GroupState {
            due: vec![due("analytics/transform", req(4, 12, 0), now() + secs(180))],
            ..not_asked
        };
        assert_eq!(decide(&g, &later, now()).desired, 2);
        // The node booting for a one-off's pod is, once up, busy with a run of unknown
        // length: a run due after it serves that pod waits for it, no node is booted
        // ahead (the one-off may end first; if not, the run's pod boots one then).
        let one_off = GroupState {
            desired: 1,
            pending: vec![req(2, 4, 0)],
            active: 1,
            last_scale: Some(now() - secs(60)),
            due: vec![due("analytics/train", req(4, 14, 0), now() + secs(180))],
            ..GroupState::default()
        };
        let d = decide(&g, &one_off, now());
        assert_eq!(
            (d.desired, d.reason),
            (1, None),
            "train waits for the one-off's node"
        );
        // At its time, `a` still busy: the run's pod is pending and boots a node then.
        let late = GroupState {
            pending: vec![req(4, 12, 0)],
            active: 2,
            due: vec![],
            ..busy(None)
        };
        let d = decide(&g, &late, now() + secs(180));
        assert_eq!(
            (d.desired, d.reason.as_deref()),
            (2, Some("1 pending run pod(s) need 1 more node(s)"))
        );
        // The same for a run due later: an empty node is not kept for it when a busy
        // node will have room by then.
        let g = scheduled_group();
        let state = GroupState {
            desired: 2,
            nodes: vec![
                NodeView {
                    frees_at: Some(now() + secs(60)),
                    ..node("a", true, req(0, 4, 0), 1)
                },
                node("b", true, req(4, 16, 0), 0),
            ],
            active: 1,
            due: vec![due("analytics/transform", req(4, 12, 0), now() + secs(120))],
            ..GroupState::default()
        };
        let d = decide(&g, &state, now());
        assert_eq!((d.desired, d.removable), (1, vec!["b".to_string()]));
        assert!(d.kept_for.is_empty());
    }

    #[test]
    fn a_pending_run_waits_for_a_node_whose_runs_end_before_a_boot_would_be_up() {
        // Boot 90 s. `a` is full with a run known to end in `frees_in`; a 4-CPU run waits.
        let g = scheduled_group();
        let state = |frees_in: Option<i64>| GroupState {
            desired: 1,
            nodes: vec![NodeView {
                frees_at: frees_in.map(|s| now() + secs(s)),
                ..node("a", true, req(0, 4, 0), 1)
            }],
            pending: vec![req(4, 12, 0)],
            active: 2,
            ..GroupState::default()
        };
        // Ends in 60 s: the run takes `a` then, sooner than a boot and without paying
        // one; the scaler looks again at that moment.
        let d = decide(&g, &state(Some(60)), now());
        assert_eq!((d.desired, d.reason), (1, None));
        assert_eq!(d.recheck_at, Some(now() + secs(60)));
        // Still busy when it was expected to end: a node boots now.
        let d = decide(&g, &state(Some(60)), now() + secs(60));
        assert_eq!(
            (d.desired, d.reason.as_deref()),
            (2, Some("1 pending run pod(s) need 1 more node(s)"))
        );
        // Ends after a boot would be up, or its end is not known: a node boots now.
        assert_eq!(decide(&g, &state(Some(120)), now()).desired, 2);
        assert_eq!(decide(&g, &state(None), now()).desired, 2);
        // Two runs wait and only one fits `a` once it ends: one node boots, for the other.
        let mut two = state(Some(60));
        two.pending.push(req(4, 12, 0));
        assert_eq!(decide(&g, &two, now()).desired, 2);
    }

    #[test]
    fn a_run_is_expected_to_end_after_its_longest_recent_success() {
        let runs = [Duration::from_secs(300), Duration::from_secs(420)];
        assert_eq!(expected_end(now(), runs), Some(now() + secs(420)));
        assert_eq!(expected_end(now(), []), None);
    }

    #[test]
    fn each_kwok_node_boots_on_its_own_clock() {
        let delay = Duration::from_secs(20);
        let mut q = Vec::new();
        // One node wanted at 0 s, a second at 5 s: they boot at 20 s and 25 s.
        assert_eq!(
            boots(&mut q, 1, now(), delay, now()),
            (0, Some(now() + secs(20)))
        );
        assert_eq!(
            boots(&mut q, 2, now() + secs(5), delay, now() + secs(5)),
            (0, Some(now() + secs(20))),
            "a second node does not delay the first"
        );
        assert_eq!(
            boots(&mut q, 2, now() + secs(21), delay, now() + secs(21)),
            (1, Some(now() + secs(25)))
        );
        q.remove(0); // made
        // The second is no longer wanted: its clock goes; wanted again, it starts over.
        assert_eq!(
            boots(&mut q, 0, now() + secs(22), delay, now() + secs(22)),
            (0, None)
        );
        assert_eq!(
            boots(&mut q, 1, now() + secs(23), delay, now() + secs(23)),
            (0, Some(now() + secs(43)))
        );
    }

    #[test]
    fn cost_is_the_share_of_the_node() {
        let g = group("small", req(4, 16, 0), 0.4, 3);
        let c = run_cost(&req(2, 4, 0), &g, Duration::from_secs(3600));
        assert!((c - 0.2).abs() < 1e-9);
    }
}

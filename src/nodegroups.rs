//! Node groups as decisions: which group a run goes to (the cheapest that fits), whether
//! any group could ever fit it (admission), and how many nodes a group needs
//! (first-fit-decreasing packing, scale down when idle). Pure functions.
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use crate::api::NodeGroup;
use crate::resources::Request;
use crate::units::{self, format_bytes, format_cpu};
use crate::validation::Problem;

/// The label every node of a group carries, and runs placed there select.
pub const GROUP_LABEL: &str = "datajob.dev/node-group";
const DEFAULT_SCALE_DOWN_AFTER: Duration = Duration::from_secs(120);
const DEFAULT_PROVISIONING_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_EPHEMERAL: u64 = 100 << 30;

#[derive(Clone, Debug, PartialEq)]
pub enum ProviderKind {
    ClusterApi {
        api_version: String,
        kind: String,
        namespace: String,
        name: String,
    },
    Static,
    Kwok {
        boot_delay: Duration,
    },
}

/// A NodeGroup with its strings parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: String,
    pub shape: Request,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<crate::api::nodegroup::NodeTaint>,
    pub min_size: i32,
    pub max_size: i32,
    pub price_per_hour: f64,
    pub scale_down_after: Duration,
    pub provisioning_timeout: Duration,
    /// Lead time for scheduled runs (`spec.warmUpBefore`); `None`: no warm-up.
    pub warm_up_before: Option<Duration>,
    pub provider: ProviderKind,
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
    let mut labels = s.labels.clone();
    labels.insert(GROUP_LABEL.into(), name.clone());
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
        scale_down_after: duration(
            "spec.scaleDownAfter",
            &s.scale_down_after,
            DEFAULT_SCALE_DOWN_AFTER,
        )?,
        provisioning_timeout: duration(
            "spec.provisioningTimeout",
            &s.provisioning_timeout,
            DEFAULT_PROVISIONING_TIMEOUT,
        )?,
        warm_up_before: match &s.warm_up_before {
            Some(d) => {
                Some(units::parse_duration(d).map_err(|e| format!("spec.warmUpBefore {d:?} {e}"))?)
            }
            None => None,
        },
        provider,
        name,
    })
}

/// The cheapest group whose node fits `request`; GPU groups only for GPU work unless no
/// other group fits. `None` when no group fits (or there are none).
pub fn place<'a>(request: &Request, groups: &'a [Group]) -> Option<&'a Group> {
    let fits: Vec<&Group> = groups.iter().filter(|g| request.fits(&g.shape)).collect();
    let preferred: Vec<&Group> = if request.gpu == 0 && fits.iter().any(|g| g.shape.gpu == 0) {
        fits.into_iter().filter(|g| g.shape.gpu == 0).collect()
    } else {
        fits
    };
    preferred.into_iter().min_by(|a, b| {
        a.price_per_hour
            .total_cmp(&b.price_per_hour)
            .then(a.shape.cpu_millis.cmp(&b.shape.cpu_millis))
            .then(a.shape.memory.cmp(&b.shape.memory))
            .then(a.name.cmp(&b.name))
    })
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

/// Validation plus placement: what admission, the reconciler and `plan` all call.
pub fn resolve_and_place(
    dj: &crate::api::DataJob,
    limits: &crate::validation::Limits,
    guards: &crate::children::Guards,
    groups: &[Group],
) -> Result<crate::validation::Resolved, crate::validation::Problems> {
    let mut r = crate::validation::resolve(dj, limits)?;
    let request = crate::children::run_request(&r, guards);
    if let Some(p) = admission_problem(&request, groups) {
        return Err(crate::validation::Problems(vec![p]));
    }
    r.placement = place(&request, groups).cloned();
    Ok(r)
}

/// A node of a group as the scaler sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub ready: bool,
    /// Allocatable minus what bound pods request.
    pub free: Request,
    pub datajob_pods: usize,
    /// Pods that are neither DataJob's nor a DaemonSet's: the node is never removed.
    pub foreign_pods: usize,
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
    /// Requests of scheduled runs due soon (see [`warm_up`]): nodes are made for them
    /// ahead of time, and the group is not idle while they wait.
    pub warm: Vec<Request>,
    pub idle_since: Option<DateTime<Utc>>,
}

/// The scaler's decision.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaleDecision {
    pub desired: i32,
    /// Why the size changes; `None` when it does not.
    pub reason: Option<String>,
    pub idle_since: Option<DateTime<Utc>>,
    /// Nodes that may go when the group shrinks, emptiest first.
    pub removable: Vec<String>,
}

/// How many new nodes of `shape` the `pending` requests need beyond the free room of
/// existing nodes and of `booting` nodes still on their way (first-fit decreasing).
pub fn nodes_needed(
    shape: &Request,
    existing_free: &[Request],
    booting: usize,
    pending: &[Request],
) -> usize {
    let mut bins: Vec<Request> = existing_free.to_vec();
    bins.extend(std::iter::repeat_n(*shape, booting));
    let first_new = bins.len();
    let mut sorted: Vec<&Request> = pending.iter().filter(|r| r.fits(shape)).collect();
    sorted.sort_by(|a, b| b.share_of(shape).total_cmp(&a.share_of(shape)));
    for r in sorted {
        match bins.iter_mut().find(|b| r.fits(b)) {
            Some(b) => *b = b.minus(r),
            None => bins.push(shape.minus(r)),
        }
    }
    bins.len() - first_new
}

/// Scale up for pending work, down to `minSize` after `scaleDownAfter` of idleness,
/// and never below `minSize`. Every change of size carries a reason (the kwok provider's
/// boot clock starts with it).
pub fn decide(group: &Group, state: &GroupState, now: DateTime<Utc>) -> ScaleDecision {
    let current = state.nodes.len() as i32;
    let desired = state.desired.max(group.min_size);
    let raised_to_min = (desired > state.desired).then(|| format!("minSize is {}", group.min_size));
    let booting = (desired - current).max(0) as usize;
    let free: Vec<Request> = state.nodes.iter().map(|n| n.free).collect();
    let removable: Vec<String> = {
        let mut r: Vec<&NodeView> = state
            .nodes
            .iter()
            .filter(|n| n.datajob_pods == 0 && n.foreign_pods == 0)
            .collect();
        r.sort_by_key(|n| (n.ready, n.name.clone()));
        r.into_iter().map(|n| n.name.clone()).collect()
    };
    let demand: Vec<Request> = state.pending.iter().chain(&state.warm).copied().collect();
    let needed = nodes_needed(&group.shape, &free, booting, &demand);
    if needed > 0 {
        let want = current.max(desired) + needed as i32;
        let capped = want.min(group.max_size);
        let reason = if capped > desired {
            let what = match (state.pending.len(), state.warm.len()) {
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
        return ScaleDecision {
            desired: capped.max(desired),
            reason,
            idle_since: None,
            removable,
        };
    }
    if state.active > 0 || !state.warm.is_empty() {
        return ScaleDecision {
            desired,
            reason: raised_to_min,
            idle_since: None,
            removable,
        };
    }
    let idle_since = state.idle_since.unwrap_or(now);
    let idle_for = (now - idle_since).to_std().unwrap_or_default();
    let keep = state.nodes.iter().filter(|n| n.foreign_pods > 0).count() as i32;
    let floor = group.min_size.max(keep);
    if idle_for >= group.scale_down_after && desired > floor {
        return ScaleDecision {
            desired: floor,
            reason: Some(format!(
                "no DataJob work for {}",
                units::format_duration(group.scale_down_after)
            )),
            idle_since: Some(idle_since),
            removable,
        };
    }
    ScaleDecision {
        desired,
        reason: raised_to_min,
        idle_since: Some(idle_since),
        removable,
    }
}

/// How long after a scheduled time its run still counts as due (its pod is on the way).
pub const WARM_GRACE: Duration = Duration::from_secs(60);

/// A scheduled DataJob placed on a group: what one run asks for, and when it runs.
pub struct Scheduled<'a> {
    pub request: Request,
    pub schedule: &'a crate::schedule::Schedule,
    /// The logical time of its latest run: a due time it has reached has run.
    pub last_run: Option<DateTime<Utc>>,
}

/// Warm-up for scheduled runs: the requests of runs due within the group's
/// `warmUpBefore` (or due less than [`WARM_GRACE`] ago, while their pods are made), and
/// when the next warm-up begins. Callers leave out DataJobs that already have a pod.
pub fn warm_up(
    group: &Group,
    scheduled: &[Scheduled<'_>],
    now: DateTime<Utc>,
) -> (Vec<Request>, Option<DateTime<Utc>>) {
    let Some(lead) = group
        .warm_up_before
        .and_then(|d| chrono::Duration::from_std(d).ok())
    else {
        return (Vec::new(), None);
    };
    let grace = chrono::Duration::from_std(WARM_GRACE).unwrap_or_default();
    let mut warm = Vec::new();
    let mut next: Option<DateTime<Utc>> = None;
    for s in scheduled {
        let Some(due) = s.schedule.next_after(now - grace) else {
            continue;
        };
        if s.last_run.is_some_and(|l| l >= due) {
            continue;
        }
        if due - lead <= now {
            warm.push(s.request);
        } else {
            next = Some(next.map_or(due - lead, |n| n.min(due - lead)));
        }
    }
    (warm, next)
}

/// A run's estimated cost: its largest share of a node times the node's price, for its duration.
pub fn run_cost(request: &Request, group: &Group, duration: Duration) -> f64 {
    request.share_of(&group.shape).min(1.0) * group.price_per_hour * duration.as_secs_f64() / 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cpu: u64, mem_gi: u64, gpu: u64) -> Request {
        Request {
            cpu_millis: cpu * 1000,
            memory: mem_gi << 30,
            ephemeral: 0,
            gpu,
        }
    }
    fn group(name: &str, shape: Request, price: f64, max: i32) -> Group {
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
            warm: vec![],
            idle_since: None,
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
        };
        let idle = GroupState {
            desired: 2,
            nodes: vec![node("a", 0, 0), node("b", 0, 0)],
            pending: vec![],
            active: 0,
            warm: vec![],
            idle_since: None,
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

    #[test]
    fn scheduled_runs_warm_their_group_up_ahead_of_time() {
        let mut g = group("small", req(4, 16, 0), 0.2, 3);
        let nightly = crate::schedule::Schedule::parse("0 3 * * *", chrono_tz::UTC).unwrap();
        let mut runs = [Scheduled {
            request: req(2, 8, 0),
            schedule: &nightly,
            last_run: None,
        }];
        let at = |s: &str| crate::labels::parse_rfc3339(s).unwrap();
        // No warmUpBefore: nothing ahead of time.
        assert_eq!(
            warm_up(&g, &runs, at("2026-11-25T02:59:00Z")),
            (vec![], None)
        );
        g.warm_up_before = Some(Duration::from_secs(180));
        // Before the window: nothing yet, and when it opens.
        assert_eq!(
            warm_up(&g, &runs, at("2026-11-25T02:00:00Z")),
            (vec![], Some(at("2026-11-25T02:57:00Z")))
        );
        // In the window, and for a minute after the run is due.
        for t in [
            "2026-11-25T02:57:00Z",
            "2026-11-25T03:00:00Z",
            "2026-11-25T03:00:59Z",
        ] {
            assert_eq!(warm_up(&g, &runs, at(t)).0, vec![req(2, 8, 0)], "{t}");
        }
        assert_eq!(
            warm_up(&g, &runs, at("2026-11-25T03:01:01Z")),
            (vec![], Some(at("2026-11-26T02:57:00Z")))
        );
        // Once the due run has run, it is not warmed for any more.
        runs[0].last_run = Some(at("2026-11-25T03:00:00Z"));
        assert_eq!(warm_up(&g, &runs, at("2026-11-25T03:00:30Z")).0, vec![]);

        // The decision: a node from zero, said as a warm-up, and no scale-down meanwhile.
        let state = GroupState {
            desired: 0,
            nodes: vec![],
            pending: vec![],
            active: 0,
            warm: vec![req(2, 8, 0)],
            idle_since: None,
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
        // Once the run is gone from the warm list and the group idles, it shrinks as usual.
        let idle = GroupState {
            warm: vec![],
            ..warmed
        };
        assert_eq!(decide(&g, &idle, now()).desired, 0);
    }

    #[test]
    fn cost_is_the_share_of_the_node() {
        let g = group("small", req(4, 16, 0), 0.4, 3);
        let c = run_cost(&req(2, 4, 0), &g, Duration::from_secs(3600));
        assert!((c - 0.2).abs() < 1e-9);
    }
}

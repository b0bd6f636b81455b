//! The kwok provider: the group's nodes are Node objects that DataJob makes and deletes
//! and kwok runs. A node boots `bootDelay` after the decision to make it; a node made for
//! waiting runs is reserved for them ([`reserve`]); an empty node is tainted, its pods
//! counted once more, and deleted.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::NodeGroupContext;
use super::observe::{Observed, live_pods, unbound};
use crate::{Error, Result};
use datajob_api::NodeGroup;
use datajob_core::decide::nodegroup::{self, GROUP_LABEL, Group, ScaleDecision, reserve};
use datajob_core::labels::{self, MANAGED_BY, MANAGED_BY_VALUE};
use datajob_core::resources::Request;

/// The clocks a kwok group's nodes boot by: `bootDelay`, the last scale on record (where
/// the clocks start after a restart) and now.
pub(super) struct Clock<'a> {
    pub boot_delay: Duration,
    pub last_scale: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// Makes the group's nodes follow `decision`: boots the nodes whose delay has passed
/// (reserved for the runs that waited longest), lifts leftover scale-down taints and
/// lapsed reservations, and removes the nodes the decision lets go. Returns when to look
/// again sooner than usual: the next boot, or the end of a reservation's hold.
pub(super) async fn scale(
    ctx: &NodeGroupContext,
    ng: &NodeGroup,
    group: &Group,
    decision: &ScaleDecision,
    seen: &Observed,
    clock: Clock<'_>,
) -> Result<Option<Duration>> {
    let (nodes, pods) = (&seen.state.nodes, &seen.pods);
    let now = clock.now;
    let api: Api<Node> = Api::all(ctx.base.client.clone());
    let current = nodes.len() as i32;
    let mut sooner: Option<Duration> = None;
    let mut wake = |d: Duration| sooner = Some(sooner.map_or(d, |s: Duration| s.min(d)));
    // Each node boots `bootDelay` after the decision to make it; the clocks live in
    // memory (after a restart they start at the last decision on record, or when the
    // group was made).
    let wanted = (decision.desired - current).max(0) as usize;
    let (booted, next_boot) = {
        // A panic elsewhere while holding it leaves the clocks as they were.
        let mut boots = ctx.boots.lock().unwrap_or_else(|e| e.into_inner());
        let first = !boots.contains_key(&group.name);
        let queue = boots.entry(group.name.clone()).or_default();
        let start = if first {
            clock
                .last_scale
                .and_then(labels::parse_rfc3339)
                .or_else(|| {
                    ng.metadata
                        .creation_timestamp
                        .as_ref()
                        .and_then(labels::from_k8s_time)
                })
                .map_or(now, |t| t.min(now))
        } else {
            now
        };
        nodegroup::boots(queue, wanted, start, clock.boot_delay, now)
    };
    if let Some(t) = next_boot {
        wake((t - now).to_std().unwrap_or_default());
    }
    if booted > 0 {
        boot(ctx, ng, group, booted, pods).await?;
    }
    let remove: Vec<&String> = decision
        .removable
        .iter()
        .take((current - decision.desired).max(0) as usize)
        .collect();
    // A node left tainted by a removal that did not finish (the operator stopped, or
    // work came back) takes pods again.
    for v in nodes.iter().filter(|v| !remove.contains(&&v.name)) {
        let tainted = ctx
            .nodes
            .get(&ObjectRef::new(&v.name))
            .and_then(|n| n.spec.as_ref()?.taints.clone())
            .is_some_and(|t| nodegroup::with_scale_down_taint(&t, false).is_some());
        if tainted && !set_scale_down_taint(&api, &v.name, false).await? {
            warn!(nodegroup = %group.name, node = %v.name, "a leftover scale-down taint could not be lifted yet; the next pass lifts it");
        }
    }
    if let Some(hold_ends) = lift_reservations(ctx, &api, group, pods, now).await? {
        wake(hold_ends + Duration::from_millis(200));
    }
    for node in remove {
        remove_kwok_node(ctx, group, node).await?;
    }
    Ok(sooner)
}

/// Makes `booted` nodes. Names are the lowest free `<group>-<i>` among all nodes: when
/// the node cache is behind, a node made again collides on its name instead of being
/// made twice. Each is reserved for the waiting runs [`reserve::reserve`] gives it.
async fn boot(
    ctx: &NodeGroupContext,
    ng: &NodeGroup,
    group: &Group,
    booted: usize,
    pods: &[Arc<Pod>],
) -> Result<()> {
    let all = ctx.nodes.state();
    let existing: Vec<String> = all.iter().map(|n| n.name_any()).collect();
    let existing: Vec<&str> = existing.iter().map(String::as_str).collect();
    let names = nodegroup::new_node_names(&group.name, &existing, booted);
    let waiting = waiting_pods(ctx, &group.name, pods);
    let views: Vec<reserve::Waiting> = waiting.iter().map(|(_, w)| w.clone()).collect();
    let reserved = reserve::reserve(&group.shape, &views, names.len());
    for (name, for_pods) in names.iter().zip(reserved) {
        let for_pods: Vec<&Pod> = for_pods.iter().map(|&i| waiting[i].0).collect();
        make_kwok_node(ctx, ng, group, name, &for_pods).await?;
        // Booted: its clock is done.
        let mut boots = ctx.boots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = boots.get_mut(&group.name).filter(|q| !q.is_empty()) {
            q.remove(0);
        }
    }
    Ok(())
}

/// Puts the scale-down taint on `node` (`on`) or takes it off. Returns whether the node
/// now is as asked; `false` when it is gone or changed meanwhile (the next pass retries).
async fn set_scale_down_taint(api: &Api<Node>, node: &str, on: bool) -> Result<bool> {
    edit_taints(api, node, "scale-down taint", |t| {
        nodegroup::with_scale_down_taint(t, on)
    })
    .await
}

/// Changes `node`'s taints by `edit` (`None`: they are as wanted already). Returns whether
/// the node now is as asked; `false` when it is gone or changed meanwhile (the next pass
/// retries).
async fn edit_taints(
    api: &Api<Node>,
    node: &str,
    what: &'static str,
    edit: impl Fn(&[Taint]) -> Option<Vec<Taint>>,
) -> Result<bool> {
    let Some(mut n) = api
        .get_opt(node)
        .await
        .map_err(Error::api("read", "Node", "", node))?
    else {
        info!(%node, what, "node gone before its taints could be changed; nothing to do");
        return Ok(false);
    };
    let current = n.spec.take().and_then(|s| s.taints);
    let Some(taints) = edit(current.as_deref().unwrap_or_default()) else {
        return Ok(true);
    };
    // A JSON patch that first tests the taints are still those read: a concurrent change
    // (say, the node lifecycle controller's taints) is never overwritten, and the
    // kubelet's status updates do not get in the way as a resourceVersion would.
    let patch: json_patch::Patch = serde_json::from_value(match &current {
        Some(c) => json!([
            {"op": "test", "path": "/spec/taints", "value": c},
            {"op": "replace", "path": "/spec/taints", "value": taints},
        ]),
        None => json!([{"op": "add", "path": "/spec/taints", "value": taints}]),
    })
    .map_err(|source| Error::Encode {
        what: "a node taint patch",
        source,
    })?;
    match api
        .patch(node, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => Ok(true),
        // Gone, or changed meanwhile (the test failed): the next pass tries again.
        Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {
            warn!(%node, what, error = %e, "the node's taints did not change: the node is gone or changed meanwhile; the next pass tries again");
            Ok(false)
        }
        Err(e) => Err(Error::api("taint", "Node", "", node)(e)),
    }
}

/// Adds the toleration of `node`'s reservation to the waiting `pod`
/// ([`reserve::toleration`]; tolerations are the one part of a pod's spec that may grow
/// after it is made). Returns whether the pod now holds it; `false` when it is gone or
/// changed so that it may not (it is bound, say).
async fn hold_reservation(ctx: &NodeGroupContext, pod: &Pod, node: &str) -> Result<bool> {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let api: Api<Pod> = Api::namespaced(ctx.base.client.clone(), &ns);
    let toleration = reserve::toleration(node);
    // Appended to the pod's tolerations (the cache does not keep them all); a pod that
    // has none gets the list. The apiserver refuses any patch that would change or drop
    // a toleration it has, so neither can overwrite one.
    let append = json!([{"op": "add", "path": "/spec/tolerations/-", "value": toleration}]);
    let create = json!([{"op": "add", "path": "/spec/tolerations", "value": [toleration]}]);
    let mut last = None;
    for patch in [append, create] {
        let patch: json_patch::Patch =
            serde_json::from_value(patch).map_err(|source| Error::Encode {
                what: "a reservation toleration patch",
                source,
            })?;
        match api
            .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => return Ok(true),
            // The list is missing (append), or the pod has tolerations after all (create).
            Err(kube::Error::Api(e)) if matches!(e.code, 400 | 422) => last = Some(e),
            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409) => {
                last = Some(e);
                break;
            }
            Err(e) => return Err(Error::api("add a toleration to", "Pod", &ns, &name)(e)),
        }
    }
    if let Some(e) = last {
        info!(pod = %format!("{ns}/{name}"), %node, error = %e, "the pod did not take the node's reservation: it is gone or changed meanwhile");
    }
    Ok(false)
}

/// Makes the kwok node `name`, reserved for the waiting pods `for_pods` (none: not
/// reserved). Those pods get the reservation's toleration first, so that the node takes
/// them the moment it is up and no one else meanwhile.
async fn make_kwok_node(
    ctx: &NodeGroupContext,
    ng: &NodeGroup,
    group: &Group,
    name: &str,
    for_pods: &[&Pod],
) -> Result<()> {
    let mut held = Vec::new();
    for pod in for_pods {
        if hold_reservation(ctx, pod, name).await? {
            held.push((pod.namespace().unwrap_or_default(), pod.name_any()));
        }
    }
    if !held.is_empty() {
        let mut reserved = ctx.reserved_for.lock().unwrap_or_else(|e| e.into_inner());
        reserved.insert(name.to_string(), held.clone());
    }
    let held: Vec<String> = held.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
    let node = kwok_node(ng, group, name, !held.is_empty())?;
    let api: Api<Node> = Api::all(ctx.base.client.clone());
    match api.create(&PostParams::default(), &node).await {
        Ok(_) if held.is_empty() => {
            info!(nodegroup = %group.name, node = %name, "kwok node created")
        }
        Ok(_) => {
            info!(nodegroup = %group.name, node = %name, reserved_for = %held.join(", "), "kwok node created, reserved for the runs that waited longest")
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            info!(nodegroup = %group.name, node = %name, error = %e, "kwok node exists already (the node cache is behind); not made twice")
        }
        Err(e) => return Err(Error::api("create", "Node", "", name)(e)),
    }
    Ok(())
}

/// Removes an empty kwok node safely: taint it so nothing new lands on it, count its
/// pods once more, then delete it, or lift the taint again when a pod got there first.
async fn remove_kwok_node(ctx: &NodeGroupContext, group: &Group, node: &str) -> Result<()> {
    let api: Api<Node> = Api::all(ctx.base.client.clone());
    if !set_scale_down_taint(&api, node, true).await? {
        return Ok(());
    }
    let (ours, foreign) = live_pods(ctx, node).await?;
    if ours + foreign > 0 {
        info!(nodegroup = %group.name, %node, pods = ours + foreign, "node got a pod; kept");
        if !set_scale_down_taint(&api, node, false).await? {
            warn!(nodegroup = %group.name, %node, "the scale-down taint could not be lifted yet; the next pass lifts it");
        }
        return Ok(());
    }
    match api.delete(node, &DeleteParams::default()).await {
        Ok(_) => info!(nodegroup = %group.name, %node, "kwok node deleted"),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            info!(nodegroup = %group.name, %node, error = %e, "kwok node already gone")
        }
        Err(e) => return Err(Error::api("delete", "Node", "", node)(e)),
    }
    Ok(())
}

/// The names of the group's nodes that are reserved ([`reserve`]), as the cache has them.
fn reserved_nodes(ctx: &NodeGroupContext, group: &str) -> Vec<Arc<Node>> {
    ctx.nodes
        .state()
        .into_iter()
        .filter(|n| n.labels().get(GROUP_LABEL).map(String::as_str) == Some(group))
        .filter(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.taints.as_deref())
                .is_some_and(reserve::is_reserved)
        })
        .collect()
}

/// Whether `pod` holds the reservation of `node`: it has the node's toleration, or this
/// replica gave it that toleration (which the cache may not show yet).
fn holds_reservation(ctx: &NodeGroupContext, pod: &Pod, node: &str) -> bool {
    if reserve::held_by(pod).any(|n| n == node) {
        return true;
    }
    let key = (pod.namespace().unwrap_or_default(), pod.name_any());
    let reserved = ctx.reserved_for.lock().unwrap_or_else(|e| e.into_inner());
    reserved.get(node).is_some_and(|pods| pods.contains(&key))
}

/// The group's pods that wait for a node, each with what [`reserve::reserve`] reads.
fn waiting_pods<'a>(
    ctx: &NodeGroupContext,
    group: &str,
    pods: &'a [Arc<Pod>],
) -> Vec<(&'a Pod, reserve::Waiting)> {
    let reserved: Vec<String> = reserved_nodes(ctx, group)
        .iter()
        .map(|n| n.name_any())
        .collect();
    pods.iter()
        .map(AsRef::as_ref)
        .filter(|p| unbound(p))
        .map(|p| {
            let since = p
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(labels::from_k8s_time)
                .unwrap_or_default();
            let holds = reserved.iter().any(|r| holds_reservation(ctx, p, r));
            let request = Request::of(p);
            (
                p,
                reserve::Waiting {
                    request,
                    since,
                    holds,
                },
            )
        })
        .collect()
}

/// Lifts the reservation of each of the group's nodes whose pods are bound or gone, or
/// that has been held for [`reserve::RESERVATION_HOLD`].
async fn lift_reservations(
    ctx: &NodeGroupContext,
    api: &Api<Node>,
    group: &Group,
    pods: &[Arc<Pod>],
    now: DateTime<Utc>,
) -> Result<Option<Duration>> {
    let mut next: Option<Duration> = None;
    for node in reserved_nodes(ctx, &group.name) {
        let name = node.name_any();
        let held = pods
            .iter()
            .any(|p| unbound(p) && holds_reservation(ctx, p, &name));
        let made = node
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(labels::from_k8s_time);
        if !reserve::lapsed(held, made, now) {
            // Look again when the hold ends, if its pods are not placed before.
            let ends = made.map(|t| {
                t + chrono::Duration::from_std(reserve::RESERVATION_HOLD).unwrap_or_default()
            });
            let left = ends
                .and_then(|t| (t - now).to_std().ok())
                .unwrap_or_default();
            next = Some(next.map_or(left, |n| n.min(left)));
            continue;
        }
        if edit_taints(api, &name, "reservation", reserve::without_reservation).await? {
            ctx.reserved_for
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
            info!(nodegroup = %group.name, node = %name, "reservation lifted: {}", if held { "held for its longest" } else { "its runs are placed or gone" });
        }
    }
    Ok(next)
}

/// A simulated node of the group's shape, managed by kwok and owned by the group (it goes
/// when the group goes); `reserved`: with the taint of its reservation ([`reserve`]).
fn kwok_node(ng: &NodeGroup, group: &Group, name: &str, reserved: bool) -> Result<Node> {
    let mut labels = group.labels.clone();
    labels.insert("type".into(), "kwok".into());
    labels.insert("kubernetes.io/hostname".into(), name.to_string());
    labels.insert(MANAGED_BY.into(), MANAGED_BY_VALUE.into());
    let s = &group.shape;
    let resources = json!({
        "cpu": datajob_core::units::format_cpu(s.cpu_millis),
        "memory": datajob_core::units::format_bytes(s.memory),
        "ephemeral-storage": datajob_core::units::format_bytes(s.ephemeral),
        "nvidia.com/gpu": s.gpu.to_string(),
        "pods": "110",
    });
    let mut taints: Vec<serde_json::Value> = group
        .taints
        .iter()
        .map(|t| json!({"key": t.key, "value": t.value, "effect": t.effect}))
        .collect();
    if reserved {
        taints.push(json!(reserve::taint(name)));
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "ownerReferences": ng.controller_owner_ref(&()).into_iter().collect::<Vec<_>>(),
        },
        "spec": {"taints": taints},
        "status": {"allocatable": resources, "capacity": resources},
    }))
    .map_err(|source| Error::Encode {
        what: "a kwok Node",
        source,
    })
}

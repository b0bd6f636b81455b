//! The NodeGroup reconciler: counts the group's nodes and the DataJob pods placed on it,
//! reads when the scheduled DataJobs placed on it run next, asks
//! [`datajob_core::decide::nodegroup::decide`] for a size, and makes the provider follow: kwok Node
//! objects, a Cluster API `scale` subresource, or nothing (static). Every API call's
//! failure is returned (the error policy logs it and retries) or logged where it is
//! expected and handled (a node gone or changed meanwhile).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::Context;
use crate::metrics::GroupLabels;
use crate::{Error, Result};
use datajob_api::{DataJob, NodeGroup, NodeGroupStatus, RunState};
use datajob_core::decide::due_runs;
use datajob_core::decide::nodegroup::{
    self, GROUP_LABEL, Group, GroupState, NodeView, ProviderKind, reserve,
};
use datajob_core::labels::{self, FIELD_MANAGER, MANAGED_BY, MANAGED_BY_VALUE, NAME};
use datajob_core::resources::Request;

const CONTROLLER: &str = "nodegroup";

pub struct NodeGroupContext {
    pub base: Context,
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    /// DataJobs, for the scheduled runs a group warms up for.
    pub datajobs: Store<DataJob>,
    /// When each group's node-seconds were last counted.
    pub counted_at: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Per kwok group, when each node on its way started to boot ([`nodegroup::boots`]).
    pub boots: Mutex<HashMap<String, Vec<DateTime<Utc>>>>,
    /// The pods (namespace, name) each node this replica made was reserved for: the
    /// pod cache may not show their new tolerations yet. After a restart the
    /// tolerations in the cache say it alone.
    pub reserved_for: Mutex<HashMap<String, Vec<(String, String)>>>,
}

/// The caches the NodeGroup controller reads, with their change streams. None is
/// watched here: every replica keeps the NodeGroups and DataJobs, the leader the pods
/// and nodes.
pub struct NodeGroupCaches<G, P, N, D> {
    /// Every NodeGroup (the cache every replica keeps for admission): the controller's
    /// own store.
    pub groups: Store<NodeGroup>,
    /// Every group of `groups` once, then each one that changed.
    pub group_events: G,
    pub pods: Store<Pod>,
    pub pod_events: P,
    pub nodes: Store<Node>,
    pub node_events: N,
    pub datajobs: Store<DataJob>,
    pub datajob_events: D,
}

/// Runs the NodeGroup controller until `shutdown` resolves.
pub async fn run<G, P, N, D>(
    base: Context,
    caches: NodeGroupCaches<G, P, N, D>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    G: futures::Stream<Item = Arc<NodeGroup>> + Send + 'static,
    P: futures::Stream<Item = Pod> + Send + 'static,
    N: futures::Stream<Item = Node> + Send + 'static,
    D: futures::Stream<Item = DataJob> + Send + 'static,
{
    let NodeGroupCaches {
        groups,
        group_events,
        pods,
        pod_events,
        nodes,
        node_events,
        datajobs,
        datajob_events,
    } = caches;
    let metrics = base.metrics.clone();
    let ctx = Arc::new(NodeGroupContext {
        base,
        pods,
        nodes,
        datajobs,
        counted_at: Mutex::new(HashMap::new()),
        boots: Mutex::new(HashMap::new()),
        reserved_for: Mutex::new(HashMap::new()),
    });
    let controller = Controller::for_shared_stream(group_events, groups)
        .watches_stream(pod_events.map(Ok::<_, watcher::Error>), |pod| {
            let group = pod
                .spec
                .as_ref()?
                .node_selector
                .as_ref()?
                .get(GROUP_LABEL)?
                .clone();
            Some(ObjectRef::<NodeGroup>::new(&group))
        })
        .watches_stream(node_events.map(Ok::<_, watcher::Error>), |node| {
            node.labels()
                .get(GROUP_LABEL)
                .map(|g| ObjectRef::<NodeGroup>::new(g))
        })
        // A DataJob placed on a group (its schedule may call for a warm-up).
        .watches_stream(datajob_events.map(Ok::<_, watcher::Error>), |dj| {
            dj.status
                .as_ref()?
                .node_group
                .as_deref()
                .map(ObjectRef::<NodeGroup>::new)
        })
        .graceful_shutdown_on(shutdown);
    // The node-group gauges (desired, current, ready, pending pods, max) read this cache
    // while we lead: a deleted group leaves no series behind.
    let _served = metrics.caches.nodegroups.serve(controller.store());
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((group, _)) => debug!(nodegroup = %group.name, "reconciled"),
                // The error policy has logged it with the group.
                Err(kube::runtime::controller::Error::ReconcilerFailed(error, group)) => {
                    debug!(nodegroup = %group.name, %error, "reconcile failed")
                }
                // A wake-up for a group deleted meanwhile: nothing to do.
                Err(kube::runtime::controller::Error::ObjectNotFound(group)) => {
                    debug!(nodegroup = %group.name, "reconcile of a deleted node group skipped")
                }
                Err(error) => warn!(%error, "node group controller: watch or queue error"),
            }
        })
        .await;
}

fn error_policy(ng: Arc<NodeGroup>, error: &Error, ctx: Arc<NodeGroupContext>) -> Action {
    // Told on the NodeGroup (cluster-scoped: the event is in `default`), where the
    // platform team looks.
    ctx.base.failed(
        CONTROLLER,
        Some(ng.object_ref(&())),
        error,
        Duration::from_secs(10),
    )
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn reconcile(ng: Arc<NodeGroup>, ctx: Arc<NodeGroupContext>) -> Result<Action> {
    let _timer = ctx.base.metrics.reconcile(CONTROLLER);
    let name = ng.name_any();
    let now = Utc::now();
    let previous = ng.status.clone().unwrap_or_default();
    if ng.metadata.deletion_timestamp.is_some() {
        // Being deleted: no scaling; the garbage collector removes its kwok nodes, and
        // a Cluster API group's machines are its owner's business.
        return Ok(Action::await_change());
    }
    let group = match nodegroup::resolve_group(&ng) {
        Ok(g) => g,
        Err(problem) => {
            let mut status = previous.clone();
            status.conditions = vec![condition(&previous, false, "Invalid", &problem, now)];
            write_status(&ctx, &name, &previous, status).await?;
            return Ok(Action::await_change());
        }
    };

    let nodes: Vec<Arc<Node>> = ctx
        .nodes
        .state()
        .into_iter()
        .filter(|n| n.labels().get(GROUP_LABEL) == Some(&name))
        .collect();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            due_runs::active(p)
                && p.spec
                    .as_ref()
                    .and_then(|s| s.node_selector.as_ref())
                    .and_then(|s| s.get(GROUP_LABEL))
                    == Some(&name)
        })
        .collect();
    let bound = |node: &str| -> Vec<&Pod> {
        pods.iter()
            .map(|p| p.as_ref())
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .collect()
    };
    let mut views: Vec<NodeView> = nodes
        .iter()
        .map(|n| {
            let node = n.name_any();
            let on_node = bound(&node);
            let used = on_node
                .iter()
                .fold(Request::default(), |acc, p| acc.plus(&Request::of(p)));
            NodeView {
                name: node.clone(),
                ready: node_ready(n),
                free: Request::allocatable(n).minus(&used),
                datajob_pods: on_node.len(),
                foreign_pods: 0,
                frees_at: frees_at(&ctx, &on_node),
            }
        })
        .collect();
    let pending: Vec<Request> = pods
        .iter()
        .filter(|p| unbound(p))
        .map(|p| Request::of(p))
        .collect();
    let idle_since = previous
        .idle_since
        .as_deref()
        .and_then(labels::parse_rfc3339);
    let mut state = GroupState {
        desired: previous.desired,
        nodes: views.clone(),
        pending: pending.clone(),
        active: pods.len(),
        due: {
            let (datajobs, pods) = (ctx.datajobs.state(), ctx.pods.state());
            due_runs::due_runs(
                &group,
                &datajobs.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
                &pods.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
                &ctx.base.limits,
                &ctx.base.guards,
                now,
            )
        },
        idle_since,
        last_scale: previous
            .last_scale_time
            .as_deref()
            .and_then(labels::parse_rfc3339),
    };
    let mut decision = nodegroup::decide(&group, &state, now);
    if decision.desired < views.len() as i32 {
        // Shrinking: count the pods on each node from the API rather than the cache,
        // which may not have seen a pod just bound to a node (and a node with someone
        // else's pods is never removed).
        for v in views.iter_mut() {
            (v.datajob_pods, v.foreign_pods) = live_pods(&ctx, &v.name).await?;
        }
        state.nodes = views.clone();
        decision = nodegroup::decide(&group, &state, now);
    }
    if matches!(group.provider, ProviderKind::Static) {
        decision.desired = views.len() as i32;
        decision.reason = None;
        decision.kept_for.clear();
    }

    let mut status = NodeGroupStatus {
        desired: decision.desired,
        current: views.len() as i32,
        ready: views.iter().filter(|v| v.ready).count() as i32,
        pending_pods: pending.len() as i32,
        active_pods: pods.len() as i32,
        idle_since: decision.idle_since.map(labels::rfc3339),
        last_scale_time: previous.last_scale_time.clone(),
        last_scale_reason: previous.last_scale_reason.clone(),
        room: nodegroup::room_status(&decision.room),
        kept_for: decision.kept_for.clone(),
        conditions: vec![condition(
            &previous,
            true,
            "Reconciled",
            "the node group is valid and its provider answers",
            now,
        )],
    };
    if let Some(reason) = &decision.reason {
        info!(nodegroup = %name, from = previous.desired, to = decision.desired, %reason, "scaling");
        status.last_scale_time = Some(labels::rfc3339(now));
        status.last_scale_reason = Some(format!(
            "{} -> {}: {reason}",
            previous.desired, decision.desired
        ));
    }
    let seen = Seen {
        nodes: &views,
        pods: &pods,
    };
    let mut requeue = act(&ctx, &ng, &group, &decision, seen, &status, now).await?;
    if let Some(t) = decision.recheck_at {
        // Wake up when a warm-up begins, a kept node's run is overdue or the idle wait
        // ends (a moment late, so that it has happened).
        requeue = requeue.min((t - now).to_std().unwrap_or_default() + Duration::from_millis(200));
    }
    count_node_seconds(&ctx, &group, &status, now);
    write_status(&ctx, &name, &previous, status).await?;
    Ok(Action::requeue(requeue))
}

/// When the runs of `pods` (on one node) are expected to have ended: each started at its
/// pod's start and takes as long as the longest recent successful run of its DataJob
/// ([`nodegroup::expected_end`]). `None` when any of them has no such history.
fn frees_at(ctx: &NodeGroupContext, pods: &[&Pod]) -> Option<DateTime<Utc>> {
    let ends = pods.iter().map(|p| {
        let started = p
            .status
            .as_ref()?
            .start_time
            .as_ref()
            .and_then(labels::from_k8s_time)?;
        let dj = ctx
            .datajobs
            .get(&ObjectRef::new(p.labels().get(NAME)?).within(&p.namespace()?))?;
        let took = dj.status.as_ref()?.recent_runs.iter().filter_map(|r| {
            let start = labels::parse_rfc3339(r.start_time.as_deref()?)?;
            let finish = labels::parse_rfc3339(r.finish_time.as_deref()?)?;
            (r.state == RunState::Succeeded).then(|| (finish - start).to_std().ok())?
        });
        nodegroup::expected_end(started, took)
    });
    ends.collect::<Option<Vec<_>>>()?.into_iter().max()
}

/// The active pods on `node`, read from the API: DataJob's, and everyone else's that
/// is not a DaemonSet's.
async fn live_pods(ctx: &NodeGroupContext, node: &str) -> Result<(usize, usize)> {
    let api: Api<Pod> = Api::all(ctx.base.client.clone());
    let list = api
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map_err(Error::api("list pods on", "Node", "", node))?;
    let active: Vec<&Pod> = list
        .items
        .iter()
        .filter(|p| due_runs::active(p))
        .filter(|p| !p.owner_references().iter().any(|o| o.kind == "DaemonSet"))
        .collect();
    let ours = active
        .iter()
        .filter(|p| p.labels().get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE))
        .count();
    Ok((ours, active.len() - ours))
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

/// Whether `pod` waits for a node (no node has taken it yet).
fn unbound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none()
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

/// What a reconcile saw of a group: its nodes and its active DataJob pods.
struct Seen<'a> {
    nodes: &'a [NodeView],
    pods: &'a [Arc<Pod>],
}

/// Makes the provider follow the decision; returns when to look again.
async fn act(
    ctx: &NodeGroupContext,
    ng: &NodeGroup,
    group: &Group,
    decision: &nodegroup::ScaleDecision,
    seen: Seen<'_>,
    status: &NodeGroupStatus,
    now: DateTime<Utc>,
) -> Result<Duration> {
    let Seen { nodes, pods } = seen;
    let busy = status.pending_pods > 0
        || status.desired != status.ready
        || status.active_pods == 0 && status.current > 0;
    let requeue = if busy {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(30)
    };
    match &group.provider {
        ProviderKind::Static => Ok(requeue),
        ProviderKind::ClusterApi {
            api_version,
            kind,
            namespace,
            name,
        } => {
            let (g, v) = api_version.split_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(g, v, kind);
            let ar = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.base.client.clone(), namespace, &ar);
            let scale = api.get_scale(name).await.map_err(Error::api(
                "read scale of",
                "MachineDeployment",
                namespace,
                name,
            ))?;
            // Scale omits replicas when they are 0.
            if scale.spec.and_then(|s| s.replicas).unwrap_or(0) != decision.desired {
                let patch = json!({"spec": {"replicas": decision.desired}});
                api.patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(Error::api("scale", "MachineDeployment", namespace, name))?;
                info!(nodegroup = %group.name, replicas = decision.desired, "scaled {kind} {namespace}/{name}");
            }
            Ok(requeue)
        }
        ProviderKind::Kwok { boot_delay } => {
            let api: Api<Node> = Api::all(ctx.base.client.clone());
            let current = nodes.len() as i32;
            // Each node boots `bootDelay` after the decision to make it; the clocks live
            // in memory (after a restart they start at the last decision on record, or
            // when the group was made).
            let wanted = (decision.desired - current).max(0) as usize;
            let (booted, next_boot) = {
                // A panic elsewhere while holding it leaves the clocks as they were.
                let mut boots = ctx.boots.lock().unwrap_or_else(|e| e.into_inner());
                let first = !boots.contains_key(&group.name);
                let queue = boots.entry(group.name.clone()).or_default();
                let start = if first {
                    status
                        .last_scale_time
                        .as_deref()
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
                nodegroup::boots(queue, wanted, start, *boot_delay, now)
            };
            let mut requeue = requeue;
            if let Some(t) = next_boot {
                requeue = requeue.min((t - now).to_std().unwrap_or_default());
            }
            if booted > 0 {
                // Names are the lowest free `<group>-<i>` among all nodes: when the node
                // cache is behind, a node made again collides on its name instead of
                // being made twice.
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
            }
            let remove: Vec<&String> = decision
                .removable
                .iter()
                .take((current - decision.desired).max(0) as usize)
                .collect();
            // A node left tainted by a removal that did not finish (the operator
            // stopped, or work came back) takes pods again.
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
                requeue = requeue.min(hold_ends + Duration::from_millis(200));
            }
            for node in remove {
                remove_kwok_node(ctx, group, node).await?;
            }
            Ok(requeue)
        }
    }
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

fn count_node_seconds(
    ctx: &NodeGroupContext,
    group: &Group,
    status: &NodeGroupStatus,
    now: DateTime<Utc>,
) {
    let labels = GroupLabels {
        nodegroup: group.name.clone(),
    };
    let m = &ctx.base.metrics;
    let Ok(mut counted) = ctx.counted_at.lock() else {
        warn!(nodegroup = %group.name, "node-seconds not counted: their clock's lock is poisoned");
        return;
    };
    let last = counted.insert(group.name.clone(), now).unwrap_or(now);
    let secs = (now - last).num_milliseconds().max(0) as f64 / 1000.0 * f64::from(status.current);
    m.node_seconds.get_or_create(&labels).inc_by(secs);
    // Every series exists from the group's first reconcile (at 0 while busy), so the
    // first idle seconds show as an increase.
    let idle = if status.active_pods == 0 { secs } else { 0.0 };
    m.idle_node_seconds.get_or_create(&labels).inc_by(idle);
    m.idle_cost
        .get_or_create(&labels)
        .inc_by(idle / 3600.0 * group.price_per_hour);
}

fn condition(
    prev: &NodeGroupStatus,
    ok: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let status = if ok { "True" } else { "False" }.to_string();
    let last_transition_time = match prev.conditions.iter().find(|c| c.type_ == "Ready") {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => labels::to_k8s_time(now),
    };
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: "Ready".into(),
        status,
        reason: reason.into(),
        message: message.into(),
        observed_generation: None,
        last_transition_time,
    }
}

async fn write_status(
    ctx: &NodeGroupContext,
    name: &str,
    previous: &NodeGroupStatus,
    status: NodeGroupStatus,
) -> Result<()> {
    if *previous == status {
        return Ok(());
    }
    let api: Api<NodeGroup> = Api::all(ctx.base.client.clone());
    let patch =
        json!({"apiVersion": NodeGroup::api_version(&()), "kind": "NodeGroup", "status": status});
    match api
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            info!(nodegroup = %name, error = %e, "status not written: the NodeGroup is gone");
            Ok(())
        }
        Err(e) => Err(Error::api("update status of", "NodeGroup", "", name)(e)),
    }
}

/// The exact calls one NodeGroup reconcile makes, against kube's mocked client: no
/// cluster, every request recorded and answered as the apiserver would.
#[cfg(test)]
mod api_calls {
    use super::*;
    use crate::controller::mock::{self, Call};
    use crate::metrics::Metrics;

    const STATUS: &str = "/apis/datajob.dev/v1alpha1/nodegroups/batch/status";
    const PODS: &str = "/api/v1/pods";
    const NODE: &str = "/api/v1/nodes/batch-0";
    /// The query of the list of the pods on batch-0, read before the node goes (kube
    /// starts its queries with `&`).
    const ON_NODE: &str = "&fieldSelector=spec.nodeName%3Dbatch-0";
    /// The run pod of [`run_pod`].
    const RUN_POD: &str = "/api/v1/namespaces/data/pods/nightly-29934840-abcde";
    const NOT_NEEDED: &str =
        "no pending run, and no scheduled run due soon that keeping them would pay for";

    /// A kwok group `batch` of 4-CPU, 16Gi nodes, at most 3, whose nodes boot 5 s after
    /// the decision to make them (the default); the default `Schedule` policy, `minSize` 0.
    fn group(status: serde_json::Value) -> NodeGroup {
        serde_json::from_value(json!({
            "apiVersion": "datajob.dev/v1alpha1",
            "kind": "NodeGroup",
            "metadata": {"name": "batch", "uid": "uid-batch"},
            "spec": {"node": {"cpu": "4", "memory": "16Gi"}, "maxSize": 3,
                "provider": {"kwok": {}}},
            "status": status,
        }))
        .expect("a NodeGroup")
    }

    /// The group's Ready node `batch-0`, with `taints`.
    fn node(taints: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "batch-0", "labels": {GROUP_LABEL: "batch"}},
            "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": "4", "memory": "16Gi"},
                "conditions": [{"type": "Ready", "status": "True"}]},
        })
    }

    /// `pod` as the API serves it.
    fn pod_object(pod: Pod) -> serde_json::Value {
        let mut o = serde_json::to_value(pod).unwrap_or_default();
        o["apiVersion"] = json!("v1");
        o["kind"] = json!("Pod");
        o
    }

    /// `batch-0` reserved for the run (it also carries `theirs`), made `made_secs_ago`.
    fn reserved_node(made_secs_ago: i64) -> serde_json::Value {
        let mut n = node(json!([{"key": "dedicated", "effect": "NoSchedule"},
            {"key": reserve::RESERVED_TAINT, "value": "batch-0", "effect": "NoSchedule"}]));
        n["metadata"]["creationTimestamp"] = json!(labels::rfc3339(
            Utc::now() - chrono::Duration::seconds(made_secs_ago)
        ));
        n
    }

    /// The run pod of [`run_pod`], holding `batch-0`'s reservation.
    fn holding(mut pod: Pod) -> Pod {
        if let Some(s) = pod.spec.as_mut() {
            s.tolerations = Some(vec![reserve::toleration("batch-0")]);
        }
        pod
    }

    /// What the group's status says while `batch-0` is reserved for the run that waits
    /// (the node is full with it, on paper).
    fn reserved_and_waiting() -> serde_json::Value {
        let mut status = at_rest();
        status["pendingPods"] = json!(1);
        status["room"] =
            json!([{"ready": true, "cpu": "0", "memory": "0", "ephemeralStorage": "100Gi"}]);
        status
    }

    /// Whether the reconcile patched `batch-0` (its taints: the only node patch).
    fn patches_node(calls: &[Call]) -> bool {
        calls.iter().any(|c| c.call == format!("PATCH {NODE}"))
    }

    fn as_node(node: serde_json::Value) -> Node {
        serde_json::from_value(node).expect("a Node")
    }

    /// A DataJob run's pod placed on the group, asking for `cpu` and `memory`: running on
    /// `node`, or pending.
    fn run_pod(node: Option<&str>, cpu: &str, memory: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "nightly-29934840-abcde", "namespace": "data",
                "labels": {NAME: "nightly", MANAGED_BY: MANAGED_BY_VALUE}},
            "spec": {"nodeSelector": {GROUP_LABEL: "batch"}, "nodeName": node,
                "containers": [{"name": "main", "image": "registry.example/acme/etl:1.0",
                    "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
            "status": {"phase": if node.is_some() { "Running" } else { "Pending" }},
        }))
        .expect("a Pod")
    }

    /// What the reconcile writes for the group with one Ready node that a run fills.
    fn at_rest() -> serde_json::Value {
        json!({
            "desired": 1, "current": 1, "ready": 1, "pendingPods": 0, "activePods": 1,
            "lastScaleTime": "2026-12-01T02:00:00Z",
            "lastScaleReason": "0 -> 1: 1 pending run pod(s) need 1 more node(s)",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled",
                "message": "the node group is valid and its provider answers",
                "lastTransitionTime": "2026-12-01T02:00:00Z"}],
        })
    }

    /// Every call one reconcile of `ng` makes, with `nodes` and `pods` in the caches,
    /// against a cluster that holds `held` (path, object).
    async fn calls_of_one_reconcile(
        ng: NodeGroup,
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        held: Vec<(&str, serde_json::Value)>,
    ) -> Vec<Call> {
        calls_of_one_reconcile_by(ng, nodes, pods, held, HashMap::new()).await
    }

    /// As [`calls_of_one_reconcile`], by a replica that made the nodes of `reserved_for`
    /// reserved for those pods.
    async fn calls_of_one_reconcile_by(
        ng: NodeGroup,
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        held: Vec<(&str, serde_json::Value)>,
        reserved_for: HashMap<String, Vec<(String, String)>>,
    ) -> Vec<Call> {
        let (client, calls) = mock::client_holding(
            serde_json::to_value(&ng).unwrap_or_default(),
            held.into_iter().map(|(p, o)| (p.to_string(), o)).collect(),
        );
        let ctx = Arc::new(NodeGroupContext {
            base: Context::new(
                client,
                Metrics::new(true),
                datajob_core::validation::Limits::default(),
                datajob_core::decide::children::Guards::default(),
            ),
            pods: crate::controller::mock::store_of(pods),
            nodes: crate::controller::mock::store_of(nodes),
            datajobs: crate::controller::mock::store_of(Vec::new()),
            counted_at: Mutex::new(HashMap::new()),
            boots: Mutex::new(HashMap::new()),
            reserved_for: Mutex::new(reserved_for),
        });
        let action = reconcile(Arc::new(ng), ctx).await;
        assert!(action.is_ok(), "the reconcile failed: {:?}", action.err());
        calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn methods_and_paths(calls: &[Call]) -> Vec<&str> {
        calls.iter().map(|c| c.call.as_str()).collect()
    }

    /// The status the reconcile wrote (its one status patch).
    fn written_status(calls: &[Call]) -> &serde_json::Value {
        let patch = format!("PATCH {STATUS}");
        let writes: Vec<&Call> = calls.iter().filter(|c| c.call == patch).collect();
        assert_eq!(writes.len(), 1, "one status patch: {calls:#?}");
        assert_eq!(writes[0].body["apiVersion"], "datajob.dev/v1alpha1");
        assert_eq!(writes[0].body["kind"], "NodeGroup");
        &writes[0].body["status"]
    }

    /// What the reconcile writes for the group when a run waits for its first node,
    /// decided at 02:00.
    fn scaled_up() -> serde_json::Value {
        json!({
            "desired": 1, "current": 0, "ready": 0, "pendingPods": 1, "activePods": 1,
            "lastScaleTime": "2026-12-01T02:00:00Z",
            "lastScaleReason": "0 -> 1: 1 pending run pod(s) need 1 more node(s)",
            // The node on its way, less the run it takes.
            "room": [{"ready": false, "cpu": "3", "memory": "15Gi", "ephemeralStorage": "100Gi"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled",
                "message": "the node group is valid and its provider answers",
                "lastTransitionTime": "2026-12-01T02:00:00Z"}],
        })
    }

    /// The shared error policy on a NodeGroup: the error metric, a Warning event on the
    /// group (published in the background) and a requeue in 10 s.
    #[tokio::test]
    async fn a_failed_reconcile_is_told_on_the_node_group_as_a_warning_event() {
        let (client, calls) = mock::client_holding(json!({}), Vec::new());
        let ctx = Arc::new(NodeGroupContext {
            base: Context::new(
                client,
                Metrics::new(true),
                datajob_core::validation::Limits::default(),
                datajob_core::decide::children::Guards::default(),
            ),
            pods: mock::store_of(Vec::new()),
            nodes: mock::store_of(Vec::new()),
            datajobs: mock::store_of(Vec::new()),
            counted_at: Mutex::new(HashMap::new()),
            boots: Mutex::new(HashMap::new()),
            reserved_for: Mutex::new(HashMap::new()),
        });
        let error = Error::MissingNamespace("batch".into());
        let action = error_policy(Arc::new(group(json!(null))), &error, ctx.clone());
        assert_eq!(action, Action::requeue(Duration::from_secs(10)));
        let mut event = None;
        for _ in 0..100 {
            event = calls.lock().ok().and_then(|c| {
                c.iter()
                    .find(|c| c.call.starts_with("POST /apis/events.k8s.io/v1/"))
                    .cloned()
            });
            if event.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let event = event.expect("a Warning event is posted");
        assert_eq!(event.body["type"], "Warning");
        assert_eq!(event.body["reason"], "ReconcileFailed");
        assert_eq!(event.body["regarding"]["kind"], "NodeGroup");
        assert_eq!(event.body["regarding"]["name"], "batch");
        let note = event.body["note"].as_str().unwrap_or_default();
        assert!(note.contains("retrying in 10s"), "{note}");
        let metrics = ctx.base.metrics.encode();
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("datajob_reconcile_errors_total{")
                    && l.contains("controller=\"nodegroup\"")
                    && l.contains("error=\"missing_namespace\"")
                    && l.ends_with(" 1")),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn a_pending_run_raises_the_size_and_no_node_is_made_before_it_boots() {
        let calls = calls_of_one_reconcile(
            group(json!(null)),
            Vec::new(),
            vec![run_pod(None, "1", "1Gi")],
            Vec::new(),
        )
        .await;
        assert_eq!(
            methods_and_paths(&calls),
            ["PATCH /apis/datajob.dev/v1alpha1/nodegroups/batch/status"]
        );
        let status = written_status(&calls);
        assert_eq!(
            status["lastScaleReason"],
            "0 -> 1: 1 pending run pod(s) need 1 more node(s)"
        );
        // Decided now; everything else as [`scaled_up`] says.
        let decided = &status["lastScaleTime"];
        assert!(
            decided
                .as_str()
                .is_some_and(|t| t != "2026-12-01T02:00:00Z"),
            "{status}"
        );
        let mut expected = scaled_up();
        expected["lastScaleTime"] = decided.clone();
        expected["conditions"][0]["lastTransitionTime"] =
            status["conditions"][0]["lastTransitionTime"].clone();
        assert_eq!(*status, expected);
    }

    #[tokio::test]
    async fn a_kwok_node_whose_boot_delay_has_passed_is_made_reserved_for_the_waiting_run_and_nothing_else_written()
     {
        // Sized up at 02:00 (the status the test above writes): with no boot clock in
        // memory (as after a restart) the node's starts then, so it has booted.
        let calls = calls_of_one_reconcile(
            group(scaled_up()),
            Vec::new(),
            vec![run_pod(None, "1", "1Gi")],
            vec![(RUN_POD, pod_object(run_pod(None, "1", "1Gi")))],
        )
        .await;
        // The status already says all this: it is not written again.
        assert_eq!(
            methods_and_paths(&calls),
            [&format!("PATCH {RUN_POD}"), "POST /api/v1/nodes"]
        );
        // The run that waits gets the node's toleration first (appended: nothing of
        // the pod is overwritten), then the node comes with the matching taint.
        let toleration = json!({"key": reserve::RESERVED_TAINT, "operator": "Equal",
            "value": "batch-0", "effect": "NoSchedule"});
        assert_eq!(
            calls[0].body,
            json!([{"op": "add", "path": "/spec/tolerations/-", "value": toleration}])
        );
        let made = &calls[1].body;
        assert_eq!(
            made["spec"]["taints"],
            json!([{"key": reserve::RESERVED_TAINT, "value": "batch-0", "effect": "NoSchedule"}])
        );
        assert_eq!(
            made["metadata"]["name"], "batch-0",
            "named <group>-<lowest free i>"
        );
        assert_eq!(
            made["metadata"]["labels"],
            json!({GROUP_LABEL: "batch", "type": "kwok", "kubernetes.io/hostname": "batch-0",
                MANAGED_BY: MANAGED_BY_VALUE})
        );
        assert_eq!(
            made["metadata"]["ownerReferences"],
            json!([{"apiVersion": "datajob.dev/v1alpha1", "kind": "NodeGroup",
                "name": "batch", "uid": "uid-batch", "controller": true}])
        );
        assert_eq!(
            made["status"]["allocatable"],
            json!({"cpu": "4", "memory": "16Gi", "ephemeral-storage": "100Gi",
                "nvidia.com/gpu": "0", "pods": "110"})
        );
    }

    #[tokio::test]
    async fn a_group_at_rest_costs_no_call() {
        let calls = calls_of_one_reconcile(
            group(at_rest()),
            vec![as_node(node(json!(null)))],
            vec![run_pod(Some("batch-0"), "4", "16Gi")],
            Vec::new(),
        )
        .await;
        assert_eq!(calls, Vec::<Call>::new());
    }

    #[tokio::test]
    async fn a_group_at_rest_whose_status_is_behind_gets_one_status_patch_and_nothing_else() {
        // The status was written while the node booted.
        let mut booting = at_rest();
        booting["ready"] = json!(0);
        let calls = calls_of_one_reconcile(
            group(booting),
            vec![as_node(node(json!(null)))],
            vec![run_pod(Some("batch-0"), "4", "16Gi")],
            Vec::new(),
        )
        .await;
        assert_eq!(
            methods_and_paths(&calls),
            ["PATCH /apis/datajob.dev/v1alpha1/nodegroups/batch/status"]
        );
        // No new size: the last scale stays as it was.
        assert_eq!(*written_status(&calls), at_rest());
    }

    #[tokio::test]
    async fn an_empty_node_is_tainted_its_pods_counted_again_and_it_is_deleted() {
        let mut was = at_rest();
        was["activePods"] = json!(0);
        was["idleSince"] = json!("2026-12-01T02:05:00Z");
        let calls = calls_of_one_reconcile(
            group(was),
            vec![as_node(node(json!(null)))],
            Vec::new(),
            vec![
                (NODE, node(json!(null))),
                (PODS, crate::controller::mock::no_pods()),
            ],
        )
        .await;
        assert_eq!(
            methods_and_paths(&calls),
            [
                // Shrinking: the pods on the node, from the API rather than the cache.
                "GET /api/v1/pods",
                // The scale-down taint, on the node as read.
                "GET /api/v1/nodes/batch-0",
                "PATCH /api/v1/nodes/batch-0",
                // Still empty once tainted: it goes.
                "GET /api/v1/pods",
                "DELETE /api/v1/nodes/batch-0",
                "PATCH /apis/datajob.dev/v1alpha1/nodegroups/batch/status",
            ]
        );
        assert_eq!(calls[0].query.as_deref(), Some(ON_NODE));
        assert_eq!(calls[3].query.as_deref(), Some(ON_NODE));
        assert_eq!(
            calls[2].body,
            json!([{"op": "add", "path": "/spec/taints",
                "value": [{"key": nodegroup::SCALE_DOWN_TAINT, "effect": "NoSchedule"}]}])
        );
        let status = written_status(&calls);
        assert_eq!(
            (&status["desired"], &status["current"], &status["ready"]),
            (&json!(0), &json!(1), &json!(1))
        );
        assert_eq!(status["idleSince"], "2026-12-01T02:05:00Z");
        assert_eq!(
            status["lastScaleReason"],
            format!("1 -> 0: 1 node(s) not needed: {NOT_NEEDED}")
        );
        assert_ne!(
            status["lastScaleTime"], "2026-12-01T02:00:00Z",
            "scaled now"
        );
    }

    #[tokio::test]
    async fn an_empty_node_gone_before_its_removal_is_neither_tainted_nor_deleted() {
        let calls = calls_of_one_reconcile(
            group(at_rest()),
            vec![as_node(node(json!(null)))],
            Vec::new(),
            vec![(PODS, crate::controller::mock::no_pods())],
        )
        .await;
        assert_eq!(
            methods_and_paths(&calls),
            [
                "GET /api/v1/pods",
                // 404: nothing to taint or delete.
                "GET /api/v1/nodes/batch-0",
                "PATCH /apis/datajob.dev/v1alpha1/nodegroups/batch/status",
            ]
        );
        assert_eq!(written_status(&calls)["desired"], 0);
    }

    #[tokio::test]
    async fn a_scale_down_taint_left_on_a_busy_node_is_lifted_and_nothing_else_written() {
        let taint = json!([{"key": nodegroup::SCALE_DOWN_TAINT, "effect": "NoSchedule"}]);
        let calls = calls_of_one_reconcile(
            group(at_rest()),
            vec![as_node(node(taint.clone()))],
            vec![run_pod(Some("batch-0"), "4", "16Gi")],
            vec![(NODE, node(taint.clone()))],
        )
        .await;
        assert_eq!(
            methods_and_paths(&calls),
            ["GET /api/v1/nodes/batch-0", "PATCH /api/v1/nodes/batch-0"]
        );
        // Only if the taints are still those read.
        assert_eq!(
            calls[1].body,
            json!([{"op": "test", "path": "/spec/taints", "value": taint},
                {"op": "replace", "path": "/spec/taints", "value": []}])
        );
    }

    #[tokio::test]
    async fn a_reservation_is_lifted_once_its_run_is_bound_and_nothing_else_written() {
        let calls = calls_of_one_reconcile(
            group(at_rest()),
            vec![as_node(reserved_node(1))],
            vec![holding(run_pod(Some("batch-0"), "4", "16Gi"))],
            vec![(NODE, reserved_node(1))],
        )
        .await;
        assert_eq!(
            methods_and_paths(&calls),
            ["GET /api/v1/nodes/batch-0", "PATCH /api/v1/nodes/batch-0"]
        );
        // Only the reservation goes, and only if the taints are still those read.
        let read = reserved_node(1)["spec"]["taints"].clone();
        assert_eq!(
            calls[1].body,
            json!([{"op": "test", "path": "/spec/taints", "value": read},
                {"op": "replace", "path": "/spec/taints",
                    "value": [{"key": "dedicated", "effect": "NoSchedule"}]}])
        );
    }

    #[tokio::test]
    async fn a_reservation_whose_run_still_waits_holds_until_the_hold_ends() {
        let waiting = || holding(run_pod(None, "4", "16Gi"));
        let status = reserved_and_waiting();
        let calls = calls_of_one_reconcile(
            group(status.clone()),
            vec![as_node(reserved_node(1))],
            vec![waiting()],
            vec![(NODE, reserved_node(1))],
        )
        .await;
        assert!(!patches_node(&calls), "{calls:#?}");
        // Held for the hold: anyone may have the node now.
        let hold = reserve::RESERVATION_HOLD.as_secs() as i64;
        let calls = calls_of_one_reconcile(
            group(status),
            vec![as_node(reserved_node(hold + 1))],
            vec![waiting()],
            vec![(NODE, reserved_node(hold + 1))],
        )
        .await;
        assert!(patches_node(&calls), "{calls:#?}");
    }

    #[tokio::test]
    async fn a_reservation_this_replica_made_holds_before_the_pod_cache_shows_its_toleration() {
        // The node was just made for the waiting run; the pod cache has not seen the
        // run's new toleration yet.
        let waiting = || run_pod(None, "4", "16Gi");
        let status = reserved_and_waiting();
        let made_here = HashMap::from([(
            "batch-0".to_string(),
            vec![("data".to_string(), "nightly-29934840-abcde".to_string())],
        )]);
        let calls = calls_of_one_reconcile_by(
            group(status.clone()),
            vec![as_node(reserved_node(0))],
            vec![waiting()],
            vec![(NODE, reserved_node(0))],
            made_here,
        )
        .await;
        assert!(!patches_node(&calls), "{calls:#?}");
        // Made by another replica, or before a restart: the cache alone says who holds
        // it, and here no one does.
        let calls = calls_of_one_reconcile(
            group(status),
            vec![as_node(reserved_node(0))],
            vec![waiting()],
            vec![(NODE, reserved_node(0))],
        )
        .await;
        assert!(patches_node(&calls), "{calls:#?}");
    }
}

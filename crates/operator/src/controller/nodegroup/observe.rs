//! What a NodeGroup looks like now, read from the caches: its nodes (with what is free
//! on each and when it frees), the DataJob pods placed on it (runs of a DataJob it
//! serves, nothing that only looks like one), those that wait, and the
//! scheduled runs due on it. One read from the API: the pods on a node, counted before
//! it may go.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;

use super::NodeGroupContext;
use crate::{Error, Result};
use datajob_api::{NodeGroupStatus, RunState};
use datajob_core::decide::due_runs;
use datajob_core::decide::nodegroup::{self, Group, GroupState, NodeView};
use datajob_core::labels::{self, MANAGED_BY, MANAGED_BY_VALUE, NAME};
use datajob_core::resources::Request;

/// What a reconcile saw of a group: what [`nodegroup::decide`] reads, and the group's
/// active DataJob pods.
pub(super) struct Observed {
    pub state: GroupState,
    pub pods: Vec<Arc<Pod>>,
}

/// Reads the group `group` from the caches, with the clocks its `previous` status keeps.
pub(super) fn observe(
    ctx: &NodeGroupContext,
    group: &Group,
    previous: &NodeGroupStatus,
    now: DateTime<Utc>,
) -> Observed {
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            due_runs::active(p)
                && run_of_datajob(ctx, group, p)
                && p.spec
                    .as_ref()
                    .and_then(|s| s.node_selector.as_ref())
                    .is_some_and(|s| group.marks(s))
        })
        .collect();
    let nodes: Vec<NodeView> = ctx
        .nodes
        .state()
        .into_iter()
        .filter(|n| group.marks(n.labels()))
        .map(|n| view(ctx, &n, &pods))
        .collect();
    let pending: Vec<Request> = pods
        .iter()
        .filter(|p| unbound(p))
        .map(|p| Request::of(p))
        .collect();
    let due = {
        let (datajobs, all_pods) = (ctx.datajobs.state(), ctx.pods.state());
        due_runs::due_runs(
            group,
            &datajobs.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
            &all_pods.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
            &ctx.base.limits,
            &ctx.base.guards,
            now,
        )
    };
    let state = GroupState {
        desired: previous.desired,
        nodes,
        pending,
        active: pods.len(),
        due,
        idle_since: previous
            .idle_since
            .as_deref()
            .and_then(labels::parse_rfc3339),
        last_scale: previous
            .last_scale_time
            .as_deref()
            .and_then(labels::parse_rfc3339),
    };
    Observed { state, pods }
}

/// Whether `pod` is a run of a DataJob in a namespace `group` serves
/// ([`nodegroup::owned`]): only such pods make nodes, hold them, or get patched.
fn run_of_datajob(ctx: &NodeGroupContext, group: &Group, pod: &Pod) -> bool {
    let ns = pod.namespace().unwrap_or_default();
    nodegroup::owned::run_of_datajob(
        &pod.metadata,
        |n| group.serves(n),
        |name| ctx.jobs.get(&ObjectRef::new(name).within(&ns)),
        |name| {
            ctx.datajobs
                .get(&ObjectRef::new(name).within(&ns))
                .and_then(|dj| dj.uid())
        },
    )
}

/// One node of the group as the caches show it, with the group's `pods` bound to it.
fn view(ctx: &NodeGroupContext, node: &Node, pods: &[Arc<Pod>]) -> NodeView {
    let name = node.name_any();
    let on_node: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&name))
        .collect();
    let used = on_node
        .iter()
        .fold(Request::default(), |acc, p| acc.plus(&Request::of(p)));
    NodeView {
        ready: node_ready(node),
        free: Request::allocatable(node).minus(&used),
        datajob_pods: on_node.len(),
        foreign_pods: 0,
        frees_at: frees_at(ctx, &on_node),
        name,
    }
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether `pod` waits for a node (no node has taken it yet).
pub(super) fn unbound(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none()
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

/// The active pods on `node`, read from the API: DataJob's (and those of its pods
/// that wait for their logs to be archived), and everyone else's that is not a
/// DaemonSet's.
pub(super) async fn live_pods(ctx: &NodeGroupContext, node: &str) -> Result<(usize, usize)> {
    let api: Api<Pod> = Api::all(ctx.base.client.clone());
    let list = api
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map_err(Error::api("list pods on", "Node", "", node))?;
    let active: Vec<&Pod> = list
        .items
        .iter()
        // A finished run pod whose logs are not archived yet holds its node too.
        .filter(|p| due_runs::active(p) || datajob_core::decide::archive::holds(p))
        .filter(|p| !p.owner_references().iter().any(|o| o.kind == "DaemonSet"))
        .collect();
    let ours = active
        .iter()
        .filter(|p| p.labels().get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE))
        .count();
    Ok((ours, active.len() - ours))
}

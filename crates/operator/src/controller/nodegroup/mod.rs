//! The NodeGroup reconciler, in the common shape: [`observe`] reads the caches into what
//! the group looks like now, [`datajob_core::decide::nodegroup::decide`] says what size it
//! should be, [`status::of`] what its status says, and [`act`] makes the provider follow:
//! kwok Node objects ([`kwok`]), a Cluster API `scale` subresource, down only by the
//! Machines of empty nodes it marked first ([`cluster_api`]), or
//! nothing (static; Karpenter, whose NodePool [`karpenter`] checks). Every API call's failure is returned (the error policy logs it and
//! retries) or logged where it is expected and handled (a node gone or changed meanwhile).
mod cluster_api;
mod karpenter;
mod kwok;
mod observe;
mod status;
mod synced;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::Context;
use crate::{Error, Result};
use datajob_api::{DataJob, NodeGroup, NodeGroupStatus};
use datajob_core::decide::nodegroup::{self, GROUP_LABEL, Group, NODEPOOL_LABEL, ProviderKind};
use observe::Observed;

const CONTROLLER: &str = "nodegroup";

/// How soon a group is looked at again while the caches have not synced.
const SYNC_RECHECK: Duration = Duration::from_secs(1);

pub(crate) struct NodeGroupContext {
    pub base: Context,
    pub pods: Store<Pod>,
    /// The runs' Jobs: a pod counts only when a DataJob's Job owns it
    /// ([`nodegroup::owned`]).
    pub jobs: Store<Job>,
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
    /// Whether `pods`, `jobs`, `nodes` and `datajobs` have synced: until then no
    /// scaling decision is made ([`synced`]).
    pub synced: synced::CachesSynced,
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
    pub jobs: Store<Job>,
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
        jobs,
        nodes,
        node_events,
        datajobs,
        datajob_events,
    } = caches;
    let metrics = base.metrics.clone();
    let (synced, gate) = synced::gate(&pods, &jobs, &nodes, &datajobs);
    let ctx = Arc::new(NodeGroupContext {
        base,
        pods,
        jobs,
        nodes,
        datajobs,
        counted_at: Mutex::new(HashMap::new()),
        boots: Mutex::new(HashMap::new()),
        reserved_for: Mutex::new(HashMap::new()),
        synced,
    });
    let (for_pods, for_nodes) = (groups.clone(), groups.clone());
    let controller = Controller::for_shared_stream(group_events, groups)
        .watches_stream(pod_events.map(Ok::<_, watcher::Error>), move |pod| {
            group_marked_by(&for_pods, pod.spec.as_ref()?.node_selector.as_ref()?)
        })
        .watches_stream(node_events.map(Ok::<_, watcher::Error>), move |node| {
            group_marked_by(&for_nodes, node.labels())
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
    let running = controller
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
        });
    // The sync gate is polled here, beside the controller, not spawned (see
    // [`synced::gate`]); the controller runs on once it is done.
    let mut running = std::pin::pin!(running);
    tokio::select! {
        () = &mut running => return,
        () = gate => {}
    }
    running.await;
}

/// The group whose nodes `labels` (a node's labels, or a pod's node selector) mark:
/// named by `datajob.dev/node-group`, or the Karpenter group of the NodePool
/// `karpenter.sh/nodepool` names.
fn group_marked_by(
    groups: &Store<NodeGroup>,
    labels: &std::collections::BTreeMap<String, String>,
) -> Option<ObjectRef<NodeGroup>> {
    if let Some(g) = labels.get(GROUP_LABEL) {
        return Some(ObjectRef::new(g));
    }
    let pool = labels.get(NODEPOOL_LABEL)?;
    groups
        .state()
        .iter()
        .find(|g| {
            g.spec
                .provider
                .karpenter
                .as_ref()
                .is_some_and(|k| k.node_pool.trim() == pool)
        })
        .map(|g| ObjectRef::from_obj(g.as_ref()))
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
            status::write(
                &ctx,
                &name,
                &previous,
                status::invalid(&previous, &problem, now),
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    if !ctx.synced.get() {
        // A cache that has not synced reads as empty: the group would look as if it had
        // no node and no work. Nothing is decided, scaled or written (its conditions
        // stay as they were) until they have.
        debug!(nodegroup = %name, "the pod, Job and Node caches have not synced yet: no scaling decision; looking again in {}s", SYNC_RECHECK.as_secs());
        return Ok(Action::requeue(SYNC_RECHECK));
    }
    let mut seen = observe::observe(&ctx, &group, &previous, now);
    let decision = size(&ctx, &group, &mut seen, now).await?;
    let mut status = status::of(&previous, &decision, &seen, now);
    let mut buffers_recheck = None;
    if let ProviderKind::Karpenter { node_pool } = &group.provider {
        let pool = karpenter::node_pool(&ctx, node_pool).await?;
        let usable = nodegroup::karpenter::check_node_pool(&group, pool.as_ref());
        if let Err(problem) = &usable {
            status.conditions = status::unready(&previous, "NodePoolUnusable", problem, now);
        }
        // Warm-up and keep through CapacityBuffers; none on a pool that cannot make
        // the group's nodes.
        let (wanted, recheck) = match usable {
            Ok(()) => nodegroup::buffers::wanted(&group, &seen.state, now),
            Err(_) => (Vec::new(), None),
        };
        buffers_recheck = recheck;
        let synced = karpenter::sync_buffers(&ctx, &group, &wanted).await?;
        status
            .conditions
            .push(status::warm_up(&previous, &synced, &wanted, now));
    }
    if let Some(reason) = &decision.reason {
        info!(nodegroup = %name, from = previous.desired, to = decision.desired, %reason, "scaling");
    }
    let mut requeue = act(&ctx, &ng, &group, &decision, &seen, &status, now).await?;
    if let Some(t) = decision.recheck_at.into_iter().chain(buffers_recheck).min() {
        // Wake up when a warm-up begins, a kept node's run is overdue or the idle wait
        // ends (a moment late, so that it has happened).
        requeue = requeue.min((t - now).to_std().unwrap_or_default() + Duration::from_millis(200));
    }
    status::count_node_seconds(&ctx, &group, &status, now);
    status::write(&ctx, &name, &previous, status).await?;
    Ok(Action::requeue(requeue))
}

/// The size the group should be ([`nodegroup::decide`]). Before it shrinks, the pods on
/// each node are counted from the API rather than the cache, which may not have seen a
/// pod just bound to a node (and a node with someone else's pods is never removed). A
/// static group is what it is.
async fn size(
    ctx: &NodeGroupContext,
    group: &Group,
    seen: &mut Observed,
    now: DateTime<Utc>,
) -> Result<nodegroup::ScaleDecision> {
    let mut decision = nodegroup::decide(group, &seen.state, now);
    if decision.desired < seen.state.nodes.len() as i32 {
        for v in seen.state.nodes.iter_mut() {
            (v.datajob_pods, v.foreign_pods) = observe::live_pods(ctx, &v.name).await?;
        }
        decision = nodegroup::decide(group, &seen.state, now);
    }
    if matches!(
        group.provider,
        ProviderKind::Static | ProviderKind::Karpenter { .. }
    ) {
        // Its nodes are someone else's: the size is what it is.
        decision.desired = seen.state.nodes.len() as i32;
        decision.reason = None;
        decision.kept_for.clear();
    }
    Ok(decision)
}

/// Makes the provider follow the decision; returns when to look again: soon while the
/// group is on its way somewhere, in 30 s at rest, sooner when the provider says so.
async fn act(
    ctx: &NodeGroupContext,
    ng: &NodeGroup,
    group: &Group,
    decision: &nodegroup::ScaleDecision,
    seen: &Observed,
    status: &NodeGroupStatus,
    now: DateTime<Utc>,
) -> Result<Duration> {
    let busy = status.pending_pods > 0
        || status.desired != status.ready
        || status.active_pods == 0 && status.current > 0;
    let requeue = if busy {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(30)
    };
    let sooner = match &group.provider {
        // Karpenter makes and removes the nodes of its NodePool.
        ProviderKind::Static | ProviderKind::Karpenter { .. } => None,
        ProviderKind::ClusterApi {
            api_version,
            kind,
            namespace,
            name,
        } => {
            let target = cluster_api::Target {
                api_version,
                kind,
                namespace,
                name,
            };
            let shrink = cluster_api::Shrink {
                group: &group.name,
                removable: &decision.removable,
                now,
            };
            cluster_api::scale(ctx, &target, decision.desired, &shrink).await?;
            None
        }
        ProviderKind::Kwok { boot_delay } => {
            let clock = kwok::Clock {
                boot_delay: *boot_delay,
                last_scale: status.last_scale_time.as_deref(),
                now,
            };
            kwok::scale(ctx, ng, group, decision, seen, clock).await?
        }
    };
    Ok(sooner.map_or(requeue, |s| requeue.min(s)))
}

/// The exact calls one NodeGroup reconcile makes, against kube's mocked client: no
/// cluster, every request recorded and answered as the apiserver would.
#[cfg(test)]
#[path = "api_calls.rs"]
mod api_calls;

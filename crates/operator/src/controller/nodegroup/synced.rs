//! The scaler's sync gate: no scaling decision before every cache the NodeGroup
//! reconciler reads has listed once. A cache that has not synced reads as empty: on a
//! leader start the controllers run before the pod, Job and Node watches have listed
//! anything, and a group whose nodes and runs the caches do not show yet looks idle
//! (a Cluster API group was scaled to zero so; issue #25).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::Store;
use tracing::{info, warn};

use datajob_api::DataJob;

/// Whether the pod, Job, Node and DataJob caches have all synced (set once by the
/// future of [`gate`]; never unset: a watch that breaks later keeps its store, and
/// relists into it).
#[derive(Clone, Debug, Default)]
pub(crate) struct CachesSynced(Arc<AtomicBool>);

impl CachesSynced {
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The flag, and the future that sets it once each of the stores has synced. The
/// future must be polled by the task that polls the controllers (not spawned), beside
/// them: kube's `Store::wait_until_ready` keeps one waker (see
/// [`crate::controller::Synced`]), and the watchdog's controller waits on the same Job
/// store from that task, so the waker the two leave is the same and wakes both. It
/// ends when every store has synced, or when one never will (its writer is gone: the
/// flag stays unset, and no scaling decision is made).
pub(super) fn gate(
    pods: &Store<Pod>,
    jobs: &Store<Job>,
    nodes: &Store<Node>,
    datajobs: &Store<DataJob>,
) -> (CachesSynced, impl Future<Output = ()> + Send + 'static) {
    let flag = CachesSynced::default();
    let set = flag.clone();
    let (pods, jobs, nodes, datajobs) =
        (pods.clone(), jobs.clone(), nodes.clone(), datajobs.clone());
    let wait = async move {
        let stopped = |kind: &str| {
            warn!(
                cache = kind,
                "a cache the node-group scaler reads stopped before it synced: no node group is scaled"
            );
        };
        if pods.wait_until_ready().await.is_err() {
            return stopped("Pod");
        }
        if jobs.wait_until_ready().await.is_err() {
            return stopped("Job");
        }
        if nodes.wait_until_ready().await.is_err() {
            return stopped("Node");
        }
        if datajobs.wait_until_ready().await.is_err() {
            return stopped("DataJob");
        }
        set.0.store(true, Ordering::Release);
        info!("node-group caches synced (pods, Jobs, Nodes, DataJobs): scaling decisions start");
    };
    (flag, wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    use std::time::Duration;

    /// Lists nothing into the store of `writer`: it has synced.
    fn list<K>(writer: &mut reflector::store::Writer<K>)
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitDone);
    }

    #[tokio::test]
    async fn the_gate_opens_only_once_every_store_has_synced() {
        let (pods, mut pods_w) = reflector::store::<Pod>();
        let (jobs, mut jobs_w) = reflector::store::<Job>();
        let (nodes, mut nodes_w) = reflector::store::<Node>();
        let (datajobs, mut datajobs_w) = reflector::store::<DataJob>();
        let (synced, gate) = gate(&pods, &jobs, &nodes, &datajobs);
        let gate = tokio::spawn(gate);
        list(&mut datajobs_w);
        list(&mut pods_w);
        list(&mut nodes_w);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!synced.get(), "the Job cache has not synced");
        assert!(!gate.is_finished());
        list(&mut jobs_w);
        let done = tokio::time::timeout(Duration::from_secs(5), gate).await;
        assert!(
            matches!(done, Ok(Ok(()))),
            "woken once the last store synced"
        );
        assert!(synced.get());
    }

    #[tokio::test]
    async fn a_store_that_never_syncs_keeps_the_gate_shut() {
        let (pods, pods_w) = reflector::store::<Pod>();
        let (jobs, mut jobs_w) = reflector::store::<Job>();
        let (nodes, mut nodes_w) = reflector::store::<Node>();
        let (datajobs, mut datajobs_w) = reflector::store::<DataJob>();
        list(&mut jobs_w);
        list(&mut nodes_w);
        list(&mut datajobs_w);
        let (synced, gate) = gate(&pods, &jobs, &nodes, &datajobs);
        // Its watch is gone (the leader's caches dropped) before it listed.
        drop(pods_w);
        let done = tokio::time::timeout(Duration::from_secs(5), gate).await;
        assert!(done.is_ok(), "the gate ends");
        assert!(!synced.get());
    }
}

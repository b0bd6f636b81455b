//! The clean-up loop: every interval, deletes PVCs that outlived their runs
//! ([`datajob_core::decide::cleanup::orphaned_pvcs`]), with an event on the DataJob.
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use tracing::{info, warn};

use super::Context;
use datajob_core::decide::cleanup::orphaned_pvcs;
use datajob_core::labels;

pub async fn run(
    base: Context,
    pods: Store<Pod>,
    jobs: Store<Job>,
    grace: Duration,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (pvcs, writer) = reflector::store::<PartialObjectMeta<PersistentVolumeClaim>>();
    let managed = super::watch_config().labels(&labels::managed_selector());
    let watch = super::cached_events(
        writer,
        super::relisting_watcher::<PartialObjectMeta<PersistentVolumeClaim>>(
            base.client.clone(),
            managed,
        ),
        |_| {},
    )
    .backoff(super::WatchBackoff::default())
    .touched_objects()
    .for_each({
        let mut health = super::WatchHealth::new("PersistentVolumeClaim");
        move |r| {
            health.observe(r.as_ref().err());
            async {}
        }
    });
    let sweep = async move {
        loop {
            tokio::time::sleep(interval).await;
            if pvcs.wait_until_ready().await.is_err() {
                return;
            }
            sweep_once(&base, &pvcs, &pods, &jobs, grace).await;
        }
    };
    tokio::select! {
        _ = watch => {},
        _ = sweep => {},
        _ = shutdown => {},
    }
}

async fn sweep_once(
    base: &Context,
    pvcs: &Store<PartialObjectMeta<PersistentVolumeClaim>>,
    pods: &Store<Pod>,
    jobs: &Store<Job>,
    grace: Duration,
) {
    let (all_pvcs, all_pods, all_jobs) = (pvcs.state(), pods.state(), jobs.state());
    let pvc_refs: Vec<&PartialObjectMeta<PersistentVolumeClaim>> =
        all_pvcs.iter().map(Arc::as_ref).collect();
    let pod_refs: Vec<&Pod> = all_pods.iter().map(Arc::as_ref).collect();
    let job_refs: Vec<&Job> = all_jobs.iter().map(Arc::as_ref).collect();
    let candidates = orphaned_pvcs(&pvc_refs, &pod_refs, &job_refs, grace, Utc::now());
    // The cache holds only DataJob's pods; before deleting, ask about every pod in the
    // namespace, so a PVC another pod still uses is never touched.
    let mut namespaces: Vec<&str> = candidates.iter().map(|o| o.namespace.as_str()).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    let mut confirmed = Vec::new();
    for ns in namespaces {
        let api: Api<Pod> = Api::namespaced(base.client.clone(), ns);
        let all_pods = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                warn!(namespace = %ns, error = %e, "cannot list pods; no PVC deleted there this time");
                continue;
            }
        };
        let in_ns: Vec<&PartialObjectMeta<PersistentVolumeClaim>> = pvc_refs
            .iter()
            .copied()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .collect();
        let pods: Vec<&Pod> = all_pods.iter().collect();
        confirmed.extend(orphaned_pvcs(&in_ns, &pods, &job_refs, grace, Utc::now()));
    }
    for orphan in confirmed {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(base.client.clone(), &orphan.namespace);
        match api.delete(&orphan.name, &DeleteParams::background()).await {
            Ok(_) => {
                info!(namespace = %orphan.namespace, pvc = %orphan.name, datajob = %orphan.datajob, why = %orphan.why, "deleted leftover PVC");
                base.metrics.pvcs_deleted.inc();
                let r = Context::datajob_ref(&orphan.namespace, &orphan.datajob);
                base.event(
                    &r,
                    false,
                    "PVCDeleted",
                    "Cleanup",
                    format!("deleted PVC {}: {}", orphan.name, orphan.why),
                )
                .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                warn!(namespace = %orphan.namespace, pvc = %orphan.name, error = %e, "could not delete leftover PVC")
            }
        }
    }
}

/// The exact calls one sweep makes, against kube's mocked client.
#[cfg(test)]
mod api_calls {
    use super::*;
    use crate::controller::mock::{self, Call};
    use crate::metrics::Metrics;
    use datajob_core::labels::{MANAGED_BY, MANAGED_BY_VALUE, NAME, RUN_ID};
    use serde_json::json;

    const PODS: &str = "/api/v1/namespaces/data/pods";
    const PVC: &str = "/api/v1/namespaces/data/persistentvolumeclaims/nightly-1-scratch";

    /// The scratch PVC of run `nightly-1`, made an hour ago, as the metadata cache holds it.
    fn scratch_pvc() -> PartialObjectMeta<PersistentVolumeClaim> {
        serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "nightly-1-scratch", "namespace": "data",
                "labels": {MANAGED_BY: MANAGED_BY_VALUE, NAME: "nightly", RUN_ID: "nightly-1"},
                "creationTimestamp": labels::rfc3339(Utc::now() - chrono::Duration::hours(1))},
        }))
        .expect("a PVC's metadata")
    }

    /// The namespace's pods as the apiserver lists them: `claims` each mounted by a pod
    /// DataJob does not manage.
    fn pod_list(claims: &[&str]) -> serde_json::Value {
        let items: Vec<serde_json::Value> = claims
            .iter()
            .map(|c| {
                json!({"metadata": {"name": format!("reader-of-{c}"), "namespace": "data"},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}],
                        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": c}}]}})
            })
            .collect();
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
    }

    async fn calls_of_one_sweep(listed: serde_json::Value) -> Vec<Call> {
        let held_pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "nightly-1-scratch", "namespace": "data"}});
        let (client, calls) = mock::client_holding(
            json!({}),
            vec![(PODS.to_string(), listed), (PVC.to_string(), held_pvc)],
        );
        let base = Context::new(
            client,
            Metrics::new(true),
            datajob_core::validation::Limits::default(),
            datajob_core::decide::children::Guards::default(),
        );
        // The run's Job is gone and no cached pod mounts the claim: a candidate.
        sweep_once(
            &base,
            &mock::store_of(vec![scratch_pvc()]),
            &mock::store_of(Vec::<Pod>::new()),
            &mock::store_of(Vec::<Job>::new()),
            Duration::from_secs(300),
        )
        .await;
        calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn methods_and_paths(calls: &[Call]) -> Vec<&str> {
        calls.iter().map(|c| c.call.as_str()).collect()
    }

    #[tokio::test]
    async fn a_pvc_whose_run_is_gone_is_deleted_after_the_namespace_is_asked_and_told_once() {
        let calls = calls_of_one_sweep(pod_list(&[])).await;
        assert_eq!(
            methods_and_paths(&calls),
            [
                // Every pod of the namespace, not only DataJob's, before anything goes.
                format!("GET {PODS}").as_str(),
                format!("DELETE {PVC}").as_str(),
                "POST /apis/events.k8s.io/v1/namespaces/data/events",
            ]
        );
        assert_eq!(calls[1].body["propagationPolicy"], "Background");
        let event = &calls[2].body;
        assert_eq!(event["reason"], "PVCDeleted");
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["regarding"]["kind"], "DataJob");
        assert_eq!(event["regarding"]["name"], "nightly");
    }

    #[tokio::test]
    async fn a_pvc_another_pod_mounts_is_kept_and_only_the_namespace_is_asked() {
        let calls = calls_of_one_sweep(pod_list(&["nightly-1-scratch"])).await;
        assert_eq!(methods_and_paths(&calls), [format!("GET {PODS}").as_str()]);
    }
}

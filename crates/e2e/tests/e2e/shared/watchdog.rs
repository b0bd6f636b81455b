//! End-to-end: nothing hangs, nothing is left behind. The operator run by
//! `e2e/with-operator.sh` has its grace periods shortened (5 s image pull and
//! config, 60 s unschedulable, 5 s PVC, 2 s clean-up interval).

use crate::common;

use std::time::{Duration, Instant};

use common::{
    Result, client, kwok, test_namespace, unique_name, wait_for, wait_for_event, wait_for_object,
};
use datajob_api::{DataJob, RunState};
use datajob_core::labels::{MANAGED_BY, MANAGED_BY_VALUE, NAME, RUN_ID, TRIGGER};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// The image pull grace e2e/with-operator.sh sets.
const GRACE: Duration = Duration::from_secs(5);
/// The config grace e2e/with-operator.sh sets (longer: a real kubelet retries a container
/// it could not configure only every ~10 s).
const CONFIG_GRACE: Duration = Duration::from_secs(25);

async fn create(client: &Client, ns: &str, name: &str, spec: serde_json::Value) -> Api<DataJob> {
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns);
    let dj: DataJob = common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": name}, "spec": spec,
    }));
    api.create(&PostParams::default(), &dj)
        .await
        .expect("create DataJob");
    api
}

/// Waits until the DataJob's last run failed, and returns (reason, message).
async fn failed(api: &Api<DataJob>, name: &str, timeout: Duration) -> Result<(String, String)> {
    let dj = wait_for_object(
        api,
        name,
        &format!("{name} Failed"),
        timeout,
        |d: &DataJob| {
            d.status
                .as_ref()
                .is_some_and(|s| s.state == Some(RunState::Failed))
        },
    )
    .await?;
    let s = dj.status.unwrap_or_default();
    let run = s.last_run.unwrap_or_default();
    assert_eq!(
        s.reason, run.reason,
        "the REASON column shows the last run's reason"
    );
    Ok((
        run.reason.unwrap_or_default(),
        run.message.unwrap_or_default(),
    ))
}

async fn pods_of(client: &Client, ns: &str, datajob: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("{NAME}={datajob}")))
        .await
        .expect("list pods")
        .items
}

async fn no_pods_left(client: &Client, ns: &str, datajob: &str) {
    let (client, ns, dj) = (client.clone(), ns.to_string(), datajob.to_string());
    wait_for("no pod left", Duration::from_secs(30), || {
        let (client, ns, dj) = (client.clone(), ns.clone(), dj.clone());
        async move { Ok(pods_of(&client, &ns, &dj).await.is_empty().then_some(())) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn image_that_cannot_be_pulled_ends_the_run_fast_with_no_pod_and_no_retry() {
    let client = client().await;
    let ns = test_namespace(&client, "image").await;
    let image = "ghcr.io/acme/does-not-exist:1.4.3";
    let start = Instant::now();
    let api = create(
        &client,
        ns.name(),
        "bad-image",
        json!({"image": image, "retries": 3}),
    )
    .await;
    let (reason, message) = failed(&api, "bad-image", GRACE + Duration::from_secs(30))
        .await
        .unwrap();
    assert!(start.elapsed() <= GRACE + Duration::from_secs(30));
    assert_eq!(reason, "ImageNotFound");
    assert!(message.contains(image), "names the image: {message}");
    no_pods_left(&client, ns.name(), "bad-image").await;
    // No retry: the Job never made a second pod.
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let job = &jobs.list(&ListParams::default()).await.unwrap().items[0];
    let status = job.status.clone().unwrap_or_default();
    assert!(
        status.failed.unwrap_or(0) + status.active.unwrap_or(0) <= 1,
        "{status:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        pods_of(&client, ns.name(), "bad-image").await.is_empty(),
        "no retry pod appeared"
    );
    wait_for_event(
        &client,
        ns.name(),
        "bad-image",
        "ImageNotFound",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    common::operator::wait_for_sample(
        "datajob_runs_ended_total",
        &[("reason", "ImageNotFound")],
        |n| n >= 1.0,
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn missing_secret_ends_the_run_as_missing_config_naming_the_secret() {
    let client = client().await;
    let ns = test_namespace(&client, "config").await;
    let secret = format!("db-{}-creds", kwok::MISSING_REF_MARKER);
    let env = json!([{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}]);
    let api = create(
        &client,
        ns.name(),
        "needs-secret",
        json!({"image": "busybox", "env": env}),
    )
    .await;
    let (reason, message) = failed(&api, "needs-secret", CONFIG_GRACE + Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(reason, "MissingConfig");
    assert!(
        message.contains(&format!("secret \"{secret}\" not found")),
        "{message}"
    );
    no_pods_left(&client, ns.name(), "needs-secret").await;
}

#[tokio::test]
async fn a_run_no_node_could_ever_fit_ends_at_once() {
    let client = client().await;
    let ns = test_namespace(&client, "too-big").await;
    let api = create(
        &client,
        ns.name(),
        "huge",
        json!({"image": "busybox", "resources": {"cpu": 200, "memory": "1Gi"}}),
    )
    .await;
    // "At once": well before the 60 s unschedulable grace e2e/with-operator.sh sets.
    let (reason, message) = failed(&api, "huge", Duration::from_secs(40)).await.unwrap();
    assert_eq!(reason, "Unschedulable");
    assert!(
        message.contains("cpu 200") && message.contains("Insufficient cpu"),
        "request and scheduler message: {message}"
    );
}

#[tokio::test]
async fn an_unschedulable_run_ends_after_its_pending_timeout_with_the_schedulers_message() {
    let client = client().await;
    let ns = test_namespace(&client, "pending").await;
    // A cordoned GPU node: the run could fit one day, so the watchdog waits for the timeout.
    let nodes: Api<Node> = Api::all(client.clone());
    let node_name = unique_name("cordoned-gpu");
    let node: Node = common::from_json(json!({
        "metadata": {"name": node_name, "annotations": {kwok::NODE_ANNOTATION: "fake"}, "labels": {"type": "kwok-e2e-cordoned"}},
        "spec": {"unschedulable": true},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1", "pods": "110"},
                   "capacity": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1", "pods": "110"}},
    }));
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let start = Instant::now();
    let api = create(
        &client,
        ns.name(),
        "gpu-wait",
        json!({"image": "busybox", "pendingTimeout": "8s", "resources": {"gpu": 1}}),
    )
    .await;
    let result = failed(&api, "gpu-wait", Duration::from_secs(45)).await;
    let _ = nodes.delete(&node_name, &DeleteParams::default()).await;
    let (reason, message) = result.unwrap();
    // The pod was made after `start`; its Unschedulable time is kept to the second,
    // so the 8 s are counted from at most 1 s before `start`.
    assert!(
        start.elapsed() >= Duration::from_secs(7),
        "waited for spec.pendingTimeout"
    );
    assert_eq!(reason, "Unschedulable");
    assert!(
        message.contains("nodes are available"),
        "carries the scheduler's message: {message}"
    );
    assert!(message.contains("gpu 1"), "names the request: {message}");
}

#[tokio::test]
async fn a_run_that_outlives_its_deadline_is_ended() {
    let client = client().await;
    let ns = test_namespace(&client, "deadline").await;
    let spec = json!({"image": "busybox", "deadline": "5s", "retries": 2, "podAnnotations": {kwok::DURATION: "120s"}});
    let api = create(&client, ns.name(), "slow", spec).await;
    let (reason, message) = failed(&api, "slow", Duration::from_secs(40)).await.unwrap();
    assert_eq!(reason, "DeadlineExceeded");
    assert!(message.contains("5s"), "{message}");
    no_pods_left(&client, ns.name(), "slow").await;
}

#[tokio::test]
async fn a_scheduled_run_that_outlives_its_deadline_is_ended() {
    let client = client().await;
    let ns = test_namespace(&client, "deadline-cron").await;
    let spec = json!({"image": "busybox", "schedule": "* * * * *", "deadline": "5s", "retries": 2, "podAnnotations": {kwok::DURATION: "120s"}});
    let api = create(&client, ns.name(), "slow-nightly", spec).await;
    // The first run starts at the next minute; it then has 5 s.
    let (reason, message) = failed(&api, "slow-nightly", Duration::from_secs(100))
        .await
        .unwrap();
    assert_eq!(reason, "DeadlineExceeded");
    assert!(message.contains("5s"), "{message}");
    let dj = api.get("slow-nightly").await.unwrap();
    let run = dj.status.unwrap().last_run.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let job = jobs.get(&run.name).await.unwrap();
    assert!(
        job.owner_references()
            .iter()
            .any(|o| o.kind == "CronJob" && o.name == "slow-nightly"),
        "a run the CronJob made"
    );
}

#[tokio::test]
async fn an_attempt_killed_for_memory_is_reported_as_out_of_memory() {
    let client = client().await;
    let ns = test_namespace(&client, "oom").await;
    let spec = json!({"image": "busybox", "retries": 0, "resources": {"memory": "256Mi"}, "podAnnotations": {kwok::OOM: "true"}});
    let api = create(&client, ns.name(), "hungry", spec).await;
    failed(&api, "hungry", Duration::from_secs(40))
        .await
        .unwrap();
    // The Job controller may fail the Job (RetriesExhausted) a moment before the
    // watchdog records why the attempt died; the status then says OutOfMemory.
    let dj = wait_for_object(
        &api,
        "hungry",
        "the OutOfMemory reason",
        Duration::from_secs(20),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("OutOfMemory"),
    )
    .await
    .unwrap();
    let run = dj.status.unwrap().last_run.unwrap();
    assert_eq!(run.reason.as_deref(), Some("OutOfMemory"));
    let message = run.message.unwrap_or_default();
    assert!(
        message.contains("256Mi") && message.contains("spec.resources.memory"),
        "{message}"
    );
}

#[tokio::test]
async fn leftover_pvcs_are_deleted_and_others_left_alone() {
    let client = client().await;
    let ns = test_namespace(&client, "pvc").await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns.name());
    let claim = |name: &str, labels: serde_json::Value| -> PersistentVolumeClaim {
        common::from_json(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
    };
    let ours = |run: &str| json!({MANAGED_BY: MANAGED_BY_VALUE, NAME: "etl", RUN_ID: run});
    for pvc in [
        claim("orphan", ours("etl-29000000")),
        claim("foreign", json!({"app": "db"})),
        claim("in-use", ours("etl-29000001")),
    ] {
        pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    }
    // A pod that still exists and uses "in-use".
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    // It meets the `restricted` Pod Security profile its namespace enforces.
    let pod: Pod = common::from_json(json!({"metadata": {"name": "user"}, "spec": {
        "containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "v", "mountPath": "/data"}],
                        "securityContext": common::restricted_container_security()}],
        "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "in-use"}}]}}));
    pods.create(&PostParams::default(), &pod).await.unwrap();

    wait_for(
        "orphan PVC deleted",
        GRACE + Duration::from_secs(30),
        || {
            let pvcs = pvcs.clone();
            async move {
                Ok(pvcs
                    .get_opt("orphan")
                    .await?
                    .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
                    .then_some(()))
            }
        },
    )
    .await
    .unwrap();
    // Several more sweeps: the others stay.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for name in ["foreign", "in-use"] {
        let p = pvcs.get(name).await.unwrap();
        assert!(
            p.metadata.deletion_timestamp.is_none(),
            "{name} must be left alone"
        );
    }
}

/// Triggers a run of `name` at `minutes_ago` and waits until the status recorded the
/// trigger and, when `in_history`, the run's end in `recentRuns` (a run older than a
/// full history never enters it). Returns the run id.
async fn trigger_and_wait(
    api: &Api<DataJob>,
    name: &str,
    minutes_ago: i64,
    in_history: bool,
) -> String {
    let at = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    let t = datajob_core::labels::rfc3339(at);
    let id = datajob_core::labels::run_id(name, datajob_core::labels::truncate_to_minute(at));
    let patch = json!({"metadata": {"annotations": {TRIGGER: t}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    // The run's Job is created before the status write that records the trigger.
    wait_for_object(
        api,
        name,
        "triggered run recorded",
        Duration::from_secs(40),
        |d: &DataJob| {
            d.status.as_ref().is_some_and(|s| {
                s.last_trigger.as_deref() == Some(t.as_str())
                    && s.active_runs.is_empty()
                    && (!in_history
                        || s.recent_runs
                            .iter()
                            .any(|r| r.name == id && r.state.is_finished()))
            })
        },
    )
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn a_run_that_fell_out_of_the_history_is_not_run_again() {
    let client = client().await;
    let ns = test_namespace(&client, "rerun").await;
    let api = create(
        &client,
        ns.name(),
        "hourly",
        json!({"image": "busybox", "schedule": "0 * * * *", "history": 1}),
    )
    .await;
    // Ten runs fill status.recentRuns; then one older than all of them.
    for minutes_ago in (1..=10).rev() {
        trigger_and_wait(&api, "hourly", minutes_ago, true).await;
    }
    let old = trigger_and_wait(&api, "hourly", 600, false).await;
    let status = api.get("hourly").await.unwrap().status.unwrap();
    assert_eq!(status.recent_runs.len(), 10);
    assert!(
        status.recent_runs.iter().all(|r| r.name != old),
        "the oldest run is not in the history"
    );
    // Its Job is pruned (history 1) and must not come back while the trigger stays.
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let gone = |jobs: Api<Job>, old: String| async move {
        Ok(jobs
            .get_opt(&old)
            .await?
            .is_none_or(|j| j.metadata.deletion_timestamp.is_some())
            .then_some(()))
    };
    wait_for("the old run's Job pruned", Duration::from_secs(20), || {
        gone(jobs.clone(), old.clone())
    })
    .await
    .unwrap();
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            gone(jobs.clone(), old.clone()).await.unwrap().is_some(),
            "run {old} was created again"
        );
    }
}

#[tokio::test]
async fn finished_runs_beyond_history_are_pruned_and_stay_readable() {
    let client = client().await;
    let ns = test_namespace(&client, "history").await;
    let api = create(
        &client,
        ns.name(),
        "daily",
        json!({"image": "busybox", "history": 1}),
    )
    .await;
    wait_for_object(
        &api,
        "daily",
        "first run done",
        Duration::from_secs(40),
        |d: &DataJob| {
            d.status
                .as_ref()
                .is_some_and(|s| s.state == Some(RunState::Succeeded))
        },
    )
    .await
    .unwrap();
    // Two more runs at earlier logical times, through the trigger annotation.
    for minutes_ago in [120, 60] {
        trigger_and_wait(&api, "daily", minutes_ago, true).await;
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let left = wait_for("history pruned to 1 Job", Duration::from_secs(30), || {
        let jobs = jobs.clone();
        async move {
            let items = jobs.list(&ListParams::default()).await?.items;
            let live: Vec<Job> = items
                .into_iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .collect();
            Ok((live.len() == 1).then_some(live))
        }
    })
    .await
    .unwrap();
    let dj = api.get("daily").await.unwrap();
    let status = dj.status.unwrap();
    assert_eq!(
        status.recent_runs.len(),
        3,
        "all three outcomes stay readable"
    );
    assert!(
        status
            .recent_runs
            .iter()
            .all(|r| r.state == RunState::Succeeded)
    );
    assert_eq!(
        left[0].name_any(),
        status.recent_runs[0].name,
        "the newest run keeps its Job"
    );
}

#[tokio::test]
async fn a_big_scratch_disk_is_a_pvc_that_goes_with_its_pod() {
    let client = client().await;
    let ns = test_namespace(&client, "scratch").await;
    // 500Gi is above the operator's 50Gi node-disk threshold: a generic ephemeral volume.
    // This cluster has no storage provisioner, so the PVC stays unbound and the run ends
    // as Unschedulable after its pending timeout; the PVC must go with the pod.
    let spec = json!({"image": "busybox", "pendingTimeout": "5s", "resources": {"disk": "500Gi"}});
    let api = create(&client, ns.name(), "scratchy", spec).await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns.name());
    let pvc = wait_for("scratch PVC", Duration::from_secs(30), || {
        let pvcs = pvcs.clone();
        async move {
            Ok(pvcs
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .next())
        }
    })
    .await
    .unwrap();
    assert_eq!(pvc.labels().get(NAME).map(String::as_str), Some("scratchy"));
    assert!(
        pvc.owner_references().iter().any(|o| o.kind == "Pod"),
        "owned by its pod"
    );
    let (reason, _) = failed(&api, "scratchy", Duration::from_secs(40))
        .await
        .unwrap();
    assert_eq!(reason, "Unschedulable");
    wait_for(
        "scratch PVC gone with its pod",
        Duration::from_secs(40),
        || {
            let pvcs = pvcs.clone();
            async move {
                let live = pvcs
                    .list(&ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .count();
                Ok((live == 0).then_some(()))
            }
        },
    )
    .await
    .unwrap();
}

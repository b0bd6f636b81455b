//! End-to-end: DataJob runs on the real node (containerd, runc, a real kubelet, images
//! pulled from the local registry), reconciled by the operator of `e2e/with-operator.sh`.
//! Every reason the watchdog gives is proven again with no name conventions: a tag that
//! is not in the registry, a registry that does not answer, a Secret that does not exist,
//! a real cgroup OOM kill, a real sleep past the deadline, a binary missing from the
//! image, retries exhausted. And a root image runs, as a non-root user, with a writable
//! home and scratch, and `kubectl datajob logs` prints what it really printed.

use crate::common;

use std::time::Duration;

use common::plugin::plugin;
use common::realnode::{self, RealNode};
use common::{TestNamespace, client, wait_for, wait_for_object};
use datajob_api::{DataJob, RunState};
use datajob_core::labels::NAME;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Small enough that several runs fit the real node (2 cores here) at once.
fn small(mut spec: Value) -> Value {
    spec["resources"] = json!({"cpu": "100m", "memory": "64Mi"});
    spec
}

async fn on_real_node(prefix: &str) -> Option<(Client, TestNamespace, RealNode, Api<DataJob>)> {
    let client = client().await;
    let (ns, node) = realnode::namespace(&client, prefix).await?;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    Some((client, ns, node, api))
}

async fn create(api: &Api<DataJob>, name: &str, spec: Value) {
    let dj: DataJob = common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": name}, "spec": spec,
    }));
    api.create(&PostParams::default(), &dj)
        .await
        .expect("create DataJob");
}

/// Waits until the DataJob's last run ended with `reason`; returns the run's message.
async fn ends(api: &Api<DataJob>, name: &str, reason: &str, timeout: Duration) -> String {
    let dj = wait_for_object(
        api,
        name,
        &format!("{name} ends {reason}"),
        timeout,
        |d: &DataJob| {
            d.status
                .as_ref()
                .and_then(|s| s.last_run.as_ref())
                .is_some_and(|r| r.state == RunState::Failed && r.reason.as_deref() == Some(reason))
        },
    )
    .await
    .unwrap();
    dj.status
        .and_then(|s| s.last_run)
        .and_then(|r| r.message)
        .unwrap_or_default()
}

async fn pods_of(client: &Client, ns: &str, datajob: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{NAME}={datajob}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_root_image_runs_as_a_non_root_user_with_a_writable_home_and_scratch() {
    let Some((client, ns, node, api)) = on_real_node("rn-root").await else {
        return;
    };
    let script = "echo uid=$(id -u) gid=$(id -g); echo home=$HOME; \
        touch $HOME/x && echo home-writable; touch /scratch/y && echo scratch-writable; \
        echo logical-time=$DATAJOB_LOGICAL_TIME; echo run-id=$DATAJOB_RUN_ID";
    create(
        &api,
        "root-image",
        small(json!({"image": node.image_root, "command": ["sh", "-c", script]})),
    )
    .await;
    let dj = wait_for_object(
        &api,
        "root-image",
        "root image succeeds",
        Duration::from_secs(120),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Succeeded),
    )
    .await
    .unwrap();
    let run = dj.status.unwrap().last_run.unwrap();
    // The real kubelet accepted the run's security context and ran it.
    let pod = pods_of(&client, ns.name(), "root-image").await.remove(0);
    assert_eq!(
        pod.spec.as_ref().unwrap().node_name.as_deref(),
        Some(node.name.as_str())
    );
    let out = plugin(ns.name(), &["logs", "root-image"]).await;
    assert_eq!(out.code, 0, "{out}");
    for line in [
        "uid=65532 gid=65532",
        "home=/home/datajob",
        "home-writable",
        "scratch-writable",
        &format!("logical-time={}", run.logical_time),
        &format!("run-id={}", run.name),
    ] {
        assert!(out.stdout.contains(line), "logs lack {line:?}: {out}");
    }
}

#[tokio::test]
async fn a_tag_missing_from_the_registry_and_a_registry_that_does_not_answer_end_image_not_found() {
    let Some((_client, _ns, node, api)) = on_real_node("rn-pull").await else {
        return;
    };
    let missing = format!("{}/datajob/busybox-nonroot:no-such-tag", node.registry);
    create(
        &api,
        "missing-tag",
        small(json!({"image": missing, "command": ["true"]})),
    )
    .await;
    let closed = format!(
        "127.0.0.1:{}/datajob/busybox-nonroot:1",
        realnode::closed_port()
    );
    create(
        &api,
        "no-registry",
        small(json!({"image": closed, "command": ["true"]})),
    )
    .await;
    let m = ends(
        &api,
        "missing-tag",
        "ImageNotFound",
        Duration::from_secs(120),
    )
    .await;
    assert!(m.contains(&missing) && m.contains("not found"), "{m}");
    let m = ends(
        &api,
        "no-registry",
        "ImageNotFound",
        Duration::from_secs(120),
    )
    .await;
    assert!(
        m.contains(&closed) && m.contains("connection refused"),
        "{m}"
    );
}

#[tokio::test]
async fn a_secret_that_does_not_exist_ends_missing_config() {
    let Some((_client, _ns, node, api)) = on_real_node("rn-secret").await else {
        return;
    };
    let spec = small(json!({
        "image": node.image_nonroot, "command": ["sh", "-c", "echo $TOKEN"],
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api-token", "key": "token"}}}],
    }));
    create(&api, "no-secret", spec).await;
    let m = ends(&api, "no-secret", "MissingConfig", Duration::from_secs(120)).await;
    assert!(m.contains("secret \"api-token\" not found"), "{m}");
}

#[tokio::test]
async fn a_secret_created_within_the_grace_lets_the_run_go_on() {
    let Some((client, ns, node, api)) = on_real_node("rn-secret-late").await else {
        return;
    };
    let spec = small(json!({
        "image": node.image_nonroot, "command": ["sh", "-c", "echo token=$TOKEN"],
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "token"}}}],
    }));
    create(&api, "late-secret", spec).await;
    // The real kubelet reports the missing Secret ...
    wait_for(
        "CreateContainerConfigError",
        Duration::from_secs(60),
        || async {
            let pods = pods_of(&client, ns.name(), "late-secret").await;
            Ok(pods
                .iter()
                .any(|p| {
                    common::waiting_reason(p)
                        .is_some_and(|(r, _)| r == "CreateContainerConfigError")
                })
                .then_some(()))
        },
    )
    .await
    .unwrap();
    // ... and the Secret arrives before the grace (--config-grace) runs out.
    let s: Secret =
        common::from_json(json!({"metadata": {"name": "late"}, "stringData": {"token": "t0k3n"}}));
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
    wait_for_object(
        &api,
        "late-secret",
        "the run goes on",
        Duration::from_secs(120),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Succeeded),
    )
    .await
    .unwrap();
    let out = plugin(ns.name(), &["logs", "late-secret"]).await;
    assert!(out.stdout.contains("token=t0k3n"), "{out}");
}

#[tokio::test]
async fn a_real_oom_kill_ends_out_of_memory() {
    let Some((_client, _ns, node, api)) = on_real_node("rn-oom").await else {
        return;
    };
    // `tail` keeps the whole 256 MiB line in memory: far over the 64 MiB limit.
    create(
        &api,
        "oom",
        small(json!({"image": node.image_nonroot, "command": ["sh", "-c", "head -c 256m /dev/zero | tail"], "retries": 0})),
    )
    .await;
    let m = ends(&api, "oom", "OutOfMemory", Duration::from_secs(120)).await;
    assert!(m.contains("ran out of memory (64Mi)"), "{m}");
}

#[tokio::test]
async fn a_real_sleep_past_the_deadline_is_ended_and_its_container_stops() {
    let Some((client, ns, node, api)) = on_real_node("rn-deadline").await else {
        return;
    };
    create(
        &api,
        "sleepy",
        small(json!({"image": node.image_nonroot, "command": ["sleep", "600"], "deadline": "10s"})),
    )
    .await;
    let m = ends(&api, "sleepy", "DeadlineExceeded", Duration::from_secs(120)).await;
    assert!(m.contains("deadline of 10s"), "{m}");
    // The container really stopped: no pod of the run is running any more.
    wait_for(
        "the run's container stops",
        Duration::from_secs(60),
        || async {
            let pods = pods_of(&client, ns.name(), "sleepy").await;
            Ok(pods
                .iter()
                .all(|p| common::pod_phase(p) != "Running")
                .then_some(()))
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_binary_missing_from_the_image_is_command_not_runnable_and_retried_never() {
    let Some((client, ns, node, api)) = on_real_node("rn-command").await else {
        return;
    };
    // Exec form: the runtime cannot start it (StartError, exit code 128).
    create(
        &api,
        "no-binary",
        small(json!({"image": node.image_nonroot, "command": ["/no/such/binary"], "retries": 3})),
    )
    .await;
    // Through a shell: the shell's "not found", exit code 127.
    create(
        &api,
        "no-command",
        small(json!({"image": node.image_nonroot, "command": ["sh", "-c", "no-such-command"], "retries": 3})),
    )
    .await;
    let m = ends(
        &api,
        "no-binary",
        "CommandNotRunnable",
        Duration::from_secs(120),
    )
    .await;
    assert!(
        m.contains("/no/such/binary") && m.contains("no such file or directory"),
        "{m}"
    );
    let m = ends(
        &api,
        "no-command",
        "CommandNotRunnable",
        Duration::from_secs(120),
    )
    .await;
    assert!(m.contains("127"), "{m}");
    // Each ran once: the Job counts one failed pod (its pods may be gone already).
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    for name in ["no-binary", "no-command"] {
        let list = jobs
            .list(&ListParams::default().labels(&format!("{NAME}={name}")))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 1, "{name}: one run");
        let status = list.items[0].status.clone().unwrap_or_default();
        let failed = status.failed.unwrap_or(0)
            + status
                .uncounted_terminated_pods
                .and_then(|u| u.failed)
                .map_or(0, |f| f.len() as i32);
        assert!(
            failed <= 1,
            "{name}: retrying cannot fix it, so it ran once: {failed} failed pods"
        );
    }
}

#[tokio::test]
async fn a_failing_command_is_retried_then_ends_retries_exhausted() {
    let Some((client, ns, node, api)) = on_real_node("rn-retries").await else {
        return;
    };
    create(
        &api,
        "flaky",
        small(json!({"image": node.image_nonroot, "command": ["sh", "-c", "echo trying; exit 3"], "retries": 1})),
    )
    .await;
    let m = ends(&api, "flaky", "RetriesExhausted", Duration::from_secs(180)).await;
    assert!(m.contains("failed 2 time(s)"), "{m}");
    let attempts: Vec<String> = pods_of(&client, ns.name(), "flaky")
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(attempts.len(), 2, "one try and one retry: {attempts:?}");
}

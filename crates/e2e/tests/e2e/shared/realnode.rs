//! End-to-end tests of the real node of the harness: real containers (containerd +
//! runc) on `real-0`, images pulled for real from the local registry. They prove that
//! what the kwok stages simulate (pull failures, config errors, OOM, exit codes) is what
//! a kubelet really reports. No operator needed. Run with
//!   bash e2e/run-e2e.sh cargo test -p datajob-e2e --features e2e --test e2e -- shared::realnode:: --test-threads=2
//! Every test skips (with a SKIPPED line) when `e2e/cluster.sh up` ran without the real
//! node; `DATAJOB_E2E_REQUIRE_REAL_NODE=1` makes that a failure.

use crate::common;

use std::time::Duration;

use common::realnode::{self, closed_port, logs, pod};
use common::{
    client, container_status, events_for, from_json, pod_condition, pod_phase, terminated,
    test_namespace, wait_for_object, waiting_reason,
};
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;

/// Pulls come from 127.0.0.1 and the images are 1 MiB, but the machine may be busy.
const START: Duration = Duration::from_secs(90);

fn node_name(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

fn finished(p: &Pod) -> bool {
    matches!(pod_phase(p), "Succeeded" | "Failed")
}

/// Waiting reason of the first container, if it is one of `reasons`.
fn waiting_in(p: &Pod, reasons: &[&str]) -> bool {
    waiting_reason(p).is_some_and(|(r, _)| reasons.contains(&r.as_str()))
}

#[tokio::test]
async fn nonroot_image_from_the_local_registry_runs_on_the_real_node_and_logs_are_served() {
    let client = client().await;
    let Some((ns, node)) = realnode::namespace(&client, "rn-hello").await else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    // no node selector, no toleration: the namespace's annotations send it to real-0
    let p = pod(
        "hello",
        &node.image_nonroot,
        &[
            "sh",
            "-c",
            "echo \"hello from $(hostname) uid=$(id -u) home=$HOME\"",
        ],
    );
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = wait_for_object(&pods, "hello", "pod hello finished", START, finished)
        .await
        .unwrap();
    assert_eq!(pod_phase(&p), "Succeeded", "status: {:?}", p.status);
    assert_eq!(node_name(&p).as_deref(), Some(node.name.as_str()));
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(
        spec.node_selector
            .as_ref()
            .and_then(|s| s.get(realnode::LABEL))
            .map(String::as_str),
        Some("true"),
        "PodNodeSelector merged the namespace's selector"
    );
    assert!(
        spec.tolerations
            .iter()
            .flatten()
            .any(|t| t.key.as_deref() == Some(realnode::LABEL)),
        "PodTolerationRestriction added the namespace's toleration"
    );
    assert_eq!(terminated(&p), Some((0, "Completed".to_string())));
    let cs = container_status(&p, None).unwrap();
    assert!(
        cs.container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("containerd://")),
        "{cs:?}"
    );
    assert!(
        cs.image_id.contains(&node.registry) && cs.image_id.contains("@sha256:"),
        "the image was resolved in the local registry: {}",
        cs.image_id
    );
    // a pod IP from the real node's bridge subnet (10.245.x.0/24), not kwok's 10.244/16
    let ip = p
        .status
        .as_ref()
        .unwrap()
        .pod_ip
        .clone()
        .unwrap_or_default();
    let subnet_prefix = node.pod_subnet.trim_end_matches("0/24");
    assert!(
        ip.starts_with(subnet_prefix),
        "pod IP {ip} in {}",
        node.pod_subnet
    );

    // the kubelet really pulled it (event from the kubelet, not from kwok)
    let evs = events_for(&client, ns.name(), "hello").await.unwrap();
    assert!(
        evs.iter().any(|e| e.reason.as_deref() == Some("Pulled")
            && e.message
                .as_deref()
                .unwrap_or("")
                .contains(&node.image_nonroot)),
        "a Pulled event for the image: {:?}",
        evs.iter()
            .map(|e| (&e.reason, &e.message))
            .collect::<Vec<_>>()
    );
    // the apiserver -> kubelet logs path
    let log = logs(&pods, "hello").await.unwrap();
    assert_eq!(
        log.trim(),
        "hello from hello uid=65532 home=/tmp",
        "log: {log:?}"
    );
}

#[tokio::test]
async fn the_real_node_is_labelled_and_tainted_so_other_pods_stay_away() {
    let client = client().await;
    let Some(node) = realnode::real_node() else {
        return;
    };
    let n = Api::<Node>::all(client.clone())
        .get(&node.name)
        .await
        .unwrap();
    let labels = n.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(realnode::LABEL).map(String::as_str),
        Some("true")
    );
    let taints = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    assert!(
        taints.iter().any(|t| t.key == realnode::LABEL
            && t.value.as_deref() == Some("true")
            && t.effect == "NoSchedule"),
        "taints: {taints:?}"
    );
    // a pod of an ordinary namespace that selects the node but does not tolerate it
    let ns = test_namespace(&client, "rn-taint").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let mut p = pod("intruder", &node.image_nonroot, &["true"]);
    p.spec.as_mut().unwrap().node_selector =
        Some([(realnode::LABEL.to_string(), "true".to_string())].into());
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = wait_for_object(
        &pods,
        "intruder",
        "PodScheduled=False",
        Duration::from_secs(30),
        |p| matches!(pod_condition(p, "PodScheduled"), Some((s, _, _)) if s == "False"),
    )
    .await
    .unwrap();
    let (_, reason, msg) = pod_condition(&p, "PodScheduled").unwrap();
    assert_eq!(reason.as_deref(), Some("Unschedulable"));
    let msg = msg.unwrap_or_default();
    // e.g. 0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s)
    // didn't match Pod's node affinity/selector. ...
    assert!(
        msg.contains("1 node(s) had untolerated taint"),
        "scheduler message: {msg}"
    );
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oomkilled_with_137() {
    let client = client().await;
    let Some((ns, node)) = realnode::namespace(&client, "rn-oom").await else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    // `tail` keeps the last line in memory: 64 MiB of zeros without a newline
    let mut p = pod(
        "hog",
        &node.image_nonroot,
        &["sh", "-c", "head -c 64m /dev/zero | tail"],
    );
    p.spec.as_mut().unwrap().containers[0].resources = Some(from_json(json!({
        "requests": { "cpu": "10m", "memory": "20Mi" },
        "limits": { "memory": "20Mi" },
    })));
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = wait_for_object(&pods, "hog", "pod hog finished", START, finished)
        .await
        .unwrap();
    assert_eq!(pod_phase(&p), "Failed");
    assert_eq!(
        terminated(&p),
        Some((137, "OOMKilled".to_string())),
        "{:?}",
        p.status
    );
}

/// Wait for ErrImagePull and return its message (ImagePullBackOff may be seen first
/// when the poll misses the short ErrImagePull window; the kubelet goes back to
/// ErrImagePull on its next try).
async fn err_image_pull_message(pods: &Api<Pod>, name: &str) -> String {
    let p = wait_for_object(pods, name, "ErrImagePull", START, |p| {
        waiting_in(p, &["ErrImagePull"])
    })
    .await
    .unwrap();
    assert_eq!(pod_phase(&p), "Pending");
    waiting_reason(&p).unwrap().1
}

#[tokio::test]
async fn a_tag_missing_from_the_registry_gives_err_image_pull_then_image_pull_backoff() {
    let client = client().await;
    let Some((ns, node)) = realnode::namespace(&client, "rn-notag").await else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let repo = node.image_nonroot.rsplit_once(':').unwrap().0;
    let image = format!("{repo}:does-not-exist");
    pods.create(&PostParams::default(), &pod("notag", &image, &["true"]))
        .await
        .unwrap();
    let msg = err_image_pull_message(&pods, "notag").await;
    // containerd's own words, e.g. rpc error: code = NotFound desc = failed to pull and
    // unpack image "127.0.0.1:5000/datajob/busybox-nonroot:does-not-exist": failed to
    // resolve reference "...": 127.0.0.1:5000/...:does-not-exist: not found
    assert!(msg.contains("code = NotFound"), "message: {msg}");
    assert!(
        msg.contains(&image) && msg.contains("not found"),
        "message: {msg}"
    );
    let p = wait_for_object(&pods, "notag", "ImagePullBackOff", START, |p| {
        waiting_in(p, &["ImagePullBackOff"])
    })
    .await
    .unwrap();
    let (_, backoff) = waiting_reason(&p).unwrap();
    assert!(
        backoff.starts_with(&format!("Back-off pulling image \"{image}\"")),
        "message: {backoff}"
    );
    assert_eq!(container_status(&p, None).unwrap().started, Some(false));
}

#[tokio::test]
async fn a_registry_that_does_not_answer_gives_err_image_pull() {
    let client = client().await;
    let Some((ns, _node)) = realnode::namespace(&client, "rn-noreg").await else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let image = format!("127.0.0.1:{}/datajob/busybox-nonroot:1", closed_port());
    pods.create(&PostParams::default(), &pod("noreg", &image, &["true"]))
        .await
        .unwrap();
    let msg = err_image_pull_message(&pods, "noreg").await;
    assert!(msg.contains(&image), "message: {msg}");
    assert!(msg.contains("connection refused"), "message: {msg}");
}

#[tokio::test]
async fn a_missing_secret_gives_create_container_config_error_until_it_is_created() {
    let client = client().await;
    let Some((ns, node)) = realnode::namespace(&client, "rn-secret").await else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let mut p = pod(
        "needs-secret",
        &node.image_nonroot,
        &["sh", "-c", "echo \"password=$PASSWORD\""],
    );
    p.spec.as_mut().unwrap().containers[0].env = Some(from_json(json!([{
        "name": "PASSWORD",
        "valueFrom": { "secretKeyRef": { "name": "db-credentials", "key": "password" } },
    }])));
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = wait_for_object(
        &pods,
        "needs-secret",
        "CreateContainerConfigError",
        START,
        |p| waiting_in(p, &["CreateContainerConfigError"]),
    )
    .await
    .unwrap();
    assert_eq!(
        waiting_reason(&p).unwrap().1,
        "secret \"db-credentials\" not found"
    );
    assert_eq!(pod_phase(&p), "Pending");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns.name());
    let s: Secret = from_json(json!({
        "metadata": { "name": "db-credentials" },
        "stringData": { "password": "s3cret" },
    }));
    secrets.create(&PostParams::default(), &s).await.unwrap();
    // the kubelet retries the pod with a back-off (10 s, then longer)
    let p = wait_for_object(
        &pods,
        "needs-secret",
        "pod needs-secret finished",
        START,
        finished,
    )
    .await
    .unwrap();
    assert_eq!(pod_phase(&p), "Succeeded", "{:?}", p.status);
    assert_eq!(
        logs(&pods, "needs-secret").await.unwrap().trim(),
        "password=s3cret"
    );
}

#[tokio::test]
async fn run_as_non_root_with_a_root_image_is_refused() {
    let client = client().await;
    let Some((ns, node)) = realnode::namespace(&client, "rn-nonroot").await else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let p = pod("rootimg", &node.image_root, &["id", "-u"]);
    // The pod builder's restricted security context says runAsNonRoot already.
    assert_eq!(
        p.spec.as_ref().unwrap().containers[0]
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_non_root),
        Some(true)
    );
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = wait_for_object(&pods, "rootimg", "CreateContainerConfigError", START, |p| {
        waiting_in(p, &["CreateContainerConfigError"])
    })
    .await
    .unwrap();
    let (_, msg) = waiting_reason(&p).unwrap();
    // the kubelet's words: ... (pod: "rootimg_<ns>(<uid>)", container: main)
    assert!(
        msg.starts_with("container has runAsNonRoot and image will run as root")
            && msg.contains("container: main"),
        "message: {msg}"
    );
    assert_eq!(pod_phase(&p), "Pending");
}

#[tokio::test]
async fn run_as_user_65532_with_a_root_image_runs() {
    let client = client().await;
    let Some((ns, node)) = realnode::namespace(&client, "rn-runasuser").await else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let mut p = pod(
        "asuser",
        &node.image_root,
        &["sh", "-c", "echo uid=$(id -u) gid=$(id -g)"],
    );
    let mut security = realnode::restricted_container_security();
    security["runAsUser"] = json!(65532);
    p.spec.as_mut().unwrap().containers[0].security_context = Some(from_json(security));
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = wait_for_object(&pods, "asuser", "pod asuser finished", START, finished)
        .await
        .unwrap();
    assert_eq!(pod_phase(&p), "Succeeded", "{:?}", p.status);
    // no runAsGroup: containerd takes the primary group of uid 65532 from the image's
    // /etc/passwd (nonroot:x:65532:65532)
    assert_eq!(
        logs(&pods, "asuser").await.unwrap().trim(),
        "uid=65532 gid=65532"
    );
}

#[tokio::test]
async fn a_binary_missing_from_the_image_is_a_start_error_and_127_from_a_shell() {
    let client = client().await;
    let Some((ns, node)) = realnode::namespace(&client, "rn-nobin").await else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    // exec form: runc cannot start the process
    pods.create(
        &PostParams::default(),
        &pod("direct", &node.image_nonroot, &["/no/such/binary"]),
    )
    .await
    .unwrap();
    // through a shell: the shell's "not found", exit code 127
    pods.create(
        &PostParams::default(),
        &pod(
            "shell",
            &node.image_nonroot,
            &["sh", "-c", "no-such-binary"],
        ),
    )
    .await
    .unwrap();
    let direct = wait_for_object(&pods, "direct", "pod direct finished", START, finished)
        .await
        .unwrap();
    assert_eq!(pod_phase(&direct), "Failed");
    let t = container_status(&direct, None)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .unwrap_or_else(|| panic!("terminated state: {:?}", direct.status));
    assert_eq!(
        (t.exit_code, t.reason.as_deref()),
        (128, Some("StartError")),
        "{t:?}"
    );
    let msg = t.message.unwrap_or_default();
    assert!(
        msg.contains("/no/such/binary") && msg.contains("no such file or directory"),
        "message: {msg}"
    );
    let shell = wait_for_object(&pods, "shell", "pod shell finished", START, finished)
        .await
        .unwrap();
    assert_eq!(terminated(&shell), Some((127, "Error".to_string())));
    let log = logs(&pods, "shell").await.unwrap();
    assert!(log.contains("no-such-binary: not found"), "log: {log:?}");
}

#[tokio::test]
async fn an_empty_dir_is_writable_by_uid_65532_with_fs_group() {
    let client = client().await;
    let Some((ns, node)) = realnode::namespace(&client, "rn-emptydir").await else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let mut p = pod(
        "scratch",
        &node.image_nonroot,
        &[
            "sh",
            "-c",
            "echo data > /scratch/out && stat -c '%u:%g' /scratch/out && stat -c '%g %a' /scratch",
        ],
    );
    let spec = p.spec.as_mut().unwrap();
    spec.security_context = Some(from_json(json!({
        "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532, "runAsNonRoot": true,
    })));
    spec.volumes = Some(from_json(json!([{ "name": "scratch", "emptyDir": {} }])));
    spec.containers[0].volume_mounts = Some(from_json(
        json!([{ "name": "scratch", "mountPath": "/scratch" }]),
    ));
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = wait_for_object(&pods, "scratch", "pod scratch finished", START, finished)
        .await
        .unwrap();
    let log = logs(&pods, "scratch").await.unwrap();
    assert_eq!(
        pod_phase(&p),
        "Succeeded",
        "log: {log:?}; status: {:?}",
        p.status
    );
    // the file belongs to the user; the directory to the fsGroup, setgid (2777)
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["65532:65532", "65532 2777"],
        "log: {log:?}"
    );
}

//! End-to-end tests of the harness itself: they prove that the local control
//! plane (e2e/cluster.sh) behaves like a real cluster with kubelets as far as
//! the DataJob operator cares. Run with
//!   KUBECONFIG=$HOME/.cache/datajob/cluster/kubeconfig cargo test -p datajob-e2e --features e2e --test e2e -- shared::harness::
//! or simply `bash e2e/run-e2e.sh`.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    client, container_status, from_json, job_has_condition, kwok, pod_condition, pod_phase,
    terminated, unique_name, wait_for, wait_for_object, waiting_reason,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

/// This suite checks the harness itself (kwok's fake kubelet, the scheduler, the Job and
/// CronJob controllers) with bare pods, Jobs and CronJobs as anyone writes them, not
/// DataJob's pods: its namespaces do not enforce the `restricted` Pod Security profile
/// that every other suite's namespaces enforce.
async fn harness_namespace(client: &kube::Client, prefix: &str) -> common::TestNamespace {
    common::unrestricted_namespace(
        client,
        prefix,
        "the harness is checked with bare pods, not DataJob's",
    )
    .await
}

fn pod(name: &str, image: &str, restart_policy: &str, annotations: serde_json::Value) -> Pod {
    from_json(json!({
        "metadata": { "name": name, "annotations": annotations },
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [{
                "name": "main",
                "image": image,
                "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } },
            }],
        },
    }))
}

#[tokio::test]
async fn job_pod_is_scheduled_on_a_kwok_node_and_the_job_succeeds() {
    let client = client().await;
    let ns = harness_namespace(&client, "e2e-job").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let job: Job = from_json(json!({
        "metadata": { "name": "hello" },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "annotations": { kwok::DURATION: "2s" } },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "main", "image": "busybox:1.36",
                                     "resources": { "requests": { "cpu": "500m", "memory": "256Mi" } } }],
                },
            },
        },
    }));
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait_for_object(
        &jobs,
        "hello",
        "job hello Complete",
        Duration::from_secs(60),
        |j| job_has_condition(j, "Complete"),
    )
    .await
    .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let list = pods
        .list(&ListParams::default().labels("job-name=hello"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1, "exactly one pod for the job");
    let p = &list.items[0];
    assert_eq!(pod_phase(p), "Succeeded");
    assert_eq!(terminated(p), Some((0, "Completed".to_string())));
    let node_name = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .expect("pod is bound");
    let node = Api::<Node>::all(client.clone())
        .get(&node_name)
        .await
        .unwrap();
    let labels = node.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.get(kwok::NODE_LABEL_KEY).map(String::as_str),
        Some(kwok::NODE_LABEL_VALUE)
    );
    // the container "ran" for about the requested duration
    let t = container_status(p, None)
        .unwrap()
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    let ran = t.finished_at.as_ref().unwrap().0.as_second()
        - t.started_at.as_ref().unwrap().0.as_second();
    assert!(
        (1..=10).contains(&ran),
        "container ran {ran}s, expected about 2s"
    );
}

#[tokio::test]
async fn pod_larger_than_any_node_is_unschedulable() {
    let client = client().await;
    let ns = harness_namespace(&client, "e2e-unsched").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let mut p = pod("huge", "busybox:1.36", "Never", json!({}));
    p.spec.as_mut().unwrap().containers[0].resources = Some(from_json(json!({
        "requests": { "cpu": "1000", "memory": "1Gi" }
    })));
    pods.create(&PostParams::default(), &p).await.unwrap();
    let p = wait_for_object(&pods, "huge", "PodScheduled=False/Unschedulable", Duration::from_secs(30), |p| {
        matches!(pod_condition(p, "PodScheduled"), Some((s, Some(r), _)) if s == "False" && r == "Unschedulable")
    })
    .await
    .unwrap();
    let (_, _, msg) = pod_condition(&p, "PodScheduled").unwrap();
    assert!(
        msg.unwrap_or_default().contains("Insufficient cpu"),
        "scheduler explains why"
    );
    assert_eq!(pod_phase(&p), "Pending");
    assert!(p.spec.unwrap().node_name.is_none());
}

#[tokio::test]
async fn image_that_does_not_exist_shows_err_image_pull_then_image_pull_backoff() {
    let client = client().await;
    let ns = harness_namespace(&client, "e2e-image").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let image = "registry.example.com/team/does-not-exist:1.0";
    pods.create(
        &PostParams::default(),
        &pod("badimage", image, "Never", json!({})),
    )
    .await
    .unwrap();

    // record every waiting reason seen until ImagePullBackOff
    let seen = std::cell::RefCell::new(BTreeSet::new());
    let seen_ref = &seen;
    let p = wait_for("ImagePullBackOff", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            let p = pods.get("badimage").await?;
            if let Some((reason, msg)) = waiting_reason(&p) {
                if reason == "ErrImagePull" {
                    assert!(
                        msg.contains("rpc error: code = NotFound"),
                        "ErrImagePull message: {msg}"
                    );
                    assert!(
                        msg.contains(image),
                        "ErrImagePull message names the image: {msg}"
                    );
                }
                let done = reason == "ImagePullBackOff";
                seen_ref.borrow_mut().insert(reason);
                if done {
                    return Ok(Some(p));
                }
            }
            Ok(None)
        }
    })
    .await
    .unwrap();
    let seen = seen.into_inner();
    assert!(
        seen.contains("ErrImagePull"),
        "ErrImagePull comes first, saw {seen:?}"
    );
    let (_, msg) = waiting_reason(&p).unwrap();
    assert!(
        msg.starts_with(&format!("Back-off pulling image \"{image}\"")),
        "message: {msg}"
    );
    assert_eq!(pod_phase(&p), "Pending");
    // it never starts
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = pods.get("badimage").await.unwrap();
    assert_eq!(
        waiting_reason(&p).map(|w| w.0).as_deref(),
        Some("ImagePullBackOff")
    );
    assert_eq!(pod_phase(&p), "Pending");
    assert_eq!(container_status(&p, None).unwrap().started, Some(false));
}

#[tokio::test]
async fn pod_referencing_a_missing_secret_or_configmap_shows_create_container_config_error() {
    let client = client().await;
    let ns = harness_namespace(&client, "e2e-config").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());

    let mut with_secret = pod("needs-secret", "busybox:1.36", "Never", json!({}));
    with_secret.spec.as_mut().unwrap().containers[0].env = Some(from_json(json!([
        { "name": "PLAIN", "value": "x" },
        { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "missing-db-credentials", "key": "password" } } },
    ])));
    let mut with_cm = pod("needs-configmap", "busybox:1.36", "Never", json!({}));
    with_cm.spec.as_mut().unwrap().containers[0].env_from = Some(from_json(json!([
        { "configMapRef": { "name": "missing-settings" } },
    ])));
    // optional references are not an error, as with a kubelet
    let mut optional = pod(
        "optional-ref",
        "busybox:1.36",
        "Never",
        json!({ kwok::DURATION: "60s" }),
    );
    optional.spec.as_mut().unwrap().containers[0].env_from = Some(from_json(json!([
        { "secretRef": { "name": "missing-but-optional", "optional": true } },
    ])));
    for p in [&with_secret, &with_cm, &optional] {
        pods.create(&PostParams::default(), p).await.unwrap();
    }

    for (name, want) in [
        (
            "needs-secret",
            "secret \"missing-db-credentials\" not found",
        ),
        (
            "needs-configmap",
            "configmap \"missing-settings\" not found",
        ),
    ] {
        let p = wait_for_object(
            &pods,
            name,
            "CreateContainerConfigError",
            Duration::from_secs(30),
            |p| waiting_reason(p).is_some_and(|(r, _)| r == "CreateContainerConfigError"),
        )
        .await
        .unwrap();
        assert_eq!(waiting_reason(&p).unwrap().1, want);
        assert_eq!(pod_phase(&p), "Pending");
    }
    wait_for_object(
        &pods,
        "optional-ref",
        "optional ref Running",
        Duration::from_secs(30),
        |p| pod_phase(p) == "Running",
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn exit_code_and_oom_annotations_fail_the_pod() {
    let client = client().await;
    let ns = harness_namespace(&client, "e2e-exit").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    pods.create(
        &PostParams::default(),
        &pod(
            "exit3",
            "busybox:1.36",
            "Never",
            json!({ kwok::EXIT_CODE: "3", kwok::DURATION: "1s" }),
        ),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("oom", "busybox:1.36", "Never", json!({ kwok::OOM: "true" })),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("ok", "busybox:1.36", "Never", json!({})),
    )
    .await
    .unwrap();

    for (name, phase, want) in [
        ("exit3", "Failed", (3, "Error")),
        ("oom", "Failed", (137, "OOMKilled")),
        ("ok", "Succeeded", (0, "Completed")),
    ] {
        let p = wait_for_object(&pods, name, "pod finished", Duration::from_secs(30), |p| {
            matches!(pod_phase(p), "Succeeded" | "Failed")
        })
        .await
        .unwrap();
        assert_eq!(pod_phase(&p), phase, "phase of {name}");
        assert_eq!(
            terminated(&p),
            Some((want.0, want.1.to_string())),
            "terminated state of {name}"
        );
    }

    // the same annotations work as pod-template annotations of a Job
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let job: Job = from_json(json!({
        "metadata": { "name": "failing" },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "annotations": { kwok::EXIT_CODE: "42" } },
                "spec": { "restartPolicy": "Never",
                          "containers": [{ "name": "main", "image": "busybox:1.36" }] },
            },
        },
    }));
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait_for_object(
        &jobs,
        "failing",
        "job failing Failed",
        Duration::from_secs(60),
        |j| job_has_condition(j, "Failed"),
    )
    .await
    .unwrap();
    let list = pods
        .list(&ListParams::default().labels("job-name=failing"))
        .await
        .unwrap();
    assert!(
        list.items
            .iter()
            .any(|p| terminated(p) == Some((42, "Error".to_string()))),
        "a job pod terminated with exit code 42"
    );
}

#[tokio::test]
async fn on_failure_pod_restarts_through_crash_loop_back_off() {
    let client = client().await;
    let ns = harness_namespace(&client, "e2e-restart").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let annotations =
        json!({ kwok::EXIT_CODE: "2", kwok::DURATION: "1s", kwok::RESTART_DELAY: "1s" });
    pods.create(
        &PostParams::default(),
        &pod("crashy", "busybox:1.36", "OnFailure", annotations),
    )
    .await
    .unwrap();
    let p = wait_for_object(
        &pods,
        "crashy",
        "restartCount >= 2",
        Duration::from_secs(30),
        |p| container_status(p, None).is_some_and(|c| c.restart_count >= 2),
    )
    .await
    .unwrap();
    assert_eq!(
        pod_phase(&p),
        "Running",
        "OnFailure pods stay Running while restarting"
    );
    let last = container_status(&p, None)
        .unwrap()
        .last_state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
}

#[tokio::test]
async fn cronjob_every_minute_creates_a_job() {
    let client = client().await;
    let ns = harness_namespace(&client, "e2e-cron").await;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns.name());
    let cj: CronJob = from_json(json!({
        "metadata": { "name": "tick" },
        "spec": {
            "schedule": "* * * * *",
            "jobTemplate": { "spec": { "template": {
                "metadata": { "annotations": { kwok::DURATION: "1s" } },
                "spec": { "restartPolicy": "Never",
                          "containers": [{ "name": "main", "image": "busybox:1.36" }] },
            } } },
        },
    }));
    cronjobs.create(&PostParams::default(), &cj).await.unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns.name());
    let job = wait_for(
        "a Job created by CronJob tick",
        Duration::from_secs(75),
        || {
            let jobs = jobs.clone();
            async move {
                let list = jobs.list(&ListParams::default()).await?;
                Ok(list.items.into_iter().find(|j| {
                    j.metadata
                        .owner_references
                        .as_ref()
                        .is_some_and(|o| o.iter().any(|o| o.kind == "CronJob" && o.name == "tick"))
                }))
            }
        },
    )
    .await
    .unwrap();
    let name = job.metadata.name.unwrap();
    wait_for_object(
        &jobs,
        &name,
        "cron job Complete",
        Duration::from_secs(30),
        |j| job_has_condition(j, "Complete"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_node_created_with_the_kwok_annotation_becomes_ready() {
    let client = client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let name = unique_name("kwok-e2e");
    let node: Node = from_json(json!({
        "metadata": {
            "name": name,
            "annotations": { kwok::NODE_ANNOTATION: "fake" },
            "labels": { kwok::NODE_LABEL_KEY: kwok::NODE_LABEL_VALUE, "kubernetes.io/hostname": name },
        },
        // Tainted so that the other tests' pods, running meanwhile, never land on it.
        "spec": { "taints": [{ "key": "e2e.datajob.dev/short-lived", "effect": "NoSchedule" }] },
        "status": {
            "capacity": { "cpu": "2", "memory": "4Gi", "pods": "110" },
            "allocatable": { "cpu": "2", "memory": "4Gi", "pods": "110" },
        },
    }));
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let res = wait_for_object(&nodes, &name, "node Ready", Duration::from_secs(30), |n| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
    nodes.delete(&name, &DeleteParams::default()).await.unwrap();
    let n = res.unwrap();
    let alloc = n.status.unwrap().allocatable.unwrap();
    assert_eq!(alloc.get("cpu").map(|q| q.0.as_str()), Some("2"));
}

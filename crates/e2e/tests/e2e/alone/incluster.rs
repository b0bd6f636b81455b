//! End-to-end: the operator's image, as `make image` built it (no container daemon), runs
//! under containerd and runc, and the Helm chart's own Deployment runs it on the real node
//! from the local registry: it leads, reconciles a DataJob, and its webhook (with the
//! certificate it made) refuses a bad one; `helm uninstall` leaves nothing of it.
//! `make e2e` runs this suite on its own (phase 2), after `make image`.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::realnode;
use common::{client, wait_for, wait_for_object};
use datajob_api::{DataJob, RunState};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn image_archive() -> PathBuf {
    let p = PathBuf::from(ROOT).join("target/image/datajob-operator.tar");
    assert!(
        p.exists(),
        "{} is missing: `make image` builds it (make test does)",
        p.display()
    );
    p
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn tools() -> String {
    let (ok, out) = run("bash", &[&format!("{ROOT}/e2e/tools.sh")]);
    assert!(ok, "e2e/tools.sh: {out}");
    out.lines().last().unwrap_or_default().trim().to_string()
}

/// The image's config, read from the OCI layout in the archive.
fn image_config(archive: &std::path::Path) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = run(
        "tar",
        &[
            "-xf",
            archive.to_str().unwrap(),
            "-C",
            dir.path().to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap()
    };
    let blob = |digest: &str| {
        dir.path()
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index = read(dir.path().join("index.json"));
    let manifest = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    read(blob(manifest["config"]["digest"].as_str().unwrap()))
}

#[tokio::test]
async fn the_image_runs_under_containerd_and_runc() {
    let Some(node) = realnode::real_node() else {
        return;
    };
    let archive = image_archive();
    let config = image_config(&archive);
    assert_eq!(
        config["config"]["User"], "65532:65532",
        "a numeric non-root user"
    );
    assert_eq!(config["config"]["Entrypoint"], json!(["/datajob-operator"]));
    let env = realnode::cluster_env();
    let sock = env
        .get("CONTAINERD_SOCK")
        .expect("CONTAINERD_SOCK in cluster.env");
    let ns = "datajob-e2e-image";
    let ctr = |args: &[&str]| {
        let mut all = vec!["--address", sock.as_str(), "-n", ns];
        all.extend_from_slice(args);
        run("ctr", &all)
    };
    let (ok, out) = ctr(&["images", "import", archive.to_str().unwrap()]);
    assert!(ok, "ctr images import: {out}");
    let reference = "docker.io/library/datajob-operator:0.1.0";
    // Read-only root, as the chart runs it; the image's own user.
    let name = format!("version-{}", std::process::id());
    let (ok, out) = ctr(&[
        "run",
        "--rm",
        "--read-only",
        reference,
        &name,
        "/datajob-operator",
        "--version",
    ]);
    assert!(ok, "ctr run: {out}");
    assert_eq!(
        out.trim(),
        format!("datajob-operator {}", env!("CARGO_PKG_VERSION"))
    );
    let _ = ctr(&["images", "rm", reference]);
    let _ = node;
}

#[tokio::test]
async fn the_charts_deployment_runs_the_image_on_the_real_node() {
    let Some(node) = realnode::real_node() else {
        return;
    };
    let client = client().await;
    let archive = image_archive();
    let bin = tools();
    let (helm, crane) = (format!("{bin}/helm"), format!("{bin}/crane"));
    // The image goes to the local registry as its OCI layout (same digest).
    let layout = tempfile::tempdir().unwrap();
    let (ok, out) = run(
        "tar",
        &[
            "-xf",
            archive.to_str().unwrap(),
            "-C",
            layout.path().to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let repository = format!("{}/datajob/datajob-operator", node.registry);
    let tag = format!("e2e-{}", std::process::id());
    let (ok, out) = run(
        &crane,
        &[
            "push",
            "--insecure",
            layout.path().to_str().unwrap(),
            &format!("{repository}:{tag}"),
        ],
    );
    assert!(ok, "crane push: {out}");

    // A namespace whose pods land on the real node.
    // Not labelled for Pod Security: the operator's pod needs hostNetwork to reach the
    // apiserver on 127.0.0.1 (no Service routing on the real node), which even the
    // `baseline` profile forbids. DataJob's own pods run in `work` below, restricted.
    let (ns, node) = realnode::privileged_namespace(
        &client,
        "incluster",
        "the operator's pod uses hostNetwork to reach the apiserver on 127.0.0.1",
    )
    .await
    .unwrap();
    let env = realnode::cluster_env();
    let apiserver_port = env
        .get("APISERVER_PORT")
        .cloned()
        .unwrap_or_else(|| "6443".into());
    let node_ip = env
        .get("REAL_NODE_IP")
        .cloned()
        .expect("REAL_NODE_IP in cluster.env");
    let (admin, webhook) = (common::operator::free_port(), common::operator::free_port());
    let release = "incluster";
    let configuration = format!("{}.incluster.datajob.dev", ns.name());
    let values = json!({
        "replicas": 1,
        "image": {"repository": repository, "tag": tag},
        "hostNetwork": true,
        "ports": {"admin": admin, "webhook": webhook},
        "webhook": {"url": format!("https://{node_ip}:{webhook}"), "configurationName": configuration},
        "extraEnv": [
            {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": apiserver_port},
        ],
    });
    let values_file = layout.path().join("values.json");
    std::fs::write(&values_file, values.to_string()).unwrap();
    let chart = format!("{ROOT}/charts/datajob");
    let (ok, out) = run(
        &helm,
        &[
            "install",
            release,
            &chart,
            "--namespace",
            ns.name(),
            "--values",
            values_file.to_str().unwrap(),
            "--wait",
            "--timeout",
            "180s",
        ],
    );
    let uninstall = || {
        run(
            &helm,
            &["uninstall", release, "--namespace", ns.name(), "--wait"],
        );
    };
    if !ok {
        let (_, pods) = run("kubectl", &["-n", ns.name(), "describe", "pods"]);
        uninstall();
        panic!("helm install: {out}\n{pods}");
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    let d = deployments.get("incluster-datajob").await;
    let d = match d {
        Ok(d) => d,
        Err(_) => deployments.get(release).await.unwrap(),
    };
    assert_eq!(d.status.and_then(|s| s.available_replicas), Some(1));

    // It runs on the real node, leads, and serves metrics.
    let metrics = format!("{node_ip}:{admin}");
    wait_for(
        "the in-cluster operator leads",
        Duration::from_secs(60),
        || async {
            let text = common::operator::http_get(&metrics, "/metrics")
                .await
                .unwrap_or_default();
            Ok((common::operator::sample(&text, "datajob_leader", &[]) == Some(1.0)).then_some(()))
        },
    )
    .await
    .unwrap();

    // It reconciles: a DataJob in another namespace runs.
    let work = common::test_namespace(&client, "incluster-work").await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), work.name());
    let dj: DataJob = common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": "hello"}, "spec": {"image": "busybox"},
    }));
    api.create(&PostParams::default(), &dj).await.unwrap();
    wait_for_object(
        &api,
        "hello",
        "reconciled by the in-cluster operator",
        Duration::from_secs(90),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Succeeded),
    )
    .await
    .unwrap();

    // Its webhook, reached by the apiserver with the CA the operator wrote, refuses a
    // bad DataJob with admission's words.
    let bad: DataJob = common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": "bad"}, "spec": {"image": "busybox", "schedule": "61 * * * *"},
    }));
    let refused = wait_for(
        "the in-cluster webhook refuses",
        Duration::from_secs(60),
        || async {
            match api.create(&PostParams::default(), &bad).await {
                Err(kube::Error::Api(s)) if s.message.contains("minute 61") => Ok(Some(s.message)),
                Ok(_) => {
                    let _ = api.delete("bad", &DeleteParams::default()).await;
                    Ok(None)
                }
                Err(_) => Ok(None),
            }
        },
    )
    .await
    .unwrap();
    assert!(refused.contains("spec.schedule"), "{refused}");
    // And it was this operator's webhook that said so.
    let text = common::operator::http_get(&metrics, "/metrics")
        .await
        .unwrap_or_default();
    let refusals = common::operator::sample(
        &text,
        "datajob_admission_reviews_total",
        &[("allowed", "false")],
    );
    assert!(
        refusals.is_some_and(|n| n >= 1.0),
        "the in-cluster webhook answered: {refusals:?}"
    );

    uninstall();
    // Nothing of the release is left in its namespace.
    let (_, left) = run(
        "kubectl",
        &[
            "get",
            "deployment,service,serviceaccount,role,rolebinding,secret,lease,poddisruptionbudget",
            "-n",
            ns.name(),
            "-l",
            &format!("app.kubernetes.io/instance={release}"),
            "-o",
            "name",
        ],
    );
    assert!(
        left.trim().is_empty() || left.contains("No resources found"),
        "left behind: {left}"
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt(ns.name()).await.unwrap().is_some());
    let _ = node;
}

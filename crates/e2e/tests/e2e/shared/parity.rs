//! End-to-end: the same DataJob gives the same environment and output on the real node
//! (containerd, a real kubelet) and with `kubectl datajob run --local`, in a container
//! engine (Debian's podman) and on the host.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::plugin::plugin;
use common::realnode;
use common::wait_for_object;
use datajob_api::{DataJob, RunState};
use kube::api::{Api, PostParams};
use serde_json::json;

/// Prints what a run sees, one fact per line, the same way everywhere. Paths differ on
/// the host (HOME and DATAJOB_SCRATCH are directories of the run there), so the script
/// prints whether they are writable, not where they are.
const SCRIPT: &str = r#"
echo "uid=$(id -u) gid=$(id -g)"
echo "name=$DATAJOB_NAME namespace=$DATAJOB_NAMESPACE"
echo "run=$DATAJOB_RUN_ID logical-time=$DATAJOB_LOGICAL_TIME deadline=$DATAJOB_DEADLINE_SECONDS"
echo "vars=$(env | cut -d= -f1 | grep -E '^(DATAJOB_|HOME$)' | sort | tr '\n' ' ')"
touch "$HOME/probe" && echo home-writable
touch "$DATAJOB_SCRATCH/probe" && echo scratch-writable
echo "greeting=$GREETING"
"#;

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The output without the user line (the host engine runs as whoever runs it).
fn without_user(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !l.starts_with("uid="))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_datajob_prints_the_same_on_the_real_node_in_podman_and_on_the_host() {
    let client = common::client().await;
    let Some((ns, node)) = realnode::namespace(&client, "parity").await else {
        return;
    };
    let spec = json!({
        "image": node.image_root,
        "command": ["sh", "-c", SCRIPT],
        "deadline": "5m",
        "env": [{"name": "GREETING", "value": "hello"}],
        "resources": {"cpu": "100m", "memory": "64Mi"},
    });
    let dj: DataJob = common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": "same", "namespace": ns.name()}, "spec": spec,
    }));
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    api.create(&PostParams::default(), &dj).await.unwrap();
    let done = wait_for_object(
        &api,
        "same",
        "the run on the real node",
        Duration::from_secs(120),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Succeeded),
    )
    .await
    .unwrap();
    let logical_time = done.status.unwrap().last_run.unwrap().logical_time;
    let logs = plugin(ns.name(), &["logs", "same"]).await;
    assert_eq!(logs.code, 0, "{logs}");
    let cluster = lines(&logs.stdout);
    assert!(
        cluster.contains(&"uid=65532 gid=65532".to_string()),
        "{cluster:?}"
    );
    assert!(
        cluster.contains(&"home-writable".to_string())
            && cluster.contains(&"scratch-writable".to_string()),
        "{cluster:?}"
    );

    // The same file, run locally for the same logical time.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("same.yaml");
    std::fs::write(&file, serde_saphyr::to_string(&dj).unwrap()).unwrap();
    let local = |engine: &str| {
        let out = Command::new(common::bin("kubectl-datajob"))
            .args(["run", "--local", "-f"])
            .arg(&file)
            .args([
                "--engine",
                engine,
                "--logical-time",
                &logical_time,
                "-n",
                ns.name(),
            ])
            .arg("--state-dir")
            .arg(dir.path().join(format!("state-{engine}")))
            .env("NO_COLOR", "1")
            .output()
            .expect("run kubectl-datajob");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(
            out.status.success(),
            "run --local --engine {engine}:\n{stdout}\n{stderr}"
        );
        (lines(&stdout), stderr)
    };

    // podman needs the image: from the same registry the kubelet pulled it from.
    let pulled = Command::new("podman")
        .args(["pull", "--quiet", "--tls-verify=false", &node.image_root])
        .output()
        .expect("run podman");
    assert!(
        pulled.status.success(),
        "podman pull {}: {}",
        node.image_root,
        String::from_utf8_lossy(&pulled.stderr)
    );
    let (podman, stderr) = local("podman");
    assert!(stderr.contains("in podman"), "{stderr}");
    assert_eq!(podman, cluster, "podman and the real node differ");

    let (host, stderr) = local("host");
    assert!(stderr.contains("on the host"), "{stderr}");
    assert_eq!(
        without_user(&host),
        without_user(&cluster),
        "the host and the real node differ"
    );
}

//! End-to-end: the log archive on the real node, against a real S3-compatible server
//! (versitygw, `e2e/s3.sh`) on 127.0.0.1, with an operator of its own that keeps the
//! archive. A run whose pod was removed still shows its real output
//! (`DATAJOB_LOGICAL_TIME` included) through `kubectl datajob logs`, which says it read
//! the archive; a log past the bound keeps its tail; an operator killed while the store
//! hangs loses no line and doubles none; a store that does not answer holds a pod no
//! longer than the give-up bound, and the run says its logs were not kept.
//! `make e2e` runs this suite on its own (phase 2).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::operator::{Operator, sample, spawn};
use common::plugin::{Out, plugin_with};
use common::realnode;
use common::{client, wait_for, wait_for_object};
use datajob_api::{DataJob, RunRecord, RunState};
use datajob_core::labels::NAME;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The give-up bound of the second operator: short, so the test of a store that does
/// not answer takes seconds, not the default two minutes.
const GIVE_UP: Duration = Duration::from_secs(15);

/// The S3-compatible server of `e2e/s3.sh`, in a state directory of its own; stopped
/// (and its data removed) when dropped.
struct S3 {
    dir: PathBuf,
    env: BTreeMap<String, String>,
}

impl S3 {
    fn script(dir: &Path, verb: &str) -> std::process::Output {
        std::process::Command::new("bash")
            .arg(format!("{ROOT}/e2e/s3.sh"))
            .arg(verb)
            .env("DATAJOB_S3_DIR", dir)
            .env_remove("DATAJOB_S3_PORT")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run e2e/s3.sh {verb}: {e}"))
    }

    fn up() -> S3 {
        let dir = std::env::temp_dir().join(common::unique_name("datajob-s3"));
        let out = S3::script(&dir, "up");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "e2e/s3.sh up failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let env = stdout
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        S3 { dir, env }
    }

    fn get(&self, k: &str) -> &str {
        self.env
            .get(k)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("e2e/s3.sh up printed no {k}: {:?}", self.env))
    }

    /// The settings a reader of the archive gives `kubectl datajob logs`.
    fn reader_env(&self) -> Vec<(&'static str, &str)> {
        vec![
            (
                "DATAJOB_LOG_ARCHIVE_ENDPOINT",
                self.get("DATAJOB_S3_ENDPOINT"),
            ),
            ("DATAJOB_LOG_ARCHIVE_BUCKET", self.get("DATAJOB_S3_BUCKET")),
            ("AWS_ACCESS_KEY_ID", self.get("AWS_ACCESS_KEY_ID")),
            ("AWS_SECRET_ACCESS_KEY", self.get("AWS_SECRET_ACCESS_KEY")),
        ]
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: frozen, it accepts connections
    /// and answers nothing, as a store that hangs.
    fn signal(&self, sig: &str) {
        assert!(
            self.send(sig),
            "kill -{sig} the server of {}",
            self.dir.display()
        );
    }

    /// `kill -SIG` to the server (its pid from e2e/s3.sh's state); whether it was sent.
    fn send(&self, sig: &str) -> bool {
        std::fs::read_to_string(self.dir.join("versitygw.pid")).is_ok_and(|pid| {
            std::process::Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid.trim())
                .status()
                .is_ok_and(|s| s.success())
        })
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        // Thawed first, so that `down` can stop it.
        self.send("CONT");
        let _ = S3::script(&self.dir, "down");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An operator that keeps the archive in `s3`, holding a stopped pod at most
/// `give_up`, keeping 4 KiB of each log.
async fn operator(s3: &S3, give_up: Duration) -> Operator {
    let give_up = format!("{}s", give_up.as_secs());
    spawn(&[
        ("DATAJOB_LEADER_ELECT", "false"),
        ("DATAJOB_PREFLIGHT", "false"),
        (
            "DATAJOB_LOG_ARCHIVE_ENDPOINT",
            s3.get("DATAJOB_S3_ENDPOINT"),
        ),
        ("DATAJOB_LOG_ARCHIVE_BUCKET", s3.get("DATAJOB_S3_BUCKET")),
        ("AWS_ACCESS_KEY_ID", s3.get("AWS_ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY", s3.get("AWS_SECRET_ACCESS_KEY")),
        ("DATAJOB_LOG_ARCHIVE_MAX_BYTES", "4Ki"),
        ("DATAJOB_LOG_ARCHIVE_GIVE_UP_AFTER", &give_up),
        ("DATAJOB_LOG_ARCHIVE_SWEEP_INTERVAL", "3s"),
    ])
    .await
}

/// A one-off run on the real node that prints `script`'s output; its Job goes as soon
/// as the status holds its outcome (`history: 0`), and its pod with it.
fn run_spec(image: &str, script: &str) -> Value {
    json!({
        "image": image,
        "command": ["sh", "-c", script],
        "resources": {"cpu": "100m", "memory": "64Mi"},
        "history": 0,
        "retries": 0,
    })
}

async fn pods_of(pods: &Api<Pod>, datajob: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("{NAME}={datajob}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Waits until the run finished, its pod is gone and its record says where its logs
/// went; returns the record.
async fn gone_with_logs(
    api: &Api<DataJob>,
    pods: &Api<Pod>,
    name: &str,
    timeout: Duration,
) -> RunRecord {
    let dj = wait_for_object(
        api,
        name,
        &format!("{name}'s logs told"),
        timeout,
        |d: &DataJob| {
            d.status
                .as_ref()
                .and_then(|s| s.last_run.as_ref())
                .is_some_and(|r| r.state.is_finished() && r.logs.is_some())
        },
    )
    .await
    .unwrap();
    let gone = wait_for(&format!("{name}'s pod gone"), timeout, || async {
        Ok(pods_of(pods, name).await.is_empty().then_some(()))
    })
    .await;
    if let Err(e) = gone {
        let left: Vec<String> = pods_of(pods, name)
            .await
            .iter()
            .map(|p| {
                format!(
                    "{} phase={} finalizers={:?} deleting={}",
                    p.metadata.name.as_deref().unwrap_or_default(),
                    common::pod_phase(p),
                    p.metadata.finalizers,
                    p.metadata.deletion_timestamp.is_some()
                )
            })
            .collect();
        panic!("{e}; left: {left:?}; status: {:?}", dj.status);
    }
    dj.status.and_then(|s| s.last_run).expect("a last run")
}

async fn pod_finished(pods: &Api<Pod>, name: &str) {
    wait_for(
        &format!("{name}'s pod finished"),
        Duration::from_secs(120),
        || async {
            Ok(pods_of(pods, name)
                .await
                .iter()
                .any(|p| matches!(common::pod_phase(p), "Succeeded" | "Failed"))
                .then_some(()))
        },
    )
    .await
    .unwrap();
}

fn read_from_archive(out: &Out) {
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("from the log archive"),
        "says it read the archive: {out}"
    );
}

#[tokio::test]
async fn a_runs_logs_outlive_its_pod_and_an_archive_that_hangs_holds_no_pod_past_its_bound() {
    let client = client().await;
    let Some((ns, node)) = realnode::namespace(&client, "archive").await else {
        return;
    };
    let s3 = S3::up();
    let mut first = operator(&s3, Duration::from_secs(120)).await;
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns.name());
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let reader = s3.reader_env();

    // 1. A run's real output, read from the archive once its pod is gone.
    let hello = "echo logical-time=$DATAJOB_LOGICAL_TIME; echo run-id=$DATAJOB_RUN_ID; echo hello from the real node";
    common::datajob(
        &client,
        ns.name(),
        "hello",
        run_spec(&node.image_nonroot, hello),
    )
    .await;
    // 2. A log longer than the bound (4 KiB): its tail, after a line that says so.
    let big = "i=1; while [ $i -le 300 ]; do echo \"line $i of a long log, padded to about thirty bytes\"; i=$((i+1)); done";
    common::datajob(
        &client,
        ns.name(),
        "big",
        run_spec(&node.image_nonroot, big),
    )
    .await;
    let run = gone_with_logs(&api, &pods, "hello", Duration::from_secs(120)).await;
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(run.logs.as_deref(), Some("Archived"));
    let out = plugin_with(ns.name(), &["logs", "hello"], &reader).await;
    read_from_archive(&out);
    for line in [
        format!("logical-time={}", run.logical_time),
        format!("run-id={}", run.name),
        "hello from the real node".to_string(),
    ] {
        assert!(
            out.stdout.contains(&line),
            "the archive lacks {line:?}: {out}"
        );
    }
    let out = plugin_with(ns.name(), &["describe", "hello"], &[]).await;
    assert!(
        out.stdout.contains("Logs:") && out.stdout.contains("kept in the log archive"),
        "describe says where the logs are: {out}"
    );
    // Without the archive's settings, the reader is told where the logs are.
    let out = plugin_with(ns.name(), &["logs", "hello"], &[]).await;
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("the operator archived its logs")
            && out.stderr.contains("DATAJOB_LOG_ARCHIVE_ENDPOINT"),
        "{out}"
    );
    let run = gone_with_logs(&api, &pods, "big", Duration::from_secs(120)).await;
    assert_eq!(run.logs.as_deref(), Some("Cut"));
    let out = plugin_with(ns.name(), &["logs", "big", "--attempt", "1"], &reader).await;
    read_from_archive(&out);
    assert!(
        out.stdout
            .starts_with("[datajob: the log was longer than the archive keeps"),
        "{out}"
    );
    assert!(
        out.stdout
            .trim_end()
            .ends_with("line 300 of a long log, padded to about thirty bytes"),
        "{out}"
    );
    assert!(
        out.stdout.len() <= 4096 + 200,
        "bounded: {} bytes",
        out.stdout.len()
    );
    assert!(
        !out.stdout.contains("\nline 1 of"),
        "the head was cut: {out}"
    );

    // 3. The store hangs while a run finishes; the operator is killed mid-copy. The pod
    // waits (its finalizer) for the next operator, which copies every line once.
    s3.signal("STOP");
    let lines = "i=1; while [ $i -le 50 ]; do echo \"restart line $i\"; i=$((i+1)); done";
    common::datajob(
        &client,
        ns.name(),
        "restart",
        run_spec(&node.image_nonroot, lines),
    )
    .await;
    pod_finished(&pods, "restart").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.kill().await;
    s3.signal("CONT");
    let mut second = operator(&s3, GIVE_UP).await;
    let run = gone_with_logs(&api, &pods, "restart", Duration::from_secs(90)).await;
    assert_eq!(run.logs.as_deref(), Some("Archived"));
    let out = plugin_with(ns.name(), &["logs", "restart"], &reader).await;
    read_from_archive(&out);
    for i in 1..=50 {
        let line = format!("restart line {i}\n");
        assert_eq!(
            out.stdout.matches(&line).count(),
            1,
            "{line:?} is in the archived log exactly once: {out}"
        );
    }

    // 4. A store that does not answer holds a stopped pod at most the bound (plus one
    // request's timeout), and the run says its logs were not kept.
    s3.signal("STOP");
    common::datajob(
        &client,
        ns.name(),
        "hangs",
        run_spec(&node.image_nonroot, "echo nobody keeps this"),
    )
    .await;
    pod_finished(&pods, "hangs").await;
    let stopped = Instant::now();
    let run = gone_with_logs(&api, &pods, "hangs", Duration::from_secs(90)).await;
    let held = stopped.elapsed();
    s3.signal("CONT");
    assert_eq!(run.logs.as_deref(), Some("NotKept"));
    let bound = GIVE_UP + datajob_archive::store::REQUEST_TIMEOUT + Duration::from_secs(15);
    assert!(held <= bound, "the pod was held {held:?}, past {bound:?}");
    // (The frozen server may still write the copy it was sent once thawed: NotKept
    // says the operator never had it confirmed, not that no byte arrived.)

    // 5. The dashboard's figures: copies by outcome, and the store's size.
    let text = wait_for(
        "the archive's size measured",
        Duration::from_secs(30),
        || async {
            Ok(second.metrics().await.filter(|t| {
                sample(t, "datajob_log_archive_bytes", &[]).is_some_and(|b| b > 0.0)
                    && sample(
                        t,
                        "datajob_log_archive_copies_total",
                        &[("outcome", "NotKept")],
                    )
                    .is_some_and(|n| n >= 1.0)
            }))
        },
    )
    .await
    .unwrap();
    assert!(
        sample(&text, "datajob_log_archive_objects", &[]).is_some_and(|n| n >= 3.0),
        "hello, big and restart are in the archive"
    );
    second.stop().await;
}

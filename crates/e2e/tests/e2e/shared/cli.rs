//! End-to-end: the `kubectl datajob` plugin against the real control plane and the
//! operator that `e2e/with-operator.sh` runs. kwok pods have no real logs, so `logs` is
//! tested for its pod selection and for what it says about that.

use crate::common;

use std::time::Duration;

use common::plugin::plugin;
use common::{client, test_namespace, wait_for_event, wait_for_object};
use datajob_api::{DataJob, RunState};
use datajob_core::labels::{self, JOB_NAME};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// How long an event may take to appear after the status it follows.
const EVENT_WAIT: Duration = Duration::from_secs(20);

/// A DataJob that only runs when triggered (its schedule is once a year), whose kwok
/// pods "run" for `seconds` and exit with `exit_code`.
async fn create(client: &Client, ns: &str, name: &str, seconds: u32, exit_code: i32) -> DataJob {
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns);
    let dj: DataJob = common::from_json(json!({
        "apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob",
        "metadata": {"name": name},
        "spec": {
            "image": "busybox:1.36", "command": ["sh", "-c", "echo hi"],
            "schedule": "0 3 1 1 *", "retries": 0, "deadline": "5m",
            "resources": {"cpu": "100m", "memory": "64Mi"},
            "podAnnotations": {
                common::kwok::DURATION: format!("{seconds}s"),
                common::kwok::EXIT_CODE: exit_code.to_string(),
            },
        },
    }));
    api.create(&PostParams::default(), &dj)
        .await
        .expect("create DataJob");
    wait_for_object(
        &api,
        name,
        "DataJob reconciled",
        Duration::from_secs(30),
        |d: &DataJob| d.status.as_ref().and_then(|s| s.state) == Some(RunState::Scheduled),
    )
    .await
    .expect("the operator reconciles the DataJob")
}

async fn pods_of_run(client: &Client, ns: &str, run: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(&format!("{JOB_NAME}={run}")))
        .await
        .expect("list pods")
        .items
}

#[tokio::test]
async fn trigger_runs_status_logs_and_describe_against_the_operator() {
    let client = client().await;
    let ns = test_namespace(&client, "cli").await;
    let ns = ns.name();
    create(&client, ns, "nightly", 2, 0).await;

    let out = plugin(ns, &["status"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .starts_with("NAME     SCHEDULE   LAST RUN  STATE      NEXT RUN"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("nightly  0 3 1 1 *  -         Scheduled  in "),
        "{out}"
    );

    // trigger --wait: the run is created by the operator, runs, and succeeds.
    let out = plugin(ns, &["trigger", "nightly", "--wait", "-o", "json"]).await;
    assert_eq!(out.code, 0, "{out}");
    let report: Value = serde_json::from_str(&out.stdout).expect("trigger -o json");
    let id = report["runId"].as_str().unwrap().to_string();
    let t = labels::parse_rfc3339(report["logicalTime"].as_str().unwrap()).unwrap();
    assert_eq!(id, labels::run_id("nightly", t));
    assert_eq!(report["created"], true);
    assert_eq!(report["run"]["state"], "Succeeded", "{out}");
    assert!(out.stderr.contains(&format!("triggered run {id}")), "{out}");
    assert!(
        out.stderr.contains(&format!("✓ succeeded run {id}")),
        "{out}"
    );

    // runs: the history names the run, its state and how long it took.
    let out = plugin(ns, &["runs", "nightly"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.starts_with("RUN ID"), "{out}");
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("Succeeded"), "{row}");
    let out = plugin(ns, &["runs", "nightly", "-o", "json"]).await;
    let runs: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(runs[0]["name"], id.as_str());
    assert_eq!(runs[0]["state"], "Succeeded");

    // status NAME
    let out = plugin(ns, &["status", "nightly"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.starts_with("nightly  Succeeded\n"), "{out}");
    assert!(out.stdout.contains(&format!("last run  {id}  ")), "{out}");
    assert!(out.stdout.contains("next run  20"), "{out}");
    let out = plugin(ns, &["status", "nightly", "-o", "yaml"]).await;
    let dj: DataJob = serde_saphyr::from_str(&out.stdout).expect("status -o yaml is the DataJob");
    assert_eq!(dj.status.unwrap().state, Some(RunState::Succeeded));

    // -o name, as kubectl get -o name; refused where nothing is listed.
    let out = plugin(ns, &["status", "-o", "name"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l == "datajob.datajob.dev/nightly"),
        "{out}"
    );
    let out = plugin(ns, &["runs", "nightly", "-o", "name"]).await;
    assert_eq!(
        out.stdout.lines().next(),
        Some(format!("job.batch/{id}").as_str()),
        "{out}"
    );
    let out = plugin(ns, &["describe", "nightly", "-o", "name"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("-o name is for the commands that list or start objects (status, runs, trigger and backfill); describe takes -o json or -o yaml"),
        "{out}"
    );

    // --as impersonates on the real apiserver: a ServiceAccount with no role may not
    // read DataJobs, and the plugin says so; --as-group system:masters may.
    let nobody = format!("system:serviceaccount:{ns}:nobody");
    let out = plugin(ns, &["status", "nightly", "--as", &nobody]).await;
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains(&nobody), "{out}");
    let out = plugin(
        ns,
        &[
            "status",
            "nightly",
            "--as",
            &nobody,
            "--as-group",
            "system:masters",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(out.stdout, "datajob.datajob.dev/nightly\n", "{out}");
    // --request-timeout: a bad one names the flag and the fix.
    let out = plugin(ns, &["status", "--request-timeout", "soon"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("--request-timeout \"soon\" is not a duration"),
        "{out}"
    );
    let out = plugin(
        ns,
        &[
            "status",
            "nightly",
            "--request-timeout",
            "30s",
            "-o",
            "name",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out}");

    // logs: the latest run's pod, found without a pod name; kwok keeps no logs.
    let pods = pods_of_run(&client, ns, &id).await;
    assert_eq!(pods.len(), 1, "one attempt");
    let pod = pods[0].name_any();
    let node = pods[0]
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap();
    for args in [
        vec!["logs", "nightly"],
        vec!["logs", "nightly", "--run", id.as_str()],
        vec!["logs", "nightly", "-f"],
    ] {
        let out = plugin(ns, &args).await;
        assert_eq!(out.code, 3, "{args:?}: {out}");
        assert!(
            out.stderr.contains(&format!("==> run {id} (logical time "))
                && out.stderr.contains(&format!("pod {pod} on node {node}")),
            "{args:?} picks the run's pod: {out}"
        );
        assert!(
            out.stderr.contains(&format!(
                "cannot read the logs of run {id}: its pod {pod} runs on {node}, a simulated (kwok) node, which keeps no container logs"
            )),
            "{args:?}: {out}"
        );
        // Only that: not how the request to a kubelet that is not there failed (the
        // API server's dial, TLS or certificate error for the node's address). The
        // names are taken out first: a pod's random suffix may spell "tls".
        let said = out
            .stderr
            .replace(&pod, "<pod>")
            .replace(&id, "<run>")
            .replace(&node, "<node>")
            .to_lowercase();
        for raw in [
            "x509",
            "tls",
            "certificate",
            "handshake",
            "dial tcp",
            "did not serve them",
        ] {
            assert!(!said.contains(raw), "{args:?} says {raw:?}: {out}");
        }
    }
    let out = plugin(ns, &["logs", "nightly", "--run", "nightly-1"]).await;
    assert_eq!(out.code, 3);
    assert!(
        out.stderr.contains(&format!(
            "DataJob nightly has no run nightly-1; its latest runs are {id}"
        )),
        "{out}"
    );

    // describe: what it is, its children, and why it is in its state. The operator
    // publishes its events just after the status write: wait for the one shown.
    wait_for_event(&client, ns, "nightly", "RunSucceeded", EVENT_WAIT)
        .await
        .unwrap();
    let out = plugin(ns, &["describe", "nightly"]).await;
    assert_eq!(out.code, 0, "{out}");
    for want in [
        "Name:      nightly".to_string(),
        "Schedule:  0 3 1 1 * (UTC)".to_string(),
        "State:     Succeeded".to_string(),
        format!("The last run, {id} (logical time "),
        "succeeded at ".to_string(),
        "The next run is due ".to_string(),
        "CronJob  nightly".to_string(),
        format!("Job      {id}"),
        format!("pods: {pod} Succeeded on {node}"),
        "Recent runs:".to_string(),
        "RunSucceeded".to_string(),
    ] {
        assert!(out.stdout.contains(&want), "describe shows {want:?}: {out}");
    }
    let out = plugin(ns, &["describe", "nightly", "-o", "json"]).await;
    let d: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(d["state"], "Succeeded");
    assert_eq!(d["children"][0]["kind"], "CronJob");

    // The same logical time twice is one run.
    let at = "2026-01-01T00:00:00Z";
    let first = plugin(ns, &["trigger", "nightly", "--at", at]).await;
    assert_eq!(first.code, 0, "{first}");
    let at_id = labels::run_id("nightly", labels::parse_rfc3339(at).unwrap());
    assert_eq!(first.stdout.trim(), at_id);
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns);
    let at_id2 = at_id.clone();
    wait_for_object(
        &api,
        "nightly",
        "the run at --at exists",
        Duration::from_secs(30),
        move |d: &DataJob| {
            d.status
                .as_ref()
                .is_some_and(|s| s.recent_runs.iter().any(|r| r.name == at_id2))
        },
    )
    .await
    .unwrap();
    let again = plugin(ns, &["trigger", "nightly", "--at", at]).await;
    assert_eq!(again.code, 0, "{again}");
    assert!(
        again
            .stderr
            .contains(&format!("run {at_id} (logical time {at}) already exists")),
        "{again}"
    );
}

#[tokio::test]
async fn a_failed_run_is_reported_and_explained() {
    let client = client().await;
    let ns = test_namespace(&client, "cli-fail").await;
    let ns = ns.name();
    create(&client, ns, "broken", 1, 3).await;

    let out = plugin(ns, &["trigger", "broken", "--wait"]).await;
    assert_eq!(out.code, 1, "a failed run exits 1: {out}");
    let last = out.stderr.lines().last().unwrap_or("");
    assert!(last.starts_with("✗ failed: RetriesExhausted"), "{out}");
    // `trigger --wait` returns once the DataJob's status records the end as well.
    let out = plugin(ns, &["status"]).await;
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("broken"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains("Failed") && row.ends_with("RetriesExhausted"),
        "{row}"
    );

    wait_for_event(&client, ns, "broken", "RunFailed", EVENT_WAIT)
        .await
        .unwrap();
    let out = plugin(ns, &["describe", "broken"]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("State:     Failed (RetriesExhausted)"),
        "{out}"
    );
    assert!(out.stdout.contains("failed at "), "{out}");
    assert!(
        out.stdout
            .contains(": RetriesExhausted: the run failed 1 time(s)"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("Read its logs: `kubectl datajob logs broken --run broken-"),
        "{out}"
    );
    assert!(
        out.stdout.contains("RunFailed"),
        "the operator's event: {out}"
    );
}

#[tokio::test]
async fn mistakes_get_answers_that_say_what_to_do() {
    let client = client().await;
    let ns = test_namespace(&client, "cli-errors").await;
    let ns = ns.name();
    create(&client, ns, "churn-features", 1, 0).await;

    for cmd in ["status", "runs", "logs", "describe", "trigger"] {
        let out = plugin(ns, &[cmd, "churn-feature"]).await;
        assert_eq!(out.code, 3, "{cmd}: {out}");
        assert!(
            out.stderr.contains(&format!(
                "no DataJob named churn-feature in namespace {ns}; did you mean churn-features?"
            )),
            "{cmd}: {out}"
        );
    }
    let out = plugin("default", &["status", "churn-features"]).await;
    assert_eq!(out.code, 3, "{out}");
    assert!(
        out.stderr.contains(&format!("add -n {ns}")),
        "the same name elsewhere: {out}"
    );

    let out = plugin(ns, &["logs", "churn-features"]).await;
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("DataJob churn-features has no runs yet; start one with `kubectl datajob trigger churn-features`"), "{out}");
}

#[tokio::test]
async fn plan_asks_the_cluster_for_a_dry_run_and_changes_nothing() {
    let client = client().await;
    let ns = test_namespace(&client, "cli-plan").await;
    let ns = ns.name();
    // Small, so that whatever NodeGroups other tests have in the cluster fit it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("small.yaml");
    std::fs::write(
        &file,
        "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata: {name: small}\n\
         spec: {image: busybox, schedule: '0 3 * * *', resources: {cpu: 100m, memory: 64Mi}}\n",
    )
    .unwrap();
    let example = file.to_str().unwrap();
    let out = plugin(ns, &["plan", "-f", example]).await;
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .contains("Server-side dry run: accepted by https://")
            && out
                .stdout
                .contains(&format!("(namespace {ns}; would create the DataJob)")),
        "{out}"
    );
    assert!(out.stdout.contains("\nNode group: "), "{out}");
    let out = plugin(ns, &["plan", "-f", example, "-o", "json"]).await;
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["serverDryRun"]["result"], "accepted");
    let api: Api<DataJob> = Api::namespaced(client.clone(), ns);
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "plan created nothing"
    );
}

/// Runs `program args` with `path` first on the PATH: (exit code, stdout, stderr).
fn run_with_path(path: &std::path::Path, program: &str, args: &[&str]) -> (i32, String, String) {
    let search = format!(
        "{}:{}",
        path.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new(program)
        .args(args)
        .env("PATH", search)
        .env_remove("KREW_ROOT")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The krew package, installed by krew itself, makes `kubectl datajob` work, and the real
/// kubectl completes it: sub-commands, flags, and the names of the DataJobs on the
/// cluster.
#[tokio::test]
async fn krew_installs_the_plugin_and_kubectl_completes_it() {
    let client = client().await;
    let ns = test_namespace(&client, "krew").await;
    create(&client, ns.name(), "churn-features", 1, 0).await;
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let plugin_bin = common::bin("kubectl-datajob");
    let made = std::process::Command::new("bash")
        .arg(format!("{}/e2e/krew.sh", common::ROOT))
        .arg(&plugin_bin)
        .env("KREW_ROOT", root.path())
        .env("KREW_OUT", out.path())
        .output()
        .expect("run e2e/krew.sh");
    let said = String::from_utf8_lossy(&made.stderr).into_owned();
    assert!(made.status.success(), "e2e/krew.sh:\n{said}");
    assert!(said.contains("datajob.yaml valid"), "{said}");
    let bin = root.path().join("bin");

    let (code, stdout, stderr) = run_with_path(&bin, "kubectl", &["datajob", "--version"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("kubectl-datajob {}", env!("CARGO_PKG_VERSION"))
    );
    let (_, listed, _) = run_with_path(&bin, "kubectl", &["plugin", "list"]);
    assert!(listed.contains("kubectl-datajob"), "{listed}");

    let complete = |args: &[&str]| {
        let mut all = vec!["__complete", "datajob"];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = run_with_path(&bin, "kubectl", &all);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stderr.contains("About to call") && stderr.contains("kubectl_complete-datajob"),
            "kubectl calls the completion executable: {stderr}"
        );
        stdout
    };
    let subs = complete(&["st"]);
    assert!(
        subs.starts_with("status\t") && subs.ends_with(":4\n"),
        "{subs}"
    );
    let names = complete(&["status", "-n", ns.name(), "ch"]);
    assert_eq!(names, "churn-features\n:4\n");
    let formats = complete(&["runs", "churn-features", "-o", ""]);
    assert_eq!(formats, "json\nyaml\nname\n:4\n");
}

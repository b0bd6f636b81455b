//! `kubectl datajob plan` without a cluster: every example plans cleanly, and every bad
//! input of the admission tests is refused with admission's own words.
// A test: a failed expectation is meant to stop it (production code denies these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use datajob_api::DataJob;
use datajob_core::validation::{Limits, resolve};
use kube::ResourceExt;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-datajob");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Runs the plugin with no reachable cluster configuration.
fn plugin(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl-datajob")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 4, "examples found: {v:?}");
    v
}

fn read_datajob(path: &Path) -> DataJob {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn plan_accepts_every_example_and_shows_what_it_would_create() {
    for path in examples() {
        let p = path.to_str().unwrap();
        let dj = read_datajob(&path);
        let out = plugin(&["plan", "-f", p]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{p}: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("DataJob default/{} is valid.", dj.name_any())),
            "{p}: {stdout}"
        );
        assert!(stdout.contains("Nothing was changed."), "{p}: {stdout}");
        assert!(stdout.contains("Node group:"), "{p}: {stdout}");
        assert!(
            stdout.contains("Server-side dry run: skipped (no cluster configured"),
            "{p}: {stdout}"
        );
        if dj.spec.schedule.is_some() {
            assert!(stdout.contains("Next 5 runs ("), "{p}: {stdout}");
            assert!(
                stdout.contains(&format!("CronJob {}:", dj.name_any())),
                "{p}: {stdout}"
            );
        } else {
            assert!(
                stdout.contains(&format!("Job {}-", dj.name_any())),
                "{p}: {stdout}"
            );
        }

        // The full objects for scripts, in YAML and JSON.
        let out = plugin(&["plan", "-f", p, "-o", "yaml", "--offline"]);
        assert_eq!(out.status.code(), Some(0), "{p}");
        let plan: Value = serde_saphyr::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["valid"], true);
        assert_eq!(plan["serverDryRun"]["result"], "skipped");
        let obj = &plan["objects"][0];
        let kind = obj["kind"].as_str().unwrap();
        assert_eq!(
            kind,
            if dj.spec.schedule.is_some() {
                "CronJob"
            } else {
                "Job"
            },
            "{p}"
        );
        assert_eq!(obj["apiVersion"], "batch/v1");
        let out = plugin(&["plan", "-f", p, "-o", "json", "--offline"]);
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        let want_runs = if dj.spec.schedule.is_some() { 5 } else { 0 };
        assert_eq!(plan["nextRuns"].as_array().unwrap().len(), want_runs, "{p}");
    }
}

#[test]
fn next_runs_are_in_the_jobs_time_zone() {
    let p = Path::new(ROOT).join("examples/nightly.yaml");
    let out = plugin(&["plan", "-f", p.to_str().unwrap(), "-o", "json", "--offline"]);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    for run in plan["nextRuns"].as_array().unwrap() {
        let local = run["local"].as_str().unwrap();
        assert!(local.contains(" 03:00 "), "03:00 London time: {run}");
        assert!(local.ends_with("GMT") || local.ends_with("BST"), "{run}");
    }
}

/// Each document of the admission tests' fixture, alone in a file.
fn bad_inputs(dir: &Path) -> Vec<(PathBuf, DataJob, String, String)> {
    let fixtures = std::fs::read_to_string(
        Path::new(ROOT).join("crates/e2e/tests/fixtures/bad-datajobs.yaml"),
    )
    .unwrap();
    let mut out = Vec::new();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&fixtures).unwrap();
    for (i, value) in docs.into_iter().enumerate() {
        let dj: DataJob = serde_json::from_value(value.clone()).unwrap();
        let field = dj.annotations()["test.datajob.dev/field"].clone();
        let want = dj.annotations()["test.datajob.dev/value"].clone();
        let path = dir.join(format!("bad-{i}.yaml"));
        std::fs::write(&path, serde_saphyr::to_string(&value).unwrap()).unwrap();
        out.push((path, dj, field, want));
    }
    assert!(
        out.len() >= 12,
        "every bad input of the fixture ({})",
        out.len()
    );
    out
}

#[test]
fn plan_refuses_every_bad_input_with_admissions_words() {
    let dir = tempfile::tempdir().unwrap();
    for (path, dj, field, want) in bad_inputs(dir.path()) {
        let name = dj.name_any();
        let out = plugin(&["plan", "-f", path.to_str().unwrap(), "--offline"]);
        let (stdout, stderr) = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: invalid must exit 1: {stdout}{stderr}"
        );
        assert!(stdout.contains("is invalid"), "{name}: {stdout}");
        assert!(
            stdout.contains(&field) && stdout.contains(&want),
            "{name}: the refusal must name {field} and {want:?}: {stdout}"
        );
        // The very sentences the admission webhook answers with.
        let problems = resolve(&dj, &Limits::default()).expect_err("the fixture is invalid");
        for problem in &problems.0 {
            assert!(
                stdout.contains(&problem.to_string()),
                "{name}: missing {problem}: {stdout}"
            );
        }
        let out = plugin(&[
            "plan",
            "-f",
            path.to_str().unwrap(),
            "--offline",
            "-o",
            "json",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["valid"], false);
        let messages: Vec<&str> = plan["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["message"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
        assert_eq!(messages, expected, "{name}");
        assert!(
            plan["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["field"] == field.as_str()),
            "{name}"
        );
    }
}

#[test]
fn a_field_of_the_wrong_type_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.yaml");
    std::fs::write(
        &path,
        "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata: {name: typo}\nspec: {image: busybox, retries: three}\n",
    )
    .unwrap();
    let out = plugin(&["plan", "-f", path.to_str().unwrap(), "--offline"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("spec.retries \"three\" is not what the DataJob schema expects"),
        "{stdout}"
    );
}

#[test]
fn plan_reads_stdin_and_several_documents() {
    let nightly = std::fs::read_to_string(Path::new(ROOT).join("examples/nightly.yaml")).unwrap();
    let one_off = std::fs::read_to_string(Path::new(ROOT).join("examples/one-off.yaml")).unwrap();
    let mut child = Command::new(BIN)
        .args(["plan", "-f", "-", "--offline", "-n", "analytics"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        write!(
            stdin,
            "{nightly}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{one_off}"
        )
        .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("DataJob analytics/churn-features is valid."),
        "{stdout}"
    );
    assert!(
        stdout.contains("DataJob analytics/backfill-customers is valid."),
        "{stdout}"
    );
    assert!(
        stderr.contains("skipping ConfigMap c: not a DataJob"),
        "{stderr}"
    );
}

#[test]
fn unreadable_or_foreign_files_say_so() {
    let out = plugin(&["plan", "-f", "/nonexistent/job.yaml"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr.contains("cannot read /nonexistent/job.yaml"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cm.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
    )
    .unwrap();
    let out = plugin(&["plan", "-f", path.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr.contains("has no DataJob in it"), "{stderr}");
}

#[test]
fn help_and_completions() {
    let out = plugin(&["--help"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    for cmd in [
        "plan",
        "run",
        "status",
        "runs",
        "logs",
        "trigger",
        "describe",
        "completion",
    ] {
        assert!(
            stdout.contains(&format!("\n  {cmd} ")),
            "{cmd} in --help: {stdout}"
        );
    }
    assert!(stdout.contains("Usage: kubectl datajob"));
    let out = plugin(&["completion", "bash"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("kubectl-datajob"));
    let out = plugin(&["logs"]);
    assert_eq!(out.status.code(), Some(2), "missing NAME is a usage error");
}

/// A 2 MB env value passes the schema; Kubernetes would then fail the DataJob with an
/// HTTP 500 that names no field. `plan` refuses it with the field and the limit.
#[test]
fn plan_refuses_an_oversized_env_value_with_the_field_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let yaml = format!(
        "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata:\n  name: big\nspec:\n  image: busybox\n  env:\n  - name: BLOB\n    value: \"{}\"\n",
        "x".repeat(2_000_000)
    );
    std::fs::write(&path, yaml).unwrap();
    let out = plugin(&["plan", "-f", path.to_str().unwrap(), "--offline"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("spec.env[0].value")
            && stdout.contains("is longer than the limit of 32 KiB")
            && stdout.contains("valueFrom"),
        "{stdout}"
    );
    assert!(stdout.contains("spec \"<1954 KiB in all>\""), "{stdout}");
}

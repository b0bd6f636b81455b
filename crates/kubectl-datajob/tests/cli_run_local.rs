//! `kubectl datajob run --local` with no cluster: the operator's environment, the
//! deadline, the retries, the exit-code rules and staging-then-publish, on the host.
// A test: a failed expectation is meant to stop it (production code denies these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-datajob");

/// A DataJob whose command is `sh -c <script>`, with extra spec lines.
fn datajob(dir: &Path, name: &str, script: &str, extra: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    let script = serde_json::to_string(script).unwrap();
    std::fs::write(
        &path,
        format!(
            "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata:\n  name: {name}\nspec:\n  image: busybox:1.36\n  command: [sh, -c, {script}]\n{extra}"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// Runs the plugin in `dir`, never near a cluster.
fn run_local(dir: &Path, file: &str, extra: &[&str]) -> (Output, String, String) {
    let out = Command::new(BIN)
        .args(["run", "--local", "-f", file])
        .args(extra)
        .current_dir(dir)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl-datajob");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn last_line(s: &str) -> &str {
    s.lines().last().unwrap_or("")
}

#[test]
fn a_small_shell_job_succeeds_with_the_operators_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = datajob(
        dir.path(),
        "hello",
        "echo name=$DATAJOB_NAME ns=$DATAJOB_NAMESPACE id=$DATAJOB_RUN_ID t=$DATAJOB_LOGICAL_TIME d=$DATAJOB_DEADLINE_SECONDS extra=$GREETING; echo oops >&2",
        "  deadline: 90s\n  env: [{name: GREETING, value: \"hi $(DATAJOB_NAME)\"}]\n",
    );
    let (out, stdout, stderr) = run_local(
        dir.path(),
        &file,
        &[
            "--engine",
            "host",
            "--logical-time",
            "2026-11-25T03:00:30Z",
            "-n",
            "team",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        "name=hello ns=team id=hello-29926260 t=2026-11-25T03:00:00Z d=90 extra=hi hello"
    );
    assert!(
        stderr.contains("oops"),
        "the job's stderr goes to stderr: {stderr}"
    );
    assert!(
        stderr.contains("running DataJob team/hello on the host (asked for with --engine host)"),
        "{stderr}"
    );
    assert!(
        last_line(&stderr).starts_with("✓ succeeded after "),
        "{stderr}"
    );
    assert!(
        last_line(&stderr).ends_with("(run hello-29926260, 1 attempt)"),
        "{stderr}"
    );
}

#[test]
fn auto_detects_a_working_engine_or_says_why_it_runs_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    // An image no engine has: auto must fall back to the host, and say why.
    let file = datajob(dir.path(), "auto", "echo ran", "");
    let yaml = std::fs::read_to_string(&file)
        .unwrap()
        .replace("busybox:1.36", "example.invalid/datajob-cli-test:never");
    std::fs::write(&file, yaml).unwrap();
    let (out, stdout, stderr) = run_local(dir.path(), &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "ran");
    let chose = stderr
        .lines()
        .find(|l| l.starts_with("running DataJob"))
        .unwrap_or("");
    assert!(
        chose.starts_with("running DataJob default/auto on the host ("),
        "{stderr}"
    );
    assert!(
        chose.contains("no container engine")
            || chose.contains("engine is not available")
            || chose.contains("does not have example.invalid/datajob-cli-test:never"),
        "{chose}"
    );
}

#[test]
fn a_run_that_exceeds_its_deadline_is_killed_and_reported_deadline_exceeded() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("sleep.pid");
    let marker = dir.path().join("finished");
    let script = format!(
        "echo started; sleep 30 & echo $! > {}; wait; touch {}",
        pidfile.display(),
        marker.display()
    );
    let file = datajob(
        dir.path(),
        "slow",
        &script,
        "  deadline: 2s\n  retries: 3\n",
    );
    let start = Instant::now();
    let (out, stdout, stderr) = run_local(dir.path(), &file, &["--engine", "host"]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("started"));
    let last = last_line(&stderr);
    assert!(
        last.starts_with("✗ failed: DeadlineExceeded after 2."),
        "{stderr}"
    );
    assert!(
        last.contains("1 attempt)"),
        "a deadline is never retried: {last}"
    );
    assert!(
        took < Duration::from_secs(9),
        "stopped at the deadline, not after {took:?}"
    );
    // Everything the run started is gone: no such process, or a zombie waiting for
    // init to reap it.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("");
    assert!(
        stat.is_empty() || state == "Z" || state == "X",
        "the run's sleep (pid {}) was killed: {stat}",
        pid.trim()
    );
    assert!(!marker.exists());
}

#[test]
fn a_failing_run_is_retried_exactly_retries_times() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let script = format!("echo attempt >> {}; exit 3", count.display());
    let file = datajob(dir.path(), "flaky", &script, "  retries: 2\n");
    let (out, stdout, stderr) = run_local(dir.path(), &file, &["--engine", "host", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        std::fs::read_to_string(&count).unwrap().lines().count(),
        3,
        "1 run + 2 retries"
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["state"], "Failed");
    assert_eq!(report["reason"], "RetriesExhausted");
    assert_eq!(report["attempts"].as_array().unwrap().len(), 3);
    assert!(
        report["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["exitCode"] == 3)
    );
    assert!(
        last_line(&stderr).starts_with("✗ failed: RetriesExhausted after "),
        "{stderr}"
    );
    assert!(last_line(&stderr).contains("3 attempts"), "{stderr}");
}

#[test]
fn commands_that_cannot_run_are_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.yaml");
    std::fs::write(
        &path,
        "apiVersion: datajob.dev/v1alpha1\nkind: DataJob\nmetadata: {name: missing}\nspec: {image: busybox, command: [datajob-no-such-command], retries: 3}\n",
    )
    .unwrap();
    let (out, _, stderr) = run_local(dir.path(), path.to_str().unwrap(), &["--engine", "host"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("datajob-no-such-command: command not found"),
        "{stderr}"
    );
    let last = last_line(&stderr);
    assert!(last.starts_with("✗ failed: CommandNotRunnable"), "{stderr}");
    assert!(last.contains("1 attempt)"), "{last}");

    let file = datajob(dir.path(), "exit127", "exit 127", "  retries: 3\n");
    let (out, _, stderr) = run_local(dir.path(), &file, &["--engine", "host"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        last_line(&stderr).starts_with("✗ failed: CommandNotRunnable"),
        "{stderr}"
    );
    assert!(last_line(&stderr).contains("1 attempt)"), "{stderr}");
}

#[test]
fn staged_output_is_published_only_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("lake/features");
    let output = format!("  output: file://{}\n", target.display());
    let partition = target.join("logical_time=2026-11-25T03:00:00Z");

    // Failure: nothing is published, the staged output stays for inspection.
    let file = datajob(
        dir.path(),
        "fails",
        "echo half > \"$DATAJOB_STAGING/part-0\"; exit 1",
        &format!("{output}  retries: 0\n"),
    );
    let (out, _, stderr) = run_local(
        dir.path(),
        &file,
        &["--engine", "host", "--logical-time", "2026-11-25T03:00:00Z"],
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!partition.exists(), "a failed run publishes nothing");
    let staged = target.join("_runs/fails-29926260/part-0");
    assert_eq!(std::fs::read_to_string(&staged).unwrap(), "half\n");
    assert!(stderr.contains("not published"), "{stderr}");

    // Success: the staged directory becomes the partition of its logical time, with a
    // manifest; DATAJOB_OUTPUT names that partition.
    let file = datajob(
        dir.path(),
        "works",
        "test \"$DATAJOB_OUTPUT\" = \"$TARGET/logical_time=$DATAJOB_LOGICAL_TIME\" || exit 9; echo done > \"$DATAJOB_STAGING/$PART\"",
        &output,
    );
    let run = |part: &str| {
        run_local(
            dir.path(),
            &file,
            &[
                "--engine",
                "host",
                "--logical-time",
                "2026-11-25T03:00:00Z",
                "-e",
                &format!("TARGET={}", target.display()),
                "-e",
                &format!("PART={part}"),
            ],
        )
    };
    let (out, _, stderr) = run("part-0");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(partition.join("part-0")).unwrap(),
        "done\n"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(partition.join("_DATAJOB.json")).unwrap()).unwrap();
    assert_eq!(manifest["runId"], "works-29926260");
    assert_eq!(manifest["logicalTime"], "2026-11-25T03:00:00Z");
    assert_eq!(
        manifest["files"],
        serde_json::json!([{"path": "part-0", "size": 5}])
    );
    assert!(!target.join("_runs/works-29926260").exists());
    assert!(
        stderr.contains(&format!(
            "published the staged output as {}",
            partition.display()
        )),
        "{stderr}"
    );

    // A re-run of the same logical time replaces the partition as a whole.
    let (out, _, stderr) = run("part-1");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(partition.join("part-1").exists());
    assert!(
        !partition.join("part-0").exists(),
        "the published output replaces the old one whole"
    );
}

#[test]
fn output_that_is_not_a_local_path_is_published_under_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let file = datajob(
        dir.path(),
        "tolake",
        "echo x > \"$DATAJOB_STAGING/a\"",
        "  output: s3://acme-lake/x\n",
    );
    let (out, _, stderr) = run_local(
        dir.path(),
        &file,
        &["--engine", "host", "--logical-time", "2026-11-25T03:00:00Z"],
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let published = dir
        .path()
        .join(".datajob/s3/acme-lake/x/logical_time=2026-11-25T03:00:00Z/a");
    assert!(published.exists(), "{stderr}");
    assert!(
        stderr.contains("output s3://acme-lake/x is not a local path"),
        "{stderr}"
    );
}

#[test]
fn a_run_reads_the_publication_of_its_input_and_waits_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chain.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: datajob.dev/v1alpha1
kind: DataJob
metadata: {name: raw}
spec:
  image: busybox:1.36
  schedule: "0 * * * *"
  output: pvc://lake/raw
  command: [sh, -c, 'echo "$DATAJOB_LOGICAL_TIME" > "$DATAJOB_STAGING/events.txt"']
---
apiVersion: datajob.dev/v1alpha1
kind: DataJob
metadata: {name: clean}
spec:
  image: busybox:1.36
  schedule: "0 * * * *"
  inputs: [raw]
  output: pvc://lake/clean
  command: [sh, -c, 'grep -q "\"runId\": \"raw-" "$DATAJOB_INPUT_RAW/_DATAJOB.json" && tr 0-9 a-j < "$DATAJOB_INPUT_RAW/events.txt" > "$DATAJOB_STAGING/clean.txt"']
"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let at = ["--engine", "host", "--logical-time", "2026-11-25T03:00:00Z"];
    fn with<'a>(name: &'a str, at: &[&'a str]) -> Vec<&'a str> {
        [&["--name", name][..], at].concat()
    }
    // Its input has not published that time: the run does not start.
    let (out, _, stderr) = run_local(dir.path(), file, &with("clean", &at));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "✗ not started: WaitingForInput: input raw has not published 2026-11-25T03:00:00Z"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("--name raw --logical-time 2026-11-25T03:00:00Z"),
        "{stderr}"
    );
    let (out, _, stderr) = run_local(dir.path(), file, &with("raw", &at));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let (out, _, stderr) = run_local(dir.path(), file, &with("clean", &at));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("input raw: its publication of 2026-11-25T03:00:00Z"),
        "{stderr}"
    );
    let clean = dir
        .path()
        .join(".datajob/pvc/lake/clean/logical_time=2026-11-25T03:00:00Z/clean.txt");
    assert_eq!(
        std::fs::read_to_string(clean).unwrap(),
        "cacg-bb-cfTad:aa:aaZ\n"
    );
}

#[test]
fn an_invalid_datajob_is_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let file = datajob(
        dir.path(),
        "bad",
        &format!("touch {}", marker.display()),
        "  deadline: 2 hours\n",
    );
    let (out, _, stderr) = run_local(dir.path(), &file, &["--engine", "host"]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("spec.deadline \"2 hours\""), "{stderr}");
    assert!(!marker.exists());
}

#[test]
fn run_without_local_says_how_to_run_on_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let file = datajob(dir.path(), "x", "true", "");
    let out = Command::new(BIN)
        .args(["run", "-f", &file])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("trigger"));
}

#[test]
fn a_host_run_gets_directories_only_its_user_may_write_and_says_what_environment_it_passed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out_root = dir.path().join("out");
    let file = datajob(
        dir.path(),
        "private",
        "echo x > \"$DATAJOB_STAGING/a\" && echo y > \"$DATAJOB_SCRATCH/b\"",
        &format!("  output: file://{}\n", out_root.display()),
    );
    let (out, _, stderr) = run_local(
        dir.path(),
        &file,
        &["--engine", "host", "--logical-time", "2026-11-25T03:00:00Z"],
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let runs: Vec<_> = std::fs::read_dir(dir.path().join(".datajob/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    for d in ["scratch", "home"] {
        assert_eq!(mode(&runs[0].join(d)), 0o700, "{d}");
    }
    for d in [out_root.clone(), out_root.join("_runs")] {
        assert_eq!(mode(&d) & 0o002, 0, "{} is writable by others", d.display());
    }
    let published =
        std::fs::canonicalize(out_root.join("logical_time=2026-11-25T03:00:00Z")).unwrap();
    assert_eq!(mode(&published), 0o755);
    assert!(published.join("a").exists());
    // It says that the run saw the caller's environment, and how to pass only the run's.
    let said = stderr
        .lines()
        .find(|l| l.contains("environment: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(said.contains("of your own environment"), "{said}");
    assert!(said.contains("DATAJOB_RUN_ID"), "{said}");
    assert!(said.contains("--engine docker or podman"), "{said}");
}

#[test]
fn an_object_store_output_that_climbs_out_of_its_prefix_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = datajob(
        dir.path(),
        "climb",
        "echo x > \"$DATAJOB_STAGING/a\"",
        "  output: s3://acme-lake/../../../escaped\n",
    );
    let (out, _, stderr) = run_local(dir.path(), &file, &["--engine", "host"]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("spec.output"), "{stderr}");
    assert!(stderr.contains("'..'"), "{stderr}");
    assert!(!dir.path().join("escaped").exists());
    assert!(!dir.path().join(".datajob").join("escaped").exists());
}

#[test]
fn a_run_takes_the_arguments_a_trigger_takes_with_the_same_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let file = datajob(
        dir.path(),
        "daily",
        "echo day=$1 mode=$DATAJOB_ARG_MODE id=$DATAJOB_RUN_ID",
        "  args: [x, \"$(DATAJOB_ARG_DAY)\"]\n  params: {day: yesterday, mode: full}\n",
    );
    let at = ["--engine", "host", "--logical-time", "2026-11-25T03:00:00Z"];
    let (out, stdout, stderr) = run_local(dir.path(), &file, &at);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "day=yesterday mode=full id=daily-29926260");

    let with: Vec<&str> = at
        .iter()
        .copied()
        .chain(["--arg", "day=2026-11-01"])
        .collect();
    let (out, stdout, stderr) = run_local(dir.path(), &file, &with);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let line = stdout.trim();
    assert!(
        line.starts_with("day=2026-11-01 mode=full id=daily-29926260-")
            && line.len() == "day=2026-11-01 mode=full id=daily-29926260-".len() + 8,
        "a run with arguments has a run id of its own: {line}"
    );

    let bad: Vec<&str> = at.iter().copied().chain(["--arg", "region=eu"]).collect();
    let (out, stdout, stderr) = run_local(dir.path(), &file, &bad);
    assert_ne!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("parameter region \"eu\" is not declared in the DataJob's spec.params; use one of the declared parameters: day, mode"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    let newline: Vec<&str> = at.iter().copied().chain(["--arg", "day=a\nb"]).collect();
    let (out, _, stderr) = run_local(dir.path(), &file, &newline);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("parameter day") && stderr.contains("control character"),
        "{stderr}"
    );
}

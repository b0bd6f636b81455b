//! What the cluster commands say when there is no cluster to talk to: which address
//! they tried and what to check, with exit code 3. No cluster needed.
// A test: a failed expectation is meant to stop it (production code denies these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kubectl-datajob");

fn plugin(kubeconfig: &str, args: &[&str]) -> (Output, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl-datajob");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// A kubeconfig whose cluster is a local port nobody listens on.
fn dead_cluster(dir: &std::path::Path) -> (String, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: dead\n\
             clusters: [{{name: dead, cluster: {{server: \"https://127.0.0.1:{port}\", insecure-skip-tls-verify: true}}}}]\n\
             users: [{{name: me, user: {{token: t}}}}]\n\
             contexts: [{{name: dead, context: {{cluster: dead, user: me, namespace: analytics}}}}]\n"
        ),
    )
    .unwrap();
    (path.to_str().unwrap().to_string(), port)
}

#[test]
fn an_unreachable_cluster_is_named_with_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let (kubeconfig, port) = dead_cluster(dir.path());
    for args in [
        vec!["status"],
        vec!["runs", "churn-features"],
        vec!["logs", "churn-features"],
        vec!["trigger", "churn-features"],
        vec!["describe", "churn-features"],
    ] {
        let (out, stderr) = plugin(&kubeconfig, &args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: cannot reach the cluster at https://127.0.0.1:{port}: "
            )),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("Connection refused"), "{stderr}");
        assert!(stderr.contains("KUBECONFIG / --context"), "{stderr}");
    }
}

#[test]
fn plan_still_works_and_says_the_dry_run_was_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (kubeconfig, port) = dead_cluster(dir.path());
    let example = concat!(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        "/examples/one-off.yaml"
    );
    let out = Command::new(BIN)
        .args(["plan", "-f", example])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // The kubeconfig context's namespace applies, as with kubectl.
    assert!(
        stdout.contains("DataJob analytics/backfill-customers is valid."),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "Server-side dry run: skipped (cannot reach the cluster at https://127.0.0.1:{port}"
        )),
        "{stdout}"
    );
}

#[test]
fn an_unknown_context_is_a_kubeconfig_problem() {
    let dir = tempfile::tempdir().unwrap();
    let (kubeconfig, _) = dead_cluster(dir.path());
    let (out, stderr) = plugin(&kubeconfig, &["status", "--context", "nope"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr.contains("no usable kubeconfig"), "{stderr}");
    assert!(stderr.contains("--context"), "{stderr}");
    let (out, stderr) = plugin("/nonexistent/kubeconfig", &["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr.contains("set KUBECONFIG or pass --kubeconfig"),
        "{stderr}"
    );
}

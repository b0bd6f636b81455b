//! The `kubectl-datajob` binary of this crate, run as a user would.

use std::time::Duration;

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the plugin in namespace `ns` with the test's KUBECONFIG.
pub async fn plugin(ns: &str, args: &[&str]) -> Out {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(super::bin("kubectl-datajob"))
            .args(args)
            .args(["-n", ns])
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("kubectl-datajob finished within 2 minutes")
    .expect("run kubectl-datajob");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

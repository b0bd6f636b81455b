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
    plugin_with(ns, args, &[]).await
}

/// [`plugin`] with `env` on top of the test's environment.
pub async fn plugin_with(ns: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = tokio::process::Command::new(super::bin("kubectl-datajob"));
    cmd.args(args)
        .args(["-n", ns])
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("kubectl-datajob finished within 2 minutes")
        .expect("run kubectl-datajob");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

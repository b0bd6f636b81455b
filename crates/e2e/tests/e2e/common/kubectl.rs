//! The real `kubectl` (the one `e2e/run-e2e.sh` puts first on the PATH: the control
//! plane's own version), run as a user would, with the test's KUBECONFIG.
use std::io::Write;
use std::process::{Command, Stdio};

/// What a command printed and how it ended.
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok={}\n--- stdout\n{}--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

/// A discovery cache of this test process's own: kubectl keeps discovery (and so CRD
/// names and categories) for hours, and a cache from an older CRD hides what a user
/// with the current one sees.
fn cache_dir() -> String {
    std::env::temp_dir()
        .join(format!("datajob-e2e-kubectl-cache-{}", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

/// `kubectl ARGS`, with `stdin` fed to it when given.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Out {
    let mut child = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
        .arg(format!("--cache-dir={}", cache_dir()))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .expect("write kubectl's stdin");
    }
    let out = child.wait_with_output().expect("wait for kubectl");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

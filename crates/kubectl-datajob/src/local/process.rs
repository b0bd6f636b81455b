//! One attempt of a local run as an operating-system process: output streamed live,
//! stopped (TERM, then KILL after a grace period) when the deadline passes or the user
//! presses Ctrl-C, and nothing left behind when it ends, as with a container.
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::attempts::AttemptEnd;
use super::engine::Engine;
use crate::terminal::Progress;

/// How long a stopped attempt gets between TERM and KILL.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// What runs the attempt, which decides how it is stopped.
#[derive(Clone, Debug)]
pub(crate) enum Runner {
    Host,
    Container { engine: Engine, name: String },
}

pub(crate) struct Attempt {
    pub progress: Arc<Progress>,
    /// Send the job's stdout to our stderr (when stdout carries `-o json|yaml`).
    pub stdout_to_stderr: bool,
    pub deadline_at: Instant,
}

/// Runs `cmd` to its end. A command that cannot be started ends like a container's
/// would: 127 when it does not exist, 126 when it cannot be executed.
pub(crate) async fn run(
    mut cmd: Command,
    program: &str,
    runner: &Runner,
    a: &Attempt,
    interrupt: Pin<&mut impl Future<Output = std::io::Result<()>>>,
) -> AttemptEnd {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let what = if code == 127 {
                "command not found".to_string()
            } else {
                e.to_string()
            };
            a.progress
                .write(true, format!("{program}: {what}\n").as_bytes());
            return AttemptEnd::Exited { code, oom: false };
        }
    };
    let pid = child.id();
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(
            out,
            a.stdout_to_stderr,
            a.progress.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, true, a.progress.clone())));
    }
    let end = tokio::select! {
        status = child.wait() => match status {
            Ok(s) => AttemptEnd::Exited {
                code: s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
                oom: false,
            },
            Err(_) => AttemptEnd::Exited { code: 1, oom: false },
        },
        _ = tokio::time::sleep_until(a.deadline_at) => {
            stop(&mut child, pid, runner).await;
            AttemptEnd::DeadlineExceeded
        }
        _ = interrupt => {
            stop(&mut child, pid, runner).await;
            AttemptEnd::Interrupted
        }
    };
    // As in a container: when the main process ends, what it left running goes too.
    if let Some(pid) = pid {
        signal_group(pid, "KILL").await;
    }
    for p in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
    }
    end
}

async fn pump(mut from: impl AsyncRead + Unpin, to_stderr: bool, progress: Arc<Progress>) {
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        progress.write(to_stderr, &buf[..n]);
    }
}

/// TERM, then KILL after [`GRACE`]: the attempt's whole process group, or its container.
async fn stop(child: &mut Child, pid: Option<u32>, runner: &Runner) {
    match runner {
        Runner::Host => {
            if let Some(pid) = pid {
                signal_group(pid, "TERM").await;
            }
        }
        Runner::Container { engine, name } => {
            let _ = Command::new(engine.program())
                .args(["stop", "--time", &GRACE.as_secs().to_string(), name])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
    }
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        match pid {
            Some(pid) => signal_group(pid, "KILL").await,
            None => {
                let _ = child.start_kill();
            }
        }
        let _ = child.wait().await;
    }
}

/// Sends `signal` to the process group led by `pid` (the attempt runs in its own group).
async fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// After a container attempt: whether it was killed for memory; then removes it.
pub(crate) async fn finish_container(engine: Engine, name: &str) -> bool {
    let oom = Command::new(engine.program())
        .args(["inspect", "--format", "{{.State.OOMKilled}}", name])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
        .unwrap_or(false);
    let _ = Command::new(engine.program())
        .args(["rm", "--force", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    oom
}

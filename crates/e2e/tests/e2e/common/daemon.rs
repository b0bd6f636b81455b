//! A server process a test starts (Prometheus, Alertmanager) with its own temporary
//! directory and log file: killed, waited for and its directory removed when dropped.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    pub dir: tempfile::TempDir,
    name: &'static str,
}

impl Daemon {
    /// Starts `cmd` with stdin closed and stdout and stderr in `<dir>/<name>.log`; a
    /// start that fails says which package to install (or which variable to set).
    pub fn spawn(
        mut cmd: Command,
        dir: tempfile::TempDir,
        name: &'static str,
        install: &str,
    ) -> Daemon {
        let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({e}): {install}"));
        Daemon { child, dir, name }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{}.log", self.name)))
            .unwrap_or_default()
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until `ready` answers true, failing with its log when it exits or takes
    /// longer than 30 s.
    pub async fn wait_ready<F, Fut>(&mut self, ready: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready().await {
            if let Some(status) = self.exited() {
                panic!("{} exited: {status}\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after 30 s:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills it and waits for it; the directory goes with `self`.
    pub fn stop(self) {}

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

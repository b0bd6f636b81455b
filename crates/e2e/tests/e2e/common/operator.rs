//! Extra operator processes for tests that need more than the one `e2e/with-operator.sh`
//! runs: a second replica racing the first, a restart, a stricter configuration.
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub struct Operator {
    child: Child,
    pub admin: String,
}

impl Operator {
    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether it has exited (and its status then).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills it with SIGKILL (no clean-up, no Lease release) and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends SIGTERM and returns at once.
    pub async fn terminate(&self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
    }

    /// Its `/metrics` text, if it answers.
    pub async fn metrics(&self) -> Option<String> {
        http_get(&self.admin, "/metrics")
            .await
            .filter(|out| out.starts_with("HTTP/1.1 200"))
    }

    /// Whether it says it leads (`datajob_leader`), if it answers.
    pub async fn leads(&self) -> Option<bool> {
        let text = self.metrics().await?;
        sample(&text, "datajob_leader", &[]).map(|v| v == 1.0)
    }

    /// Stops it (SIGTERM, then SIGKILL after 10 s) and waits for it to exit.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// `GET path` on `addr` over plain HTTP/1.1: the status line and body, or `None`.
pub async fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    Some(out)
}

async fn ready(admin: &str) -> bool {
    http_get(admin, "/readyz")
        .await
        .is_some_and(|out| out.starts_with("HTTP/1.1 200"))
}

/// The `/metrics` text of the operator that `e2e/with-operator.sh` runs.
pub async fn shared_metrics() -> String {
    let admin = std::env::var("DATAJOB_ADMIN_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    http_get(&admin, "/metrics")
        .await
        .filter(|out| out.starts_with("HTTP/1.1 200"))
        .unwrap_or_else(|| panic!("GET http://{admin}/metrics failed"))
}

/// The value of the sample `name{…}` whose labels include every `label="value"` of
/// `labels`, from a Prometheus text exposition.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

/// Poll the shared operator's `/metrics` until the sample `name{labels}` exists and
/// `pred` holds for its value; return the value. The operator updates some metrics
/// just after the status write a test waits for, so a single read could be early.
/// On timeout it panics with the last exposition.
pub async fn wait_for_sample(
    name: &str,
    labels: &[(&str, &str)],
    pred: impl Fn(f64) -> bool,
    timeout: Duration,
) -> f64 {
    let start = std::time::Instant::now();
    loop {
        let text = shared_metrics().await;
        if let Some(v) = sample(&text, name, labels).filter(|v| pred(*v)) {
            return v;
        }
        if start.elapsed() >= timeout {
            panic!(
                "after {timeout:?}, no sample {name}{labels:?} with the wanted value in:\n{text}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts `datajob-operator` without a webhook, with `env` on top of a clean
/// configuration, and waits until it is ready (serving; with leader election on, it may
/// still be a follower: see [`Operator::leads`]).
pub async fn spawn(env: &[(&str, &str)]) -> Operator {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(super::bin("datajob-operator"));
    for (k, _) in std::env::vars() {
        if k.starts_with("DATAJOB_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("DATAJOB_ADMIN_ADDR", &admin)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start datajob-operator");
    let mut op = Operator { child, admin };
    for _ in 0..150 {
        if ready(&op.admin).await {
            return op;
        }
        if let Ok(Some(status)) = op.child.try_wait() {
            panic!("datajob-operator exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    op.stop().await;
    panic!("datajob-operator on {} not ready after 30s", op.admin);
}

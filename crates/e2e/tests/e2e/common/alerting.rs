//! Debian's Alertmanager as a plain process on 127.0.0.1, and a local HTTP sink that
//! stands in for its receivers (Slack, e-mail): every webhook notification it gets is
//! kept with the receiver's name (the last segment of the URL path).
//!
//! The route comes from the chart's documented example,
//! `charts/datajob/alerts/alertmanager-owners.yaml`; only each receiver's integrations
//! are replaced by a webhook to the sink, and the grouping timers are shortened to a
//! second, so what the test proves is the route a user copies.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::ROOT;
use super::daemon::Daemon;
use super::operator::{free_port, http_get};

/// The documented route per owner.
pub fn example_path() -> String {
    format!("{ROOT}/charts/datajob/alerts/alertmanager-owners.yaml")
}

/// One alert as a receiver got it: the receiver and the alert's labels.
#[derive(Clone, Debug)]
pub struct Notified {
    pub receiver: String,
    pub labels: Value,
}

impl Notified {
    pub fn label(&self, name: &str) -> &str {
        self.labels[name].as_str().unwrap_or_default()
    }
}

/// An HTTP server on 127.0.0.1 that answers every POST with 200 and keeps the alerts of
/// each webhook notification; it stops when dropped.
pub struct Sink {
    pub addr: String,
    got: Arc<Mutex<Vec<Notified>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port on 127.0.0.1");
        let addr = listener.local_addr().expect("its address").to_string();
        let got: Arc<Mutex<Vec<Notified>>> = Arc::default();
        let kept = got.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    if let Some((path, body)) = read_request(&mut s).await {
                        let receiver = path.rsplit('/').next().unwrap_or_default().to_string();
                        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                        let mut kept = kept.lock().unwrap();
                        for a in v["alerts"].as_array().into_iter().flatten() {
                            kept.push(Notified {
                                receiver: receiver.clone(),
                                labels: a["labels"].clone(),
                            });
                        }
                    }
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Sink { addr, got, task }
    }

    /// The URL of `receiver`'s webhook.
    pub fn url(&self, receiver: &str) -> String {
        format!("http://{}/{receiver}", self.addr)
    }

    /// Every alert notified so far.
    pub fn got(&self) -> Vec<Notified> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for what was notified; returns it.
    pub async fn wait(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[Notified]) -> bool,
    ) -> Vec<Notified> {
        let start = Instant::now();
        loop {
            let got = self.got();
            if pred(&got) {
                return got;
            }
            assert!(
                start.elapsed() < timeout,
                "after {timeout:?}, the receivers have not got {what}; they got {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request: its path and its body (by Content-Length).
async fn read_request(s: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1)?.to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((path, buf[head_end..].to_vec()))
}

/// The example's route with every receiver sending to `sink` instead, and grouping
/// timers of a second. Returns the config and the receivers' names.
pub fn config_for(example: &Value, sink: &Sink) -> (Value, BTreeSet<String>) {
    let mut config = json!({"route": example["route"].clone(), "receivers": []});
    let route = &mut config["route"];
    route["group_wait"] = json!("1s");
    route["group_interval"] = json!("1s");
    route["repeat_interval"] = json!("1h");
    let mut names = BTreeSet::new();
    for r in example["receivers"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or_default().to_string();
        config["receivers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": name, "webhook_configs": [{"url": sink.url(&name), "send_resolved": false}]}));
        names.insert(name);
    }
    (config, names)
}

/// Alertmanager on 127.0.0.1 with its own storage, without clustering (a [`Daemon`]).
pub struct Alertmanager {
    daemon: Daemon,
    pub addr: String,
}

impl Alertmanager {
    /// `$ALERTMANAGER`, or Debian's `prometheus-alertmanager`.
    pub fn bin() -> String {
        std::env::var("ALERTMANAGER").unwrap_or_else(|_| "prometheus-alertmanager".into())
    }

    pub async fn start(config: &Value) -> Alertmanager {
        let dir = tempfile::Builder::new()
            .prefix("datajob-alertmanager-")
            .tempdir()
            .expect("a temporary directory");
        let file = dir.path().join("alertmanager.yml");
        std::fs::write(&file, serde_saphyr::to_string(config).unwrap()).unwrap();
        check_config(&file);
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(Self::bin());
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn");
        let mut daemon = Daemon::spawn(
            cmd,
            dir,
            "alertmanager",
            "install Debian's prometheus-alertmanager package, or set ALERTMANAGER",
        );
        daemon
            .wait_ready(|| async {
                http_get(&addr, "/-/ready")
                    .await
                    .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            })
            .await;
        eprintln!("alertmanager on {addr}, routing to the receivers");
        Alertmanager { daemon, addr }
    }

    /// Its storage directory (removed when it stops).
    pub fn dir(&self) -> &Path {
        self.daemon.dir.path()
    }

    /// Kills it and waits for it; the directory goes with it.
    pub fn stop(self) {
        self.daemon.stop();
    }
}

/// `amtool check-config FILE` (from the same Debian package) must accept it.
pub fn check_config(file: &Path) {
    let amtool = std::env::var("AMTOOL").unwrap_or_else(|_| "amtool".into());
    let out = Command::new(&amtool)
        .arg("check-config")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {amtool} ({e}): install Debian's prometheus-alertmanager package, or set AMTOOL"));
    assert!(
        out.status.success(),
        "amtool check-config {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! A TCP proxy that a test controls, for network partitions: it forwards between its
//! clients and one target (the apiserver) until [`NetCut::cut`], and from then on
//! forwards nothing, ever, in either direction, without closing anything. A cut-off
//! process sees what a dropped route looks like: its open connections go silent, new
//! ones are accepted and never answered. It neither gets an error nor a reset, so
//! only its own timeouts end its calls.
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub struct NetCut {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl NetCut {
    /// Listens on a free port of 127.0.0.1 and forwards to `target` (`host:port`).
    pub async fn start(target: &str) -> NetCut {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let cut = Arc::new(AtomicBool::new(false));
        let target = target.to_string();
        let flag = cut.clone();
        let task = tokio::spawn(async move {
            // Owned here: aborting the accept loop drops (and aborts) every connection.
            let mut conns = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (flag, target) = (flag.clone(), target.clone());
                conns.spawn(async move {
                    if flag.load(Ordering::SeqCst) {
                        let _hold = client;
                        return std::future::pending().await;
                    }
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, flag.clone()), pipe(sr, cw, flag));
                });
                while conns.try_join_next().is_some() {}
            }
        });
        NetCut { addr, cut, task }
    }

    /// From now on nothing passes, and nothing is closed.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

impl Drop for NetCut {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` until either ends; after the cut it holds both, silent.
async fn pipe(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if cut.load(Ordering::SeqCst) {
            let _hold = (from, to);
            return std::future::pending().await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            let _hold = (from, to);
            return std::future::pending().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The `host:port` of the (first) cluster of the kubeconfig at `path`.
pub fn kubeconfig_server(path: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .find_map(|line| {
            let url = line.split_once("server: ")?.1.trim().trim_matches('"');
            Some(
                url.strip_prefix("https://")?
                    .trim_end_matches('/')
                    .to_string(),
            )
        })
        .unwrap_or_else(|| panic!("no `server: https://…` in {path}"))
}

/// Writes to `out` a copy of the kubeconfig at `path` whose clusters are reached
/// through `proxy`.
pub fn kubeconfig_through(path: &str, proxy: SocketAddr, out: &std::path::Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let rewritten: Vec<String> = text
        .lines()
        .map(|line| match line.split_once("server: ") {
            Some((indent, url)) if url.trim().trim_matches('"').starts_with("https://") => {
                format!("{indent}server: https://{proxy}")
            }
            _ => line.to_string(),
        })
        .collect();
    std::fs::write(out, rewritten.join("\n") + "\n").expect("write the proxied kubeconfig");
}

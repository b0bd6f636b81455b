//! `kubectl datajob logs NAME [--run ID] [--attempt N] [-f]`: a run's logs without
//! knowing pod names. The run is the latest unless named; its pod is the newest
//! attempt's. Once the pod or its node is gone, the logs are read from the operator's
//! log archive when one is named here ([`super::archive`]), and the first line says
//! which it read.
use std::io::Write;
use std::time::Duration;

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, LogParams};

use super::archive::{self, ArchiveArgs};
use super::cluster::Cluster;
use super::error::{CliError, Result};
use super::history;
use super::terminal::zone_of;
use super::terminal::{self, Progress};
use datajob_api::RunRecord;
use datajob_core::labels::{self, CONTAINER, JOB_NAME};

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// The DataJob.
    pub name: String,

    /// Which run: its id (e.g. churn-features-29926260) or its logical time
    /// (e.g. 2026-11-25T03:00:00Z). Default: the latest run.
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,

    /// Which attempt of the run: 1 is the first. Default: the latest.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub attempt: Option<u32>,

    /// Stream the logs as they are written, waiting for the run's pod to start.
    #[arg(short = 'f', long)]
    pub follow: bool,

    #[command(flatten)]
    pub archive: ArchiveArgs,
}

/// The run `wanted` names (an id or a logical time), or the latest.
pub(crate) fn pick_run<'a>(
    runs: &'a [RunRecord],
    wanted: Option<&str>,
    datajob: &str,
) -> Result<&'a RunRecord, String> {
    let Some(w) = wanted else {
        return runs.first().ok_or_else(|| {
            format!("DataJob {datajob} has no runs yet; start one with `kubectl datajob trigger {datajob}`")
        });
    };
    let id = labels::parse_rfc3339(w)
        .map(|t| labels::run_id(datajob, labels::truncate_to_minute(t)))
        .unwrap_or_else(|| w.to_string());
    runs.iter().find(|r| r.name == id).ok_or_else(|| {
        let known: Vec<&str> = runs.iter().take(5).map(|r| r.name.as_str()).collect();
        if known.is_empty() {
            format!("DataJob {datajob} has no runs yet")
        } else {
            format!(
                "DataJob {datajob} has no run {id}; its latest runs are {} (see `kubectl datajob runs {datajob}`)",
                known.join(", ")
            )
        }
    })
}

/// The pod of the run's latest attempt: the newest.
pub(crate) fn pick_pod(pods: &[Pod]) -> Option<&Pod> {
    pods.iter()
        .max_by_key(|p| (p.creation_timestamp().map(|t| t.0), p.name_any()))
}

/// Why a pod has no logs yet, or `None` when its container started.
pub(crate) fn not_started(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let container = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER);
    if let Some(state) = container.and_then(|c| c.state.as_ref()) {
        if state.running.is_some() || state.terminated.is_some() {
            return None;
        }
        if let Some(w) = &state.waiting {
            let reason = w.reason.clone().unwrap_or_else(|| "Waiting".into());
            return Some(match &w.message {
                Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                _ => reason,
            });
        }
    }
    let unscheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unscheduled {
        return Some(format!(
            "not scheduled yet: {}",
            c.message.clone().unwrap_or_default()
        ));
    }
    Some(status.phase.clone().unwrap_or_else(|| "Pending".into()))
}

/// The annotation kwok manages nodes by (`--manage-nodes-with-annotation-selector`): a
/// node that has it is simulated, and has no kubelet that could serve logs.
const KWOK_NODE: &str = "kwok.x-k8s.io/node";

/// The sentence for a pod on a simulated node: there are no logs, and that is all there
/// is to say. How a request to its absent kubelet fails (a TLS or dial error from
/// whatever answers at the node's address) says nothing more to the reader.
pub(crate) fn simulated(run: &str, pod: &str, node: &str) -> String {
    format!(
        "cannot read the logs of run {run}: its pod {pod} runs on {node}, a simulated (kwok) node, which keeps no container logs"
    )
}

/// The sentence for logs a node with a kubelet did not serve.
pub(crate) fn unavailable(run: &str, pod: &str, node: &str, error: &str) -> String {
    format!(
        "cannot read the logs of run {run}: its pod {pod} runs on node {node}, which did not serve them ({error}); the node's kubelet may be down or unreachable from the API server"
    )
}

/// What the API says about the node that ran a pod.
#[derive(Debug, PartialEq, Eq)]
enum NodeKind {
    /// A simulated (kwok) node.
    Simulated,
    /// The node is gone (its node group may have scaled down).
    Gone,
    /// A node with a kubelet, or one we could not look at (not allowed, API error).
    Other,
}

async fn node_kind(cluster: &Cluster, node: &str) -> NodeKind {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    match nodes.get_metadata_opt(node).await {
        Ok(None) => NodeKind::Gone,
        Ok(Some(n)) if n.annotations().contains_key(KWOK_NODE) => NodeKind::Simulated,
        _ => NodeKind::Other,
    }
}

/// A failed log request in words; a node that did not answer is named, and whether it
/// is a simulated one.
async fn log_error(
    e: kube::Error,
    cluster: &Cluster,
    run: &str,
    pod: &str,
    node: &str,
) -> CliError {
    // The API server answers 404 for the logs of a pod whose node advertises no kubelet
    // endpoint, and 5xx when the kubelet does not answer (a dial or TLS error). A 404 for
    // a pod that is gone is said as such.
    let kubelet_failed = matches!(&e, kube::Error::Api(s)
        if s.code == 404 || s.code >= 500 || s.message.contains("dial tcp"));
    if let kube::Error::Api(s) = &e {
        let pods: Api<Pod> = cluster.api();
        if s.code == 404 && matches!(pods.get_metadata_opt(pod).await, Ok(None)) {
            return CliError::Local(format!(
                "cannot read the logs of run {run}: its pod {pod} was deleted meanwhile"
            ));
        }
    }
    // Whatever failed, a pod on a simulated node has no logs, and the error is not shown.
    match node_kind(cluster, node).await {
        NodeKind::Simulated => CliError::Local(simulated(run, pod, node)),
        NodeKind::Gone if kubelet_failed => CliError::Local(format!(
            "cannot read the logs of run {run}: the node {node} that ran its pod {pod} is gone (its node group may have scaled down), and the logs went with it"
        )),
        _ => match e {
            kube::Error::Api(s) if kubelet_failed => {
                CliError::Local(unavailable(run, pod, node, &s.message))
            }
            other => cluster.error(format!("read the logs of pod {pod}"))(other),
        },
    }
}

/// Writes the logs of `pod` (its run's container) to `out`, streaming them with
/// `follow`. A pod on a simulated node is said to have none before any log request is
/// made: nothing (no failed request, no half-opened stream) shows how a request to its
/// absent kubelet would fail.
async fn print_logs(
    cluster: &Cluster,
    run: &str,
    pod: &str,
    node: &str,
    follow: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if node_kind(cluster, node).await == NodeKind::Simulated {
        return Err(CliError::Local(simulated(run, pod, node)));
    }
    let api: Api<Pod> = cluster.api();
    let params = LogParams {
        container: Some(CONTAINER.into()),
        follow,
        ..Default::default()
    };
    if !follow {
        let text = match api.logs(pod, &params).await {
            Ok(t) => t,
            Err(e) => return Err(log_error(e, cluster, run, pod, node).await),
        };
        return out
            .write_all(text.as_bytes())
            .map_err(CliError::io(format!("writing the logs of pod {pod}")));
    }
    let stream = match api.log_stream(pod, &params).await {
        Ok(s) => s,
        Err(e) => return Err(log_error(e, cluster, run, pod, node).await),
    };
    let mut lines = stream.lines();
    while let Some(line) = lines
        .try_next()
        .await
        .map_err(CliError::io(format!("streaming the logs of pod {pod}")))?
    {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    Ok(())
}

struct Target {
    run: RunRecord,
    pod: Pod,
    attempts: usize,
    zone: chrono_tz::Tz,
}

/// What `find` found: a pod to read, or a run whose pod (or the attempt asked for) is
/// gone.
enum Found {
    Pod(Box<Target>),
    Gone {
        run: Box<RunRecord>,
        zone: chrono_tz::Tz,
        why: String,
    },
}

/// The pod of attempt `n` (1 is the first) among the pods left, oldest first.
fn attempt_pod(pods: &[Pod], n: u32) -> Option<&Pod> {
    let mut sorted: Vec<&Pod> = pods.iter().collect();
    sorted.sort_by_key(|p| (p.creation_timestamp().map(|t| t.0), p.name_any()));
    sorted
        .get(usize::try_from(n).ok()?.checked_sub(1)?)
        .copied()
}

/// Finds the pod to read, waiting for it with `follow`.
async fn find(args: &LogsArgs, cluster: &Cluster, progress: &Progress) -> Result<Found> {
    let pods_api: Api<Pod> = cluster.api();
    loop {
        let dj = cluster.datajob(&args.name).await?;
        let runs = history::runs_of(cluster, &dj).await?;
        let run = pick_run(&runs, args.run.as_deref(), &args.name)
            .map_err(CliError::NotFound)?
            .clone();
        let pods = pods_api
            .list(&ListParams::default().labels(&format!("{JOB_NAME}={}", run.name)))
            .await
            .map_err(cluster.error(format!("list the pods of run {}", run.name)))?
            .items;
        let picked = match args.attempt {
            Some(n) => match attempt_pod(&pods, n) {
                Some(p) => Some(p),
                None if run.state.is_finished() || n as usize <= pods.len() => {
                    return Ok(Found::Gone {
                        why: format!("its attempt {n} has no pod left"),
                        zone: zone_of(&dj),
                        run: Box::new(run),
                    });
                }
                None => None,
            },
            None => pick_pod(&pods),
        };
        let waiting = match picked {
            None if run.state.is_finished() => {
                return Ok(Found::Gone {
                    why: format!(
                        "it {} and its Job was removed (history limit or TTL); its outcome: {}{}",
                        run.state.to_string().to_lowercase(),
                        run.state,
                        run.reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ),
                    zone: zone_of(&dj),
                    run: Box::new(run),
                });
            }
            None => format!("run {} has no pod yet ({})", run.name, run.state),
            Some(pod) => match not_started(pod) {
                None => {
                    return Ok(Found::Pod(Box::new(Target {
                        pod: pod.clone(),
                        attempts: pods.len(),
                        zone: zone_of(&dj),
                        run,
                    })));
                }
                Some(why)
                    if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") =>
                {
                    return Err(CliError::NotFound(format!(
                        "pod {} of run {} never started its container ({why}), so it has no logs",
                        pod.name_any(),
                        run.name
                    )));
                }
                Some(why) => format!(
                    "the pod {} of run {} has not started: {why}",
                    pod.name_any(),
                    run.name
                ),
            },
        };
        if !args.follow {
            return Err(CliError::NotFound(format!(
                "{waiting}; add -f to wait for it"
            )));
        }
        progress.set(format!("{waiting}; waiting"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub(crate) async fn run(args: &LogsArgs, cluster: &Cluster) -> Result<()> {
    let store = args.archive.store()?;
    let progress = Progress::new();
    let found = find(args, cluster, &progress).await;
    progress.finish();
    let Target {
        run,
        pod,
        attempts,
        zone,
    } = match found? {
        Found::Pod(t) => *t,
        Found::Gone { run, zone, why } => {
            let why = format!("run {} has no pod to read: {why}", run.name);
            return from_archive(args, cluster, store.as_ref(), &run, zone, &why).await;
        }
    };
    let pod_name = pod.name_any();
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_else(|| "?".into());
    if store.is_some() && node_kind(cluster, &node).await == NodeKind::Gone {
        let why = format!("the node {node} that ran its pod {pod_name} is gone");
        return from_archive(args, cluster, store.as_ref(), &run, zone, &why).await;
    }
    let attempt = match args.attempt {
        Some(n) => format!(", attempt {n} of {attempts}"),
        None if attempts > 1 => format!(", the latest of {attempts} attempts"),
        None => String::new(),
    };
    eprintln!(
        "==> run {} (logical time {}){attempt}: pod {pod_name} on node {node}",
        run.name,
        logical(&run, zone),
    );
    let read = print_logs(
        cluster,
        &run.name,
        &pod_name,
        &node,
        args.follow,
        &mut std::io::stdout(),
    )
    .await;
    match (read, store.as_ref()) {
        // The pod went (or its node stopped answering) while we asked: the archive may
        // have its copy.
        (Err(e), Some(_)) => {
            let why = e.to_string();
            from_archive(args, cluster, store.as_ref(), &run, zone, &why)
                .await
                .map_err(|_| e)
        }
        (read, _) => read,
    }
}

fn logical(run: &RunRecord, zone: chrono_tz::Tz) -> String {
    labels::parse_rfc3339(&run.logical_time).map_or_else(
        || run.logical_time.clone(),
        |t| terminal::local_time(t, zone),
    )
}

/// Reads the run's log from the archive, saying so, or says why it cannot.
async fn from_archive(
    args: &LogsArgs,
    cluster: &Cluster,
    store: Option<&datajob_archive::Store>,
    run: &RunRecord,
    zone: chrono_tz::Tz,
    why: &str,
) -> Result<()> {
    let Some(store) = store else {
        let kept = match run.logs.as_deref() {
            Some("Archived" | "Cut") => "the operator archived its logs; ",
            Some("NotKept") => "the operator's log archive did not keep its logs; ",
            _ => "",
        };
        return Err(CliError::NotFound(format!(
            "{why}; {kept}{}",
            archive::HOW_TO_READ
        )));
    };
    let found = archive::read(
        store,
        &cluster.namespace,
        &args.name,
        &run.name,
        args.attempt.map(|n| n as usize),
        CONTAINER,
    )
    .await
    .map_err(|e| CliError::NotFound(format!("{why}; {e}")))?;
    eprintln!(
        "==> run {} (logical time {}), attempt {} of {}: from the log archive ({}), {why}",
        run.name,
        logical(run, zone),
        found.attempt.number,
        found.attempts,
        found.key,
    );
    std::io::stdout()
        .write_all(&found.text)
        .map_err(CliError::io(format!(
            "writing the logs of run {}",
            run.name
        )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datajob_api::RunState;

    fn run(name: &str, t: &str, state: RunState) -> RunRecord {
        RunRecord {
            name: name.into(),
            logical_time: t.into(),
            state,
            ..Default::default()
        }
    }

    #[test]
    fn the_latest_run_or_the_one_named() {
        let runs = vec![
            run("a-29926261", "2026-11-25T03:01:00Z", RunState::Running),
            run("a-29926260", "2026-11-25T03:00:00Z", RunState::Failed),
        ];
        assert_eq!(pick_run(&runs, None, "a").unwrap().name, "a-29926261");
        assert_eq!(
            pick_run(&runs, Some("a-29926260"), "a").unwrap().name,
            "a-29926260"
        );
        assert_eq!(
            pick_run(&runs, Some("2026-11-25T03:00:30Z"), "a")
                .unwrap()
                .name,
            "a-29926260"
        );
        let err = pick_run(&runs, Some("a-1"), "a").unwrap_err();
        assert!(
            err.contains("has no run a-1; its latest runs are a-29926261, a-29926260"),
            "{err}"
        );
        assert!(
            pick_run(&[], None, "a")
                .unwrap_err()
                .contains("no runs yet")
        );
    }

    fn pod(name: &str, created: i64, status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "creationTimestamp": chrono::DateTime::from_timestamp(created, 0).unwrap().to_rfc3339()},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn the_newest_pod_and_whether_it_started() {
        let pods = vec![
            pod(
                "a-1-x",
                100,
                serde_json::json!({"phase": "Failed", "containerStatuses": [{"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 1}}}]}),
            ),
            pod(
                "a-1-y",
                200,
                serde_json::json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}]}),
            ),
        ];
        let p = pick_pod(&pods).unwrap();
        assert_eq!(p.name_any(), "a-1-y");
        assert_eq!(
            not_started(p).unwrap(),
            "not scheduled yet: 0/3 nodes are available"
        );
        assert_eq!(not_started(&pods[0]), None);
    }

    #[test]
    fn an_attempt_is_counted_from_the_first_pod_made() {
        let pods = vec![
            pod("a-1-late", 300, serde_json::json!({})),
            pod("a-1-first", 100, serde_json::json!({})),
            pod("a-1-second", 200, serde_json::json!({})),
        ];
        assert_eq!(
            attempt_pod(&pods, 1).map(|p| p.name_any()).as_deref(),
            Some("a-1-first")
        );
        assert_eq!(
            attempt_pod(&pods, 3).map(|p| p.name_any()).as_deref(),
            Some("a-1-late")
        );
        assert!(attempt_pod(&pods, 4).is_none());
        assert!(attempt_pod(&pods, 0).is_none());
    }

    #[test]
    fn unavailable_logs_say_where_and_why() {
        assert_eq!(
            simulated("a-1", "a-1-x", "kwok-large-0"),
            "cannot read the logs of run a-1: its pod a-1-x runs on kwok-large-0, a simulated (kwok) node, which keeps no container logs"
        );
        let m = unavailable(
            "a-1",
            "a-1-x",
            "worker-3",
            "Get \"https://10.0.0.3:10250/...\": x509: certificate signed by unknown authority",
        );
        assert!(
            m.contains("runs on node worker-3, which did not serve them (Get"),
            "{m}"
        );
        assert!(m.contains("kubelet may be down"), "{m}");
    }

    /// A fake API server on 127.0.0.1 (plain HTTP): each request is answered by
    /// `answer(path)` with a status code and a JSON body; the paths asked are kept.
    fn fake_apiserver(
        answer: fn(&str) -> (u16, String),
    ) -> (Cluster, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = asked.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                // The headers (a GET has no body).
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(path.clone());
                let (code, body) = answer(&path);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new(url.parse().unwrap());
        let cluster = Cluster {
            client: kube::Client::try_from(config).unwrap(),
            namespace: "analytics".into(),
            url,
        };
        (cluster, asked)
    }

    fn status(code: u16, message: &str) -> String {
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": message, "reason": "InternalError", "code": code})
        .to_string()
    }

    /// What the API server says when the "kubelet" at a kwok node's address (whatever
    /// answers there) fails the TLS handshake.
    const TLS_ERROR: &str = "Get \"https://10.200.0.1:10250/containerLogs/analytics/a-1-x/main\": tls: failed to verify certificate: x509: cannot validate certificate for 10.200.0.1 because it doesn't contain any IP SANs";

    #[tokio::test]
    async fn a_pod_on_a_kwok_node_has_no_logs_and_no_log_request_is_made() {
        let (cluster, asked) = fake_apiserver(|path| {
            if path.starts_with("/api/v1/nodes/kwok-large-0") {
                let node = serde_json::json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": "kwok-large-0", "annotations": {"kwok.x-k8s.io/node": "fake"}}});
                (200, node.to_string())
            } else {
                // A 400 is not one of the codes the error path knew as "the kubelet failed".
                (400, status(400, TLS_ERROR))
            }
        });
        for follow in [false, true] {
            let mut out = Vec::new();
            let err = print_logs(&cluster, "a-1", "a-1-x", "kwok-large-0", follow, &mut out)
                .await
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                simulated("a-1", "a-1-x", "kwok-large-0"),
                "follow {follow}"
            );
            assert!(out.is_empty(), "follow {follow}");
        }
        let asked = asked.lock().unwrap().clone();
        assert!(
            asked.iter().all(|p| !p.contains("/log")),
            "no log request: {asked:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_log_request_on_a_kwok_node_shows_no_transport_error() {
        // The node lookup fails at first (as in a race with the node's creation, or a
        // flaky API server): the log request is made, fails, and the second lookup
        // finds the kwok node.
        static LOOKUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let (cluster, _) = fake_apiserver(|path| {
            if path.starts_with("/api/v1/nodes/") {
                if LOOKUPS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return (503, status(503, "etcdserver: request timed out"));
                }
                let node = serde_json::json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": "kwok-0", "annotations": {"kwok.x-k8s.io/node": "fake"}}});
                (200, node.to_string())
            } else if path.starts_with("/api/v1/namespaces/analytics/pods/a-1-x/log") {
                (400, status(400, TLS_ERROR))
            } else {
                (404, status(404, "not found"))
            }
        });
        let err = print_logs(&cluster, "a-1", "a-1-x", "kwok-0", false, &mut Vec::new())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, simulated("a-1", "a-1-x", "kwok-0"));
        for raw in ["x509", "tls", "10.200.0.1"] {
            assert!(!err.contains(raw), "{err}");
        }
    }

    #[tokio::test]
    async fn a_real_node_that_does_not_serve_logs_is_named_with_its_error() {
        let (cluster, _) = fake_apiserver(|path| {
            if path.starts_with("/api/v1/nodes/worker-3") {
                let node = serde_json::json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": "worker-3"}});
                (200, node.to_string())
            } else if path.starts_with("/api/v1/namespaces/analytics/pods/a-1-x/log") {
                (
                    502,
                    status(502, "dial tcp 10.0.0.3:10250: connect: connection refused"),
                )
            } else {
                let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "a-1-x"}});
                (200, pod.to_string())
            }
        });
        let err = print_logs(&cluster, "a-1", "a-1-x", "worker-3", false, &mut Vec::new())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            unavailable(
                "a-1",
                "a-1-x",
                "worker-3",
                "dial tcp 10.0.0.3:10250: connect: connection refused"
            )
        );
    }

    #[tokio::test]
    async fn logs_of_a_pod_on_a_real_node_are_written_out() {
        let (cluster, _) = fake_apiserver(|path| {
            if path.starts_with("/api/v1/nodes/real-0") {
                let node = serde_json::json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": "real-0"}});
                (200, node.to_string())
            } else {
                (200, "hello\nworld\n".to_string())
            }
        });
        for follow in [false, true] {
            let mut out = Vec::new();
            print_logs(&cluster, "a-1", "a-1-x", "real-0", follow, &mut out)
                .await
                .unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), "hello\nworld\n");
        }
    }
}

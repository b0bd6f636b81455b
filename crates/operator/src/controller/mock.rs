//! kube's mocked client for the controllers' tests: a store filled with objects and a
//! client that records every request and answers as the apiserver would.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use serde_json::json;

/// A cache holding `objects`, as a reflector fills it: listed, so synced
/// (`wait_until_ready` returns at once).
pub fn store_of<K>(objects: Vec<K>) -> kube::runtime::reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    use kube::runtime::watcher::Event;
    let (store, mut writer) = kube::runtime::reflector::store();
    writer.apply_watcher_event(&Event::Init);
    for o in objects {
        writer.apply_watcher_event(&Event::InitApply(o));
    }
    writer.apply_watcher_event(&Event::InitDone);
    store
}

/// An empty PodList, as the API answers a list that finds nothing.
pub fn no_pods() -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})
}

/// One request as the mock saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// "METHOD path", as [`client`] records it.
    pub call: String,
    /// The query string; `None` when there is none (or it is empty).
    pub query: Option<String>,
    /// The body sent, as JSON; `Null` when there is none.
    pub body: serde_json::Value,
}

/// A client whose requests are served until the test ends and recorded as
/// "METHOD path": a GET or a DELETE answers 404, a write to a status subresource
/// answers `status_answer`, any other write answers with the object it was sent (as
/// an apply, a patch or a create does).
pub fn client(status_answer: serde_json::Value) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
    let (client, calls, _) = serve(status_answer, HashMap::new());
    (client, calls)
}

/// As [`client`], in a cluster that holds `objects`, each at its path (a list at the
/// list's path, whatever the query; or at `path?query` for that query alone, which
/// comes first): a GET of one answers it, a patch of one answers it
/// as it was (the patch is recorded, not applied), a DELETE answers it; a DELETE of
/// anything else answers 404. Every request is recorded with its query and body.
pub fn client_holding(
    status_answer: serde_json::Value,
    objects: Vec<(String, serde_json::Value)>,
) -> (kube::Client, Arc<Mutex<Vec<Call>>>) {
    let (client, _, calls) = serve(status_answer, objects.into_iter().collect());
    (client, calls)
}

/// What the mock saw, in the order it came.
type Recorded<T> = Arc<Mutex<Vec<T>>>;

/// The answer to a patch (not an apply) of an object the mock does not hold.
const PATCHED: &[u8] = br#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"patched"}}"#;

/// Serves both [`client`] and [`client_holding`]: every request is recorded both ways.
fn serve(
    status_answer: serde_json::Value,
    objects: HashMap<String, serde_json::Value>,
) -> (kube::Client, Recorded<String>, Recorded<Call>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let full = Arc::new(Mutex::new(Vec::new()));
    let (seen, seen_full) = (calls.clone(), full.clone());
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (method, path) = (request.method().clone(), request.uri().path().to_string());
            let query = request
                .uri()
                .query()
                .filter(|q| !q.is_empty())
                .map(String::from);
            if let Ok(mut c) = seen.lock() {
                c.push(format!("{method} {path}"));
            }
            let body = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            if let Ok(mut c) = seen_full.lock() {
                c.push(Call {
                    call: format!("{method} {path}"),
                    query: query.clone(),
                    body: serde_json::from_slice(&body).unwrap_or_default(),
                });
            }
            let held = query
                .as_ref()
                .and_then(|q| objects.get(&format!("{path}?{q}")))
                .or_else(|| objects.get(&path))
                .map(|o| serde_json::to_vec(o).unwrap_or_default());
            let not_found = || {
                let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404, "message": "not found"});
                (404, serde_json::to_vec(&status).unwrap_or_default())
            };
            let (code, answer) = if method == http::Method::GET || method == http::Method::DELETE {
                held.map_or_else(not_found, |o| (200, o))
            } else if path.ends_with("/status") {
                (200, serde_json::to_vec(&status_answer).unwrap_or_default())
            } else if let Some(o) = held.filter(|_| method == http::Method::PATCH) {
                (200, o)
            } else if method == http::Method::PATCH && !body.starts_with(b"{\"apiVersion") {
                // A merge patch answers with an object of the kind patched; the
                // callers here read nothing of it.
                (200, PATCHED.to_vec())
            } else {
                (200, body.to_vec())
            };
            let response = Response::builder()
                .status(code)
                .body(Body::from(answer))
                .expect("a response");
            send.send_response(response);
        }
    });
    (kube::Client::new(service, "data"), calls, full)
}

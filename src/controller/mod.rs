//! Controllers: one per resource. Each gathers state, calls a pure decision, applies it.
pub mod cleanup;
pub mod datajob;
pub mod nodegroup;
pub mod watchdog;

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::children::Guards;
use crate::metrics::Metrics;
use crate::validation::Limits;

/// What every reconciliation needs.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub limits: Limits,
    pub guards: Guards,
}

impl Context {
    /// A reference to a DataJob for events, from its namespace and name alone.
    pub fn datajob_ref(namespace: &str, name: &str) -> k8s_openapi::api::core::v1::ObjectReference {
        k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("datajob.dev/v1alpha1".into()),
            kind: Some("DataJob".into()),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// Publishes an event on a DataJob; a failure to publish is logged, never fatal.
    pub async fn event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = kube::runtime::events::Event {
            type_: if warning {
                kube::runtime::events::EventType::Warning
            } else {
                kube::runtime::events::EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, %reason, "could not publish event");
        }
    }
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, limits: Limits, guards: Guards) -> Self {
        let reporter = Reporter {
            controller: crate::labels::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            limits,
            guards,
        }
    }
}

/// What a reflector cache of a cluster-wide kind needs of its objects.
pub trait Cacheable:
    Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}
impl<K> Cacheable for K where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// A cache of everything of kind `K` that DataJob manages (by label), trimmed of managed
/// fields, and the stream of changes that keeps it filled (poll it, or the cache stays empty).
pub fn managed_cache<K>(client: Client) -> (Store<K>, impl Stream<Item = K> + Send + 'static)
where
    K: Cacheable,
{
    let config = watcher::Config::default().labels(&crate::labels::managed_selector());
    cache(client, config, |_| {})
}

/// A cache of every `K` that `config` selects, trimmed of managed fields and of what
/// `trim` removes, and the stream of changes that fills it.
pub fn cache<K>(
    client: Client,
    config: watcher::Config,
    trim: fn(&mut K),
) -> (Store<K>, impl Stream<Item = K> + Send + 'static)
where
    K: Cacheable,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(Api::<K>::all(client), config))
        .modify(move |o| {
            o.managed_fields_mut().clear();
            trim(o);
        })
        .default_backoff()
        .touched_objects()
        .filter_map(|r| async move { r.ok() });
    (store, stream)
}

/// Nodes carry their image list: the operator never needs it.
pub fn trim_node(node: &mut k8s_openapi::api::core::v1::Node) {
    if let Some(s) = node.status.as_mut() {
        s.images = None;
    }
}

/// Copies one stream of changes to two consumers (a stream can be polled only once).
/// The returned task must be polled for either copy to receive anything.
pub fn fan_out<T: Clone + Send + 'static>(
    input: impl Stream<Item = T> + Send + 'static,
) -> (
    impl Stream<Item = T> + Send + 'static,
    impl Stream<Item = T> + Send + 'static,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (a_tx, a_rx) = futures::channel::mpsc::unbounded();
    let (b_tx, b_rx) = futures::channel::mpsc::unbounded();
    let pump = input.for_each(move |item| {
        let _ = a_tx.unbounded_send(item.clone());
        let _ = b_tx.unbounded_send(item);
        async {}
    });
    (a_rx, b_rx, pump)
}

/// NodeGroup changes that can move DataJobs: created, deleted, or spec changed
/// (generation), not status updates. Counted in a watch channel, so changes coalesce
/// and nothing queues up while nobody listens (a replica that does not lead). The
/// returned pump keeps the cache filled and must be polled.
pub fn spec_changes<K>(
    stream: impl Stream<Item = K> + Send + 'static,
    store: Store<K>,
) -> (
    tokio::sync::watch::Receiver<u64>,
    impl std::future::Future<Output = ()> + Send + 'static,
)
where
    K: Cacheable,
{
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    let mut seen: std::collections::HashMap<String, Option<i64>> = std::collections::HashMap::new();
    let pump = stream.for_each(move |obj| {
        let key = obj.meta().uid.clone().unwrap_or_default();
        // The reflector has applied the event before it is passed on: an object that
        // is not in the store any more was deleted.
        let deleted = store
            .get(&reflector::ObjectRef::from_obj(&obj))
            .is_none_or(|current| current.meta().uid != obj.meta().uid);
        let changed = if deleted {
            seen.remove(&key);
            true
        } else {
            seen.insert(key, obj.meta().generation) != Some(obj.meta().generation)
        };
        if changed {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
        async {}
    });
    (rx, pump)
}

/// A stream that yields once for every batch of changes announced on `rx` after now.
pub fn ticks(mut rx: tokio::sync::watch::Receiver<u64>) -> impl Stream<Item = ()> + Send + 'static {
    rx.mark_unchanged();
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
}

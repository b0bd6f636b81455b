//! Controllers: one per resource. Each gathers state, calls a pure decision, applies it.
pub mod backfill;
pub mod cleanup;
pub mod datajob;
pub mod lifecycle;
pub mod nodegroup;
pub mod watchdog;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Predicate, PredicateConfig, WatchStreamExt, predicates, watcher};
use kube::{Client, Resource};

use crate::metrics::Metrics;
use datajob_core::decide::children::Guards;
use datajob_core::validation::Limits;

/// What every reconciliation needs.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Metrics,
    pub limits: Limits,
    pub guards: Guards,
    /// Which reconcile errors were published as events, and when.
    pub error_events: Arc<Mutex<EventLimiter>>,
}

/// How often the same object's reconcile errors become events: a retry loop (every
/// 15 s) must not flood the namespace's events, yet a new error is told within a minute.
pub const ERROR_EVENT_MIN_GAP: Duration = Duration::from_secs(60);
/// The same error again is told at most this often (the event's series counts it).
pub const ERROR_EVENT_REPEAT_AFTER: Duration = Duration::from_secs(600);

/// Decides which error events to publish: per object, at most one every
/// [`ERROR_EVENT_MIN_GAP`], and the same message again only after
/// [`ERROR_EVENT_REPEAT_AFTER`]. Pure, so the rule is unit-tested.
#[derive(Debug, Default)]
pub struct EventLimiter {
    last: HashMap<String, (Instant, String)>,
}

impl EventLimiter {
    /// Whether an event about `key` saying `note` may be published at `now`; if so, it
    /// is recorded as published.
    pub fn allow(&mut self, key: &str, note: &str, now: Instant) -> bool {
        let quiet = match self.last.get(key) {
            Some((t, n)) if n == note => now.duration_since(*t) < ERROR_EVENT_REPEAT_AFTER,
            Some((t, _)) => now.duration_since(*t) < ERROR_EVENT_MIN_GAP,
            None => false,
        };
        if quiet {
            return false;
        }
        if self.last.len() >= 10_000 {
            self.last
                .retain(|_, (t, _)| now.duration_since(*t) < ERROR_EVENT_REPEAT_AFTER);
        }
        self.last.insert(key.to_string(), (now, note.to_string()));
        true
    }
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

    /// The one error policy of every controller (DataJob, watchdog, NodeGroup, Backfill):
    /// the log line, the error metric by kind (`datajob_reconcile_errors_total`), a
    /// Warning event `ReconcileFailed` on `reference` (the object whose user should hear
    /// of it; rate-limited by [`EventLimiter`]), and a requeue after `retry`.
    pub fn failed(
        &self,
        controller: &str,
        reference: Option<k8s_openapi::api::core::v1::ObjectReference>,
        error: &crate::Error,
        retry: Duration,
    ) -> kube::runtime::controller::Action {
        let (name, namespace) = reference.as_ref().map_or((None, None), |r| {
            (r.name.as_deref(), r.namespace.as_deref())
        });
        tracing::warn!(
            controller,
            name = name.unwrap_or_default(),
            namespace = namespace.unwrap_or_default(),
            %error,
            "reconcile failed; retrying in {}s",
            retry.as_secs()
        );
        self.metrics.reconcile_failure(controller, error);
        if let Some(reference) = reference {
            self.error_event(reference, controller, error, retry);
        }
        kube::runtime::controller::Action::requeue(retry)
    }

    /// Publishes a failed reconcile as a Warning event `ReconcileFailed` on `reference`
    /// (in the background: error policies are not async), unless [`EventLimiter`] says
    /// the object was told recently. `retry` says when the controller tries again.
    pub fn error_event(
        &self,
        reference: k8s_openapi::api::core::v1::ObjectReference,
        controller: &str,
        error: &crate::Error,
        retry: Duration,
    ) {
        let key = format!(
            "{controller}/{}/{}",
            reference.namespace.as_deref().unwrap_or_default(),
            reference.name.as_deref().unwrap_or_default()
        );
        let note = truncate(
            &format!(
                "{controller} failed, retrying in {}s: {error}",
                retry.as_secs()
            ),
            1000,
        );
        let allowed = match self.error_events.lock() {
            Ok(mut limiter) => limiter.allow(&key, &note, Instant::now()),
            Err(_) => false,
        };
        if !allowed {
            return;
        }
        let ctx = self.clone();
        tokio::spawn(async move {
            ctx.event(&reference, true, "ReconcileFailed", "Reconcile", note)
                .await;
        });
    }
}

/// `s` cut to at most `max` bytes (on a character boundary), with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Context {
    pub fn new(client: Client, metrics: Metrics, limits: Limits, guards: Guards) -> Self {
        let reporter = Reporter {
            controller: datajob_core::labels::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            limits,
            guards,
            error_events: Arc::default(),
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

/// How every watch of the operator lists: from the apiserver's watch cache
/// (`resourceVersion=0`, what client-go's informers do), not by a quorum read from etcd.
/// Why: right after an apiserver restart, a quorum list can return a resource version
/// older than the new apiserver's watch cache begins; the watch started from it then
/// hangs until the apiserver answers `410 Expired` (measured here: 20–35 s), while a list
/// from the cache waits until the cache is ready and returns a version it can watch
/// from. Nothing is lost either way: the watch goes on from the list's version. The
/// e2e chaos test measures how long the watches take to come back.
pub fn watch_config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// Whether, after this watch error, the watch should start over with a fresh list
/// instead of resuming from the last resource version it saw: when the watch could not
/// be (re)started or broke (a connection refused or cut, a 403 while a restarted
/// apiserver's authorizer warms up, ...). A `410 Expired` makes kube's watcher list
/// again by itself.
pub fn must_relist(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchStartFailed(_) | watcher::Error::WatchFailed(_) => true,
        watcher::Error::WatchError(status) => status.code != 410,
        watcher::Error::InitialListFailed(_) | watcher::Error::NoResourceVersion => false,
    }
}

/// A watch of every `K` that `config` selects (listing from the watch cache, see
/// [`watch_config`]) that starts over with a fresh list after an error that
/// [`must_relist`]. kube's watcher resumes from the last resource version it saw; after
/// an apiserver restart that version is older than the new apiserver's watch cache, and
/// the resumed watch was measured to hang 18–35 s under load before the apiserver
/// answered `410 Expired` (crates/e2e/tests/e2e/alone/chaos.rs). A fresh list does not wait for that.
/// Back off with [`WatchBackoff`] (or the controller's) around it: each error is
/// yielded.
pub fn relisting_watcher<K: Cacheable>(
    client: Client,
    config: watcher::Config,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static {
    let config = config.any_semantic();
    futures::stream::unfold(None, move |current| {
        let (client, config) = (client.clone(), config.clone());
        async move {
            let mut inner = match current {
                Some(inner) => inner,
                None => watcher(Api::<K>::all(client), config).boxed(),
            };
            let item = inner.next().await?;
            let restart = item.as_ref().err().is_some_and(must_relist);
            Some((item, (!restart).then_some(inner)))
        }
    })
}

/// A cache of everything of kind `K` that DataJob manages (by label), trimmed of managed
/// fields and of what `trim` removes, and the stream of changes that keeps it filled
/// (poll it, or the cache stays empty).
pub fn managed_cache<K>(
    client: Client,
    trim: fn(&mut K),
) -> (Store<K>, impl Stream<Item = K> + Send + 'static)
where
    K: Cacheable,
{
    let config = watch_config().labels(&datajob_core::labels::managed_selector());
    cache(client, config, trim)
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
    let mut health = WatchHealth::new(K::kind(&()).into_owned());
    let stream = cached_events(writer, relisting_watcher::<K>(client, config), trim)
        .backoff(WatchBackoff::default())
        .touched_objects()
        .filter_map(move |r| {
            // A failed watch is retried with [`WatchBackoff`]; it is said in
            // the log, never dropped in silence, and so is its return.
            health.observe(r.as_ref().err());
            std::future::ready(r.ok())
        });
    (store, stream)
}

/// Watch events as a cache takes them: each object is trimmed ([`as_cached`]) before
/// `writer` stores it, so the store never holds what the trim removes (trimming after the
/// reflector trims only the copy passed on, and the store keeps whole objects).
pub fn cached_events<K, S>(
    writer: reflector::store::Writer<K>,
    events: S,
    trim: fn(&mut K),
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    K: Cacheable,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    reflector::reflector(writer, events.modify(move |o| as_cached(o, trim)))
}

/// An object as every cache keeps it: without managed fields, and without what `trim`
/// removes.
pub fn as_cached<K: Resource>(obj: &mut K, trim: fn(&mut K)) {
    // `None`, not an empty list: a cleared Vec keeps its allocation.
    obj.meta_mut().managed_fields = None;
    trim(obj);
}

/// How long a broken watch waits before it tries again: 250 ms, doubling up to 4 s, and
/// back to 250 ms after any event. kube's default (800 ms doubling up to 30 s) was
/// measured to keep the DataJob watch away for more than 35 s after an apiserver
/// restart (a few refused connections, then a few seconds of 403 while the restarted
/// apiserver's authorizer warms up); a handful of watches retrying every 4 s is no
/// burden for an apiserver.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    pub const FIRST: Duration = Duration::from_millis(250);
    pub const LONGEST: Duration = Duration::from_secs(4);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (now * 2).min(Self::LONGEST);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// What a watch says about itself in the log: every failure (the watcher retries with
/// backoff), and, once it delivers again, that it is back and after how long.
pub struct WatchHealth {
    kind: String,
    failing_since: Option<std::time::Instant>,
    failures: u32,
}

impl WatchHealth {
    pub fn new(kind: impl Into<String>) -> Self {
        WatchHealth {
            kind: kind.into(),
            failing_since: None,
            failures: 0,
        }
    }

    /// Takes one item of a watch stream (its error, if it is one); true for a good one.
    pub fn observe(&mut self, error: Option<&watcher::Error>) -> bool {
        match error {
            Some(e) => {
                self.failures += 1;
                let since = *self
                    .failing_since
                    .get_or_insert_with(std::time::Instant::now);
                tracing::warn!(kind = %self.kind, error = %e, failures = self.failures, failing_for = ?since.elapsed(), "watch failed; retrying with backoff");
                false
            }
            None => {
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(kind = %self.kind, after = ?since.elapsed(), failures = self.failures, "watch is back");
                    self.failures = 0;
                }
                true
            }
        }
    }
}

/// Says what a controller's stream reports: watch failures of its own watches (retried
/// with backoff) and anything the runner could not do. A reconcile error was already
/// told by the controller's `error_policy`; an object gone before its turn is normal.
pub fn report<K, E>(
    controller: &'static str,
    result: Result<
        (reflector::ObjectRef<K>, kube::runtime::controller::Action),
        kube::runtime::controller::Error<E, watcher::Error>,
    >,
) -> std::future::Ready<()>
where
    K: Resource,
    E: std::error::Error + 'static,
{
    use kube::runtime::controller::Error as Failed;
    match result {
        Ok((obj, _)) => tracing::debug!(%controller, object = %obj, "reconciled"),
        Err(Failed::ObjectNotFound(obj)) => {
            tracing::debug!(%controller, object = %obj, "gone before its reconcile")
        }
        Err(Failed::ReconcilerFailed(e, obj)) => {
            tracing::debug!(%controller, object = %obj, error = %e, "reconcile failed")
        }
        Err(Failed::QueueError(e)) => {
            tracing::warn!(%controller, error = %e, "watch failed; retrying with backoff")
        }
        Err(Failed::RunnerError(e)) => {
            tracing::error!(%controller, error = %e, "controller runner failed")
        }
    }
    std::future::ready(())
}

/// Nodes carry their image list: the operator never needs it.
pub fn trim_node(node: &mut k8s_openapi::api::core::v1::Node) {
    if let Some(s) = node.status.as_mut() {
        s.images = None;
    }
}

/// A run's Job as the caches keep it: its pod template goes (the operator reads a Job's
/// metadata, `spec.suspend` and its status, never the template it wrote; the pods say
/// what ran). The template is a Job's largest part.
pub fn trim_job(job: &mut k8s_openapi::api::batch::v1::Job) {
    if let Some(spec) = job.spec.as_mut() {
        spec.template = Default::default();
    }
}

/// A run's pod as the caches keep it: what the watchdog, the scaler and the clean-up
/// read (metadata, the node and node selector, each container's name, image and
/// resources, the volumes backed by claims, the tolerations of node reservations, the
/// status), not the environment, the command, probes, mounts, security settings, other
/// tolerations or the other volumes.
pub fn trim_pod(pod: &mut k8s_openapi::api::core::v1::Pod) {
    use k8s_openapi::api::core::v1::Container;
    let slim = |c: &mut Container| {
        *c = Container {
            name: std::mem::take(&mut c.name),
            image: c.image.take(),
            resources: c.resources.take(),
            ..Container::default()
        };
    };
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers.iter_mut().for_each(slim);
        spec.init_containers.iter_mut().flatten().for_each(slim);
        if let Some(volumes) = spec.volumes.as_mut() {
            volumes.retain(|v| v.persistent_volume_claim.is_some() || v.ephemeral.is_some());
            for v in volumes.iter_mut() {
                // The claim's name is what the clean-up matches, not the template.
                if let Some(e) = v.ephemeral.as_mut() {
                    e.volume_claim_template = None;
                }
            }
        }
        // The scaler reads which node reservations a pod holds.
        if let Some(t) = spec.tolerations.as_mut() {
            t.retain(|t| {
                t.key.as_deref() == Some(datajob_core::decide::nodegroup::reserve::RESERVED_TAINT)
            });
        }
        if spec.tolerations.as_ref().is_some_and(Vec::is_empty) {
            spec.tolerations = None;
        }
        spec.affinity = None;
        spec.security_context = None;
    }
}

/// How many changes a consumer of [`fan_out`] may be behind before the watch waits
/// for it. Bounded: a slow consumer slows the watch down (back-pressure); no queue grows
/// with the size of the cluster.
pub const FAN_OUT_BUFFER: usize = 256;

/// Copies one stream of changes to two consumers (a stream can be polled only once),
/// through bounded channels of [`FAN_OUT_BUFFER`]. The returned task must be polled for
/// either copy to receive anything; it ends when the input ends or both consumers are
/// gone.
pub fn fan_out<T: Clone + Send + 'static>(
    input: impl Stream<Item = T> + Send + 'static,
) -> (
    impl Stream<Item = T> + Send + 'static,
    impl Stream<Item = T> + Send + 'static,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    use futures::SinkExt;
    let (mut a_tx, a_rx) = futures::channel::mpsc::channel(FAN_OUT_BUFFER);
    let (mut b_tx, b_rx) = futures::channel::mpsc::channel(FAN_OUT_BUFFER);
    let pump = async move {
        let mut input = std::pin::pin!(input);
        while let Some(item) = input.next().await {
            let a = a_tx.send(item.clone()).await;
            let b = b_tx.send(item).await;
            if a.is_err() && b.is_err() {
                break;
            }
        }
    };
    (a_rx, b_rx, pump)
}

/// Whether a store has synced, for any number of waiters. kube's
/// `Store::wait_until_ready` wakes only the last task that polled it (a oneshot holds
/// one waker): with two waiters one of them can wait forever (found here: an operator
/// whose controllers waited on the NodeGroup cache never reported ready). One task per
/// store waits on it; everyone else waits on this.
#[derive(Clone)]
pub struct Synced(tokio::sync::watch::Receiver<bool>);

impl Synced {
    /// Starts the one task that waits for `store` to sync.
    pub fn of<K>(store: &Store<K>) -> Synced
    where
        K: Cacheable,
    {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let store = store.clone();
        tokio::spawn(async move {
            if store.wait_until_ready().await.is_ok() {
                let _ = tx.send(true);
                // Kept until the last waiter is gone, so that the value stays readable.
                tx.closed().await;
            }
        });
        Synced(rx)
    }

    /// Waits until the store has synced; false when it never will (its writer is gone).
    pub async fn wait(&self) -> bool {
        let mut rx = self.0.clone();
        rx.wait_for(|synced| *synced).await.is_ok()
    }

    /// Whether the store has synced already.
    pub fn now(&self) -> bool {
        *self.0.borrow()
    }
}

/// How many changes of DataJobs a listener may be behind before it falls back to
/// going over every DataJob in the cache again.
pub const CHANGES_BUFFER: usize = 256;

/// Every object of `store` once it is ready, then each one announced on `changes`
/// (subscribe before calling, so that nothing falls between the two); after falling
/// behind, every object of the store again. A consumer that reconciles (idempotently)
/// what it gets sees every change and nothing queues up for it: the trigger of a
/// controller that reads a cache that another part keeps, with no watch of its own.
pub fn all_then_changes<K: Cacheable>(
    store: Store<K>,
    synced: Synced,
    changes: tokio::sync::broadcast::Receiver<Arc<K>>,
) -> impl Stream<Item = Arc<K>> + Send + 'static {
    use tokio::sync::broadcast::error::RecvError;
    futures::stream::unfold(
        (store, changes, true),
        move |(store, mut changes, first)| {
            let synced = synced.clone();
            async move {
            if first {
                if !synced.wait().await {
                    return None;
                }
                let all = store.state();
                return Some((all, (store, changes, false)));
            }
            let batch = match changes.recv().await {
                Ok(obj) => vec![obj],
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(kind = %K::kind(&()), missed, "fell behind the changes; going over the whole cache");
                    store.state()
                }
                Err(RecvError::Closed) => return None,
            };
            Some((batch, (store, changes, false)))
            }
        },
    )
    .flat_map(futures::stream::iter)
}

/// Each object announced on `changes` from now on (after falling behind, every object
/// of `store`), as an owned copy.
pub fn changes_of<K: Cacheable>(
    store: Store<K>,
    changes: tokio::sync::broadcast::Receiver<Arc<K>>,
) -> impl Stream<Item = K> + Send + 'static {
    use tokio::sync::broadcast::error::RecvError;
    futures::stream::unfold((store, changes), |(store, mut changes)| async move {
        let batch = match changes.recv().await {
            Ok(obj) => vec![obj],
            Err(RecvError::Lagged(_)) => store.state(),
            Err(RecvError::Closed) => return None,
        };
        Some((batch, (store, changes)))
    })
    .flat_map(|batch| futures::stream::iter(batch.into_iter().map(Arc::unwrap_or_clone)))
}

/// NodeGroup changes that can move DataJobs: created, deleted, or spec changed
/// (generation), not status updates; kube's generation predicate
/// (`WatchStreamExt::predicate_filter`), combined with whether the object is still in
/// the store (the final delete event leaves the generation alone). Counted in a watch
/// channel, so changes coalesce and nothing queues up while nobody listens (a replica
/// that does not lead). The returned pump keeps the cache filled and must be polled.
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
    let pump = stream
        .map(Ok::<K, watcher::Error>)
        .predicate_filter(
            predicates::generation.combine(deleted_from(store)),
            PredicateConfig::default(),
        )
        .for_each(move |_| {
            tx.send_modify(|n| *n = n.wrapping_add(1));
            async {}
        });
    (rx, pump)
}

/// Whether `obj` has left `store`: the reflector applies an event before passing the
/// object on, so an object that is not in the store (or is there with another uid) was
/// deleted.
fn gone_from<K: Cacheable>(store: &Store<K>, obj: &K) -> bool {
    store
        .get(&reflector::ObjectRef::from_obj(obj))
        .is_none_or(|current| current.meta().uid != obj.meta().uid)
}

/// A predicate that changes when an object leaves `store` ([`gone_from`]).
fn deleted_from<K: Cacheable>(store: Store<K>) -> impl Fn(&K) -> Option<u64> + Send + 'static {
    move |obj: &K| Some(u64::from(gone_from(&store, obj)))
}

/// What a DataJob's reconcile acts on, so that its own status writes trigger nothing:
/// kube's predicates on the generation (the spec), the labels, the annotations (`kubectl
/// datajob run` asks for a run with one) and the deletion mark, compared per object
/// (uid) with what last passed; an object gone from `store` passes once and is
/// forgotten. (kube's `predicate_filter` takes owned objects; these are shared.)
pub fn spec_or_request_changes<K: Cacheable>(
    changes: impl Stream<Item = Arc<K>> + Send + 'static,
    store: Store<K>,
) -> impl Stream<Item = Arc<K>> + Send + 'static {
    let predicate = predicates::generation
        .combine(predicates::labels)
        .combine(predicates::annotations)
        .combine(|obj: &K| Some(u64::from(obj.meta().deletion_timestamp.is_some())));
    let mut seen: HashMap<String, u64> = HashMap::new();
    changes.filter(move |obj| {
        let pass = match (
            obj.meta().uid.clone(),
            predicate.hash_property(obj.as_ref()),
        ) {
            (Some(uid), _) if gone_from(&store, obj.as_ref()) => {
                seen.remove(&uid);
                true
            }
            (Some(uid), Some(hash)) => seen.insert(uid, hash) != Some(hash),
            _ => true,
        };
        std::future::ready(pass)
    })
}

/// A stream that yields once for every batch of changes announced on `rx` after now.
pub fn ticks(mut rx: tokio::sync::watch::Receiver<u64>) -> impl Stream<Item = ()> + Send + 'static {
    rx.mark_unchanged();
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
}

/// kube's mocked client for the tests of the exact calls a reconcile makes.
#[cfg(test)]
pub(crate) mod mock {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::json;

    /// A cache holding `objects`, as a reflector fills it.
    pub fn store_of<K>(objects: Vec<K>) -> kube::runtime::reflector::Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let (store, mut writer) = kube::runtime::reflector::store();
        for o in objects {
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(o));
        }
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
    /// list's path, whatever the query): a GET of one answers it, a patch of one answers it
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
    const PATCHED: &[u8] =
        br#"{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"patched"}}"#;

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
                        query,
                        body: serde_json::from_slice(&body).unwrap_or_default(),
                    });
                }
                let held = objects
                    .get(&path)
                    .map(|o| serde_json::to_vec(o).unwrap_or_default());
                let not_found = || {
                    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found"});
                    (404, serde_json::to_vec(&status).unwrap_or_default())
                };
                let (code, answer) =
                    if method == http::Method::GET || method == http::Method::DELETE {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    #[test]
    fn error_events_are_rate_limited_per_object() {
        let mut l = EventLimiter::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(l.allow("a", "boom", at(0)), "the first error is told");
        assert!(
            !l.allow("a", "boom", at(15)),
            "a retry loop tells nothing new"
        );
        assert!(
            l.allow("b", "boom", at(15)),
            "another object has its own budget"
        );
        assert!(
            !l.allow("a", "other", at(30)),
            "a new error waits for the gap"
        );
        assert!(l.allow("a", "other", at(61)), "and is told after it");
        assert!(!l.allow("a", "other", at(400)));
        assert!(
            l.allow("a", "other", at(61 + 600)),
            "the same error, now and then"
        );
    }

    #[test]
    fn a_broken_watch_lists_again_instead_of_resuming() {
        let status = |code: u16| {
            Box::new(kube::core::Status {
                code,
                ..Default::default()
            })
        };
        let refused = || kube::Error::Api(status(403));
        assert!(must_relist(&watcher::Error::WatchStartFailed(refused())));
        assert!(must_relist(&watcher::Error::WatchFailed(refused())));
        assert!(must_relist(&watcher::Error::WatchError(status(500))));
        // kube's watcher lists again after these by itself.
        assert!(!must_relist(&watcher::Error::WatchError(status(410))));
        assert!(!must_relist(&watcher::Error::InitialListFailed(refused())));
    }

    #[test]
    fn a_broken_watch_retries_soon_and_never_waits_more_than_four_seconds() {
        use kube::runtime::utils::Backoff;
        let mut b = WatchBackoff::default();
        let waits: Vec<u64> = b.by_ref().take(7).map(|d| d.as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(250)));
    }

    fn datajob(uid: &str, generation: i64) -> datajob_api::DataJob {
        let mut d = datajob_api::DataJob::new("nightly", datajob_api::DataJobSpec::default());
        d.metadata.namespace = Some("data".into());
        d.metadata.uid = Some(uid.into());
        d.metadata.generation = Some(generation);
        d
    }

    /// Feeds `objects` through a reflector store (applied, or deleted when flagged) and
    /// `filter`, one by one; returns which passed.
    async fn passed<F, S>(objects: Vec<(datajob_api::DataJob, bool)>, filter: F) -> Vec<bool>
    where
        F: FnOnce(
            futures::channel::mpsc::UnboundedReceiver<datajob_api::DataJob>,
            Store<datajob_api::DataJob>,
        ) -> S,
        S: Stream<Item = ()> + Send + 'static,
    {
        let (store, mut writer) = reflector::store::<datajob_api::DataJob>();
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut out = Box::pin(filter(rx, store));
        let mut result = Vec::new();
        for (obj, deleted) in objects {
            let event = match deleted {
                true => watcher::Event::Delete(obj.clone()),
                false => watcher::Event::Apply(obj.clone()),
            };
            writer.apply_watcher_event(&event);
            tx.unbounded_send(obj).expect("the filter listens");
            let got = tokio::time::timeout(Duration::from_millis(50), out.next()).await;
            result.push(matches!(got, Ok(Some(()))));
        }
        result
    }

    #[tokio::test]
    async fn a_datajobs_own_status_writes_do_not_wake_its_reconcile() {
        let first = datajob("uid-1", 1);
        let mut status_written = first.clone();
        status_written.status = Some(datajob_api::DataJobStatus {
            message: Some("running".into()),
            ..Default::default()
        });
        let spec_changed = datajob("uid-1", 2);
        let mut run_asked = spec_changed.clone();
        run_asked
            .annotations_mut()
            .insert(datajob_core::labels::TRIGGER.into(), "now".into());
        let mut deleting = run_asked.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()),
        );
        let recreated = datajob("uid-2", 1);
        let got = passed(
            vec![
                (first, false),
                (status_written, false),
                (spec_changed, false),
                (run_asked.clone(), false),
                (run_asked, false),
                (deleting.clone(), false),
                (deleting, true),
                (recreated, false),
            ],
            |rx, store| spec_or_request_changes(rx.map(Arc::new), store).map(|_| ()),
        )
        .await;
        assert_eq!(
            got,
            [true, false, true, true, false, true, true, true],
            "new, status only, spec, run asked, the same again, deletion mark, deleted, made again"
        );
    }

    #[tokio::test]
    async fn node_group_ticks_count_spec_changes_and_deletions_not_status() {
        let first = datajob("uid-1", 1);
        let mut status_written = first.clone();
        status_written.status = Some(datajob_api::DataJobStatus {
            message: Some("ready".into()),
            ..Default::default()
        });
        let spec_changed = datajob("uid-1", 2);
        let got = passed(
            vec![
                (first, false),
                (status_written, false),
                (spec_changed.clone(), false),
                (spec_changed, true),
            ],
            |rx, store| {
                let (ticks_rx, pump) = spec_changes(rx, store);
                tokio::spawn(pump);
                ticks(ticks_rx)
            },
        )
        .await;
        assert_eq!(
            got,
            [true, false, true, true],
            "new, status only, spec, deleted"
        );
    }

    #[test]
    fn trimmed_pods_and_jobs_keep_what_the_controllers_read() {
        use k8s_openapi::api::batch::v1::Job;
        use k8s_openapi::api::core::v1::Pod;
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-1-x", "namespace": "data", "labels": {"a": "b"}, "annotations": {"c": "d"}},
            "spec": {
                "nodeName": "n", "nodeSelector": {"datajob.dev/node-group": "g"},
                "containers": [{"name": "main", "image": "etl:1", "command": ["run"], "env": [{"name": "X", "value": "1"}],
                    "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "r-1-data"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}},
                    {"name": "token", "projected": {"sources": []}},
                ],
                "tolerations": [{"key": "k", "operator": "Exists"},
                    {"key": "datajob.dev/reserved-for", "operator": "Equal", "value": "g-1", "effect": "NoSchedule"}],
            },
            "status": {"phase": "Running", "containerStatuses": [{"name": "main", "image": "etl:1", "imageID": "", "ready": true, "restartCount": 0}]},
        }))
        .expect("a pod");
        let (before, status) = (
            datajob_core::resources::Request::of(&pod),
            pod.status.clone(),
        );
        trim_pod(&mut pod);
        assert_eq!(
            datajob_core::resources::Request::of(&pod),
            before,
            "what it asks for"
        );
        assert_eq!(pod.status, status);
        assert_eq!(pod.metadata.labels.as_ref().map(|l| l.len()), Some(1));
        let spec = pod.spec.as_ref().expect("a spec");
        assert_eq!(spec.node_name.as_deref(), Some("n"));
        assert!(spec.node_selector.is_some());
        let c = &spec.containers[0];
        assert_eq!(
            (c.name.as_str(), c.image.as_deref()),
            ("main", Some("etl:1"))
        );
        assert!(c.env.is_none() && c.command.is_none() && c.volume_mounts.is_none());
        assert!(
            c.resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .is_some()
        );
        let volumes: Vec<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(volumes, ["data", "scratch"], "the volumes backed by claims");
        assert_eq!(
            datajob_core::decide::nodegroup::reserve::held_by(&pod).collect::<Vec<_>>(),
            ["g-1"],
            "only the tolerations of node reservations"
        );
        assert_eq!(spec.tolerations.as_ref().map(Vec::len), Some(1));

        let mut job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r-1", "annotations": {"e": "f"}},
            "spec": {"suspend": true, "backoffLimit": 1, "template": {"spec": {"containers": [{"name": "main", "image": "etl:1"}]}}},
            "status": {"active": 1},
        }))
        .expect("a job");
        trim_job(&mut job);
        let spec = job.spec.as_ref().expect("a spec");
        assert_eq!((spec.suspend, spec.backoff_limit), (Some(true), Some(1)));
        assert!(spec.template.spec.is_none());
        assert_eq!(job.status.and_then(|s| s.active), Some(1));
    }

    #[tokio::test]
    async fn the_store_keeps_objects_trimmed_not_only_the_events_passed_on() {
        use k8s_openapi::api::batch::v1::Job;
        let job = |name: &str| -> Job {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "data",
                    "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}]},
                "spec": {"suspend": false, "template": {"spec": {"containers": [{"name": "main", "image": "etl:1"}]}}},
            }))
            .expect("a job")
        };
        let (store, writer) = reflector::store::<Job>();
        let events = futures::stream::iter([
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(job("listed"))),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(job("watched"))),
        ]);
        let passed: Vec<Job> = cached_events(writer, events, trim_job)
            .touched_objects()
            .filter_map(|r| std::future::ready(r.ok()))
            .collect()
            .await;
        let stored = store.state();
        assert_eq!(stored.len(), 2);
        for j in stored.iter().map(|j| &**j).chain(&passed) {
            assert!(j.metadata.managed_fields.is_none(), "{j:?}");
            let spec = j.spec.as_ref().expect("a spec");
            assert!(spec.template.spec.is_none(), "{j:?}");
            assert_eq!(spec.suspend, Some(false));
        }
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééé", 3), "é…");
    }
}

//! The caches: what is watched (one watch per kind, managed objects where possible),
//! how a broken watch lists again, and what each object is trimmed to before its store
//! takes it; the backoff and health of the watches.
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};

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
pub(crate) fn watch_config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// Whether, after this watch error, the watch should start over with a fresh list
/// instead of resuming from the last resource version it saw: when the watch could not
/// be (re)started or broke (a connection refused or cut, a 403 while a restarted
/// apiserver's authorizer warms up, ...). A `410 Expired` makes kube's watcher list
/// again by itself.
pub(crate) fn must_relist(error: &watcher::Error) -> bool {
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
pub(crate) fn relisting_watcher<K: Cacheable>(
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
pub(crate) fn cached_events<K, S>(
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

/// How long a broken watch waits before it tries again: 250 ms, doubling up to 4 s, and
/// back to 250 ms after any event. kube's default (800 ms doubling up to 30 s) was
/// measured to keep the DataJob watch away for more than 35 s after an apiserver
/// restart (a few refused connections, then a few seconds of 403 while the restarted
/// apiserver's authorizer warms up); a handful of watches retrying every 4 s is no
/// burden for an apiserver.
#[derive(Clone, Debug)]
pub(crate) struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    pub(crate) const FIRST: Duration = Duration::from_millis(250);
    pub(crate) const LONGEST: Duration = Duration::from_secs(4);
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
pub(crate) struct WatchHealth {
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
    pub(crate) fn observe(&mut self, error: Option<&watcher::Error>) -> bool {
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

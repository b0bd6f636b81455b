//! The streams between caches and controllers: the bounded fan-out of one watch to several controllers, a cache's objects then its
//! changes, the predicates that keep a controller's own writes from waking it, ticks,
//! and the report of each reconcile.
use std::collections::HashMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Predicate, PredicateConfig, WatchStreamExt, predicates, watcher};

use super::caches::Cacheable;

/// Says what a controller's stream reports: watch failures of its own watches (retried
/// with backoff) and anything the runner could not do. A reconcile error was already
/// told by the controller's `error_policy`; an object gone before its turn is normal.
pub(crate) fn report<K, E>(
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

/// How many changes a consumer of [`fan_out`] may be behind before the watch waits
/// for it. Bounded: a slow consumer slows the watch down (back-pressure); no queue grows
/// with the size of the cluster.
pub(crate) const FAN_OUT_BUFFER: usize = 256;

/// Not kube-runtime's shared streams (`reflector::store_shared` and `ReflectHandle`,
/// behind the `unstable-runtime` features since kube 0.91,
/// <https://github.com/kube-rs/kube/issues/1080>): a subscriber there must exist before
/// the reflector runs and is never told what the store already held
/// (<https://github.com/kube-rs/kube/issues/1630>, open), while the controllers here
/// start after leader election, and the stores must take objects already trimmed
/// ([`super::cached_events`]). This is the part of it they need, in stable API.
///
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
}

/// How many changes of DataJobs a listener may be behind before it falls back to
/// going over every DataJob in the cache again.
pub const CHANGES_BUFFER: usize = 256;

/// What kube-rs issue <https://github.com/kube-rs/kube/issues/1630> asks kube-runtime
/// for (subscribing to a shared store after it started, with what it already holds).
///
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

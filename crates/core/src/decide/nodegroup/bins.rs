//! First-fit-decreasing bins: the nodes of a group (and those booting) as bins with free
//! room, the pending pods and the runs due packed into them, and the room left over.
//! What [`super::scale`] counts nodes with.
use chrono::{DateTime, Utc};

use super::due::DueRun;
use super::state::{GroupState, NodeView};
use crate::group::{Group, Room};
use crate::resources::Request;

/// A node, or one on its way, as room to pack runs into.
#[derive(Clone, Debug)]
pub(super) struct Bin {
    pub(super) node: Option<String>,
    pub(super) ready: bool,
    pub(super) free: Request,
    /// Pods are on it: it stays.
    pub(super) busy: bool,
    /// Pending, warm-up or due work was packed into it: it stays.
    pub(super) used: bool,
    /// When the runs on it are expected to end (busy nodes).
    pub(super) frees_at: Option<DateTime<Utc>>,
    /// Pending pods were packed into it: they run from now, for a time not known.
    pub(super) took_pending: bool,
    /// Busy (or, for pending pods packed into it, about to be) with DataJob runs alone
    /// whose end is not known: it may free up at any moment.
    pub(super) ends_unknown: bool,
    /// What scheduled runs packed into it will take when they are due.
    pub(super) later: Request,
}

impl Bin {
    pub(super) fn kept(&self) -> bool {
        self.busy || self.used
    }

    pub(super) fn new(node: Option<String>, ready: bool, free: Request) -> Bin {
        Bin {
            node,
            ready,
            free,
            busy: false,
            used: false,
            frees_at: None,
            took_pending: false,
            ends_unknown: false,
            later: Request::default(),
        }
    }

    /// Whether the run `request` could take this node once the runs of unknown length on
    /// it end (less what runs due before took).
    pub(super) fn may_free_for(&self, shape: &Request, request: &Request) -> bool {
        self.ends_unknown && request.fits(&shape.minus(&self.later))
    }

    /// The room for a run due at `at`: the whole node when its runs will have ended by
    /// then, else what is free now; less what runs due before took.
    pub(super) fn room_at(&self, shape: &Request, at: DateTime<Utc>) -> Request {
        let base = match self.frees_at {
            Some(t) if t <= at && !self.took_pending => *shape,
            _ => self.free,
        };
        base.minus(&self.later)
    }

    /// The room left now for others.
    pub(super) fn room_now(&self) -> Request {
        self.free.minus(&self.later)
    }
}

/// When a node booted now would be up, and the moment that is measured from: a pending
/// pod waits for a busy node whose runs are expected to end after `now` and by `up`
/// rather than booting one.
#[derive(Clone, Copy)]
pub(super) struct BootWindow {
    pub(super) now: DateTime<Utc>,
    pub(super) up: DateTime<Utc>,
}

/// First fit decreasing of `demand` (pods that wait now) into `bins`, in their order. A
/// pod that fits in none now waits, with `window`, for a busy node whose runs are
/// expected to end before a node booted now would be up (it starts no later, and no
/// boot is paid); else a new bin of `shape` is opened for it. Requests larger than
/// `shape` are left out. Returns when the first node waited for is expected to free up
/// (to decide again then: if it has not, a node boots).
pub(super) fn pack(
    bins: &mut Vec<Bin>,
    shape: &Request,
    demand: &[Request],
    window: Option<BootWindow>,
) -> Option<DateTime<Utc>> {
    let mut sorted: Vec<&Request> = demand.iter().filter(|r| r.fits(shape)).collect();
    sorted.sort_by(|a, b| b.share_of(shape).total_cmp(&a.share_of(shape)));
    let mut first_wait: Option<DateTime<Utc>> = None;
    for r in sorted {
        let ends_in_time = |b: &Bin| {
            window
                .zip(b.frees_at)
                .is_some_and(|(w, t)| w.now < t && t <= w.up && r.fits(&b.room_at(shape, t)))
        };
        let i = match bins.iter().position(|b| r.fits(&b.room_now())) {
            Some(i) => i,
            None => {
                if let Some(i) = bins.iter().position(ends_in_time) {
                    let b = &mut bins[i];
                    b.later = b.later.plus(r);
                    b.used = true;
                    if let Some(t) = b.frees_at {
                        first_wait = Some(first_wait.map_or(t, |f| f.min(t)));
                    }
                    continue;
                }
                bins.push(Bin::new(None, false, *shape));
                bins.len() - 1
            }
        };
        let b = &mut bins[i];
        b.free = b.free.minus(r);
        b.used = true;
        b.took_pending = true;
        // A pod that waits runs for a time not known: an empty or booting node that
        // takes it is, from then, a node busy with a run of unknown length.
        b.ends_unknown |= !b.busy;
    }
    first_wait
}

/// When the pods that wait for a node now will have one: a quarter of a boot after the
/// last node on its way is up (`booting` nodes asked for at `last_scale` at the latest,
/// or `boots_now` nodes asked for now). `None`: no pod waits.
pub(super) fn waiting_served_by(
    group: &Group,
    state: &GroupState,
    booting: usize,
    boots_now: bool,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if state.pending.is_empty() && booting == 0 && !boots_now {
        return None;
    }
    let boot = chrono::Duration::from_std(group.boot_time).unwrap_or_default();
    let asked = match (boots_now, booting) {
        (true, _) => now,
        (false, 0) => now - boot,
        (false, _) => state.last_scale.map_or(now, |t| t.min(now)),
    };
    Some(asked + boot + boot / 4)
}

/// First fit decreasing of scheduled runs into `bins` at their due times (a busy node
/// whose runs end before a run is due has room for it then). A run that fits in none
/// waits for a node busy with runs of unknown length ([`Bin::may_free_for`]) when one
/// could take it: no node is booted ahead for it, and if that node is still busy at its
/// time, its pending pod boots one then. A warm-up boot is paid only for a run that
/// surely needs it; the price is at most one boot of lateness when the unknown run
/// outlasts the due time. Only when the pods that wait for a node now have theirs before
/// the run is due ([`waiting_served_by`]): else the run, once due,
/// would compete for the nodes booting for pods that waited longer (the scheduler may
/// give it theirs, and they wait another boot). A run waits so only until its time: once
/// due (`now`), with that node still busy, the node it needs boots at once rather than
/// once its pod waits. Else a new bin of `shape` is opened. Returns when the first run
/// that waits is due (to decide again then).
pub(super) fn pack_due(
    bins: &mut Vec<Bin>,
    shape: &Request,
    due: &[&DueRun],
    waiting_served_by: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let mut first_wait: Option<DateTime<Utc>> = None;
    let mut sorted: Vec<&&DueRun> = due.iter().filter(|d| d.request.fits(shape)).collect();
    sorted.sort_by(|a, b| {
        b.request
            .share_of(shape)
            .total_cmp(&a.request.share_of(shape))
    });
    for d in sorted {
        let i = match bins
            .iter()
            .position(|b| d.request.fits(&b.room_at(shape, d.due)))
        {
            Some(i) => i,
            None => match bins.iter().position(|b| {
                d.due > now
                    && waiting_served_by.is_none_or(|t| t <= d.due)
                    && b.may_free_for(shape, &d.request)
            }) {
                Some(i) => {
                    first_wait = Some(first_wait.map_or(d.due, |t| t.min(d.due)));
                    i
                }
                None => {
                    bins.push(Bin::new(None, false, *shape));
                    bins.len() - 1
                }
            },
        };
        let b = &mut bins[i];
        b.later = b.later.plus(&d.request);
        b.used = true;
    }
    first_wait
}

/// How many new nodes of `shape` the `pending` requests need beyond the free room of
/// existing nodes and of `booting` nodes still on their way (first-fit decreasing).
pub fn nodes_needed(
    shape: &Request,
    existing_free: &[Request],
    booting: usize,
    pending: &[Request],
) -> usize {
    let mut bins: Vec<Bin> = existing_free
        .iter()
        .map(|f| (*f, true))
        .chain(std::iter::repeat_n((*shape, false), booting))
        .map(|(free, ready)| Bin::new(None, ready, free))
        .collect();
    let first_new = bins.len();
    pack(&mut bins, shape, pending, None);
    bins.len() - first_new
}

/// The group's nodes and the nodes on their way as bins, in the order work fills them:
/// nodes with pods, empty Ready nodes, empty nodes not Ready yet, nodes on their way.
pub(super) fn bins_of(state: &GroupState, shape: &Request, booting: usize) -> Vec<Bin> {
    let bin = |n: &NodeView| {
        let busy = n.datajob_pods > 0 || n.foreign_pods > 0;
        let own = busy && n.foreign_pods == 0;
        Bin {
            busy,
            frees_at: n.frees_at.filter(|_| own),
            ends_unknown: own && n.frees_at.is_none(),
            ..Bin::new(Some(n.name.clone()), n.ready, n.free)
        }
    };
    let mut bins: Vec<Bin> = state.nodes.iter().map(bin).collect();
    bins.sort_by_key(|b| (!b.busy, !b.ready));
    bins.extend(std::iter::repeat_n(Bin::new(None, false, *shape), booting));
    bins
}

/// The room left in `bins` that stay, worth publishing (some CPU and memory free).
pub(super) fn room_left<'a>(bins: impl IntoIterator<Item = &'a Bin>) -> Vec<Room> {
    bins.into_iter()
        .map(|b| (b, b.room_now()))
        .filter(|(_, free)| free.cpu_millis > 0 && free.memory > 0)
        .map(|(b, free)| Room {
            node: b.node.clone(),
            ready: b.ready,
            free,
        })
        .collect()
}

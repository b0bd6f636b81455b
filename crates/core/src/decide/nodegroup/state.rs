//! What a group looks like now, as the scaler reads it: its nodes ([`NodeView`]) and
//! the work placed on it ([`GroupState`]). What [`super::bins`] packs and
//! [`super::scale`] decides from.
use chrono::{DateTime, Utc};

use super::due::DueRun;
use crate::resources::Request;

/// A node of a group as the scaler sees it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct NodeView {
    pub name: String,
    pub ready: bool,
    /// Allocatable minus what bound pods request.
    pub free: Request,
    pub datajob_pods: usize,
    /// Pods that are neither DataJob's nor a DaemonSet's: the node is never removed.
    pub foreign_pods: usize,
    /// When the runs on it are expected to have ended ([`expected_end`]); `None`: not
    /// known (or someone else's pods are on it). A run due after that can take the
    /// whole node.
    pub frees_at: Option<DateTime<Utc>>,
}

/// What the scaler knows about a group now.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GroupState {
    pub desired: i32,
    pub nodes: Vec<NodeView>,
    /// Requests of DataJob pods placed on the group that no node has taken yet.
    pub pending: Vec<Request>,
    /// DataJob pods placed on the group, running or pending.
    pub active: usize,
    /// The next run of each scheduled DataJob placed on the group that has no pod yet
    /// ([`super::next_runs`]): the warm-up makes nodes for those due within `warmUpBefore`
    /// ([`super::warm_up`]), and the `Schedule` policy keeps empty nodes for those due soon.
    pub due: Vec<DueRun>,
    pub idle_since: Option<DateTime<Utc>>,
    /// When the group's size last changed (`status.lastScaleTime`): nodes on their way
    /// were asked for then or before, so they are up a boot time after it at the latest.
    pub last_scale: Option<DateTime<Utc>>,
}

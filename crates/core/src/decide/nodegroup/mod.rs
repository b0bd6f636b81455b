//! Node groups as decisions: which group a run goes to (the cheapest that fits, or one
//! whose nodes already have room: [`packing`]), whether any group could ever fit it
//! (admission), and how many nodes a group needs (first-fit-decreasing packing; scale
//! down when empty unless a scheduled run due soon makes keeping a node cheaper than
//! booting another: [`keep`]; or after a fixed idle time), and which waiting runs a new
//! node is for ([`reserve`]). Pure functions.
//!
//! One file per concern: [`placement`], [`state`] (a group now), [`bins`] (first-fit-decreasing
//! packing), [`scale`], [`due`] (scheduled runs and warm-up), [`keep`], [`packing`], [`reserve`],
//! [`karpenter`] (a group on a Karpenter NodePool), [`machines`] (which Cluster API Machines
//! a scale-down marks), [`owned`] (which pods a group counts);
//! the [`Group`] they read is [`crate::group`]. The items other crates use are
//! re-exported here.
pub mod bins;
pub mod buffers;
pub mod due;
pub mod karpenter;
pub mod keep;
pub mod machines;
pub mod owned;
pub mod packing;
pub mod placement;
pub mod reserve;
pub mod scale;
pub mod state;

#[cfg(test)]
pub(crate) mod fixtures;

pub use crate::group::{
    GROUP_LABEL, Group, NODEPOOL_LABEL, ProviderKind, Room, ScaleDownPolicy, resolve_group,
    room_status, usable, usable_groups,
};
pub use bins::nodes_needed;
pub use due::{DueRun, Scheduled, WARM_GRACE, next_runs, warm_up};
pub use placement::{admission_problem, candidates, place, run_cost};
pub use scale::{
    SCALE_DOWN_TAINT, ScaleDecision, boots, decide, expected_end, new_node_names,
    with_scale_down_taint,
};
pub use state::{GroupState, NodeView};

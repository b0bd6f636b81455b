//! The resources DataJob serves: their Rust types are their schemas.
pub mod backfill;
pub mod datajob;
pub mod nodegroup;
pub mod quantity;

pub use backfill::{
    ActiveSlot, Backfill, BackfillProgress, BackfillSpec, BackfillState, BackfillStatus, FailedSlot,
};
pub use datajob::{
    CatchUp, CatchUpStatus, DataJob, DataJobResources, DataJobSpec, DataJobStatus, Publication,
    RunRecord, RunState,
};
pub use nodegroup::{NodeGroup, NodeGroupSpec, NodeGroupStatus};
pub use quantity::Quantity;

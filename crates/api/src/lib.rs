//! The resources DataJob serves: their Rust types are their schemas (`crds` writes them
//! out as CustomResourceDefinitions).
pub mod backfill;
pub mod bounds;
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
pub mod chart_readme;
pub mod crds;

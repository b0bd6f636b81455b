//! The resources DataJob serves: their Rust types are their schemas.
pub mod datajob;
pub mod nodegroup;
pub mod quantity;

pub use datajob::{DataJob, DataJobResources, DataJobSpec, DataJobStatus, RunRecord, RunState};
pub use nodegroup::{NodeGroup, NodeGroupSpec, NodeGroupStatus};
pub use quantity::Quantity;

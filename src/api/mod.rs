//! The resources DataJob serves: their Rust types are their schemas.
pub mod datajob;
pub mod quantity;

pub use datajob::{DataJob, DataJobResources, DataJobSpec, DataJobStatus, RunRecord, RunState};
pub use quantity::Quantity;

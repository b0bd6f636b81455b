//! The log archive: before the operator lets a run's pod go, it copies each container's
//! log of each attempt into an S3-compatible object store, so `kubectl datajob logs`
//! can read it after the pod, its Job or its node is gone.
//!
//! - [`layout`]: where an attempt's log is kept (one object per pod and container, a
//!   key made only of the run's names and the pod's creation time, so a copy made again
//!   after a restart replaces the same object and never doubles a line);
//! - [`tail`]: the copy is bounded; past the bound the tail is kept, after a line that
//!   says what was cut;
//! - [`retention`]: which objects go, by age and by runs per DataJob (pure);
//! - [`store`]: the store's client (signed requests, each with a timeout).
pub mod layout;
pub mod retention;
pub mod store;
pub mod tail;

pub use layout::{Attempt, AttemptKey};
pub use retention::{Object, Policy, Sweep};
pub use store::{Settings, Store, StoreError};
pub use tail::Tail;

//! DataJob's core: what a valid DataJob is and every decision the operator and the
//! plugin make, as plain functions from values to values. Nothing here calls the API,
//! spawns a task or touches a file: the operator and the plugin read the cluster, call
//! these, and act on the answer.
//!
//! From the bottom: units, quantities and schedules (`units`, `resources`, `schedule`),
//! names and labels (`labels`), the output contract (`output`), runs with parameters
//! (`params`), what is valid
//! (`validation`, `problem`, `suggest`), validation plus placement (`admission`), and the
//! decisions (`decide`).
pub mod admission;
pub mod decide;
pub mod group;
pub mod labels;
pub mod output;
pub mod params;
pub mod problem;
pub mod resources;
pub mod schedule;
pub mod suggest;
pub mod units;
pub mod validation;

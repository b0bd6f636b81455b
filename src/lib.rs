//! DataJob: batch data work on Kubernetes, safe by default.
pub mod api;
pub mod children;
pub mod labels;
pub mod runs;
pub mod schedule;
pub mod units;
pub mod validation;

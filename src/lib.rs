//! DataJob: batch data work on Kubernetes, safe by default.
pub mod admin;
pub mod api;
pub mod children;
pub mod config;
pub mod controller;
pub mod error;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod runs;
pub mod schedule;
pub mod units;
pub mod validation;

pub use error::{Error, Result};
pub mod cleanup;
pub mod cli;
pub mod crds;
pub mod nodegroups;
pub mod preflight;
pub mod resources;
pub mod watchdog;
pub mod webhook;

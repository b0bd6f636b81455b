//! DataJob: batch data work on Kubernetes, safe by default.
//!
//! The layers, from the bottom: the resource types (`api`), parsing and validation
//! (`units`, `schedule`, `resources`, `validation`, `problem`), the pure decisions
//! (`decide`: what to create, what is stuck, which slots run, how many nodes), and the
//! parts that talk to the cluster and call those decisions (`controller`, `webhook`,
//! `cli`, `preflight`, `leader`). A decision never calls the API.
pub mod admin;
pub mod admission;
pub mod api;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crds;
pub mod decide;
pub mod error;
pub mod heap;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod output;
pub mod preflight;
pub mod problem;
pub mod publish;
pub mod resources;
pub mod schedule;
pub mod units;
pub mod validation;
pub mod webhook;

pub use error::{Error, Result};

// The unit tests run on the allocator the operator runs on (it counts the heap for
// `/metrics`).
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

//! The DataJob operator: the controllers that read the caches, call the pure decisions
//! of `datajob_core` and apply them (`controller`), the admission webhook (`webhook`),
//! leadership (`leader`), the admin server and metrics (`admin`, `metrics`, `heap`, and
//! who may read them when served securely: `metrics_auth`), flags (`config`) and the one
//! error type (`error`). `main.rs` only wires them.
pub mod admin;
pub mod config;
pub mod controller;
pub(crate) mod error;
pub mod heap;
pub mod leader;
pub mod metrics;
pub mod metrics_auth;
pub(crate) mod process_metrics;
pub mod webhook;

pub use error::{Error, Result};

// The unit tests run on the allocator the operator runs on (it counts the heap for
// `/metrics`).
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

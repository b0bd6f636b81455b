#![cfg(feature = "e2e")]
//! The end-to-end tests: one test binary (one link, one copy on disk), one module per
//! suite, against the local control plane that `e2e/run-e2e.sh` starts (feature `e2e`).
//!
//! * `shared::*`: suites that share one operator, started by `e2e/with-operator.sh`;
//!   `e2e/suites.sh` runs them one suite after the other (`-- shared::<suite>::`), as
//!   many tests of a suite at a time as `E2E_TEST_THREADS` says.
//! * `alone::*`: suites that start operators of their own or install the chart; each
//!   runs by itself, with no shared operator running.
//!
//! One suite: `bash e2e/run-e2e.sh bash e2e/with-operator.sh cargo test -p datajob-e2e
//! --features e2e --test e2e -- shared::datajob::`.
// A test: a failed expectation is meant to stop it (production code denies these).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

/// Suites that share the operator `e2e/with-operator.sh` runs.
mod shared {
    mod cli;
    mod dataflow;
    mod datajob;
    mod generated_specs;
    mod harness;
    mod karpenter;
    mod late;
    mod nodegroup;
    mod params;
    mod parity;
    mod preflight;
    mod realnode;
    mod realnode_runs;
    mod schedules;
    mod spellings;
    mod watchdog;
    mod webhook_cert;
}

/// Suites that run alone: their own operators, the chart, restarts.
mod alone {
    mod archive;
    mod chaos;
    mod chart;
    mod ha;
    mod incluster;
    mod metrics_auth;
    mod observability;
}

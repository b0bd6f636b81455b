//! The operator's pure decisions: each takes what the caches hold (and the time) and
//! says what should be, with no API call, so each is unit-tested without a cluster. The
//! controllers (`datajob_operator::controller`) gather the state, call these and apply the answer;
//! never the reverse.
pub mod archive;
pub mod backfill;
pub mod catch_up;
pub mod children;
pub mod cleanup;
pub mod dataflow;
pub mod datajob;
pub mod due_runs;
pub mod late;
pub mod nodegroup;
pub mod runs;
pub mod watchdog;

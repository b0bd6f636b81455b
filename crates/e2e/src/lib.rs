//! What DataJob's tests of the whole share: the proptest generators of what users and
//! platform engineers write (`strategies`). The tests are in `tests/`: `e2e/` (one
//! binary, feature `e2e`, on the real local control plane) and the property tests
//! `prop_*.rs`; the benchmarks are in `benches/`.
// Test support: a generator that cannot build its value is a bug in the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod strategies;

#!/usr/bin/env bash
# Benchmark: DataJob's node-group scaler against a baseline with minSize 1 and a
# 10-minute idle delay (Cluster Autoscaler's defaults), on the local control plane.
# Starts the cluster and the operator, replays one bursty trace per scaler, prints a
# table, and stops everything. Takes about 20 minutes (the baseline's idle delay).
#
#   bash e2e/bench/scaling.sh
#   BENCH_BASELINE_IDLE=2m bash e2e/bench/scaling.sh    # a quicker, less faithful baseline
#
# Settings (see benches/scaling.rs): BENCH_BASELINE_IDLE, BENCH_SCALE_DOWN_AFTER,
# BENCH_BOOT_DELAY, BENCH_ONLY. The cluster's ports and directory follow
# e2e/cluster.sh's DATAJOB_* variables; the operator's log goes to
# target/bench-operator.log. Results are recorded in docs/benchmarks.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
cargo bench --profile dev --features e2e --bench scaling --no-run
export DATAJOB_OPERATOR_LOG=${DATAJOB_OPERATOR_LOG:-$ROOT/target/bench-operator.log}
exec bash e2e/run-e2e.sh bash e2e/with-operator.sh \
  cargo bench --profile dev --features e2e --bench scaling

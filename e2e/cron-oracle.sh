#!/usr/bin/env bash
# Builds e2e/cron-oracle (robfig/cron v3, the cron library of Kubernetes' CronJob
# controller) from the Go module proxy, once per version, into the cache; prints the
# binary's path on its last line. The schedule tests compare DataJob's run times with it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${DATAJOB_CACHE:-$HOME/.cache/datajob}
SUM=$(cat "$HERE/cron-oracle/go.mod" "$HERE/cron-oracle/go.sum" "$HERE/cron-oracle/main.go" | sha256sum | cut -c1-12)
OUT="$CACHE/cron-oracle-$SUM"
if [ ! -x "$OUT/cron-oracle" ]; then
  mkdir -p "$OUT"
  echo "[cron-oracle] building robfig/cron v3 oracle" >&2
  (cd "$HERE/cron-oracle" && GOWORK=off GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOFLAGS=-mod=readonly \
    go build -trimpath -o "$OUT/cron-oracle.tmp" . && mv "$OUT/cron-oracle.tmp" "$OUT/cron-oracle")
fi
echo "$OUT/cron-oracle"

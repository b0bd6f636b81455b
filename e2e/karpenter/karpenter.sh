# Real Karpenter on the local control plane: Karpenter core with its kwok cloud provider
# (`sigs.k8s.io/karpenter/kwok`), built once from the Go module proxy into the build cache
# and run as a process next to the control plane. Sourced by e2e/cluster.sh, which starts
# it with `up` when DATAJOB_KARPENTER=1, or on a running cluster with `karpenter-up`, and
# stops it with `down` or `karpenter-down`.
#
# What it is: Karpenter's own provisioner (scheduling simulation, NodeClaims, limits,
# consolidation, CapacityBuffers with the CapacityBuffer feature gate on). What it fakes:
# the machines. Its kwok provider turns a NodeClaim into a Node object annotated
# `kwok.x-k8s.io/node: fake`, which the cluster's kwok then runs as a kubelet would.
# Its instance types are e2e/karpenter/instance_types.json (a 4-CPU/16Gi, a 16-CPU/64Gi
# and an 8-CPU/32Gi GPU shape, priced on demand and spot).
#
# Environment (optional):
#   DATAJOB_KARPENTER              1: `cluster.sh up` starts Karpenter too (default 0)
#   DATAJOB_KARPENTER_METRICS_PORT its metrics port (default 18080 + the apiserver
#                                  port's shift from 6443); the health port is this + 1
# shellcheck shell=bash

KARPENTER_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

karpenter_load_env() {
  KARPENTER=${KARPENTER:-${DATAJOB_KARPENTER:-0}}
  local shift=$((APISERVER_PORT - 6443))
  KARPENTER_METRICS_PORT=${KARPENTER_METRICS_PORT:-${DATAJOB_KARPENTER_METRICS_PORT:-$((18080 + shift))}}
  KARPENTER_HEALTH_PORT=${KARPENTER_HEALTH_PORT:-$((KARPENTER_METRICS_PORT + 1))}
}

karpenter_env_lines() {
  printf 'KARPENTER=%s\nKARPENTER_METRICS_PORT=%s\nKARPENTER_HEALTH_PORT=%s\n' \
    "$KARPENTER" "$KARPENTER_METRICS_PORT" "$KARPENTER_HEALTH_PORT"
}

# The cache directory of the pinned version: bin/karpenter-kwok and crds/*.yaml.
karpenter_cache() {
  # shellcheck source=../versions.env
  . "$KARPENTER_HERE/../versions.env"
  echo "${DATAJOB_CACHE:-$HOME/.cache/datajob}/karpenter-$KARPENTER_VERSION-$KARPENTER_GO"
}

# Builds Karpenter's kwok binary once (cached) and copies its CRDs beside it; prints the
# cache directory. Karpenter v1.15 needs a newer Go than the machine's: the go command
# fetches the pinned toolchain through the module proxy (GOTOOLCHAIN).
karpenter_build() {
  local dir; dir=$(karpenter_cache)
  if [ -x "$dir/bin/karpenter-kwok" ] && [ -f "$dir/crds/.complete" ]; then
    echo "$dir"; return 0
  fi
  log "building Karpenter $KARPENTER_VERSION (kwok provider) with $KARPENTER_GO; once, into $dir"
  mkdir -p "$dir/bin.partial" "$dir/crds.partial"
  (cd "$dir" && GOTOOLCHAIN="$KARPENTER_GO" GOBIN="$dir/bin.partial" \
    go install "sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION") >&2 \
    || die "building Karpenter failed (go install sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION)"
  mv "$dir/bin.partial/kwok" "$dir/bin.partial/karpenter-kwok"
  local mod
  mod=$(GOTOOLCHAIN="$KARPENTER_GO" go env GOMODCACHE)/sigs.k8s.io/karpenter@$KARPENTER_VERSION
  cp "$mod"/pkg/apis/crds/*.yaml "$mod"/kwok/apis/crds/*.yaml "$dir/crds.partial/"
  chmod u+w "$dir"/crds.partial/*.yaml
  touch "$dir/crds.partial/.complete"
  rm -rf "$dir/bin" "$dir/crds"
  mv "$dir/bin.partial" "$dir/bin" && mv "$dir/crds.partial" "$dir/crds"
  echo "$dir"
}

karpenter_ready() { curl -sf --max-time 2 "http://127.0.0.1:$KARPENTER_HEALTH_PORT/readyz" >/dev/null; }

# Installs Karpenter's CRDs (NodePool, NodeClaim, NodeOverlay, KWOKNodeClass,
# CapacityBuffer) and the `default` KWOKNodeClass, then starts Karpenter.
karpenter_start() {
  local dir; dir=$(karpenter_build | tail -n 1)
  local p
  for p in "$KARPENTER_METRICS_PORT" "$KARPENTER_HEALTH_PORT"; do
    port_busy "$p" && die "port $p is already in use (set DATAJOB_KARPENTER_METRICS_PORT)"
  done
  "$KUBECTL" apply --server-side -f "$dir/crds/" >/dev/null
  "$KUBECTL" wait --for=condition=Established --timeout=60s \
    crd/nodepools.karpenter.sh crd/nodeclaims.karpenter.sh \
    crd/kwoknodeclasses.karpenter.kwok.sh crd/capacitybuffers.autoscaling.x-k8s.io >/dev/null
  "$KUBECTL" apply -f "$KARPENTER_HERE/nodeclass.yaml" >/dev/null
  mkdir -p "$DIR/karpenter"
  cp "$KARPENTER_HERE/instance_types.json" "$DIR/karpenter/instance_types.json"
  sign_cert karpenter "/O=system:masters/CN=karpenter" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
  write_kubeconfig "$DIR/karpenter.kubeconfig" karpenter
  # Out of the cluster: no leader election, no webhook; its batch window short, as a
  # test wants it (production defaults: 10 s max, 1 s idle).
  launch karpenter env \
    KUBECONFIG="$DIR/karpenter.kubeconfig" \
    SYSTEM_NAMESPACE=kube-system \
    "$dir/bin/karpenter-kwok" \
    --instance-types-file-path="$DIR/karpenter/instance_types.json" \
    --disable-leader-election=true \
    --metrics-port="$KARPENTER_METRICS_PORT" \
    --health-probe-port="$KARPENTER_HEALTH_PORT" \
    --feature-gates=CapacityBuffer=true \
    --batch-max-duration=2s --batch-idle-duration=500ms \
    --log-level=info
  local deadline=$(( $(date +%s) + 60 ))
  until karpenter_ready; do
    if ! alive "$(cat "$(pidfile karpenter)")"; then
      tail -n 30 "$DIR/logs/karpenter.log" >&2
      die "Karpenter exited (log: $DIR/logs/karpenter.log)"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "Karpenter not ready after 60 s (log: $DIR/logs/karpenter.log)"
    sleep 0.5
  done
  log "Karpenter $KARPENTER_VERSION running (metrics :$KARPENTER_METRICS_PORT, log $DIR/logs/karpenter.log)"
}

# Stops Karpenter; its nodes (kwok Node objects) and NodeClaims are deleted first, so
# nothing it made outlives it.
karpenter_stop() {
  [ "${KARPENTER:-0}" = 1 ] || return 0
  [ -n "${KUBECTL:-}" ] || return 0
  local k=("$KUBECTL" --kubeconfig="$DIR/kubeconfig" --request-timeout=10s) pid nc
  if pid=$(live_pid karpenter); then
    "${k[@]}" delete nodepools.karpenter.sh --all --wait=false >/dev/null 2>&1 || true
    stop_pids 5 "$pid"
  fi
  # What it left behind (a NodeClaim's finalizer needs Karpenter to go away).
  if "${k[@]}" get crd nodeclaims.karpenter.sh >/dev/null 2>&1; then
    for nc in $("${k[@]}" get nodeclaims.karpenter.sh -o name 2>/dev/null); do
      "${k[@]}" patch "$nc" --type=merge -p '{"metadata":{"finalizers":null}}' >/dev/null 2>&1 || true
    done
    "${k[@]}" delete nodeclaims.karpenter.sh --all --wait=false >/dev/null 2>&1 || true
    "${k[@]}" delete nodes -l karpenter.sh/nodepool --wait=false >/dev/null 2>&1 || true
  fi
}

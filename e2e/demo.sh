#!/usr/bin/env bash
# The demo behind `make demo` / `make demo-down`.
#
#   e2e/demo.sh        set the machine up (as `e2e/demo.sh deps`), start (or reuse) the
#                      local control plane with its real node, (re)start the operator in
#                      the background, run `hello-real` on the real node and show its log
#                      lines, apply the NodeGroups and DataJobs of examples/, show a
#                      refusal at apply, wait for the first runs, print their status and
#                      how to go on. Cluster and operator keep running afterwards.
#   e2e/demo.sh deps   only the set-up (the demo's first step); starts nothing. It checks
#                      what the real node needs (root, a memory cgroup and the Debian
#                      packages REAL_NODE_PACKAGES of e2e/realnode/realnode.sh: containerd,
#                      runc, containernetworking-plugins, busybox-static, gcc, libc6-dev,
#                      jq, iproute2) and what the demo needs (curl, openssl). As root with
#                      apt-get it installs the missing packages (apt-get install -y
#                      --no-install-recommends, said in one log line). Otherwise (not root,
#                      no apt-get, no memory cgroup) it says what is missing and the one
#                      command to run, and exits 1: the demo stops before it starts anything.
#   e2e/demo.sh down   stop the operator (by its pid file) and the local control plane.
#
# Environment (all optional; `down` needs the same DATAJOB_CLUSTER_DIR as `up`):
#   DATAJOB_DEMO_REAL_NODE  1 (default): the demo has the real node, and the set-up
#                         installs what it needs or stops; 0: kwok (simulated) nodes only,
#                         nothing installed for the real node, no root needed (the
#                         default is 0 when DATAJOB_REAL_NODE=0)
#   DATAJOB_CLUSTER_DIR, DATAJOB_*_PORT   as for e2e/cluster.sh (state dir and ports)
#   DATAJOB_ADMIN_ADDR    operator admin server   (default 127.0.0.1:8080)
#   DATAJOB_WEBHOOK_ADDR  operator webhook        (default 127.0.0.1:9443)
#   DATAJOB_DEMO_WAIT     seconds to wait for the first runs (default 90)
# Other DATAJOB_* settings of the operator (see `datajob-operator --help`) pass through.
#
# To try the set-up without a fresh machine: `bash e2e/demo.sh deps` with a PATH that
# hides some tools (a directory of symlinks), as root (installs them, or with a stub
# apt-get on that PATH) and as another user (`setpriv --reuid=nobody --regid=nogroup
# --clear-groups bash e2e/demo.sh deps`: stops and prints the command).
#
# The operator logs to <cluster dir>/logs/datajob-operator.log; its pid is in
# <cluster dir>/run/datajob-operator.pid. If the script fails before it prints
# "The demo is running", it stops the operator it started (the cluster stays up).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
cd "$ROOT"
# shellcheck source=go-toolchain.sh
. "$HERE/go-toolchain.sh"

DIR=${DATAJOB_CLUSTER_DIR:-$HOME/.cache/datajob/cluster}
DIR=${DIR%/}
PIDFILE=$DIR/run/datajob-operator.pid
LOG=$DIR/logs/datajob-operator.log
OPERATOR=$ROOT/target/debug/datajob-operator
PLUGIN=$ROOT/target/debug/kubectl-datajob
ADMIN=${DATAJOB_ADMIN_ADDR:-127.0.0.1:8080}
WEBHOOK=${DATAJOB_WEBHOOK_ADDR:-127.0.0.1:9443}
WAIT=${DATAJOB_DEMO_WAIT:-90}
NS=demo

indent() { sed "s/^/  /" >&2; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
log() { printf '[demo %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- 0. the set-up: what the demo and its real node need ------------------------------
# What the real node needs: REAL_NODE_NEEDS, REAL_NODE_PACKAGES, realnode_missing and
# realnode_cgroup_ok (the functions of cluster.sh it uses are not called here).
# shellcheck source=realnode/realnode.sh
. "$HERE/realnode/realnode.sh"

REAL_NODE_WANTED=${DATAJOB_DEMO_REAL_NODE:-}
if [ -z "$REAL_NODE_WANTED" ]; then
  case "${DATAJOB_REAL_NODE:-}" in 0|false|no|off) REAL_NODE_WANTED=0 ;; *) REAL_NODE_WANTED=1 ;; esac
fi
case "$REAL_NODE_WANTED" in
  1|true|yes|on) REAL_NODE_WANTED=1 ;;
  0|false|no|off) REAL_NODE_WANTED=0 ;;
  *) die "DATAJOB_DEMO_REAL_NODE must be 1 or 0 (got '$REAL_NODE_WANTED')" ;;
esac

# What is missing, one per line: what, a tab, its Debian package. The demo's own tools
# (the cluster's certificates, the operator's readiness), then the real node's.
demo_missing() {
  command -v curl >/dev/null 2>&1 || printf 'curl missing\tcurl\n'
  command -v openssl >/dev/null 2>&1 || printf 'openssl missing\topenssl\n'
  if [ "$REAL_NODE_WANTED" = 1 ]; then realnode_missing; fi
}

# The packages of demo_missing, each once, on one line.
missing_packages() { demo_missing | cut -f2 | awk 'NF && !seen[$0]++' | paste -sd' ' -; }

# How to run the demo again, with the same choice of nodes.
again() { if [ "$REAL_NODE_WANTED" = 0 ]; then echo "DATAJOB_DEMO_REAL_NODE=0 make demo"; else echo "make demo"; fi; }

# Stops the demo (exit 1) with what is missing, the one command that sets it up and
# runs the demo again, and the way without the real node.
stop_with() {
  local why=$1 cmd=$2
  log "ERROR: the demo cannot start: $why"
  log "run:  $cmd"
  case "$cmd" in
    *DATAJOB_DEMO_REAL_NODE=0*) ;;
    *) [ "$REAL_NODE_WANTED" = 0 ] ||
         log "or, without the real node (simulated kwok nodes only, no hello-real logs): DATAJOB_DEMO_REAL_NODE=0 make demo" ;;
  esac
  exit 1
}

# Installs what is missing when it can (root, apt-get), else stops before anything runs.
deps() {
  local pkgs root=0 still what
  if [ "$(id -u)" = 0 ]; then root=1; fi
  pkgs=$(missing_packages)
  if [ "$REAL_NODE_WANTED" = 1 ]; then
    realnode_cgroup_ok ||
      stop_with "no memory cgroup here (/sys/fs/cgroup), which the real node's kubelet needs" \
        "DATAJOB_DEMO_REAL_NODE=0 make demo"
    if [ "$root" = 0 ]; then
      # The real node's containerd and kubelet run as root: so does the demo. sudo -E
      # and PATH keep this user's cargo and cache.
      if [ -n "$pkgs" ]; then
        stop_with "not root (the real node's containerd and kubelet need root), and missing: $pkgs" \
          "sudo apt-get install -y --no-install-recommends $pkgs && sudo -E env \"PATH=\$PATH\" make demo"
      fi
      stop_with "not root (the real node's containerd and kubelet need root)" \
        "sudo -E env \"PATH=\$PATH\" make demo"
    fi
  fi
  if [ -n "$pkgs" ]; then
    command -v apt-get >/dev/null 2>&1 ||
      stop_with "no apt-get here, and missing: $(demo_missing | cut -f1 | paste -sd, - | sed 's/,/, /g') (Debian packages: $pkgs)" \
        "install them with this system's package manager, then: $(again)"
    [ "$root" = 1 ] ||
      stop_with "not root, to install the missing $pkgs" \
        "sudo apt-get install -y --no-install-recommends $pkgs && $(again)"
    log "installing what the demo needs: apt-get install -y --no-install-recommends $pkgs"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086  # one word per package
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs >/dev/null; }; then
      die "apt-get install $pkgs failed (see its output above); run it yourself, then $(again)"
    fi
    still=$(demo_missing | cut -f1 | paste -sd, - | sed 's/,/, /g')
    [ -z "$still" ] || die "still missing after apt-get install $pkgs: $still (not where this looks: the PATH, DATAJOB_CNI_BIN_DIR?)"
  fi
  # Go >= 1.26 builds the local control plane and helm once (e2e/go-toolchain.sh, as
  # .ci/run does: the one on the PATH, else fetched through the Go module proxy). A
  # cached control plane does not need it.
  if ! ensure_go; then
    ls -d "$HOME"/.cache/datajob/k8s-*/bin >/dev/null 2>&1 ||
      stop_with "no Go 1.26 or newer, to build the local control plane once" \
        "install Go 1.26 or newer (go on the PATH), then: $(again)"
    log "no Go 1.26 or newer; the control plane built before is used"
  fi
  if [ ! -x "$OPERATOR" ] || [ ! -x "$PLUGIN" ]; then
    command -v cargo >/dev/null 2>&1 ||
      stop_with "Rust is not installed, to build the operator and the plugin" \
        "install Rust 1.89 or newer with rustup (cargo on the PATH), then: $(again)"
  fi
  what="kwok nodes only: DATAJOB_DEMO_REAL_NODE=0"
  [ "$REAL_NODE_WANTED" = 0 ] || what="the real node and kwok nodes"
  log "set-up done: everything the demo needs is here ($what)"
}

# pid of the demo's operator if it is alive and really is a datajob-operator
# (guards against a reused pid).
operator_pid() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q 'datajob-operator' || return 1
  echo "$pid"
}

stop_operator() {
  local pid
  if pid=$(operator_pid); then
    log "stopping the operator (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      operator_pid >/dev/null || break
      sleep 0.2
    done
    if operator_pid >/dev/null; then
      log "the operator did not stop within 10s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$PIDFILE"
}

if [ "${1:-}" = down ]; then
  stop_operator
  bash "$HERE/cluster.sh" down
  exit 0
fi
if [ "${1:-}" = deps ] && [ $# -eq 1 ]; then
  deps
  exit 0
fi
[ $# -eq 0 ] || { echo "usage: $0 [deps|down]" >&2; exit 2; }

port_in_use() {
  local host=${1%:*} port=${1##*:}
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

T0=$(date +%s)

# --- 0. the set-up, before anything starts -----------------------------------------------
say "Set-up"
deps

# --- 1. the local control plane (built once, cached; reused when it runs) ---------
say "Local control plane"
# An operator left from an earlier demo would hold the ports, and a restart of a
# broken cluster would delete its pid file: stop it first.
stop_operator
# The set-up made the real node possible: `up` must start it (or fail saying why).
DATAJOB_REAL_NODE=$REAL_NODE_WANTED bash "$HERE/cluster.sh" up
if [ "$REAL_NODE_WANTED" = 1 ] && ! grep -qx 'REAL_NODE=1' "$DIR/cluster.env" 2>/dev/null; then
  log "the running cluster in $DIR was started without the real node; $(
    [ "$DIR" = "$HOME/.cache/datajob/cluster" ] && echo "make demo-down" || echo "DATAJOB_CLUSTER_DIR=$DIR bash e2e/demo.sh down"
  ) and make demo again to get it"
fi
eval "$(bash "$HERE/cluster.sh" env 2>/dev/null)"
export KUBECONFIG
BIN=$(bash "$HERE/build.sh" 2>/dev/null | tail -n 1)
[ -x "$BIN/kubectl" ] || die "no kubectl in '$BIN' (bash e2e/build.sh)"
export PATH=$BIN:$PATH
k() { kubectl "$@"; }

# --- 2. CRDs, the operator's namespace, the operator ---------------------------------
say "CRDs and the operator"
k apply --server-side --force-conflicts -f crds/ >/dev/null
k create namespace datajob-system --dry-run=client -o yaml | k apply -f - >/dev/null
k wait --for condition=established --timeout=30s crd/datajobs.datajob.dev crd/nodegroups.datajob.dev >/dev/null

if [ ! -x "$OPERATOR" ]; then
  log "building the operator (cargo build --bins)"
  cargo build --bins
fi
for addr in "$ADMIN" "$WEBHOOK"; do
  if port_in_use "$addr"; then
    die "$addr is already in use (another operator, e.g. \`make run\`?); stop it or set DATAJOB_ADMIN_ADDR / DATAJOB_WEBHOOK_ADDR"
  fi
done

# From here on, a failure stops the operator this script started.
started=0
cleanup_on_failure() {
  local rc=$?
  if [ "$started" = 1 ] && [ "$rc" -ne 0 ]; then
    log "the demo failed (exit $rc); last lines of the operator log:"
    tail -20 "$LOG" >&2 2>/dev/null || true
    stop_operator
    log "the cluster is still up; stop it with: bash e2e/demo.sh down"
  fi
}
trap cleanup_on_failure EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$(dirname "$PIDFILE")" "$(dirname "$LOG")"
# The same settings as `make run`. The operator is detached (own session, no
# inherited file descriptors but the log) so it outlives this script and `make`.
# shellcheck disable=SC2016  # expanded by the inner bash
DATAJOB_ADMIN_ADDR=$ADMIN DATAJOB_WEBHOOK_ADDR=$WEBHOOK \
DATAJOB_WEBHOOK_URL=${DATAJOB_WEBHOOK_URL:-https://$WEBHOOK} POD_NAMESPACE=datajob-system \
  setsid nohup bash -c '
    for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-"; done
    echo $$ >"$1"
    exec "$2"
  ' demo-operator "$PIDFILE" "$OPERATOR" </dev/null >>"$LOG" 2>&1 &
started=1
for _ in $(seq 1 100); do
  [ -s "$PIDFILE" ] && break
  sleep 0.1
done
log "operator started (pid $(cat "$PIDFILE" 2>/dev/null || echo '?'), log $LOG)"
ready=0
for _ in $(seq 1 300); do
  if curl -sf "http://$ADMIN/readyz" >/dev/null 2>&1; then ready=1; break; fi
  operator_pid >/dev/null || die "the operator exited; see $LOG"
  sleep 0.2
done
[ "$ready" = 1 ] || die "the operator was not ready after 60s; see $LOG"
log "operator ready (http://$ADMIN/readyz)"

# --- a run on the real node: a real container, its real log lines ---------------------
# Before the NodeGroups exist: with them, runs are placed on a group, and the real node is
# in none.
REAL_ENV="$DIR/cluster.env"
if grep -qx 'REAL_NODE=1' "$REAL_ENV" 2>/dev/null; then
  IMAGE_ROOT=$(sed -n 's/^IMAGE_ROOT=//p' "$REAL_ENV")
  REAL_NS=$NS-real
  say "A run on the real node (containerd, a real kubelet, image $IMAGE_ROOT from the local registry)"
  # Pods of this namespace go to the real node (see docs/testing.md, "The real node").
  k apply -f - >/dev/null <<EOF_NS
apiVersion: v1
kind: Namespace
metadata:
  name: $REAL_NS
  annotations:
    scheduler.alpha.kubernetes.io/node-selector: datajob.dev/real-node=true
    scheduler.alpha.kubernetes.io/defaultTolerations: '[{"key":"datajob.dev/real-node","operator":"Equal","value":"true","effect":"NoSchedule"}]'
EOF_NS
  for _ in $(seq 1 100); do
    k -n "$REAL_NS" get serviceaccount default >/dev/null 2>&1 && break
    sleep 0.2
  done
  k -n "$REAL_NS" apply -f - <<EOF_DJ 2>&1 | indent
apiVersion: datajob.dev/v1alpha1
kind: DataJob
metadata:
  name: hello-real
spec:
  image: $IMAGE_ROOT
  command: [sh, -c, 'echo "hello from \$(hostname), user \$(id -u) (the image runs as root; the run never does)"; echo "run \$DATAJOB_RUN_ID, logical time \$DATAJOB_LOGICAL_TIME"; echo scratch > /scratch/x && echo "wrote /scratch/x"']
  resources: {cpu: 100m, memory: 64Mi}
EOF_DJ
  for _ in $(seq 1 120); do
    state=$(k -n "$REAL_NS" get datajob hello-real -o 'jsonpath={.status.state}' 2>/dev/null || true)
    case "$state" in Succeeded|Failed) break;; esac
    sleep 1
  done
  echo "  \$ kubectl datajob -n $REAL_NS logs hello-real" >&2
  "$PLUGIN" -n "$REAL_NS" logs hello-real 2>&1 | indent || true
fi

# --- 3. node groups and the example DataJobs ------------------------------------------
say "NodeGroups (examples/platform/): simulated nodes, made when runs wait and removed when idle"
k apply -f examples/platform/nodegroups.yaml
k create namespace "$NS" --dry-run=client -o yaml | k apply -f - >/dev/null
# Pods are refused until the namespace has its default ServiceAccount.
for _ in $(seq 1 100); do
  k -n "$NS" get serviceaccount default >/dev/null 2>&1 && break
  sleep 0.2
done

say "DataJobs (examples/*.yaml) into namespace $NS"
for f in examples/*.yaml; do
  k -n "$NS" apply -f "$f"
done

say "A bad DataJob is refused at apply"
bad='apiVersion: datajob.dev/v1alpha1
kind: DataJob
metadata:
  name: bad-schedule
spec:
  image: busybox:1.36
  schedule: "61 * * * *"
  deadline: 2 hours'
printf '%s\n' "$bad" | indent
echo "  \$ kubectl -n $NS apply -f -" >&2
if out=$(printf '%s\n' "$bad" | k -n "$NS" apply -f - 2>&1); then
  printf "%s\n" "$out" | indent
  log "unexpected: the bad DataJob was accepted (is the webhook registered?); deleting it"
  k -n "$NS" delete datajobs bad-schedule --ignore-not-found >/dev/null
else
  printf "%s\n" "$out" | indent
fi

# --- 4. wait for the first runs -------------------------------------------------------
say "Waiting up to ${WAIT}s for the one-off runs to finish and the every-minute job to run"
# name|schedule|state of the last run|states of the recent runs, per DataJob
summary() {
  k -n "$NS" get datajobs -o 'jsonpath={range .items[*]}{.metadata.name}{"|"}{.spec.schedule}{"|"}{.status.lastRun.state}{"|"}{.status.recentRuns[*].state}{"\n"}{end}' 2>/dev/null || true
}
deadline=$(( $(date +%s) + WAIT ))
while :; do
  waiting=$(summary | awk -F'|' '
    $2 == "" && $3 != "Succeeded" && $3 != "Failed" { print $1 }              # one-off, not finished
    $2 == "* * * * *" && $4 !~ /Succeeded|Failed/ { print $1 }               # every minute, no finished run yet
  ' | paste -sd' ' -)
  [ -z "$waiting" ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "still waiting for: $waiting (they go on in the background)"
    break
  fi
  sleep 2
done

say "kubectl get datajobs -n $NS"
k -n "$NS" get datajobs
say "kubectl get nodegroups"
k get nodegroups
say "Recent events of the DataJobs"
k -n "$NS" get events --field-selector involvedObject.kind=DataJob --sort-by=.metadata.creationTimestamp \
  -o custom-columns='TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message' | tail -n 12
say "Some metrics (http://$ADMIN/metrics)"
curl -sf "http://$ADMIN/metrics" | grep -E '^datajob_(runs_finished|admission_reviews)' | head -n 8 || true

# --- 5. how to go on -----------------------------------------------------------------
trap - EXIT INT TERM
elapsed=$(( $(date +%s) - T0 ))
down_cmd="make demo-down"
[ "$DIR" = "$HOME/.cache/datajob/cluster" ] || down_cmd="DATAJOB_CLUSTER_DIR=$DIR bash e2e/demo.sh down"
cat <<EOF

The demo is running (set up in ${elapsed}s). Explore it:

  export KUBECONFIG=$KUBECONFIG
  export PATH=$BIN:\$PATH
  kubectl get datajobs -A
  kubectl get nodegroups
  target/debug/kubectl-datajob -n $NS-real logs hello-real   # real log lines, from the real node
  kubectl -n $NS describe datajobs heartbeat
  kubectl -n $NS get jobs,pods
  target/debug/kubectl-datajob -n $NS status          # the plugin, see docs/cli.md
  target/debug/kubectl-datajob -n $NS trigger backfill-customers --wait

Operator: pid $(cat "$PIDFILE"), log $LOG
Metrics:  curl -s http://$ADMIN/metrics
Stop everything: $down_cmd
EOF

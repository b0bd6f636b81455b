#!/usr/bin/env bash
# Build the local control plane from the Go module proxy, once per version set:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet
#   (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3) and kwok (sigs.k8s.io/kwok).
# Binaries land in $DATAJOB_CACHE/k8s-<versions>/bin. Each binary is built only when it
# is missing there, so a cache made before a binary was added (e.g. kubelet) only gets
# that one built. The marker .complete is written when every binary of BINARIES is
# there; with it (and all of them present) a second run does nothing.
# Prints the bin directory on its last line.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$HERE/versions.env"
CACHE=${DATAJOB_CACHE:-$HOME/.cache/datajob}
KEY="k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}"
OUT="$CACHE/$KEY"
BIN="$OUT/bin"
K8S_CMDS="kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet"
BINARIES="$K8S_CMDS etcd kwok"
all_built() { local b; for b in $BINARIES; do [ -x "$BIN/$b" ] || return 1; done; }
if [ -f "$OUT/.complete" ] && all_built && [ -d "$OUT/stages" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"
# One build per cache dir at a time (make, cluster.sh and other shells may call this
# concurrently): wait for the other, then build only what is still missing.
exec 8>"$OUT/.lock"
flock 8
if [ -f "$OUT/.complete" ] && all_built && [ -d "$OUT/stages" ]; then echo "$BIN"; exit 0; fi
export GOWORK=off GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOFLAGS=-mod=mod
# Two cores on this machine: one link at a time keeps peak memory sane.
export GOMAXPROCS=${GOMAXPROCS:-2}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- 1. Kubernetes: a wrapper module, since k8s.io/kubernetes' go.mod replaces
#        its staging modules with local paths (go install @version refuses it).
missing=""
for c in $K8S_CMDS; do [ -x "$BIN/$c" ] || missing="$missing $c"; done
if [ -n "$missing" ]; then
  log "kubernetes $K8S_VERSION:$missing"
  mkdir -p "$W/k8s" && cd "$W/k8s"
  STAGING="v0.${K8S_VERSION#v1.}"               # v1.36.3 -> v0.36.3
  printf 'module datajob.dev/e2e/k8sbins\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n' "$K8S_VERSION" > go.mod
  # Derive the staging list from the real go.mod served by the proxy.
  K8SMOD=$(cd / && GOFLAGS='' go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  while read -r m; do
    go mod edit "-replace=$m=$m@$STAGING"
  done < <(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/src/.*|\1|p' "$K8SMOD")
  # every command in the module graph (not only the missing ones): the same go.sum
  # and module versions whichever binaries a run happens to build
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for c in $K8S_CMDS; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'; } > tools.go
  go mod tidy
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  X() { for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do printf -- "-X '%s.%s=%s' " "$p" "$1" "$2"; done; }
  LDF="-s -w $(X gitVersion "$K8S_VERSION") $(X gitMajor 1) $(X gitMinor "$minor") $(X gitTreeState clean) $(X buildDate "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
  # one at a time (GOMAXPROCS=2): the link of each is the memory peak. Static like
  # the official builds (kubelet too: CGO_ENABLED=0). Into a temp name, then
  # renamed, so an interrupted build never leaves a half-written binary behind.
  for cmd in $missing; do
    log "go build $cmd"
    go build -trimpath -tags=selinux,notest -ldflags="$LDF" -o "$BIN/.$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
    mv -f "$BIN/.$cmd.tmp" "$BIN/$cmd"
  done
fi

# --- 2. etcd: server/go.mod has replace directives too -> wrapper module.
if [ ! -x "$BIN/etcd" ]; then
  log "etcd $ETCD_VERSION"
  mkdir -p "$W/etcd" && cd "$W/etcd"
  printf 'module datajob.dev/e2e/etcdbin\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  go mod tidy
  go build -trimpath -ldflags='-s -w' -o "$BIN/.etcd.tmp" go.etcd.io/etcd/server/v3
  mv -f "$BIN/.etcd.tmp" "$BIN/etcd"
fi

# --- 3. kwok: a plain go install; keep the stage files it ships beside it.
if [ ! -x "$BIN/kwok" ]; then
  log "kwok $KWOK_VERSION"
  (cd / && GOBIN="$BIN" GOFLAGS='' go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
fi
rm -rf "$OUT/stages"
cp -r "$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage" "$OUT/stages"
chmod -R u+w "$OUT/stages"

"$BIN/kube-apiserver" --version >&2
"$BIN/kubelet" --version >&2
"$BIN/etcd" --version | head -1 >&2
"$BIN/kwok" --version >&2
all_built || { log "ERROR: missing binaries in $BIN"; exit 1; }
touch "$OUT/.complete"
echo "$BIN"

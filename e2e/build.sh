#!/usr/bin/env bash
# Build the local control plane from the Go module proxy, once per version set:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
#   etcd (go.etcd.io/etcd/server/v3) and kwok (sigs.k8s.io/kwok).
# Binaries land in $DATAJOB_CACHE/k8s-<versions>/bin; a second run with the same
# versions does nothing. Prints the bin directory on its last line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$HERE/versions.env"
CACHE=${DATAJOB_CACHE:-$HOME/.cache/datajob}
KEY="k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}"
OUT="$CACHE/$KEY"
BIN="$OUT/bin"
if [ -f "$OUT/.complete" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"
export GOWORK=off GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOFLAGS=-mod=mod
# Two cores on this machine: one link at a time keeps peak memory sane.
export GOMAXPROCS=${GOMAXPROCS:-2}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- 1. Kubernetes: a wrapper module, since k8s.io/kubernetes' go.mod replaces
#        its staging modules with local paths (go install @version refuses it).
if [ ! -x "$BIN/kube-apiserver" ] || [ ! -x "$BIN/kubectl" ]; then
  log "kubernetes $K8S_VERSION"
  mkdir -p "$W/k8s" && cd "$W/k8s"
  STAGING="v0.${K8S_VERSION#v1.}"               # v1.36.3 -> v0.36.3
  printf 'module datajob.dev/e2e/k8sbins\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n' "$K8S_VERSION" > go.mod
  # Derive the staging list from the real go.mod served by the proxy.
  K8SMOD=$(cd / && GOFLAGS= go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  for m in $(sed -n 's|^[[:space:]]*\(k8s.io/[^ ]*\) => \./staging/src/.*|\1|p' "$K8SMOD"); do
    go mod edit "-replace=$m=$m@$STAGING"
  done
  cat > tools.go <<'EOG'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOG
  go mod tidy
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  X() { for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do printf -- "-X '%s.%s=%s' " "$p" "$1" "$2"; done; }
  LDF="-s -w $(X gitVersion "$K8S_VERSION") $(X gitMajor 1) $(X gitMinor "$minor") $(X gitTreeState clean) $(X buildDate "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    log "go build $cmd"
    go build -trimpath -tags=selinux,notest -ldflags="$LDF" -o "$BIN/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
fi

# --- 2. etcd: server/go.mod has replace directives too -> wrapper module.
if [ ! -x "$BIN/etcd" ]; then
  log "etcd $ETCD_VERSION"
  mkdir -p "$W/etcd" && cd "$W/etcd"
  printf 'module datajob.dev/e2e/etcdbin\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
  go mod tidy
  go build -trimpath -ldflags='-s -w' -o "$BIN/etcd" go.etcd.io/etcd/server/v3
fi

# --- 3. kwok: a plain go install; keep the stage files it ships beside it.
if [ ! -x "$BIN/kwok" ]; then
  log "kwok $KWOK_VERSION"
  (cd / && GOBIN="$BIN" GOFLAGS= go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
fi
rm -rf "$OUT/stages"
cp -r "$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage" "$OUT/stages"
chmod -R u+w "$OUT/stages"

"$BIN/kube-apiserver" --version >&2
"$BIN/etcd" --version | head -1 >&2
"$BIN/kwok" --version >&2
touch "$OUT/.complete"
echo "$BIN"

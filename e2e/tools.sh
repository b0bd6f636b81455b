#!/usr/bin/env bash
# Build the Go tools the tests and `make image` use, once per version set, from the Go
# module proxy (plain `go install`):
#   helm  (helm.sh/helm/v3/cmd/helm)                       chart lint, template, install
#   crane (github.com/google/go-containerregistry/cmd/crane) local OCI registry, pushes
#   krew, validate-krew-manifest (sigs.k8s.io/krew/cmd/…)    the plugin's krew package
# Binaries land in $DATAJOB_CACHE/tools-<versions>/bin; a second run with the same
# versions does nothing. Prints the bin directory on its last line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$HERE/versions.env"
CACHE=${DATAJOB_CACHE:-$HOME/.cache/datajob}
OUT="$CACHE/tools-helm-${HELM_VERSION}-crane-${CRANE_VERSION}"
BIN="$OUT/bin"
if [ -f "$OUT/.complete" ] && [ -f "$OUT/.krew-$KREW_VERSION" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN"
export GOWORK=off GOTOOLCHAIN=${GOTOOLCHAIN:-local} CGO_ENABLED=0 GOFLAGS=
export GOMAXPROCS=${GOMAXPROCS:-2}
log() { printf '[tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ ! -x "$BIN/helm" ]; then
  log "helm $HELM_VERSION"
  (cd / && GOBIN="$BIN" go install -trimpath -ldflags='-s -w' "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
fi
if [ ! -x "$BIN/crane" ]; then
  log "crane $CRANE_VERSION"
  (cd / && GOBIN="$BIN" go install -trimpath -ldflags='-s -w' "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION")
fi
if [ ! -f "$OUT/.krew-$KREW_VERSION" ]; then
  log "krew $KREW_VERSION"
  (cd / && GOBIN="$BIN" go install -trimpath -ldflags='-s -w' "sigs.k8s.io/krew/cmd/krew@$KREW_VERSION" "sigs.k8s.io/krew/cmd/validate-krew-manifest@$KREW_VERSION")
  touch "$OUT/.krew-$KREW_VERSION"
fi
"$BIN/helm" version --short >&2
"$BIN/crane" version >&2
touch "$OUT/.complete"
echo "$BIN"

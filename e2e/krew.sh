#!/usr/bin/env bash
# The krew package of `kubectl datajob`, made and proven with krew itself:
#   1. an archive of the plugin and kubectl_complete-datajob (reproducible: sorted, owner
#      0, mtime 0), and the manifest krew/datajob.yaml.tmpl rendered with the version
#      (Cargo.toml), the archive's URL and its SHA-256, in $KREW_OUT (target/krew);
#   2. krew's validate-krew-manifest checks the manifest;
#   3. when KREW_ROOT is set, krew installs it there from the local archive, as a user's
#      `kubectl krew install` would from the URL, and links kubectl_complete-datajob as
#      the manifest's caveat says.
# Usage: bash e2e/krew.sh [PLUGIN_BINARY]   (default target/debug/kubectl-datajob;
#        `make krew` passes the static release build)
# DATAJOB_RELEASE_URL: the URL of the directory the release's archives are published in
# (then .../v<version>/<archive>); DATAJOB_HOMEPAGE: the plugin's home page. Without them
# the manifest points at the local archive and docs (file://).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$HERE")"
PLUGIN=${1:-target/debug/kubectl-datajob}
[ -x "$PLUGIN" ] || { echo "krew.sh: $PLUGIN not found: cargo build --bin kubectl-datajob" >&2; exit 1; }
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
OUT=${KREW_OUT:-target/krew}
TOOLS=$(bash "$HERE/tools.sh" | tail -n 1)
NAME="kubectl-datajob_v${VERSION}_linux_amd64.tar.gz"
OUT_ABS=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
if [ -n "${DATAJOB_RELEASE_URL:-}" ]; then URL="$DATAJOB_RELEASE_URL/v$VERSION/$NAME"; else URL="file://$OUT_ABS/$NAME"; fi
HOMEPAGE="${DATAJOB_HOMEPAGE:-file://$PWD/docs/cli.md}"

mkdir -p "$OUT"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
install -m 0755 "$PLUGIN" "$STAGE/kubectl-datajob"
install -m 0755 krew/kubectl_complete-datajob "$STAGE/kubectl_complete-datajob"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$STAGE" -cf - \
  kubectl-datajob kubectl_complete-datajob | gzip -n > "$OUT/$NAME"
SHA=$(sha256sum "$OUT/$NAME" | cut -d' ' -f1)
sed -e "s|@VERSION@|$VERSION|g" -e "s|@URI@|$URL|g" -e "s|@SHA256@|$SHA|g" \
  -e "s|@HOMEPAGE@|$HOMEPAGE|g" krew/datajob.yaml.tmpl > "$OUT/datajob.yaml"
if grep -n '@[A-Z0-9]*@' "$OUT/datajob.yaml" >&2; then echo "krew.sh: placeholders left in $OUT/datajob.yaml" >&2; exit 1; fi
"$TOOLS/validate-krew-manifest" -manifest "$OUT/datajob.yaml" -skip-install >&2
echo "krew.sh: $OUT/datajob.yaml valid (v$VERSION, $NAME sha256 $SHA)" >&2

if [ -n "${KREW_ROOT:-}" ]; then
  "$TOOLS/krew" install --manifest="$OUT/datajob.yaml" --archive="$OUT/$NAME" >&2
  ln -sf "$KREW_ROOT/store/datajob/v$VERSION/kubectl_complete-datajob" "$KREW_ROOT/bin/"
  echo "krew.sh: installed in $KREW_ROOT/bin" >&2
fi

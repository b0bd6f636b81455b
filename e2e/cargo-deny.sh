#!/usr/bin/env bash
# cargo deny, pinned and cached: installs cargo-deny $DENY_VERSION with `cargo install
# --locked` into the cache once (a few minutes), then runs `cargo deny check` with the
# given checks (default: bans licenses sources; deny.toml has the rules).
#   bash e2e/cargo-deny.sh                  # what make test runs
#   bash e2e/cargo-deny.sh advisories       # needs the network: RustSec's database
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$HERE")"
DENY_VERSION=0.20.2
CACHE=${DATAJOB_CACHE:-$HOME/.cache/datajob}
ROOT="$CACHE/cargo-deny-$DENY_VERSION"
if [ ! -x "$ROOT/bin/cargo-deny" ]; then
  echo "[cargo-deny] cargo install cargo-deny $DENY_VERSION (once)" >&2
  cargo install --quiet --locked --root "$ROOT" cargo-deny --version "$DENY_VERSION" >&2
fi
[ $# -gt 0 ] || set -- bans licenses sources
exec "$ROOT/bin/cargo-deny" --log-level error check "$@"

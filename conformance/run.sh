#!/usr/bin/env bash
# Black-box conformance suite for deputy.
#   DEPUTY_BIN=/path/to/deputy conformance/run.sh [pytest args...]
# Default binary: <repo>/target/debug/deputy (built with `cargo build` if missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

if [[ -z "${DEPUTY_BIN:-}" ]]; then
    DEPUTY_BIN="$repo/target/debug/deputy"
    if [[ ! -x "$DEPUTY_BIN" ]]; then
        echo "conformance: $DEPUTY_BIN missing, running cargo build" >&2
        (cd "$repo" && cargo build --quiet)
    fi
fi
if [[ ! -x "$DEPUTY_BIN" ]]; then
    echo "conformance: deputy binary not found at $DEPUTY_BIN" >&2
    exit 2
fi
export DEPUTY_BIN

venv="$here/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"

cd "$repo"
exec "$venv/bin/python" -m pytest -q conformance/ "$@"

#!/usr/bin/env bash
# deputy load benchmark: one command from source to a results table.
#
#   bench/run.sh [--duration SECS] [--connections N] [--scenario NAME]...
#                [--threads N] [--person-duration SECS] [--perf] [--keep]
#
# Builds deputy in release mode, measures single-thread ES256 sign/verify,
# starts deputy on a fresh database in a temporary directory (free port on
# 127.0.0.1), registers what the scenarios need through the CLI, prepares the
# per-request unique data before each timed window, drives load with wrk, and
# prints (and writes to bench/results.md) a Markdown table. See bench/README.md.
#
# Scenarios: jwks cc_basic introspect cc_jwt exchange code refresh (default: all).
# Set CARGO_TARGET_DIR to build somewhere other than ./target.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/bench"
cd "$ROOT"

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

DURATION=10
CONNECTIONS=32
THREADS=2
PERSON_DURATION=""
SCENARIOS=()
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --person-duration) PERSON_DURATION="$2"; shift 2 ;;
    --scenario) SCENARIOS+=("$2"); shift 2 ;;
    --perf) EXTRA+=(--perf); shift ;;
    --keep) EXTRA+=(--keep); shift ;;
    --cc-jwt-requests|--code-requests|--refresh-requests|--exchange-requests)
      EXTRA+=("$1" "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
COMMAND="bench/run.sh --duration $DURATION --connections $CONNECTIONS"
for s in "${SCENARIOS[@]+"${SCENARIOS[@]}"}"; do COMMAND+=" --scenario $s"; done
[[ "$THREADS" != 2 ]] && COMMAND+=" --threads $THREADS"
[[ -n "$PERSON_DURATION" ]] && COMMAND+=" --person-duration $PERSON_DURATION"

say() { printf '\n== %s\n' "$*"; }

apt_install() {
  local pkg="$1"
  if [[ $EUID -ne 0 ]]; then echo "bench/run.sh: please install $pkg (apt-get install -y $pkg)" >&2; exit 1; fi
  apt-get install -y "$pkg" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$pkg" >/dev/null; }
}

say "tools"
command -v wrk >/dev/null || apt_install wrk
if [[ " ${EXTRA[*]-} " == *" --perf "* ]] && ! command -v perf >/dev/null; then apt_install linux-perf; fi
wrk --version 2>&1 | head -1 || true

if [[ ! -x "$BENCH/.venv/bin/python" ]]; then
  python3 -m venv "$BENCH/.venv"
fi
if ! "$BENCH/.venv/bin/python" -c 'import cryptography' 2>/dev/null; then
  "$BENCH/.venv/bin/pip" install --quiet --disable-pip-version-check cryptography
fi

say "build deputy (release)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release --locked --bin deputy
BIN="$TARGET_DIR/release/deputy"
[[ -x "$BIN" ]] || { echo "bench/run.sh: no binary at $BIN" >&2; exit 1; }

say "ES256 single-thread rates (examples/es256_rate.rs)"
ES256_OUT="$(cargo run --quiet --release --locked --example es256_rate -- 1.5)"
printf '%s\n' "$ES256_OUT" | grep -v '^{'
ES256_JSON="$(printf '%s\n' "$ES256_OUT" | grep '^{' | tail -1)"

say "load"
ARGS=(--bin "$BIN" --duration "$DURATION" --connections "$CONNECTIONS" --threads "$THREADS"
      --es256 "$ES256_JSON" --command "$COMMAND" --results "$BENCH/results.md")
[[ -n "$PERSON_DURATION" ]] && ARGS+=(--person-duration "$PERSON_DURATION")
for s in "${SCENARIOS[@]+"${SCENARIOS[@]}"}"; do ARGS+=(--scenario "$s"); done
exec "$BENCH/.venv/bin/python" "$BENCH/bench.py" "${ARGS[@]}" "${EXTRA[@]+"${EXTRA[@]}"}"

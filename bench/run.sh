#!/usr/bin/env bash
# deputy load benchmark: one command from source to a results table.
#
#   bench/run.sh [--duration SECS] [--connections N] [--scenario NAME]...
#                [--threads N] [--person-duration SECS] [--perf] [--keep]
#                [--database sqlite|postgres|both] [--instances N]... [--direct]
#                [--pg-statements] [--results FILE] [--rounds N]
#
# Builds deputy in release mode, measures single-thread ES256 sign/verify,
# starts deputy on a fresh database in a temporary directory (free port on
# 127.0.0.1), registers what the scenarios need through the CLI, prepares the
# per-request unique data before each timed window, drives load with wrk, and
# prints (and writes to bench/results.md) a Markdown table. See bench/README.md.
#
# Scenarios: jwks cc_basic introspect cc_jwt exchange code refresh (default: all).
# --database postgres starts a throw-away PostgreSQL cluster (scripts/pg-cluster,
# stopped at the end) and measures N deputy instances behind nginx for each
# --instances N (default: 1 and 2); both: SQLite first, then PostgreSQL, one
# results file. Set CARGO_TARGET_DIR to build somewhere other than ./target.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/bench"
cd "$ROOT"

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

DURATION=10
CONNECTIONS=32
THREADS=2
PERSON_DURATION=""
DATABASE=sqlite
INSTANCES=()
DIRECT=""
PG_STATEMENTS=""
KEEP=""
RESULTS="$BENCH/results.md"
SCENARIOS=()
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --person-duration) PERSON_DURATION="$2"; shift 2 ;;
    --scenario) SCENARIOS+=("$2"); shift 2 ;;
    --database)
      case "$2" in sqlite|postgres|both) DATABASE="$2" ;;
        *) echo "bench/run.sh: --database takes sqlite, postgres or both" >&2; exit 2 ;; esac
      shift 2 ;;
    --instances)
      for n in ${2//,/ }; do
        [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench/run.sh: --instances takes a number of instances" >&2; exit 2; }
        INSTANCES+=("$n")
      done
      shift 2 ;;
    --direct) DIRECT=1; shift ;;
    --pg-statements) PG_STATEMENTS=1; shift ;;
    --results) RESULTS="$2"; shift 2 ;;
    --perf) EXTRA+=(--perf); shift ;;
    --rounds)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "bench/run.sh: --rounds takes a number of rounds" >&2; exit 2; }
      EXTRA+=(--rounds "$2"); ROUNDS="$2"; shift 2 ;;
    --keep) EXTRA+=(--keep); KEEP=1; shift ;;
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
[[ -n "${ROUNDS:-}" ]] && COMMAND+=" --rounds $ROUNDS"
if [[ "$DATABASE" == sqlite ]]; then
  if [[ ${#INSTANCES[@]} -gt 0 || -n "$DIRECT" || -n "$PG_STATEMENTS" ]]; then
    echo "bench/run.sh: --instances, --direct and --pg-statements are for --database postgres or both" >&2; exit 2
  fi
else
  COMMAND+=" --database $DATABASE"
  [[ ${#INSTANCES[@]} -gt 0 ]] || INSTANCES=(1 2)
  for n in "${INSTANCES[@]}"; do COMMAND+=" --instances $n"; done
  [[ -n "$DIRECT" ]] && COMMAND+=" --direct"
  [[ -n "$PG_STATEMENTS" ]] && COMMAND+=" --pg-statements"
fi

say() { printf '\n== %s\n' "$*"; }

apt_install() {
  local pkg="$1"
  if [[ $EUID -ne 0 ]]; then echo "bench/run.sh: please install $pkg (apt-get install -y $pkg)" >&2; exit 1; fi
  # Debian's maintainer scripts would start a packaged service (nginx on
  # port 80); policy-rc.d answers "not now" while we install.
  local policy=/usr/sbin/policy-rc.d own_policy="" rc=0
  if [[ ! -e "$policy" ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; own_policy=1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "$pkg" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$pkg" >/dev/null; } || rc=$?
  [[ -z "$own_policy" ]] || rm -f "$policy"
  [[ $rc -eq 0 ]] || { echo "bench/run.sh: apt-get install $pkg failed" >&2; exit 1; }
}

say "tools"
command -v wrk >/dev/null || apt_install wrk
NGINX=""
if [[ "$DATABASE" != sqlite ]]; then
  NGINX="$(command -v nginx || true)"
  [[ -z "$NGINX" && -x /usr/sbin/nginx ]] && NGINX=/usr/sbin/nginx
  if [[ -z "$NGINX" ]]; then apt_install nginx-light; NGINX=/usr/sbin/nginx; fi
  "$NGINX" -v 2>&1 | head -1
fi
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

ARGS=(--bin "$BIN" --duration "$DURATION" --connections "$CONNECTIONS" --threads "$THREADS"
      --es256 "$ES256_JSON" --command "$COMMAND" --results "$RESULTS" --database "$DATABASE")
[[ -n "$PERSON_DURATION" ]] && ARGS+=(--person-duration "$PERSON_DURATION")
for s in "${SCENARIOS[@]+"${SCENARIOS[@]}"}"; do ARGS+=(--scenario "$s"); done

if [[ "$DATABASE" == sqlite ]]; then
  say "load"
  exec "$BENCH/.venv/bin/python" "$BENCH/bench.py" "${ARGS[@]}" "${EXTRA[@]+"${EXTRA[@]}"}"
fi

# PostgreSQL: a throw-away cluster of our own, always stopped at the end
# (and removed, unless --keep).
say "PostgreSQL (scripts/pg-cluster)"
PGDIR="$(mktemp -d /tmp/deputy-bench-pg.XXXXXX)"
stop_cluster() {
  "$ROOT/scripts/pg-cluster" stop "$PGDIR" >&2 || true
  if [[ -n "$KEEP" ]]; then echo "bench/run.sh: PostgreSQL cluster kept (stopped) in $PGDIR" >&2; else rm -rf "$PGDIR"; fi
}
trap stop_cluster EXIT
BENCH_PID=""
# bench.py runs in the background so that a signal to this script reaches it
# at once (as SIGTERM: it stops deputy and nginx), then the cluster stops.
on_signal() {
  if [[ -n "$BENCH_PID" ]]; then kill -TERM "$BENCH_PID" 2>/dev/null || true; wait "$BENCH_PID" || true; fi
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
PG_URL="$("$ROOT/scripts/pg-cluster" start "$PGDIR")"
if [[ -n "$PG_STATEMENTS" ]]; then
  # An investigation aid, not for the numbers of record: the extension costs
  # some CPU on every statement. It must be loaded at server start.
  psql -X -q -d "$PG_URL" -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
  "$ROOT/scripts/pg-cluster" stop "$PGDIR" >&2
  PG_URL="$("$ROOT/scripts/pg-cluster" start "$PGDIR")"
  EXTRA+=(--pg-statements)
fi
echo "$PG_URL"
ARGS+=(--pg-url "$PG_URL" --pg-dir "$PGDIR" --nginx "$NGINX")
for n in "${INSTANCES[@]}"; do ARGS+=(--instances "$n"); done
[[ -n "$DIRECT" ]] && ARGS+=(--direct)

say "load"
"$BENCH/.venv/bin/python" "$BENCH/bench.py" "${ARGS[@]}" "${EXTRA[@]+"${EXTRA[@]}"}" &
BENCH_PID=$!
wait "$BENCH_PID"

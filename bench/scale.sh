#!/usr/bin/env bash
# Scale and throughput benchmarks of Quorate, each inside its own private network namespace
# (loopback only, nothing leaves it):
#   1. quorate-bench-scale: one coordinator, N services (1,000), 3 witnesses each, 1 s interval
#   2. quorate-bench-witness-load: one witness at saturation (signed votes per second)
#
#   bench/scale.sh [--out DIR] [--services N] [--seconds S] [--smoke]
#
# --smoke: 10 services for 10 s and a 5 s throughput run. Writes DIR/scale.json and
# DIR/witness-load.json. Needs root and release binaries (cargo build --release --bins).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
source "$HERE/lib/lab.sh"

OUT="${QB_OUT:-/tmp/quorate-bench}/scale-$(date -u +%Y%m%dT%H%M%SZ)"
SERVICES=1000; SECONDS_=60; WARMUP=10; LOAD_SECONDS=20
while (($#)); do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --services) SERVICES="$2"; shift 2 ;;
    --seconds) SECONDS_="$2"; shift 2 ;;
    --smoke) SERVICES=10; SECONDS_=10; WARMUP=3; LOAD_SECONDS=5; shift ;;
    *) sed -n '2,11p' "$0" >&2; exit 2 ;;
  esac
done
((EUID == 0)) || qb_die "needs root (network namespaces)"
QB_BIN="${QB_BIN:-$ROOT/target/release}"
for b in quorate-coordinator quorate-witness quorate-bench-scale quorate-bench-witness-load; do
  [[ -x "$QB_BIN/$b" ]] || qb_die "$QB_BIN/$b missing: run cargo build --release --bins"
done
mkdir -p "$OUT"
qb_init qb-scale- 10.231.201 "$OUT/scale-lab"
trap qb_teardown EXIT INT TERM
_qb_nsadd ns
ulimit -n 65536 2>/dev/null || true

qb_log "scale: $SERVICES services for ${SECONDS_}s (after ${WARMUP}s warm-up)"
rm -rf "$OUT/scale-work"
qb_exec ns "$QB_BIN/quorate-bench-scale" --bin "$QB_BIN" --work "$OUT/scale-work" \
  --services "$SERVICES" --seconds "$SECONDS_" --warmup "$WARMUP" >"$OUT/scale.json" 2>"$OUT/scale.err" \
  || { cat "$OUT/scale.err" >&2; qb_die "scale run failed"; }
cat "$OUT/scale.json"

qb_log "witness throughput for ${LOAD_SECONDS}s"
rm -rf "$OUT/load-work"
qb_exec ns "$QB_BIN/quorate-bench-witness-load" --bin "$QB_BIN" --work "$OUT/load-work" \
  --seconds "$LOAD_SECONDS" >"$OUT/witness-load.json" 2>"$OUT/witness-load.err" \
  || { cat "$OUT/witness-load.err" >&2; qb_die "witness load run failed"; }
cat "$OUT/witness-load.json"

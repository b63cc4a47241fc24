#!/usr/bin/env bash
# Quorate failover benchmark: builds a network-namespace lab and times, in the same run and
# against the same faults, Quorate (RFC 2136 to BIND, and its built-in DNS server), PowerDNS
# LUA ifurlup() and gdnsd simplefo. Then the false-failover test (the backup's path to the
# primary cut for 30 s) and, unless --no-scale, the scale benchmark (bench/scale.sh).
#
#   bench/failover.sh [--trials N] [--false-trials N] [--false-seconds S]
#                     [--variants "kill linkdown"] [--out DIR] [--no-scale] [--smoke]
#
# --smoke = 1 trial of each fault, 1 false-failover trial of 10 s, scale with 10 services for
# 10 s (what CI runs: bench/smoke.sh). Needs root, iproute2, nftables, bind9, pdns-server +
# pdns-backend-bind, gdnsd, python3, dig, and release binaries (cargo build --release --bins).
#
# Lab (namespaces qb-*, 10.231.200.0/24 on a private bridge; nothing else is touched):
#   pri  .10        primary web server (python3 http.server)
#   bak  .11        backup web server; both Quorate coordinators; PowerDNS (.22); gdnsd (.23);
#                   the Quorate built-in DNS server (.21)
#   dns  .53        BIND 9, the RFC 2136 target of the "rfc2136" coordinator
#   w1-3 .31-.33    Quorate witnesses
#   cli  .100       the client: bench/dnswatch.py polls all four servers every 100 ms
# Every fault hits all four systems at once; each system's answer is timed on its own.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
source "$HERE/lib/lab.sh"
source "$HERE/lib/systems.sh"

TRIALS=10; FALSE_TRIALS=10; FALSE_SECONDS=30; VARIANTS="kill linkdown"; SCALE=1; SMOKE=0
OUT="${QB_OUT:-/tmp/quorate-bench}/$(date -u +%Y%m%dT%H%M%SZ)"
SCALE_ARGS=()
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while (($#)); do
  case "$1" in
    --trials) TRIALS="$2"; shift 2 ;;
    --false-trials) FALSE_TRIALS="$2"; shift 2 ;;
    --false-seconds) FALSE_SECONDS="$2"; shift 2 ;;
    --variants) VARIANTS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-scale) SCALE=0; shift ;;
    --smoke) SMOKE=1; shift ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
if ((SMOKE)); then
  TRIALS=1; FALSE_TRIALS=1; FALSE_SECONDS=10; SCALE_ARGS=(--smoke)
fi
[[ "$TRIALS" =~ ^[0-9]+$ ]] && ((TRIALS >= 1 && TRIALS <= 100)) || qb_die "--trials: expected 1..100"
[[ "$FALSE_TRIALS" =~ ^[0-9]+$ ]] && ((FALSE_TRIALS <= 50)) || qb_die "--false-trials: expected 0..50"
[[ "$FALSE_SECONDS" =~ ^[0-9]+$ ]] && ((FALSE_SECONDS >= 5 && FALSE_SECONDS <= 300)) \
  || qb_die "--false-seconds: expected 5..300"
for v in $VARIANTS; do [[ "$v" == kill || "$v" == linkdown ]] || qb_die "unknown variant $v"; done
((EUID == 0)) || qb_die "needs root (network namespaces)"
QB_BIN="${QB_BIN:-$ROOT/target/release}"
for b in quorate-coordinator quorate-witness; do
  [[ -x "$QB_BIN/$b" ]] || qb_die "$QB_BIN/$b missing: run cargo build --release --bins"
done
for t in named pdns_server gdnsd nft dig python3; do
  command -v "$t" >/dev/null || qb_die "$t not installed"
done
compgen -G '/usr/lib/*/pdns/libbindbackend.so' >/dev/null || qb_die "PowerDNS bind backend missing: apt-get install pdns-backend-bind"

qb_init "${QB_PREFIX_OVERRIDE:-qb-}" "${QB_NET_OVERRIDE:-10.231.200}" "$OUT"
trap qb_teardown EXIT INT TERM
RESULTS="$OUT/failover.jsonl"; FALSE_RESULTS="$OUT/false-failover.jsonl"; : >"$RESULTS"; : >"$FALSE_RESULTS"

PRI=$(qb_addr 10); BAK=$(qb_addr 11)
DNS_BUILTIN=$(qb_addr 21); DNS_PDNS=$(qb_addr 22); DNS_GDNSD=$(qb_addr 23); DNS_BIND=$(qb_addr 53)
W_ADDRS=("$(qb_addr 31)" "$(qb_addr 32)" "$(qb_addr 33)")
SERVERS=(--server "quorate-rfc2136=$DNS_BIND" --server "quorate-builtin=$DNS_BUILTIN"
  --server "powerdns=$DNS_PDNS" --server "gdnsd=$DNS_GDNSD")
WATCH=(python3 "$HERE/dnswatch.py")

qb_log "building the lab in $OUT"
qb_switch
qb_host pri 10; qb_host bak 11 21 22 23; qb_host dns 53
qb_host w1 31; qb_host w2 32; qb_host w3 33; qb_host cli 100

start_web pri "$PRI" primary; PRI_PID=$QB_LASTPID
start_web bak "$BAK" backup
qb_wait_tcp cli "$PRI" 80 && qb_wait_tcp cli "$BAK" 80 || qb_die "web servers did not start"
start_bind
qb_wait_dns cli "$DNS_BIND" 53 "ns1.$ZONE" 20 || qb_die "BIND did not answer"
quorate_keys
start_witnesses
start_coordinator rfc 8081; C_RFC_PID=$QB_LASTPID
start_coordinator builtin 8082; C_BUILTIN_PID=$QB_LASTPID
start_pdns
start_gdnsd
for s in "$DNS_BUILTIN" "$DNS_PDNS" "$DNS_GDNSD"; do
  qb_wait_dns cli "$s" 53 "$QNAME" 20 || qb_die "DNS server $s did not answer"
done
qb_exec cli "${WATCH[@]}" steady "${SERVERS[@]}" --expect "$PRI" --max-seconds 60 \
  || qb_die "not every system answered the primary within 60 s"
qb_log "all four systems answer the primary ($PRI)"

cat >"$OUT/settings.txt" <<EOF
date_utc=$(date -u +%FT%TZ)
kernel=$(uname -r)
cpu=$(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}') x $(nproc)
quorate=$(git -C "$ROOT" describe --always --dirty 2>/dev/null) interval=$Q_INTERVAL probe_timeout=$Q_PROBE_TIMEOUT witness_timeout=$Q_WITNESS_TIMEOUT fail_after=$Q_FAIL_AFTER recover_after=$Q_RECOVER_AFTER quorum=$Q_QUORUM/3
powerdns=$(dpkg-query -W -f='${Version}' pdns-server) lua-health-checks-interval=1 ifurlup timeout=1
gdnsd=$(dpkg-query -W -f='${Version}' gdnsd) interval=2 timeout=1 up/ok/down_thresh=1
bind9=$(dpkg-query -W -f='${Version}' bind9)
trials=$TRIALS variants=$VARIANTS false_trials=$FALSE_TRIALS false_seconds=$FALSE_SECONDS smoke=$SMOKE
EOF

# ---- faults
fault_down_kill()     { qb_kill "$PRI_PID" KILL; }
fault_up_kill()       { start_web pri "$PRI" primary; PRI_PID=$QB_LASTPID; }
fault_down_linkdown() { ip -n "$(qb_ns pri)" link set eth0 down; }
fault_up_linkdown()   { ip -n "$(qb_ns pri)" link set eth0 up; }
cut_on()  {
  qb_exec bak nft -f - <<EOF
table inet qbcut {
  chain out { type filter hook output priority 0; policy accept; ip daddr $PRI drop; }
  chain in  { type filter hook input priority 0; policy accept; ip saddr $PRI drop; }
}
EOF
}
cut_off() { qb_exec bak nft delete table inet qbcut; }

# Random wait in [0, 2 s): 2 s is a whole number of every system's check period (Quorate
# and PowerDNS 1 s, gdnsd 2 s), so T0 falls at a uniformly random phase of each timer.
jitter() { sleep "$(awk -v r="$RANDOM" 'BEGIN{printf "%.3f", 2*r/32768}')"; }

SEQ=0
# measure PHASE EXPECT VARIANT TRIAL FN: watcher up, random wait, T0, fault, wait for all
measure() {
  local phase="$1" expect="$2" variant="$3" trial="$4" fn="$5" i t0 wpid
  local t0f="$OUT/t0.$((++SEQ))" out="$OUT/watch.$SEQ.jsonl"
  qb_bg cli "$out" "${WATCH[@]}" watch "${SERVERS[@]}" --expect "$expect" --t0-file "$t0f" --max-seconds 40
  wpid=$QB_LASTPID
  for ((i = 0; i < 100; i++)); do [[ -e "$t0f.ready" ]] && break; sleep 0.05; done
  [[ -e "$t0f.ready" ]] || qb_die "watcher did not start"
  jitter
  t0=$(date +%s.%N)
  "$fn"
  echo "$t0" >"$t0f.tmp" && mv "$t0f.tmp" "$t0f"
  wait "$wpid"
  python3 - "$out" "$variant" "$phase" "$trial" >>"$RESULTS" <<'EOF'
import json, sys
path, variant, phase, trial = sys.argv[1:5]
for line in open(path):
    if line.startswith("{"):
        r = json.loads(line)
        r.update(variant=variant, phase=phase, trial=int(trial))
        print(json.dumps(r))
EOF
  qb_log "$variant #$trial $phase: $(tail -n 4 "$RESULTS" | python3 -c '
import json, sys
print("  ".join("%s=%s" % (r["system"], r["stable_s"]) for r in map(json.loads, sys.stdin)))')"
}

snapshot() {  # one line per daemon: label cpu_s rss_kB
  echo "coordinator-rfc2136 $(qb_procstat "$C_RFC_PID")"
  echo "coordinator-builtin $(qb_procstat "$C_BUILTIN_PID")"
  echo "witness-w1 $(qb_procstat "${WITNESS_PIDS[0]}")"
  echo "powerdns $(qb_procstat "$PDNS_PID")"
  echo "gdnsd $(qb_procstat "$GDNSD_PID")"
  echo "bind $(qb_procstat "$NAMED_PID")"
}
snapshot >"$OUT/resources.start"; W0=$(date +%s)

# ---- failover / failback
for v in $VARIANTS; do
  for ((n = 1; n <= TRIALS; n++)); do
    qb_exec cli "${WATCH[@]}" steady "${SERVERS[@]}" --expect "$PRI" --max-seconds 60 >/dev/null \
      || qb_log "warn: not every system on the primary before $v #$n"
    measure failover "$BAK" "$v" "$n" "fault_down_$v"
    measure failback "$PRI" "$v" "$n" "fault_up_$v"
  done
done

# ---- false failover: the backup host (coordinators, PowerDNS, gdnsd) loses its path to the
# primary; the witnesses and the client still reach it. Any answer change is a false failover.
for ((n = 1; n <= FALSE_TRIALS; n++)); do
  qb_exec cli "${WATCH[@]}" steady "${SERVERS[@]}" --expect "$PRI" --max-seconds 60 >/dev/null \
    || qb_log "warn: not every system on the primary before false-failover #$n"
  t0f="$OUT/t0.false.$n"; out="$OUT/false.$n.jsonl"
  qb_bg cli "$out" "${WATCH[@]}" count "${SERVERS[@]}" --expect "$PRI" --t0-file "$t0f" \
    --seconds "$((FALSE_SECONDS + 5))" --max-seconds "$((FALSE_SECONDS + 30))"
  wpid=$QB_LASTPID
  for ((i = 0; i < 100; i++)); do [[ -e "$t0f.ready" ]] && break; sleep 0.05; done
  [[ -e "$t0f.ready" ]] || qb_die "watcher did not start"
  jitter
  t0=$(date +%s.%N)
  cut_on || qb_die "nft cut failed"
  echo "$t0" >"$t0f"
  sleep "$FALSE_SECONDS"
  cut_off || qb_die "nft uncut failed"
  wait "$wpid"
  python3 -c '
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{"):
        r = json.loads(line); r["trial"] = int(sys.argv[2]); r["cut_s"] = int(sys.argv[3]); print(json.dumps(r))
' "$out" "$n" "$FALSE_SECONDS" >>"$FALSE_RESULTS"
  qb_log "false-failover #$n: $(python3 -c '
import json, sys
print("  ".join("%s changed=%s (%d wrong samples)" % (r["system"], r["changed"], r["not_expected"]) for r in map(json.loads, open(sys.argv[1])) if r.get("trial") == int(sys.argv[2])))' "$FALSE_RESULTS" "$n")"
done
snapshot >"$OUT/resources.end"; W1=$(date +%s)
echo "wall_s $((W1 - W0))" >>"$OUT/resources.end"

# ---- DNS change latency of the RFC 2136 coordinator (apply + verification), from its history
sqlite3 -json "$QB_DIR/c-rfc/history.sqlite" \
  "SELECT id, status, created_ms, updated_ms, verification_json FROM dns_changes ORDER BY id" \
  >"$OUT/dns-changes-rfc2136.json" 2>/dev/null || true
sqlite3 -json "$QB_DIR/c-builtin/history.sqlite" \
  "SELECT id, status, created_ms, updated_ms, verification_json FROM dns_changes ORDER BY id" \
  >"$OUT/dns-changes-builtin.json" 2>/dev/null || true

python3 "$HERE/summarize.py" "$OUT" | tee "$OUT/summary.md"

if ((SCALE)); then
  # The lab goes first: the scale run wants the machine to itself.
  qb_cleanup
  "$HERE/scale.sh" --out "$OUT" "${SCALE_ARGS[@]}" || exit 1
  python3 "$HERE/summarize.py" "$OUT" >"$OUT/summary.md"
fi
echo "results: $OUT (summary.md)"

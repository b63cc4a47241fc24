#!/usr/bin/env bash
# CI smoke run of the benchmark (so it cannot rot): builds the binaries if needed, then runs
# bench/failover.sh --smoke (1 trial of each fault per system, one 10 s false-failover cut,
# scale with 10 services for 10 s, a 5 s witness throughput run). Exits non-zero if any part
# fails or any system never switched. Needs root and the packages listed in failover.sh.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE/.."
# The peers and the lab's tools; installed here when missing, as tests/run.sh does for the tests.
need=(named dig pdns_server gdnsd nft ip python3)
missing=0
for b in "${need[@]}"; do command -v "$b" >/dev/null 2>&1 || missing=1; done
compgen -G '/usr/lib/*/pdns/libbindbackend.so' >/dev/null || missing=1
if [[ "$missing" == 1 ]]; then
  echo "bench/smoke.sh: installing bind9, pdns-server, pdns-backend-bind, gdnsd, nftables" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends bind9 bind9-dnsutils bind9-utils \
    pdns-server pdns-backend-bind gdnsd nftables iproute2 procps python3 >/dev/null
fi
# QB_BIN=<folder with the binaries> skips the build (e.g. QB_BIN=target/debug after
# `cargo build --bins`); otherwise release binaries are built.
if [[ -z "${QB_BIN:-}" ]]; then
  cargo build --release --bins --quiet
  export QB_BIN="$PWD/target/release"
fi
OUT="${QB_OUT:-/tmp/quorate-bench}/smoke-$(date -u +%Y%m%dT%H%M%SZ)"
"$HERE/failover.sh" --smoke --out "$OUT"
# The history size benchmark, one simulated hour: it verifies both files itself.
"$QB_BIN/quorate-bench-history" --hours 1 --baseline-minutes 2 > "$OUT/history.json"
python3 - "$OUT" <<'PY'
import json, sys, os
d = sys.argv[1]
rows = [json.loads(l) for l in open(os.path.join(d, "failover.jsonl")) if l.strip()]
systems = {"quorate-rfc2136", "quorate-builtin", "powerdns", "gdnsd"}
bad = [r for r in rows if not r.get("reached")]
seen = {r["system"] for r in rows}
if bad or seen != systems or len(rows) != 4 * 2 * 2:
    sys.exit("smoke: failed switches %s; systems seen %s; %d rows" % ([(r["system"], r["variant"], r["phase"]) for r in bad], sorted(seen), len(rows)))
false = [json.loads(l) for l in open(os.path.join(d, "false-failover.jsonl")) if l.strip()]
q = [r for r in false if r["system"].startswith("quorate") and r["changed"]]
if len(false) != 4 or q:
    sys.exit("smoke: false-failover rows %d, quorate changed: %s" % (len(false), q))
for f in ("scale.json", "witness-load.json"):
    json.load(open(os.path.join(d, f)))
h = json.load(open(os.path.join(d, "history.json")))
if h["spells"]["rounds_decided"] != 3600 or h["spells"]["rows"] > 20:
    sys.exit("smoke: history spells %s" % h["spells"])
print("smoke: ok (%s)" % d)
PY

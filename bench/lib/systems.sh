# shellcheck shell=bash
# The systems under test in the failover lab: web servers, BIND (RFC 2136 target), three
# Quorate witnesses, two Quorate coordinators (RFC 2136 to BIND; built-in DNS server),
# PowerDNS with a LUA ifurlup() record and gdnsd with simplefo. Each start_* function writes
# its configuration under $QB_DIR and starts the daemon with qb_bg; the settings used are the
# ones docs/benchmarks.md reports.
#
# Needs: lab.sh sourced, QB_BIN (folder with quorate-coordinator / quorate-witness),
# PRI BAK (web addresses), DNS_BIND, DNS_BUILTIN, DNS_PDNS, DNS_GDNSD, W_ADDRS (array).

ZONE=bench.test
QNAME=www.bench.test
TTL=30
# Quorate: probe interval 1 s; by default the probe timeout is 900 ms so that a witness whose
# probe times out still returns its signed "down" vote within the coordinator's 1 s request
# timeout. QB_PROBE_TIMEOUT / QB_WITNESS_TIMEOUT override them (e.g. 1s / 1500ms: the peers'
# 1 s timeout exactly; the coordinator refuses a witness timeout not above the probe timeout).
Q_INTERVAL=1s
Q_PROBE_TIMEOUT="${QB_PROBE_TIMEOUT:-900ms}"
Q_WITNESS_TIMEOUT="${QB_WITNESS_TIMEOUT:-1s}"
Q_FAIL_AFTER=1
Q_RECOVER_AFTER=3
Q_QUORUM=2

start_web() {  # start_web NAME ADDR TEXT -> QB_LASTPID
  local name="$1" addr="$2" text="$3" dir="$QB_DIR/www-$1"
  mkdir -p "$dir"; echo "$text" >"$dir/index.html"
  qb_bg "$name" "$QB_DIR/web-$name.log" python3 -m http.server 80 --bind "$addr" --directory "$dir"
}

start_bind() {  # BIND 9 primary for bench.test, updates allowed with TSIG key "quorate"
  local b="$QB_DIR/bind"
  mkdir -p "$b"
  TSIG_SECRET=$(head -c 32 /dev/urandom | base64)
  cat >"$b/named.conf" <<EOF
options {
  directory "$b";
  pid-file "$b/named.pid";
  session-keyfile "$b/session.key";
  listen-on port 53 { $DNS_BIND; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
  notify no;
  allow-query { any; };
};
controls { };
key "quorate" { algorithm hmac-sha256; secret "$TSIG_SECRET"; };
zone "$ZONE" {
  type primary;
  file "$b/$ZONE.zone";
  allow-update { key "quorate"; };
};
EOF
  cat >"$b/$ZONE.zone" <<EOF
\$TTL $TTL
@    IN SOA ns1.$ZONE. hostmaster.$ZONE. 1 3600 600 86400 $TTL
@    IN NS  ns1.$ZONE.
ns1  IN A   $DNS_BIND
www  IN A   $PRI
EOF
  named-checkconf "$b/named.conf" || qb_die "named-checkconf failed"
  qb_bg dns "$QB_DIR/named.log" named -g -4 -c "$b/named.conf"
  NAMED_PID=$QB_LASTPID
}

# Quorate: coordinator keys, then witnesses trusting them, then the coordinators' configs.
quorate_keys() {
  local c
  for c in rfc builtin; do
    mkdir -p "$QB_DIR/c-$c"
    "$QB_BIN/quorate-coordinator" keygen --out "$QB_DIR/c-$c/coordinator.key" >"$QB_DIR/c-$c/keygen.out" \
      || qb_die "keygen failed"
    head -c 32 /dev/urandom | base64 >"$QB_DIR/c-$c/api.token"
    chmod 600 "$QB_DIR/c-$c/api.token"
  done
}

pubkey_of() { grep -o 'ed25519:[A-Za-z0-9+/=]*' "$1" | head -n1; }

start_witnesses() {
  local i addr d out rate=${1:-50}
  WITNESS_BLOCKS=""; WITNESS_PIDS=()
  for i in 1 2 3; do
    addr=${W_ADDRS[$((i - 1))]}
    d="$QB_DIR/w$i"
    out=$("$QB_BIN/quorate-witness" init --dir "$d" --listen "$addr:8443" --name "$addr" \
      --allow "$PRI/32=80" \
      --coordinator "rfc=$(pubkey_of "$QB_DIR/c-rfc/keygen.out")" \
      --coordinator "builtin=$(pubkey_of "$QB_DIR/c-builtin/keygen.out")") || qb_die "witness init failed"
    WITNESS_BLOCKS+="[[witness]]
name = \"w$i\"
url = \"https://$addr:8443\"
$(grep -m1 '^public_key = ' <<<"$out")
$(grep -m1 '^cert_sha256 = ' <<<"$out")
timeout = \"$Q_WITNESS_TIMEOUT\"

"
    "$QB_BIN/quorate-witness" check --config "$d/witness.toml" >/dev/null || qb_die "witness config w$i invalid"
    qb_bg "w$i" "$QB_DIR/w$i.log" "$QB_BIN/quorate-witness" run --config "$d/witness.toml"
    WITNESS_PIDS+=("$QB_LASTPID")
  done
  for i in 1 2 3; do
    qb_wait_tcp bak "${W_ADDRS[$((i - 1))]}" 8443 10 || qb_die "witness w$i did not start"
  done
}

quorate_service_block() {  # quorate_service_block NAME
  # Each coordinator's service has its own name, so its probe phase (derived from the name)
  # is independent of the other coordinator's.
  cat <<EOF
[[service]]
name = "$1"
zone = "$ZONE"
names = ["www"]
ttl = $TTL
primary = { addresses = ["$PRI"] }
backup = { addresses = ["$BAK"] }
probe = { kind = "http", port = 80, host = "$QNAME", path = "/", expect_status = [200], timeout = "$Q_PROBE_TIMEOUT" }
fail_after = $Q_FAIL_AFTER
recover_after = $Q_RECOVER_AFTER
quorum = $Q_QUORUM
veto = "any"
failback = "auto"
# The benchmark switches dozens of times an hour on purpose: flap damping would hold it.
max_flips = 100000
flap_window = "1h"
EOF
}

start_coordinator() {  # start_coordinator rfc|builtin API_PORT
  local c="$1" port="$2" d="$QB_DIR/c-$1"
  {
    cat <<EOF
[coordinator]
key_file = "coordinator.key"
database = "history.sqlite"
interval = "$Q_INTERVAL"

[api]
listen = "127.0.0.1:$port"
token_file = "api.token"

$WITNESS_BLOCKS
EOF
    if [[ "$c" == rfc ]]; then
      printf '%s\n' "$TSIG_SECRET" >"$d/tsig.secret"; chmod 600 "$d/tsig.secret"
      cat <<EOF
[dns]
type = "rfc2136"
server = "$DNS_BIND:53"
zone = "$ZONE."
tsig_key_name = "quorate"
tsig_algorithm = "hmac-sha256"
tsig_secret_file = "$d/tsig.secret"

[dns.verify]
servers = ["$DNS_BIND:53"]
timeout = "5s"

EOF
    else
      cat <<EOF
[dns]
type = "builtin"
listen = ["$DNS_BUILTIN:53"]
zone = "$ZONE."
ns = ["ns1.$ZONE."]
records = [{ name = "ns1", type = "A", value = "$DNS_BUILTIN" }]

EOF
    fi
    quorate_service_block "www-$c"
  } >"$d/coordinator.toml"
  "$QB_BIN/quorate-coordinator" check --config "$d/coordinator.toml" >"$d/check.out" 2>&1 \
    || { cat "$d/check.out" >&2; qb_die "coordinator config $c invalid"; }
  qb_bg bak "$QB_DIR/c-$c.log" env QUORATE_LOG=info "$QB_BIN/quorate-coordinator" run --config "$d/coordinator.toml"
}

start_pdns() {  # PowerDNS 4.7 bind backend, LUA ifurlup, interval 1 s, timeout 1 s
  local p="$QB_DIR/pdns"
  mkdir -p "$p/run"
  cat >"$p/$ZONE.zone" <<EOF
\$ORIGIN $ZONE.
\$TTL $TTL
@    IN SOA ns1.$ZONE. hostmaster.$ZONE. 1 3600 600 86400 $TTL
@    IN NS  ns1.$ZONE.
ns1  IN A   $DNS_PDNS
www  $TTL IN LUA A "ifurlup('http://$QNAME/', {{'$PRI'}, {'$BAK'}}, {timeout='1'})"
EOF
  echo "zone \"$ZONE\" { type master; file \"$p/$ZONE.zone\"; };" >"$p/named.conf"
  cat >"$p/pdns.conf" <<EOF
launch=bind
bind-config=$p/named.conf
local-address=$DNS_PDNS
local-port=53
daemon=no
guardian=no
disable-syslog=yes
log-timestamp=yes
loglevel=4
socket-dir=$p/run
enable-lua-records=yes
lua-health-checks-interval=1
lua-health-checks-expire-delay=3600
security-poll-suffix=
webserver=no
api=no
EOF
  qb_bg bak "$QB_DIR/pdns.log" pdns_server --config-dir="$p"
  PDNS_PID=$QB_LASTPID
}

start_gdnsd() {  # gdnsd 3.8 simplefo + http_status, interval 2 s (its minimum), timeout 1 s
  local g="$QB_DIR/gdnsd"
  mkdir -p "$g/zones" "$g/run" "$g/state"
  cat >"$g/config" <<EOF
options => {
  listen => [ $DNS_GDNSD ]
  run_dir => $g/run
  state_dir => $g/state
}
service_types => {
  web => {
    plugin => http_status
    port => 80
    url_path => /
    vhost => $QNAME
    ok_codes => [ 200 ]
    interval => 2
    timeout => 1
    up_thresh => 1
    ok_thresh => 1
    down_thresh => 1
  }
}
plugins => {
  simplefo => {
    www => {
      service_types => [ web ]
      primary => $PRI
      secondary => $BAK
    }
  }
}
EOF
  cat >"$g/zones/$ZONE" <<EOF
\$TTL $TTL
@    SOA ns1 hostmaster 1 3600 600 86400 $TTL
@    NS  ns1
ns1  A   $DNS_GDNSD
www  $TTL DYNA simplefo!www
EOF
  qb_exec bak gdnsd -c "$g" checkconf >"$QB_DIR/gdnsd-checkconf.log" 2>&1 \
    || { cat "$QB_DIR/gdnsd-checkconf.log" >&2; qb_die "gdnsd checkconf failed"; }
  qb_bg bak "$QB_DIR/gdnsd.log" gdnsd -c "$g" -D start
  GDNSD_PID=$QB_LASTPID
}

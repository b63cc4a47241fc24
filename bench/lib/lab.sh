# shellcheck shell=bash
# Network-namespace lab of the failover benchmark: one bridge namespace ("switch") and one
# namespace per host, each host's eth0 a veth whose other end sits in the switch. Nothing is
# created in the root namespace, so deleting the namespaces removes every link.
#
# Rules enforced here: namespace names start with "qb-", addresses are inside 10.231.0.0/16,
# every background process is recorded (PID + kernel start time) and only a process that is
# still the one we started is ever signalled; teardown runs from the EXIT/INT/TERM trap.

QB_PREFIX=""      # e.g. qb-
QB_NET=""         # e.g. 10.231.200
QB_DIR=""         # work directory of this run
QB_NS=()          # namespaces we created
QB_PIDS=()        # background PIDs we started
declare -A QB_START=()
QB_LASTPID=""
QB_DOWN=0

qb_log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
qb_die() { qb_log "fatal: $*"; exit 1; }

qb_init() {  # qb_init PREFIX NET DIR
  QB_PREFIX="$1"; QB_NET="$2"; QB_DIR="$3"
  [[ "$QB_PREFIX" =~ ^qb-[a-z0-9-]*$ ]] || qb_die "namespace prefix must start with qb-"
  [[ "$QB_NET" =~ ^10\.231\.([0-9]{1,3})$ ]] && (( BASH_REMATCH[1] <= 255 )) \
    || qb_die "subnet must be 10.231.X (got $QB_NET)"
  if ip netns list | awk '{print $1}' | grep -q "^${QB_PREFIX}"; then
    qb_die "namespaces named ${QB_PREFIX}* already exist (a previous run?): remove them first"
  fi
  mkdir -p "$QB_DIR"
}

qb_ns() { echo "${QB_PREFIX}$1"; }
qb_addr() {  # qb_addr N -> NET.N
  [[ "$1" =~ ^[0-9]{1,3}$ ]] && (( $1 >= 1 && $1 <= 254 )) || qb_die "bad host number $1"
  echo "${QB_NET}.$1"
}

_qb_nsadd() {
  local ns; ns=$(qb_ns "$1")
  ip netns add "$ns" || qb_die "ip netns add $ns failed"
  QB_NS+=("$ns")
  ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 \
    net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
  ip -n "$ns" link set lo up
}

qb_switch() {
  _qb_nsadd sw
  ip -n "$(qb_ns sw)" link add br0 type bridge
  ip -n "$(qb_ns sw)" link set br0 type bridge stp_state 0 forward_delay 0
  ip -n "$(qb_ns sw)" link set br0 up
}

qb_host() {  # qb_host NAME N [N2 ...]: namespace with eth0 = NET.N/24 (+ secondary addresses)
  local name="$1" sw ns n; shift
  sw=$(qb_ns sw); ns=$(qb_ns "$name")
  _qb_nsadd "$name"
  ip -n "$sw" link add "p-$name" type veth peer name eth0 netns "$ns" || qb_die "veth for $name failed"
  ip -n "$sw" link set "p-$name" master br0
  ip -n "$sw" link set "p-$name" up
  for n in "$@"; do ip -n "$ns" addr add "$(qb_addr "$n")/24" dev eth0; done
  ip -n "$ns" link set eth0 up
}

qb_exec() { local ns; ns=$(qb_ns "$1"); shift; ip netns exec "$ns" "$@"; }

_qb_stat() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk -v f="$2" '{print $f}'; }

# qb_owned PID: true only if PID is still the process this shell started (PIDs wrap fast)
qb_owned() {
  local pid="$1"
  [[ -n "$pid" && -n "${QB_START[$pid]:-}" && -e /proc/$pid ]] || return 1
  [[ "$(_qb_stat "$pid" 2)" == "$$" ]] || return 1
  [[ "$(_qb_stat "$pid" 20)" == "${QB_START[$pid]}" ]]
}

# qb_bg NAME LOG cmd...: run in the namespace in the background; sets QB_LASTPID.
# Must not be called inside $(...): the PID has to be recorded in this shell.
qb_bg() {
  local ns log; ns=$(qb_ns "$1"); log="$2"; shift 2
  ip netns exec "$ns" "$@" >>"$log" 2>&1 </dev/null &
  QB_LASTPID=$!
  QB_START[$QB_LASTPID]=$(_qb_stat "$QB_LASTPID" 20)
  QB_PIDS+=("$QB_LASTPID")
  echo "$QB_LASTPID $ns $*" >>"$QB_DIR/pids"
}

qb_kill() {  # qb_kill PID [SIG]: signal a process we started, then reap it
  local pid="$1" sig="${2:-KILL}"
  qb_owned "$pid" && kill -s "$sig" "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}

qb_wait_tcp() {  # qb_wait_tcp NAME ADDR PORT [seconds]
  local name="$1" addr="$2" port="$3" to="${4:-10}" i
  for ((i = 0; i < to * 10; i++)); do
    qb_exec "$name" timeout 1 bash -c "exec 3<>/dev/tcp/$addr/$port" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

qb_wait_dns() {  # qb_wait_dns NAME SERVER PORT QNAME [seconds]: until the server answers
  local name="$1" server="$2" port="$3" q="$4" to="${5:-10}" i
  for ((i = 0; i < to * 5; i++)); do
    [[ -n "$(qb_exec "$name" dig +short +time=1 +tries=1 -p "$port" @"$server" "$q" A 2>/dev/null)" ]] && return 0
    sleep 0.2
  done
  return 1
}

qb_procstat() {  # "CPU_SECONDS RSS_KB" of a PID, or "NA NA"
  local pid="$1" tck; tck=$(getconf CLK_TCK)
  if [[ -r /proc/$pid/stat ]]; then
    local st rss
    st=$(sed 's/^.*) //' "/proc/$pid/stat")
    rss=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status")
    awk -v t="$tck" -v r="$rss" '{printf "%.2f %s\n", ($12+$13)/t, r}' <<<"$st"
  else
    echo "NA NA"
  fi
}

# qb_cleanup: stop what we started and delete our namespaces (idempotent)
qb_cleanup() {
  local pid ns p live=()
  (( QB_DOWN )) && return 0
  QB_DOWN=1
  for pid in "${QB_PIDS[@]}"; do qb_owned "$pid" && live+=("$pid"); done
  for pid in "${live[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((p = 0; p < 20; p++)); do
    local any=0
    for pid in "${live[@]}"; do qb_owned "$pid" && any=1; done
    (( any )) || break
    sleep 0.1
  done
  for pid in "${live[@]}"; do
    qb_owned "$pid" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
  done
  # anything still inside our namespaces is a child of something we started
  for ns in "${QB_NS[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  done
  sleep 0.2
  for ns in "${QB_NS[@]}"; do
    [[ "$ns" == "$(qb_ns sw)" ]] && continue
    ip netns del "$ns" 2>/dev/null || qb_log "warn: could not delete $ns"
  done
  if [[ " ${QB_NS[*]} " == *" $(qb_ns sw) "* ]]; then
    ip netns del "$(qb_ns sw)" 2>/dev/null || qb_log "warn: could not delete $(qb_ns sw)"
  fi
  if ip netns list | awk '{print $1}' | grep -q "^${QB_PREFIX}"; then
    qb_log "warn: namespaces left: $(ip netns list | awk '{print $1}' | grep "^${QB_PREFIX}" | tr '\n' ' ')"
  else
    qb_log "teardown: all ${QB_PREFIX}* namespaces removed"
  fi
}

qb_teardown() {  # the EXIT/INT/TERM trap
  local rc=$?
  trap - EXIT INT TERM
  qb_cleanup
  exit "$rc"
}

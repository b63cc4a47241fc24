#!/usr/bin/env bash
# Not in CI (minutes; root; a Debian mirror): boots a minimal Debian 12 under
# `systemd-nspawn --boot`, installs both packages (target/debian/, from deploy/package.sh),
# runs the first run of the README inside it, starts both units for real, and shows the witness
# answering a signed test vote (`check --online`) while running as its own user.
#
#   sudo bash deploy/nspawn-test.sh          # DEBIAN_MIRROR=... to use another mirror
#
# Needs debootstrap and systemd-container. The container shares the host's network and uses
# 127.0.0.1:18443 (witness) and 127.0.0.1:18080 (API). Everything is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" = 0 ] || { echo "nspawn-test: needs root" >&2; exit 1; }
for t in debootstrap systemd-nspawn nsenter; do
    command -v "$t" >/dev/null || { echo "nspawn-test: $t missing (apt-get install debootstrap systemd-container)" >&2; exit 1; }
done
coordinator_deb=$(ls target/debian/quorate-coordinator_*.deb)
witness_deb=$(ls target/debian/quorate-witness_*.deb)

root=$(mktemp -d /var/tmp/quorate-nspawn.XXXXXX)
# The container's / : mktemp makes it 0700, which no service user could traverse.
chmod 755 "$root"
nspawn_pid=
leader=
cleanup() {
    # Killing the container's PID 1 ends its whole PID namespace at once; nspawn then exits.
    if [ -n "$leader" ]; then
        kill -KILL "$leader" 2>/dev/null || true
    elif [ -n "$nspawn_pid" ]; then
        kill "$nspawn_pid" 2>/dev/null || true
    fi
    if [ -n "$nspawn_pid" ]; then
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    rm -rf "$root"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

echo "== debootstrap bookworm ($mirror)"
start=$(date +%s)
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates,sudo,procps \
    bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || { tail -20 "$root.debootstrap.log"; exit 1; }
rm -f "$root.debootstrap.log"
echo "   $(( $(date +%s) - start )) s"
cp "$coordinator_deb" "$witness_deb" "$root/root/"

echo "== boot"
systemd-nspawn --boot --register=no --keep-unit --quiet -D "$root" >/dev/null 2>&1 &
nspawn_pid=$!
for _ in $(seq 100); do
    # The container's PID 1 is nspawn's child running systemd (nspawn forks helpers first).
    leader=$(ps --ppid "$nspawn_pid" -o pid=,comm= | awk '$2 == "systemd" { print $1; exit }' || true)
    [ -n "$leader" ] && break
    sleep 0.1
done
[ -n "$leader" ] || { echo "nspawn-test: the container did not start" >&2; exit 1; }
inside() { nsenter -t "$leader" -a -- env PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# `--wait` blocks until boot has finished (running or degraded), with systemd's own deadline.
for _ in $(seq 600); do
    inside test -S /run/dbus/system_bus_socket && break
    sleep 0.2
done
state=$(inside timeout 120 systemctl is-system-running --wait || true)
echo "   system: $state"

echo "== install"
inside sh -c 'dpkg -i /root/quorate-*.deb >/dev/null && id quorate && id quorate-witness'
inside systemctl is-enabled quorate-coordinator quorate-witness
inside systemctl show -p ActiveState,ConditionResult quorate-coordinator

echo "== first run"
inside sh -c '
set -e
quorate-coordinator init --dir /etc/quorate --owner quorate --name backup-1 --api-listen 127.0.0.1:18080 >/root/coordinator-init.txt
key=$(grep -oE "ed25519:[A-Za-z0-9+/=]+" /root/coordinator-init.txt | head -1)
quorate-witness init --dir /etc/quorate-witness --owner quorate-witness --listen 127.0.0.1:18443 \
    --name 127.0.0.1 --allow 127.0.0.1/32=18080 --coordinator "backup-1=$key" >/root/witness-init.txt
sed -n "/^\[\[witness\]\]/,/^\$/p" /root/witness-init.txt >>/etc/quorate/coordinator.toml
# The placeholder service probes the API port on loopback, which the witness may probe.
sed -i -e "s|primary = { addresses = \[\"192.0.2.10\"\] }|primary = { addresses = [\"127.0.0.1\"] }|" \
    -e "s|probe = { kind = \"https\", port = 443.*|probe = { kind = \"tcp\", port = 18080, timeout = \"1s\" }|" /etc/quorate/coordinator.toml
cat /root/coordinator-init.txt
'

echo "== start"
if ! inside systemctl start quorate-witness quorate-coordinator; then
    inside systemctl status --no-pager -l quorate-witness quorate-coordinator || true
    inside journalctl --no-pager -o cat -u quorate-witness -u quorate-coordinator | tail -30
    exit 1
fi
inside systemctl is-active quorate-witness quorate-coordinator
inside ps -o user=,pid=,args= -C quorate-witness,quorate-coordinator

echo "== the witness answers a signed test vote (check --online, as quorate)"
inside sudo -u quorate quorate-coordinator check --online --config /etc/quorate/coordinator.toml || true
echo "== status (read-only token only)"
inside sudo -u quorate quorate-coordinator status --config /etc/quorate/coordinator.toml || true
echo "== witness log"
inside journalctl -u quorate-witness --no-pager -o cat | tail -5
echo "== reload"
inside systemctl reload quorate-coordinator
inside systemctl is-active quorate-coordinator

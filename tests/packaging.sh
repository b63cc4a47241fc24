#!/usr/bin/env bash
# The packaging test (CI, as root; no systemd as PID 1 needed): builds both .debs
# (deploy/package.sh), lints them, installs them with dpkg -i, runs the installed binaries
# (--version, the README's first run: coordinator init, witness init with the printed key, the
# [[witness]] block pasted, `check` as each service user), checks owners and modes, verifies the
# units and their security exposure, then removes (conffiles and the history stay) and purges
# (the conffiles, units and enablement go; the history and the operator's files stay, as
# docs/install.md says). Everything it installed is purged on any exit.
#
#   sudo bash tests/packaging.sh
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(quorate-coordinator quorate-witness)
fail() { echo "packaging test: FAIL: $*" >&2; exit 1; }
ok() { echo "  ok: $*"; }

[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i); run: sudo bash tests/packaging.sh"
# It installs and purges: never over a real installation.
for p in "${pkgs[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'installed\|config-files'; then
        fail "$p is installed on this machine; this test installs and purges its own (dpkg -P $p first)"
    fi
done
for d in /etc/quorate /etc/quorate-witness /var/lib/quorate; do
    [ ! -e "$d" ] || fail "$d exists; this test would remove it (move it away first)"
done

work=$(mktemp -d /tmp/quorate-packaging.XXXXXX)
cleanup() {
    dpkg -P "${pkgs[@]}" >/dev/null 2>&1 || true
    rm -rf /etc/quorate /etc/quorate-witness /var/lib/quorate "$work"
}
trap cleanup EXIT
# The service users must reach the files init writes below.
chmod 755 "$work"

echo "== build"
bash deploy/package.sh >"$work/package.log" 2>&1 || { cat "$work/package.log"; fail "deploy/package.sh"; }
grep '^package.sh:' "$work/package.log"
coordinator_deb=$(ls target/debian/quorate-coordinator_*.deb)
witness_deb=$(ls target/debian/quorate-witness_*.deb)

echo "== lintian"
if command -v lintian >/dev/null 2>&1; then
    # Each tag allowed here is explained in docs/install.md ("lintian").
    allowed='initial-upload-closes-no-bugs'
    lintian --tag-display-limit 0 "$coordinator_deb" "$witness_deb" 2>/dev/null | tee "$work/lintian.txt" || true
    unexplained=$(grep -E '^[EW]: ' "$work/lintian.txt" | grep -Ev ": ($allowed)( |$)" || true)
    [ -z "$unexplained" ] || fail "lintian tags not explained in docs/install.md:\n$unexplained"
    ok "lintian: no tag but the explained ones ($allowed)"
else
    fail "lintian is missing (apt-get install lintian)"
fi

echo "== install"
dpkg -i "$coordinator_deb" "$witness_deb" >"$work/dpkg-i.log" 2>&1 || { cat "$work/dpkg-i.log"; fail "dpkg -i"; }
for p in "${pkgs[@]}"; do
    v=$("/usr/bin/$p" --version)
    [[ "$v" == "$p "* ]] || fail "$p --version printed: $v"
    ok "$v"
    [ -f "/usr/lib/systemd/system/$p.service" ] || fail "no unit for $p"
    [ -L "/etc/systemd/system/multi-user.target.wants/$p.service" ] || fail "$p.service is not enabled"
    [ -f "/usr/share/man/man1/$p.1.gz" ] && [ -f "/usr/share/man/man1/$p-init.1.gz" ] || fail "no man pages for $p"
    for c in "/usr/share/bash-completion/completions/$p" "/usr/share/zsh/vendor-completions/_$p" \
        "/usr/share/fish/vendor_completions.d/$p.fish"; do
        [ -s "$c" ] || fail "missing completion $c"
    done
done
getent passwd quorate >/dev/null || fail "sysusers did not create the user quorate"
getent passwd quorate-witness >/dev/null || fail "sysusers did not create the user quorate-witness"
dpkg-query -W -f='${Conffiles}\n' quorate-coordinator | grep -q '/etc/quorate/coordinator.toml.example' ||
    fail "the coordinator's example config is not a conffile"
dpkg-query -W -f='${Conffiles}\n' quorate-witness | grep -q '/etc/quorate-witness/witness.toml.example' ||
    fail "the witness's example config is not a conffile"
ok "users quorate and quorate-witness, units enabled, man pages, completions, conffiles"

echo "== first run (README order), into $work"
quorate-coordinator init --dir "$work/coordinator" --owner quorate --name backup-1 \
    --database "$work/state/history.sqlite" >"$work/coordinator-init.txt"
key=$(grep -oE 'ed25519:[A-Za-z0-9+/=]+' "$work/coordinator-init.txt" | head -1)
[ -n "$key" ] || fail "coordinator init printed no public key: $(cat "$work/coordinator-init.txt")"
quorate-witness init --dir "$work/witness" --owner quorate-witness --listen 127.0.0.1:8443 \
    --name 127.0.0.1 --allow 192.0.2.10/32=443 --coordinator "backup-1=$key" >"$work/witness-init.txt"
# What the witness printed for the coordinator: the [[witness]] block, pasted as is.
sed -n '/^\[\[witness\]\]/,/^$/p' "$work/witness-init.txt" >>"$work/coordinator/coordinator.toml"
grep -q 'name = "127.0.0.1"' "$work/coordinator/coordinator.toml" || fail "no [[witness]] block pasted"
grep -q '^\[\[coordinator\]\]' "$work/witness-init.txt" &&
    fail "witness init asked for a [[coordinator]] block --coordinator already wrote"
mkdir -p "$work/state" && chown quorate:quorate "$work/state"

expect_mode() { # path mode owner:group
    local got
    got=$(stat -c '%a %U:%G' "$1")
    [ "$got" = "$2 $3" ] || fail "$1: expected $2 $3, got $got"
}
expect_mode "$work/coordinator/coordinator.key" 600 quorate:quorate
expect_mode "$work/coordinator/api.token" 600 quorate:quorate
expect_mode "$work/coordinator/read.token" 600 quorate:quorate
expect_mode "$work/coordinator/api.key" 600 quorate:quorate
expect_mode "$work/coordinator/api.crt" 644 root:quorate
expect_mode "$work/coordinator/coordinator.toml" 640 root:quorate
expect_mode "$work/witness/witness.key" 600 quorate-witness:quorate-witness
expect_mode "$work/witness/tls.key" 600 quorate-witness:quorate-witness
expect_mode "$work/witness/tls.crt" 644 root:root
expect_mode "$work/witness/witness.toml" 644 root:root
ok "owners and modes of what init wrote"

runuser -u quorate -- quorate-coordinator check --config "$work/coordinator/coordinator.toml" ||
    fail "check, as quorate, on what coordinator init wrote"
runuser -u quorate-witness -- quorate-witness check --config "$work/witness/witness.toml" ||
    fail "check, as quorate-witness, on what witness init wrote"
ok "check passes as each service user"
if quorate-coordinator init --dir "$work/coordinator" --owner quorate >/dev/null 2>"$work/again.txt"; then
    fail "a second init overwrote $work/coordinator"
fi
grep -q 'already exists; init never overwrites' "$work/again.txt" || fail "second init: $(cat "$work/again.txt")"
ok "a second init is refused"

echo "== units"
for p in "${pkgs[@]}"; do
    systemd-analyze verify "/usr/lib/systemd/system/$p.service" || fail "systemd-analyze verify $p.service"
    level=$(systemd-analyze security --offline=true "/usr/lib/systemd/system/$p.service" | tail -1)
    echo "  $level"
    [[ "$level" =~ exposure\ level\ for\ $p\.service:\ [0-9.]+\ (SAFE|OK) ]] ||
        fail "$p.service: exposure above OK"
done
ok "units verify, exposure OK or better"

echo "== remove (dpkg -r): conffiles and the history stay"
mkdir -p /var/lib/quorate
echo "stand-in for the history" >/var/lib/quorate/history.sqlite
dpkg -r "${pkgs[@]}" >"$work/dpkg-r.log" 2>&1 || { cat "$work/dpkg-r.log"; fail "dpkg -r"; }
for p in "${pkgs[@]}"; do
    [ ! -e "/usr/bin/$p" ] || fail "/usr/bin/$p survived dpkg -r"
    dpkg-query -W -f='${Status}\n' "$p" | grep -q 'config-files' || fail "$p: not in config-files state"
done
[ -f /etc/quorate/coordinator.toml.example ] || fail "conffile removed by dpkg -r"
[ -f /etc/quorate-witness/witness.toml.example ] || fail "conffile removed by dpkg -r"
[ -f /var/lib/quorate/history.sqlite ] || fail "the history was removed by dpkg -r"
ok "binaries gone; conffiles and history kept"

echo "== purge (dpkg -P): conffiles and enablement go; the history stays"
dpkg -P "${pkgs[@]}" >"$work/dpkg-p.log" 2>&1 || { cat "$work/dpkg-p.log"; fail "dpkg -P"; }
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'installed\|config-files' && fail "$p still known to dpkg"
    [ ! -e "/etc/systemd/system/multi-user.target.wants/$p.service" ] || fail "$p.service still enabled"
    [ ! -e "/usr/lib/systemd/system/$p.service" ] || fail "$p.service unit survived purge"
done
[ ! -e /etc/quorate ] || fail "/etc/quorate survived purge: $(ls -A /etc/quorate)"
[ ! -e /etc/quorate-witness ] || fail "/etc/quorate-witness survived purge"
[ -f /var/lib/quorate/history.sqlite ] || fail "purge deleted the history (it must stay: docs/install.md)"
grep -q '/var/lib/quorate kept' "$work/dpkg-p.log" || fail "purge did not say the history was kept"
ok "conffiles, units and enablement gone; the history kept and said so"
echo "packaging test: PASS"

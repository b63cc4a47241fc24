#!/usr/bin/env bash
# The test command (README): installs what the tests need on a fresh Debian machine, builds
# the binaries the integration tests run, and runs every test of the workspace.
# Needs root (apt-get, and network namespaces for the lab).
set -euo pipefail
cd "$(dirname "$0")/.."

need=(named dig nsupdate pdns_server nft ip python3 curl openssl faketime)
missing=0
for b in "${need[@]}"; do command -v "$b" >/dev/null 2>&1 || missing=1; done
[ -e /usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql ] || missing=1
# The key interop test (witness/tests/interop.rs) reads keys and verifies votes with Python.
python3 -c 'import cryptography' >/dev/null 2>&1 || missing=1
# A virtualenv for moto (below), when moto is not installed already.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing=1
# The notification tests (coordinator/tests/notify.rs) run Debian's SMTP sink.
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing=1
# The dashboard's browser tests (coordinator/tests/dashboard.rs) drive Debian's chromium.
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || missing=1
if [ "$missing" = 1 ]; then
  echo "tests/run.sh: installing test dependencies (bind9, pdns, nftables, iproute2, openssl, python3-cryptography, python3-aiosmtpd, faketime, chromium, chromium-driver)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    bind9 bind9-dnsutils bind9-utils pdns-server pdns-backend-sqlite3 \
    nftables iproute2 procps python3 python3-venv curl ca-certificates openssl \
    python3-cryptography python3-aiosmtpd faketime chromium chromium-driver >/dev/null
fi

# The Route 53 tests also run against moto's server (PyPI moto[server], tests/src/moto.rs),
# pinned: the harness works around two faults of 5.2.1. Used as is when `moto_server` runs
# and moto is importable (or MOTO_SERVER is set); otherwise installed once into a
# virtualenv under the target folder (no --break-system-packages) and named by MOTO_SERVER.
if [ -z "${MOTO_SERVER:-}" ] && ! { command -v moto_server >/dev/null 2>&1 \
    && python3 -c 'import moto.server' >/dev/null 2>&1; }; then
  venv="$(realpath -m "${CARGO_TARGET_DIR:-target}")/moto-venv"
  if [ ! -x "$venv/bin/moto_server" ]; then
    echo "tests/run.sh: installing moto[server]==5.2.1 into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'moto[server]==5.2.1'
  fi
  export MOTO_SERVER="$venv/bin/moto_server"
fi

# The lab and crash tests run the real binaries.
cargo build --locked --workspace --bins
# The flood tests (witness/tests/flood.rs, coordinator/tests/flood.rs) hold 5,000+ sockets;
# they raise their own soft limit with prlimit and fail with a clear message if they cannot.
ulimit -n 12000 2>/dev/null || true
cargo test --locked --workspace --no-fail-fast "$@"

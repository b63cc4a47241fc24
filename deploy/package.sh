#!/usr/bin/env bash
# Builds the two Debian packages: target/debian/quorate-coordinator_<version>_<arch>.deb and
# target/debian/quorate-witness_<version>_<arch>.deb (layout and units: docs/install.md).
#
#   bash deploy/package.sh            # needs cargo-deb: cargo install --locked cargo-deb
#
# One cargo build of both binaries, then each binary writes its own man pages and shell
# completions from its clap definitions (the hidden `generate` subcommand), then cargo-deb
# packs them (--no-build: nothing is compiled twice). QUORATE_PACKAGE_PROFILE picks the cargo
# profile (default release; the packaging profile's cost is measured in docs/install.md).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${QUORATE_PACKAGE_PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-target}
# Cargo puts the dev profile's binaries under debug/.
bin_dir=$target_dir/$profile
[ "$profile" = dev ] && bin_dir=$target_dir/debug
out=target/debian
start=$(date +%s)

if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "package.sh: cargo-deb is missing; install it with: cargo install --locked cargo-deb" >&2
    exit 1
fi

cargo build --locked --profile "$profile" -p witness -p coordinator --bins
built=$(date +%s)

for pkg in quorate-witness quorate-coordinator; do
    gen=target/package/$pkg
    rm -rf "$gen"
    "$bin_dir/$pkg" generate man "$gen/man"
    # Debian policy: man pages compressed, reproducibly (no name, no time stamp).
    gzip -9n "$gen"/man/*.1
    "$bin_dir/$pkg" generate completions "$gen/completions"
done

mkdir -p "$out"
for crate in witness coordinator; do
    cargo deb --locked --no-build --strip --profile "$profile" -p "$crate" --output "$out/"
done
echo "package.sh: build $((built - start)) s, packages $(( $(date +%s) - built )) s (profile $profile)"
ls -l "$out"/quorate-*.deb

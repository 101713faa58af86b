#!/usr/bin/env bash
# Runs the whole test suite: unit, integration, store conformance (embedded, memory, etcd) and the
# end-to-end tests that drive the built binary with real kubectl. Needs root for the e2e tier.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the end-to-end tests run as root (they will need runc, CNI and nftables); run with sudo" >&2
  exit 1
fi
export CARGO_TERM_COLOR=never
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"

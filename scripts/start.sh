#!/usr/bin/env bash
# Starts a working cluster on this machine: installs what Skiff needs, builds it, runs `skiff server`.
# The admin kubeconfig is written to /var/lib/skiff/kubeconfig.yaml (and --write-kubeconfig PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release -p skiff
exec ./target/release/skiff server "$@"

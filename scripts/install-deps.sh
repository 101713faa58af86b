#!/usr/bin/env bash
# Installs the Debian packages Skiff builds and tests with, when they are missing.
# Build: protobuf-compiler (etcd-client's build script needs protoc), gcc (ring).
# Tests: etcd-server (the etcd store backend), curl (raw HTTPS requests in e2e tests).
# kubectl comes with the machine image (the Google Cloud SDK dispatcher and kubectl.1.27..1.33).
set -euo pipefail
need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v etcd >/dev/null || need+=(etcd-server)
command -v curl >/dev/null || need+=(curl)
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# etcd-server's package starts a system etcd on 2379; Skiff's tests start their own on free ports.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi

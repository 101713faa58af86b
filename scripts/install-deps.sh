#!/usr/bin/env bash
# Installs the Debian packages Skiff builds and tests with, when they are missing.
# Build: protobuf-compiler (etcd-client's build script needs protoc), gcc (ring).
# Tests: etcd-server (the etcd store backend), curl (raw HTTPS requests in e2e tests); for the node agent:
# runc (the OCI runtime), containernetworking-plugins (bridge, host-local, portmap, loopback in /usr/lib/cni),
# iproute2 (network namespaces), nftables and iptables (portmap and the service proxy), busybox-static (the
# test image's only binary), umoci and skopeo (building test images and archives), docker-registry (a registry
# on 127.0.0.1 for pull tests).
# kubectl comes with the machine image (the Google Cloud SDK dispatcher and kubectl.1.27..1.33).
set -euo pipefail
need=()
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v etcd >/dev/null || need+=(etcd-server)
command -v curl >/dev/null || need+=(curl)
command -v cc >/dev/null || need+=(gcc)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v iptables >/dev/null || need+=(iptables)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v umoci >/dev/null || need+=(umoci)
command -v skopeo >/dev/null || need+=(skopeo)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v dig >/dev/null || need+=(bind9-dnsutils)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# etcd-server's package starts a system etcd on 2379; Skiff's tests start their own on free ports.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
fi

#!/usr/bin/env bash
# Installs tern's build, test and benchmark dependencies from Debian's packages.
# Does nothing (no apt-get at all) when everything is already installed.
set -euo pipefail

pkgs=(
  # build
  build-essential cmake ninja-build pkg-config clang libclang-rt-dev libsodium-dev
  libisal-dev # Intel ISA-L: the Reed-Solomon erasure code of the core's FEC
  libssl-dev # libssl: the driver's TLS stream transport; libcrypto: SHA-256 of tern send/recv
  # tests: namespaces, NAT boxes, peers to interoperate with
  iproute2 nftables iptables coturn stun-client stun-server
  # peer-to-peer lab tests: capture what the relay sees
  tcpdump
  # netlab: offloads off on emulated links, ping for its self-checks
  ethtool iputils-ping
  # benchmarks: peers to measure against
  iperf3 srt-tools
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# coturn's package starts a system service on some images; tern's tests start their own.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now coturn >/dev/null 2>&1 || true; fi
pkill -x turnserver 2>/dev/null || true

#!/usr/bin/env bash
# Installs the Debian packages kmsfleet builds and tests with, and only the
# ones that are missing, so a second run is a quick no-op.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  protobuf-compiler libprotobuf-dev
  libgrpc++-dev protobuf-compiler-grpc
  libboost1.81-dev libboost-json1.81-dev
  libyaml-cpp-dev libssl-dev openssl libsystemd-dev zlib1g-dev
  prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
  clang-14 libclang-rt-14-dev
  # promtool: checks scraped /metrics and the alert rules (tests/deploy).
  prometheus
  systemd dbus dbus-user-session
  curl procps iproute2
  # Chaos runs (tests/chaos): partitions and packet loss between agents.
  nftables jq
  # Packaging: build and lint the .deb and .rpm (tests/deploy).
  dpkg-dev lintian rpm rpmlint man-db
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

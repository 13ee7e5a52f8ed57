#!/usr/bin/env bash
# Installs what the end-to-end tests need on a Debian bookworm machine and prepares its
# cgroups. Idempotent and quiet: safe to run before every test run.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

packages=(
  # daemons and reference runtimes the tests drive
  containerd runc crun docker.io
  # CNI plugins for CRI pod networks (ptp, host-local, loopback)
  containernetworking-plugins
  # test images without a registry (build-essential below builds their static ICMP probe)
  busybox-static umoci skopeo
  # network namespaces and rules
  iproute2 nftables iptables passt slirp4netns util-linux
  # the egress test world: its own authoritative DNS server (no service), TLS certificates,
  # clients inside the sandbox
  dnsmasq-base openssl curl python3
  # sandboxing and benchmarking tools used next to the runtime
  bubblewrap hyperfine jq
  # build dependencies: libseccomp for libcontainer, protoc for the CRI client
  libseccomp-dev pkg-config protobuf-compiler build-essential ca-certificates
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]}"
  # Installing containerd or docker.io must not start the system's own daemons: the tests
  # run private ones. policy-rc.d tells the maintainer scripts not to start services.
  added_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ -n "$added_policy" ]]; then
    rm -f /usr/sbin/policy-rc.d
  fi
fi

# These machines mount cgroups as a hybrid: v1 controllers, and cgroup2 at
# /sys/fs/cgroup/unified holding only hugetlb. crun refuses that layout until hugetlb is moved
# to a v1 hierarchy of its own.
if [[ -d /sys/fs/cgroup/unified ]] && mountpoint -q /sys/fs/cgroup/unified &&
  ! mountpoint -q /sys/fs/cgroup/hugetlb &&
  grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; then
  mkdir -p /sys/fs/cgroup/hugetlb
  mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --quiet --locked cargo-nextest
fi

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
  iproute2 nftables iptables passt slirp4netns uidmap util-linux
  # the egress test world: its own authoritative DNS server (no service), TLS certificates,
  # clients inside the sandbox
  dnsmasq-base openssl curl python3
  # sandboxing and benchmarking tools used next to the runtime
  bubblewrap hyperfine jq
  # probes the escape batteries run inside one-shot sandboxes (seen through the host baseline)
  python3
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

# The newer engines the suites also run against (containerd 1.7 and 2.x, Docker 28), from
# Debian's newer releases, unpacked under the build tree.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
"$root/conformance/engines.sh" "${MXC_ENGINES_DIR:-$target_dir/engines}"

# runtime-tools' OCI validation suite (conformance/tests/oci_validation.rs runs it against runc
# and mxc-runtime), built with Go from Debian trixie's packages under the build tree.
"$root/conformance/ocivalidation/setup.sh" "${MXC_OCIVALIDATION_DIR:-$target_dir/ocivalidation}"

# The Kubernetes schemas the manifests in deploy/kubernetes are checked against
# (conformance/k8s/validate.py), from PyPI, in a virtual environment under the build tree.
k8s_venv="${MXC_K8S_VENV:-$target_dir/k8s-venv}"
k8s_validate_version=1.37.0
if ! "$k8s_venv/bin/python" -c "import kubernetes_validate, sys; sys.exit(kubernetes_validate.__version__ != '$k8s_validate_version')" 2>/dev/null; then
  echo "setup: installing kubernetes-validate $k8s_validate_version in $k8s_venv"
  python3 -m venv "$k8s_venv"
  "$k8s_venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$k8s_validate_version"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --quiet --locked cargo-nextest
fi

# MXC's SDK (pinned) and Node 24 from npm, for the SDK tests and the side-by-side comparison
# with MXC's own executor (conformance/sdk/setup.sh; nothing else is downloaded).
"$root/conformance/sdk/setup.sh" "${MXC_SDK_DIR:-$target_dir/mxc-sdk}"

#!/usr/bin/env bash
# The shim against containerd's runc v2 shim, side by side on one private containerd: median
# `ctr run --rm` time of a trivial container, and shim memory (RSS, PSS) per idle container
# with 1 and 50 containers. Prints medians and ratios mxc/runc. Not part of the tests.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
./conformance/setup.sh >/dev/null
cargo build --release --quiet -p containerd-shim-mxc-v1
export MXC_BIN_DIR="${MXC_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/release}"
exec cargo bench --quiet -p mxc-conformance --bench shim

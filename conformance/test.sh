#!/usr/bin/env bash
# The project's single test command: prepares the machine, builds the workspace's binaries in
# release mode, and runs every test of the workspace with nextest. Its exit status is the
# tests'. Extra arguments go to `cargo nextest run` (e.g. a filter: `./conformance/test.sh harness`).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
export MXC_ENGINES_DIR="${MXC_ENGINES_DIR:-$target_dir/engines}"
export MXC_K8S_VENV="${MXC_K8S_VENV:-$target_dir/k8s-venv}"
export MXC_SDK_DIR="${MXC_SDK_DIR:-$target_dir/mxc-sdk}"
export MXC_OCIVALIDATION_DIR="${MXC_OCIVALIDATION_DIR:-$target_dir/ocivalidation}"
./conformance/setup.sh

# The end-to-end tests run the binaries built here (MXC_BIN_DIR); the tests themselves are
# built with the same profile so that nothing is compiled twice. The libraries too:
# libmxc_ffi.so (a cdylib) is what MXC's SDK loads, and it runs lxc-exec from beside it.
echo "test: building the workspace's binaries and libraries (release)"
cargo build --release --workspace --bins --lib --quiet

export MXC_BIN_DIR="$target_dir/release"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

status=0
cargo nextest run --workspace --release \
  --config-file "$root/conformance/nextest.toml" \
  --no-fail-fast "$@" || status=$?
exit "$status"

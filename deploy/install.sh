#!/usr/bin/env bash
# Installs mxc-oci on this machine: the system packages it needs, release builds of `mxc`,
# `mxc-runtime` and `containerd-shim-mxc-v1` in /usr/local/bin, MXC's SDK library and executor
# (`libmxc_ffi.so`, `<arch>/lxc-exec`) in /usr/local/lib/mxc, a node configuration in /etc/mxc,
# and (when containerd is installed) the `mxc` runtime in containerd's config.
# Safe to run again; it reports what it changed.
#
#   install.sh                    install everything
#   install.sh --print-packages   print the Debian packages it installs, one a line, and exit
#
# Environment: MXC_PREFIX (default /usr/local), MXC_ETC (default /etc/mxc), MXC_INSTALL_FROM
# (install the binaries and library found in that directory instead of building them),
# MXC_SDK_LIB_DIR (default $MXC_PREFIX/lib/mxc), CONTAINERD_CONFIG (see containerd-config.sh).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=${MXC_PREFIX:-/usr/local}
etc=${MXC_ETC:-/etc/mxc}

# What the binaries run, for every config: nft (network rules, in every sandbox),
# slirp4netns (connectivity of a sandbox whose policy allows egress), newuidmap/newgidmap
# (bundles mapping several id ranges), ps (`mxc-runtime ps`), libseccomp (linked). Building
# needs pkg-config and libseccomp's headers.
packages=(nftables slirp4netns uidmap procps libseccomp2 iproute2 pkg-config libseccomp-dev)

if [ "${1:-}" = --print-packages ]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi

say() { printf 'mxc-oci install: %s\n' "$*"; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -n "${MXC_INSTALL_FROM:-}" ]; then
  target=$MXC_INSTALL_FROM
else
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"
  fi
  say "building release binaries (first build takes a few minutes)"
  (cd "$repo" && cargo build --release --quiet --bins --lib)
  target="${CARGO_TARGET_DIR:-$repo/target}/release"
fi
install -d -m 0755 "$prefix/bin"

for bin in mxc mxc-runtime containerd-shim-mxc-v1; do
  if [ -f "$target/$bin" ]; then
    # Copy and rename: a running shim keeps the binary it started with.
    install -m 0755 "$target/$bin" "$prefix/bin/$bin.new"
    mv -f "$prefix/bin/$bin.new" "$prefix/bin/$bin"
    say "installed $prefix/bin/$bin"
  fi
done

# MXC's SDK (npm @microsoft/mxc-sdk) loads libmxc_ffi.so from MXC_FFI_DIR and asks
# $MXC_BIN_DIR/<arch>/lxc-exec what the host supports; the library runs lxc-exec from beside it.
sdk_dir=${MXC_SDK_LIB_DIR:-$prefix/lib/mxc}
arch=x64
[ "$(uname -m)" = aarch64 ] && arch=arm64
install -d -m 0755 "$sdk_dir" "$sdk_dir/$arch"
install -m 0755 "$target/libmxc_ffi.so" "$sdk_dir/libmxc_ffi.so.new"
mv -f "$sdk_dir/libmxc_ffi.so.new" "$sdk_dir/libmxc_ffi.so"
install -m 0755 "$target/lxc-exec" "$sdk_dir/$arch/lxc-exec.new"
mv -f "$sdk_dir/$arch/lxc-exec.new" "$sdk_dir/$arch/lxc-exec"
say "installed $sdk_dir/libmxc_ffi.so and $sdk_dir/$arch/lxc-exec; for MXC's SDK:"
printf '  export MXC_FFI_DIR=%s\n  export MXC_BIN_DIR=%s\n' "$sdk_dir" "$sdk_dir"

install -d -m 0755 "$etc" "$etc/policies"
if [ ! -f "$etc/config.toml" ]; then
  install -m 0644 "$repo/deploy/config.toml" "$etc/config.toml"
  say "wrote $etc/config.toml"
else
  say "kept existing $etc/config.toml"
fi
for policy in "$repo"/deploy/policies/*.json; do
  [ -e "$policy" ] || continue
  target="$etc/policies/$(basename "$policy")"
  if [ ! -f "$target" ]; then
    install -m 0644 "$policy" "$target"
    say "wrote $target"
  fi
done

# containerd, when installed: the `mxc` runtime (runtime type io.containerd.mxc.v1, CRI
# handler mxc) added to its config, nothing else in it changed.
if [ -f "$repo/deploy/containerd-config.sh" ] && command -v containerd >/dev/null 2>&1; then
  MXC_NODE_CONFIG="$etc/config.toml" "$repo/deploy/containerd-config.sh" ||
    say "containerd: the mxc runtime was not added to its config (see above)"
fi
say "done"

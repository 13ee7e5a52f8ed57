#!/usr/bin/env bash
# Fetches the newer engines the suites also run against, from Debian's newer releases, without
# touching the host's apt: containerd 1.7 (trixie), containerd 2.x and dockerd 28 (sid). A
# private apt configuration (its own sources list, lists and cache under DIR/apt) downloads
# the packages, and `dpkg-deb -x` unpacks each into a prefix of its own:
#
#   DIR/containerd-1.7/usr/bin/{containerd,ctr,containerd-shim-runc-v2}
#   DIR/containerd-2/usr/bin/{containerd,ctr,containerd-shim-runc-v2}
#   DIR/docker-28/usr/{sbin/dockerd,bin/docker}
#
# They need glibc >= 2.34 only and run from there. The mirror is the one the host's apt uses.
# Idempotent: a prefix that is complete is kept.
#
#   engines.sh DIR
set -euo pipefail

dir=${1:?usage: engines.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# prefix  package/release ...  (a prefix is complete when its stamp names the same packages)
specs=(
  "containerd-1.7 containerd/trixie"
  "containerd-2 containerd/sid"
  "docker-28 docker.io/sid docker-cli/sid"
)

complete() {
  [ -f "$dir/$1/.packages" ] && [ "$(cat "$dir/$1/.packages")" = "$2" ]
}

todo=()
for spec in "${specs[@]}"; do
  read -r prefix packages <<<"$spec"
  complete "$prefix" "$packages" || todo+=("$spec")
done
if [ ${#todo[@]} -eq 0 ]; then
  exit 0
fi

# shellcheck source=conformance/private-apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/private-apt.sh"
apt_dir="$dir/apt"
private_apt "$apt_dir" "deb trixie main" "deb sid main"
mkdir -p "$apt_dir/debs"
echo "engines: fetching package lists of Debian trixie and sid"
apt-get "${apt_opts[@]}" -qq update >/dev/null

for spec in "${todo[@]}"; do
  read -r prefix packages <<<"$spec"
  rm -rf "${dir:?}/$prefix" "$apt_dir/debs"/*
  mkdir -p "$dir/$prefix"
  for package in $packages; do
    echo "engines: $prefix: downloading $package"
    (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" -qq download "$package" >/dev/null)
  done
  for deb in "$apt_dir/debs"/*.deb; do
    dpkg-deb -x "$deb" "$dir/$prefix"
  done
  echo "$packages" >"$dir/$prefix/.packages"
done
rm -rf "$apt_dir/debs"

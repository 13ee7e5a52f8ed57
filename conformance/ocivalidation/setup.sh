#!/usr/bin/env bash
# Builds the OCI runtime conformance suite of runtime-tools (its `validation/` programs and
# `runtimetest`, which they run inside each container) from Debian's packages alone, without
# touching the host's apt:
#
# - the source: Debian trixie's source package golang-github-opencontainers-runtime-tools
#   (its upstream tarball carries validation/ and the busybox rootfs the programs unpack);
# - Go 1.24 and the Go libraries the suite imports: trixie's golang-1.24-go and golang-*-dev
#   packages, unpacked into a prefix and used as a GOPATH (GO111MODULE=off, as Debian builds
#   Go packages);
# - github.com/mndrix/tap-go, which Debian does not package: tap/tap.go beside this script.
#
# Result, in DIR/bin: runtimetest, rootfs-amd64.tar.gz and one NAME.t per validation program;
# run them from DIR/bin with RUNTIME=/path/to/runtime. Idempotent: a complete build of the same
# packages is kept.
#
#   conformance/ocivalidation/setup.sh DIR
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir=${1:?usage: setup.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

source_package=golang-github-opencontainers-runtime-tools
packages=(
  golang-1.24-go golang-1.24-src
  golang-github-google-uuid-dev golang-github-mrunalp-fileutils-dev golang-golang-x-sys-dev
  golang-github-urfave-cli-dev golang-github-cpuguy83-go-md2man-v2-dev
  golang-github-russross-blackfriday-v2-dev golang-github-shurcool-sanitized-anchor-name-dev
  golang-gocapability-dev golang-github-sirupsen-logrus-dev
  golang-github-opencontainers-selinux-dev golang-github-opencontainers-specs-dev
  golang-github-blang-semver-dev golang-github-hashicorp-go-multierror-dev
  golang-github-hashicorp-errwrap-dev golang-github-xeipuuv-gojsonschema-dev
  golang-github-xeipuuv-gojsonpointer-dev golang-github-xeipuuv-gojsonreference-dev
  golang-github-pmezard-go-difflib-dev
)
stamp="$source_package ${packages[*]} $(sha256sum "$here/tap/tap.go" "$here/setup.sh" | cut -d' ' -f1 | tr '\n' ' ')"
if [ -f "$dir/bin/.stamp" ] && [ "$(cat "$dir/bin/.stamp")" = "$stamp" ]; then
  exit 0
fi

# shellcheck source=conformance/private-apt.sh
. "$here/../private-apt.sh"
private_apt "$dir/apt" "deb trixie main" "deb-src trixie main"
echo "ocivalidation: fetching package lists of Debian trixie"
apt-get "${apt_opts[@]}" -qq update >/dev/null

rm -rf "$dir/debs" "$dir/prefix" "$dir/gopath" "$dir/bin"
mkdir -p "$dir/debs" "$dir/prefix" "$dir/bin"
echo "ocivalidation: downloading Go 1.24 and the suite's Go libraries"
(cd "$dir/debs" && apt-get "${apt_opts[@]}" -qq download "${packages[@]/%//trixie}" >/dev/null)
for deb in "$dir/debs"/*.deb; do
  dpkg-deb -x "$deb" "$dir/prefix"
done

# Only the upstream tarball is needed (Debian's changes touch packaging only); apt names it,
# with the hash it must have, and its own downloader fetches and checks it.
echo "ocivalidation: downloading the source of $source_package"
read -r url name _ hash < <(apt-get "${apt_opts[@]}" --print-uris -qq source "$source_package/trixie" | grep '\.orig\.tar\.')
/usr/lib/apt/apt-helper -o APT::Sandbox::User=root download-file "${url//\'/}" "$dir/debs/$name" "$hash" >/dev/null
src="$dir/gopath/src/github.com/opencontainers/runtime-tools"
mkdir -p "$src" "$dir/gopath/src/github.com/mndrix/tap-go"
tar -xf "$dir/debs/$name" -C "$src" --strip-components=1
cp "$here/tap/tap.go" "$dir/gopath/src/github.com/mndrix/tap-go/"

export GOROOT="$dir/prefix/usr/lib/go-1.24"
export GOPATH="$dir/gopath:$dir/prefix/usr/share/gocode"
export GOCACHE="$dir/cache" GO111MODULE=off GOTOOLCHAIN=local GOFLAGS= GOPROXY=off
echo "ocivalidation: building runtimetest and the validation programs"
cd "$src"
# runtimetest runs inside the containers' busybox root: static, as upstream's Makefile builds it.
"$GOROOT/bin/go" build -tags "netgo osusergo" -ldflags "-extldflags -static" -o "$dir/bin/runtimetest" ./cmd/runtimetest
for program in validation/*/; do
  name=$(basename "$program")
  [ "$name" = util ] && continue
  "$GOROOT/bin/go" build -o "$dir/bin/$name.t" "./$program"
done
cp rootfs-amd64.tar.gz "$dir/bin/"
rm -rf "$dir/debs"
echo "$stamp" >"$dir/bin/.stamp"

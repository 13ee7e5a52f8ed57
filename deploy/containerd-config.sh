#!/usr/bin/env bash
# Adds the `mxc` runtime to containerd's configuration without touching anything else in it,
# and says what it changed. Run by install.sh and by the Kubernetes installer DaemonSet.
#
#   containerd-config.sh [add]   add the runtime (nothing happens if it is already there)
#   containerd-config.sh remove  take out exactly what `add` put in
#
# The runtime goes in as one block between marker comments, appended to the file: its tables
# are new ones, so nothing that is already configured changes. An existing file keeps its
# schema (version 2 for containerd 1.6/1.7, version 3 for 2.x; containerd 2.x reads both); a
# new file gets the schema of the installed containerd. The result is checked with
# `containerd config dump` before it replaces the file, and the previous file is kept as
# `<file>.mxc-backup`.
#
# Environment: CONTAINERD_CONFIG (default /etc/containerd/config.toml), MXC_NODE_CONFIG (the
# shim's ConfigPath, default /etc/mxc/config.toml), CONTAINERD (the containerd binary used to
# read the version and check the result, default `containerd`), CONTAINERD_VERSION (instead of
# asking the binary).
set -euo pipefail

config=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
node_config=${MXC_NODE_CONFIG:-/etc/mxc/config.toml}
containerd_bin=${CONTAINERD:-containerd}
action=${1:-add}
begin_marker="# BEGIN mxc-oci runtime (deploy/containerd-config.sh)"
end_marker="# END mxc-oci runtime"

say() { printf 'mxc-oci containerd: %s\n' "$*"; }
fail() {
  say "$*" >&2
  exit 1
}

containerd_version() {
  if [ -n "${CONTAINERD_VERSION:-}" ]; then
    echo "${CONTAINERD_VERSION#v}"
    return
  fi
  # "containerd github.com/containerd/containerd 1.6.20~ds1 ..." or "... v2.0.4 ..."
  "$containerd_bin" --version 2>/dev/null |
    grep -oE '(^| )v?[0-9]+\.[0-9]+\.[0-9]+' | head -n1 | tr -d ' v'
}

# The `version = N` of a config file; 1 when absent (containerd's own rule).
file_schema() {
  local v
  v=$(grep -E '^[[:space:]]*version[[:space:]]*=' "$1" | head -n1 | grep -oE '[0-9]+' || true)
  echo "${v:-1}"
}

# The CRI plugin that holds runtime handlers, per schema.
cri_plugin() {
  case "$1" in
    2) echo 'plugins."io.containerd.grpc.v1.cri".containerd' ;;
    3) echo 'plugins."io.containerd.cri.v1.runtime".containerd' ;;
  esac
}

# Whether the file already configures runtime handler $2 (in any quoting).
has_runtime() {
  grep -qE "runtimes\.(\"|')?$2(\"|')?([].]|[[:space:]]*=)" "$1"
}

block() {
  local prefix="$1" with_runc="$2"
  echo "$begin_marker"
  if [ "$with_runc" = yes ]; then
    # Declaring any runtime replaces containerd's default list: keep runc in it.
    echo "[$prefix.runtimes.runc]"
    echo '  runtime_type = "io.containerd.runc.v2"'
  fi
  echo "[$prefix.runtimes.mxc]"
  echo '  runtime_type = "io.containerd.mxc.v1"'
  echo '  # Pods and containers pick their MXC policy with these annotations.'
  echo '  pod_annotations = ["io.mxc.*"]'
  echo '  container_annotations = ["io.mxc.*"]'
  echo "[$prefix.runtimes.mxc.options]"
  echo "  ConfigPath = \"$node_config\""
  echo "$end_marker"
}

# Checks a candidate file with the installed containerd, when there is one.
check() {
  if ! command -v "$containerd_bin" >/dev/null 2>&1; then
    return 0
  fi
  local out
  if ! out=$("$containerd_bin" --config "$1" config dump 2>&1); then
    say "containerd rejects the new configuration: $out" >&2
    return 1
  fi
  if [ "$action" = add ] && ! grep -q 'io.containerd.mxc.v1' <<<"$out"; then
    say "containerd does not see the mxc runtime in the new configuration" >&2
    return 1
  fi
}

replace() {
  local candidate="$1"
  check "$candidate" || {
    rm -f "$candidate"
    fail "left $config unchanged"
  }
  if [ -f "$config" ]; then
    cp -p "$config" "$config.mxc-backup"
  fi
  chmod 0644 "$candidate"
  mv "$candidate" "$config"
}

case "$action" in
  add)
    mkdir -p "$(dirname "$config")"
    tmp=$(mktemp "$config.XXXXXX")
    if [ -f "$config" ]; then
      schema=$(file_schema "$config")
      if [ "$schema" != 2 ] && [ "$schema" != 3 ]; then
        rm -f "$tmp"
        fail "$config has config schema version $schema; add the runtime by hand (see README) or migrate it (containerd config migrate, containerd 1.7+)"
      fi
      if has_runtime "$config" mxc; then
        rm -f "$tmp"
        say "$config already has the mxc runtime; unchanged"
        exit 0
      fi
      with_runc=yes
      has_runtime "$config" runc && with_runc=no
      {
        cat "$config"
        # The block starts on a line of its own.
        [ -z "$(tail -c1 "$config")" ] || echo
        block "$(cri_plugin "$schema")" "$with_runc"
      } >"$tmp"
      replace "$tmp"
      say "added the mxc runtime (handler mxc, runtime_type io.containerd.mxc.v1, ConfigPath $node_config) to $config (schema $schema); previous file kept as $config.mxc-backup"
      [ "$with_runc" = yes ] && say "also declared the runc runtime, which declaring any runtime would otherwise drop"
    else
      version=$(containerd_version)
      major=${version%%.*}
      case "$major" in
        1) schema=2 ;;
        2) schema=3 ;;
        *)
          rm -f "$tmp"
          fail "cannot tell containerd's version (got '${version:-nothing}'); set CONTAINERD_VERSION"
          ;;
      esac
      { echo "version = $schema"; echo; block "$(cri_plugin "$schema")" yes; } >"$tmp"
      replace "$tmp"
      say "wrote $config (schema $schema for containerd $version) with the runc and mxc runtimes"
    fi
    if grep -qE '^[[:space:]]*disabled_plugins[[:space:]]*=.*cri' "$config"; then
      say "note: the CRI plugin is disabled in $config, so Kubernetes cannot use it (ctr and other clients can)"
    fi
    say "restart containerd to load it (systemctl restart containerd); running containers keep running"
    ;;
  remove)
    if [ ! -f "$config" ] || ! grep -qF "$begin_marker" "$config"; then
      say "$config has no mxc runtime block; unchanged"
      exit 0
    fi
    tmp=$(mktemp "$config.XXXXXX")
    awk -v begin="$begin_marker" -v end="$end_marker" '
      $0 == begin { skip = 1; next }
      $0 == end { skip = 0; next }
      !skip { print }
    ' "$config" >"$tmp"
    replace "$tmp"
    say "removed the mxc runtime from $config; previous file kept as $config.mxc-backup"
    ;;
  *)
    fail "usage: $0 [add|remove]"
    ;;
esac

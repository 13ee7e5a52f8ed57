#!/usr/bin/env bash
# The node installer of mxc-deploy.yaml (and mxc-cleanup.yaml), in the style of kata-deploy.
# It runs in a privileged pod with the host's pid namespace and the host's root filesystem at
# /host; what must happen on the host itself (containerd's config, restarting containerd) runs
# there through nsenter.
#
#   mxc-deploy.sh install   binaries to /usr/local/bin, node configuration and policies to
#                           /etc/mxc (existing files kept), the `mxc` runtime into containerd's
#                           config, containerd restarted, node labelled mxc.io/runtime=true;
#                           then it waits until the pod is deleted
#   mxc-deploy.sh cleanup   label removed, runtime taken out of containerd's config, containerd
#                           restarted, binaries removed (/etc/mxc is left in place)
set -euo pipefail

host=${HOST_ROOT:-/host}
src=${MXC_DEPLOY_SOURCE:-/opt/mxc-oci}
bin_dir=/usr/local/bin
lib_dir=/usr/local/lib/mxc-oci
etc_dir=/etc/mxc
label=mxc.io/runtime
binaries=(mxc mxc-runtime containerd-shim-mxc-v1)

say() { printf 'mxc-deploy: %s\n' "$*"; }

# Runs a command in the host's namespaces.
on_host() { nsenter --target 1 --mount --uts --ipc --net --pid -- "$@"; }

# Sets (value "true") or removes (value null) the node label through the API server, with the
# pod's service account.
label_node() {
  local value="$1" sa=/var/run/secrets/kubernetes.io/serviceaccount
  if [ -z "${NODE_NAME:-}" ] || [ ! -f "$sa/token" ]; then
    say "no NODE_NAME or service account: not labelling the node"
    return 0
  fi
  curl --silent --show-error --fail --max-time 30 \
    --cacert "$sa/ca.crt" \
    -H "Authorization: Bearer $(cat "$sa/token")" \
    -H 'Content-Type: application/merge-patch+json' \
    -X PATCH \
    --data "{\"metadata\":{\"labels\":{\"$label\":$value}}}" \
    "https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}/api/v1/nodes/${NODE_NAME}" \
    >/dev/null
  say "node $NODE_NAME: label $label=$value"
}

restart_containerd() {
  if on_host systemctl is-active --quiet containerd 2>/dev/null; then
    on_host systemctl restart containerd
    say "restarted containerd (running containers keep running)"
  else
    say "containerd is not a running systemd unit on this node: restart it to load the change"
  fi
}

# Copies a file to the host by rename, so that a binary in use (a running shim) is replaced
# rather than written over.
put() {
  local from="$1" to="$2" mode="$3"
  mkdir -p "$(dirname "$to")"
  cp "$from" "$to.mxc-new"
  chmod "$mode" "$to.mxc-new"
  mv -f "$to.mxc-new" "$to"
}

install() {
  for b in "${binaries[@]}"; do
    put "$src/bin/$b" "$host$bin_dir/$b" 0755
    say "installed $bin_dir/$b"
  done
  mkdir -p "$host$etc_dir/policies"
  if [ ! -f "$host$etc_dir/config.toml" ]; then
    put "$src/etc/config.toml" "$host$etc_dir/config.toml" 0644
    say "wrote $etc_dir/config.toml"
  else
    say "kept the existing $etc_dir/config.toml"
  fi
  for policy in "$src"/etc/policies/*.json; do
    [ -e "$policy" ] || continue
    target="$etc_dir/policies/$(basename "$policy")"
    if [ ! -f "$host$target" ]; then
      put "$policy" "$host$target" 0644
      say "wrote $target"
    fi
  done
  put "$src/containerd-config.sh" "$host$lib_dir/containerd-config.sh" 0755
  local report
  report=$(on_host env MXC_NODE_CONFIG="$etc_dir/config.toml" "$lib_dir/containerd-config.sh" add)
  printf '%s\n' "$report"
  if ! grep -q 'unchanged' <<<"$report"; then
    restart_containerd
  fi
  label_node '"true"'
  say "install done; waiting (delete the DaemonSet and apply mxc-cleanup.yaml to uninstall)"
  trap 'exit 0' TERM INT
  sleep infinity &
  wait
}

cleanup() {
  label_node null
  if [ -x "$host$lib_dir/containerd-config.sh" ]; then
    local report
    report=$(on_host "$lib_dir/containerd-config.sh" remove)
    printf '%s\n' "$report"
    if ! grep -q 'unchanged' <<<"$report"; then
      restart_containerd
    fi
  fi
  for b in "${binaries[@]}"; do
    rm -f "$host$bin_dir/$b"
  done
  rm -rf "${host:?}$lib_dir"
  say "cleanup done ($etc_dir left in place)"
  trap 'exit 0' TERM INT
  sleep infinity &
  wait
}

case "${1:-install}" in
  install) install ;;
  cleanup) cleanup ;;
  *)
    say "usage: $0 install|cleanup" >&2
    exit 2
    ;;
esac

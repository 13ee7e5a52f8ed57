#!/usr/bin/env bash
# Benchmarks, measured side by side in one run on this machine; prints medians and ratios.
# Not part of the tests. Usage: conformance/bench/bench.sh [runtime|oneshot|network|egress|sdk|all]
#
#   runtime  create+start+wait+delete of a busybox bundle: mxc-runtime vs runc vs crun
#   oneshot  `mxc run` of a trivial config vs bwrap with the equivalent flags
#   network  added start latency of 50 rules vs none; TCP connect latency and throughput to a
#            test host through the enforced namespace vs the same namespace without rules
#   egress   egress by name vs direct (CIDR-allowed) to the same test host: connect latency,
#            keep-alive requests/s, bulk throughput; start time added by 100 host patterns
#   sdk      MXC's SDK run() of `true` through this project's libmxc_ffi.so vs MXC's own
#            (bundled with the SDK), interleaved in one Node process
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
what="${1:-all}"
runs="${BENCH_RUNS:-30}"
bin="${MXC_BIN_DIR:-$root/target/release}"
work="$(mktemp -d /tmp/mxc-bench.XXXXXX)"
cleanup() {
  for r in mxc-runtime runc crun; do
    "$r" --root "$work/root-$r" delete -f bench >/dev/null 2>&1 || true
  done
  ip netns del mxc-bench-host >/dev/null 2>&1 || true
  ip link del mxc-bench0 >/dev/null 2>&1 || true
  [ -n "${egress_pids:-}" ] && kill $egress_pids >/dev/null 2>&1 || true
  ip netns del mxc-bench-egress >/dev/null 2>&1 || true
  ip link del mxc-bench1 >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

./conformance/setup.sh >/dev/null
if [ ! -x "$bin/mxc" ] || [ ! -x "$bin/mxc-runtime" ]; then
  cargo build --release --quiet -p mxc-runtime --bins
fi
export PATH="$bin:$PATH"

# median of hyperfine's runs for command N (0-based) of an exported JSON file, in ms
median() { python3 -c "import json,sys,statistics; r=json.load(open(sys.argv[1]))['results'][int(sys.argv[2])]; print('%.2f' % (statistics.median(r['times'])*1000))" "$1" "$2"; }
ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1])/float(sys.argv[2])))" "$1" "$2"; }

busybox_bundle() {
  local bundle="$1"
  mkdir -p "$bundle/rootfs/bin"
  cp /bin/busybox "$bundle/rootfs/bin/busybox"
  for applet in sh true echo sleep; do ln -sf busybox "$bundle/rootfs/bin/$applet"; done
  (cd "$bundle" && runc spec && python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
json.dump(c, open("config.json", "w"), indent=1)
PY
  )
}

bench_runtime() {
  local bundle="$work/bundle"
  busybox_bundle "$bundle"
  local cmds=()
  for r in mxc-runtime runc crun; do
    mkdir -p "$work/root-$r"
    cmds+=("$r --root $work/root-$r run --bundle $bundle bench >/dev/null")
  done
  hyperfine -N --warmup 3 --runs "$runs" --style none --export-json "$work/runtime.json" "${cmds[@]}" >/dev/null 2>&1 \
    || hyperfine --shell=bash --warmup 3 --runs "$runs" --style none --export-json "$work/runtime.json" "${cmds[@]}" >/dev/null
  local mxc runc crun
  mxc=$(median "$work/runtime.json" 0); runc=$(median "$work/runtime.json" 1); crun=$(median "$work/runtime.json" 2)
  echo "runtime: median create+start+wait+delete (busybox true, $runs runs)"
  printf '  mxc-runtime %8s ms\n  runc        %8s ms\n  crun        %8s ms\n' "$mxc" "$runc" "$crun"
  echo "  ratio mxc-runtime/runc = $(ratio "$mxc" "$runc")   mxc-runtime/crun = $(ratio "$mxc" "$crun")"
}

bench_oneshot() {
  cat > "$work/true.json" <<'JSON'
{"version": "0.8.0-alpha", "process": {"commandLine": "true"}}
JSON
  local binds=()
  for d in /usr/bin /usr/sbin /usr/lib /usr/lib32 /usr/lib64 /usr/libexec /usr/share /etc /run/systemd/resolve; do
    [ -e "$d" ] && binds+=(--ro-bind "$d" "$d")
  done
  for l in bin sbin lib lib32 lib64; do
    [ -L "/$l" ] && binds+=(--symlink "$(readlink "/$l")" "/$l")
  done
  local bwrap="bwrap --unshare-all --die-with-parent --new-session --clearenv ${binds[*]} --proc /proc --dev /dev --tmpfs /tmp --chdir / /bin/sh -c true"
  hyperfine -N --warmup 3 --runs "$runs" --style none --export-json "$work/oneshot.json" \
    "mxc run $work/true.json" "$bwrap" >/dev/null
  local mxc bw
  mxc=$(median "$work/oneshot.json" 0); bw=$(median "$work/oneshot.json" 1)
  echo "oneshot: median wall time of a trivial config ($runs runs)"
  printf '  mxc run %8s ms\n  bwrap   %8s ms\n' "$mxc" "$bw"
  echo "  ratio mxc run/bwrap = $(ratio "$mxc" "$bw")"
}

bench_network() {
  # A test host in a namespace of this script's own, linked to the host: 198.18.250.0/24.
  ip netns add mxc-bench-host
  ip link add mxc-bench0 type veth peer name eth0 netns mxc-bench-host
  ip addr add 198.18.250.1/24 dev mxc-bench0 && ip link set mxc-bench0 up
  ip -n mxc-bench-host addr add 198.18.250.2/24 dev eth0
  ip -n mxc-bench-host link set eth0 up && ip -n mxc-bench-host link set lo up
  ip -n mxc-bench-host route add default via 198.18.250.1
  # A discard/echo server for the duration of the benchmark.
  ip netns exec mxc-bench-host timeout 600 perl -MIO::Socket::IP -e '
    $l = IO::Socket::IP->new(LocalPort => 9000, Listen => 64, ReuseAddr => 1) or die;
    while ($c = $l->accept) { if (fork == 0) { my $buf; while (sysread($c, $buf, 65536)) {} ; exit } close $c }' &
  local server=$!
  sleep 0.3

  local rules="" i
  for i in $(seq 1 49); do rules="$rules{\"to\": [{\"cidr\": \"203.0.$i.0/24\"}], \"ports\": [{\"protocol\": \"tcp\", \"port\": $((1000 + i))}]},"; done
  rules="$rules{\"to\": [{\"cidr\": \"198.18.250.2/32\"}], \"ports\": [{\"protocol\": \"tcp\", \"port\": 9000}]}"
  cat > "$work/none.json" <<JSON
{"version": "0.8.0-alpha", "process": {"commandLine": "true"}}
JSON
  cat > "$work/fifty.json" <<JSON
{"version": "0.8.0-alpha", "process": {"commandLine": "true"}, "network": {"egress": {"default": "deny", "allow": [$rules]}}}
JSON
  cat > "$work/open.json" <<JSON
{"version": "0.8.0-alpha", "process": {"commandLine": "true"}, "network": {"egress": {"default": "allow"}}}
JSON
  hyperfine -N --warmup 3 --runs "$runs" --style none --export-json "$work/netstart.json" \
    "mxc run $work/none.json" "mxc run $work/open.json" "mxc run $work/fifty.json" >/dev/null
  local none open fifty
  none=$(median "$work/netstart.json" 0); open=$(median "$work/netstart.json" 1); fifty=$(median "$work/netstart.json" 2)
  echo "network: start latency ($runs runs)"
  printf '  isolated (no rules)            %8s ms\n  connected, 1 allow-all rule     %8s ms\n  connected, 50 rules            %8s ms\n' "$none" "$open" "$fifty"
  echo "  added by network set-up: $(python3 -c "print('%.2f' % ($fifty - $none))") ms; 50 rules vs allow-all ratio = $(ratio "$fifty" "$open")"

  # Throughput and connect latency from inside the sandbox, enforced (50 rules) vs unfiltered.
  local client='perl -MTime::HiRes=time -MIO::Socket::IP -e "
    my \$t0 = time; for (1..50) { my \$s = IO::Socket::IP->new(PeerHost => q(198.18.250.2), PeerPort => 9000) or die; close \$s } my \$connect = (time - \$t0) / 50;
    my \$s = IO::Socket::IP->new(PeerHost => q(198.18.250.2), PeerPort => 9000) or die; my \$buf = q(x) x 65536; my \$n = 0; my \$t1 = time;
    while (time - \$t1 < 2) { \$n += syswrite(\$s, \$buf) } close \$s; printf qq(%.3f %.1f\n), \$connect * 1000, \$n / (time - \$t1) / 1e6"'
  for name in open fifty; do
    python3 - "$work/$name.json" "$client" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["process"]["commandLine"] = sys.argv[2]
json.dump(c, open(sys.argv[1] + ".tp", "w"))
PY
  done
  local a b
  a=$(mxc run "$work/open.json.tp"); b=$(mxc run "$work/fifty.json.tp")
  echo "network: through the userspace stack to a test host (connect latency ms, throughput MB/s)"
  echo "  no rules (allow all): $a"
  echo "  50 rules enforced:    $b"
  python3 -c "import sys; a=list(map(float,sys.argv[1].split())); b=list(map(float,sys.argv[2].split())); print('  ratio enforced/unfiltered: connect latency %.2f, throughput %.2f' % (b[0]/a[0], b[1]/a[1]))" "$a" "$b"
  kill "$server" 2>/dev/null || true
}

bench_egress() {
  # The egress test world's servers and a DNS server of its own: 198.18.251.0/24.
  ip netns add mxc-bench-egress
  ip link add mxc-bench1 type veth peer name eth0 netns mxc-bench-egress
  ip addr add 198.18.251.1/24 dev mxc-bench1 && ip link set mxc-bench1 up
  ip -n mxc-bench-egress addr add 198.18.251.2/24 dev eth0
  ip -n mxc-bench-egress link set eth0 up && ip -n mxc-bench-egress link set lo up
  ip -n mxc-bench-egress route add default via 198.18.251.1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=bench.test -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
  ip netns exec mxc-bench-egress dnsmasq --no-daemon --no-resolv --no-hosts --local=/test/ \
    --address=/bench.test/198.18.251.2 --listen-address=198.18.251.2 --bind-interfaces \
    --user=root --pid-file="$work/dnsmasq.pid" >/dev/null 2>&1 &
  egress_pids="$!"
  ip netns exec mxc-bench-egress python3 conformance/src/egress_world.py --http 8080 \
    --https 8443 --banner 2222 --udp 4433 --udp-log "$work/udp.log" --cert "$work/cert.pem" \
    --key "$work/key.pem" --limit 600 >/dev/null 2>&1 &
  egress_pids="$egress_pids $!"
  sleep 1

  # The client inside the sandbox: connect latency (ms, mean of 200), keep-alive requests/s
  # (2 s on one connection), bulk throughput (MB/s, one 256 MiB download).
  cat > "$work/client.py" <<'PY'
import http.client, socket, sys, time
host = sys.argv[1]
t = time.perf_counter()
for _ in range(200):
    socket.create_connection((host, 8080)).close()
connect = (time.perf_counter() - t) / 200 * 1000
c = http.client.HTTPConnection(host, 8080)
n, t = 0, time.perf_counter()
while time.perf_counter() - t < 2:
    c.request("GET", "/"); c.getresponse().read(); n += 1
rps = n / (time.perf_counter() - t)
c.request("GET", "/bytes/268435456"); r = c.getresponse()
t, got = time.perf_counter(), 0
while True:
    b = r.read(1 << 20)
    if not b: break
    got += len(b)
mbs = got / (time.perf_counter() - t) / 1e6
print("%.3f %.0f %.1f" % (connect, rps, mbs))
PY
  chmod 0755 "$work"; chmod 0644 "$work/client.py"
  local client="/usr/bin/python3 $work/client.py"
  cat > "$work/direct.json" <<JSON
{"version": "0.8.0-alpha", "process": {"commandLine": "$client 198.18.251.2"},
 "filesystem": {"readonlyPaths": ["$work/client.py"]},
 "network": {"egress": {"default": "deny", "allow": [{"to": [{"cidr": "198.18.251.2/32"}], "ports": [{"protocol": "tcp", "port": 8080}]}]}}}
JSON
  cat > "$work/byname.json" <<JSON
{"version": "0.8.0-alpha", "process": {"commandLine": "$client bench.test"},
 "filesystem": {"readonlyPaths": ["$work/client.py"]}}
JSON
  local host direct byname
  host=$(python3 "$work/client.py" 198.18.251.2)
  direct=$(mxc run "$work/direct.json")
  byname=$(mxc run --resolver 198.18.251.2 --allow-host bench.test "$work/byname.json")
  echo "egress: to one test host (connect latency ms, keep-alive requests/s, bulk MB/s)"
  echo "  host namespace, no sandbox:          $host"
  echo "  direct, CIDR-allowed (slirp4netns):  $direct"
  echo "  by name, through the egress proxy:   $byname"
  python3 - "$direct" "$byname" "$host" <<'PY'
import sys
d, p, h = (list(map(float, a.split())) for a in sys.argv[1:4])
print("  ratio proxy/direct: connect latency %.2f (added %.3f ms), requests/s %.2f, throughput %.2f"
      % (p[0] / d[0], p[0] - d[0], p[1] / d[1], p[2] / d[2]))
print("  ratio proxy/host namespace: connect latency %.2f (added %.3f ms), requests/s %.2f, throughput %.2f"
      % (p[0] / h[0], p[0] - h[0], p[1] / h[1], p[2] / h[2]))
PY

  # Start time: a trivial config isolated, and the same with 100 host patterns.
  cat > "$work/none.json" <<JSON
{"version": "0.8.0-alpha", "process": {"commandLine": "true"}}
JSON
  local patterns="" i
  for i in $(seq 1 50); do patterns="$patterns --allow-host h$i.bench.test --allow-host *.d$i.bench.test"; done
  hyperfine -N --warmup 3 --runs "$runs" --style none --export-json "$work/egressstart.json" \
    "mxc run $work/none.json" "mxc run --allow-host bench.test $work/none.json" \
    "mxc run $patterns $work/none.json" >/dev/null
  local none one hundred
  none=$(median "$work/egressstart.json" 0); one=$(median "$work/egressstart.json" 1); hundred=$(median "$work/egressstart.json" 2)
  echo "egress: start latency ($runs runs)"
  printf '  isolated                 %8s ms
  1 host pattern           %8s ms
  100 host patterns        %8s ms
' "$none" "$one" "$hundred"
  echo "  added by egress by name: $(python3 -c "print('%.2f' % ($one - $none))") ms; by 100 patterns vs 1: $(python3 -c "print('%.2f' % ($hundred - $one))") ms"
}

bench_sdk() {
  local sdk="${MXC_SDK_DIR:-$root/target/mxc-sdk}" arch=x64
  [ "$(uname -m)" = aarch64 ] && arch=arm64
  ./conformance/sdk/setup.sh "$sdk" >/dev/null
  if [ ! -f "$bin/libmxc_ffi.so" ] || [ ! -x "$bin/lxc-exec" ]; then
    cargo build --release --quiet -p mxc-ffi -p mxc-runtime
  fi
  # Ours laid out as deploy/install.sh installs it; MXC's as the SDK ships it.
  mkdir -p "$work/ours/$arch"
  ln -s "$bin/libmxc_ffi.so" "$work/ours/libmxc_ffi.so"
  ln -s "$bin/lxc-exec" "$work/ours/$arch/lxc-exec"
  local out
  out=$(cd "$sdk/v1" && node bench-run.mjs "$work/ours" "$sdk/mxc-reference/$arch" "$runs")
  python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print("sdk: run() of `true`, median of %d runs each, interleaved" % r["runs"])
print("  libmxc_ffi.so (mxc-oci)  %8.2f ms" % r["oursMs"])
print("  libmxc_ffi.so (MXC)      %8.2f ms" % r["mxcMs"])
print("  ratio mxc-oci / MXC      %8.2f" % r["ratio"])
PY
}

case "$what" in
  runtime) bench_runtime ;;
  oneshot) bench_oneshot ;;
  network) bench_network ;;
  egress) bench_egress ;;
  sdk) bench_sdk ;;
  all) bench_runtime; bench_oneshot; bench_network; bench_egress; bench_sdk ;;
  *) echo "usage: $0 [runtime|oneshot|network|egress|sdk|all]" >&2; exit 2 ;;
esac

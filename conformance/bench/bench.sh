#!/usr/bin/env bash
# Benchmarks, measured side by side in one run on this machine; prints medians and ratios.
# Not part of the tests. Usage:
#   conformance/bench/bench.sh [table|scaling|soak|phases|runtime|oneshot|network|egress|sdk|all]
#
#   table    the start-time table: `mxc run` vs MXC's own lxc-exec and bare bwrap, `mxc-runtime
#            run` vs crun and runc, network set-up, per deniedPaths/readonlyPaths entry, the audit
#            listener of `mxc run` and of `mxc-runtime` with a network policy, and (unless
#            BENCH_SHIM=0) the shim vs containerd's runc v2 shim through `ctr run --rm`
#   scaling  start time for 0/10/100/1000 readonlyPaths and deniedPaths entries and 0/50/500
#            egress rules: `mxc run` vs MXC's lxc-exec
#   soak     BENCH_SOAK (default 1000) cycles each of `mxc run` and `mxc-runtime`
#            create/start/delete, without and with a network policy: host mounts, cgroups,
#            network namespaces, processes and fds before and after, and p50/p99 of the first
#            and last hundred
#   phases   where the time of one start goes, per phase (MXC_SPANS), for `mxc run` and
#            `mxc-runtime run`; see conformance/bench/README.md
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

# hyperfine NAME CMD...: every command interleaved-warm, $runs runs each, into $work/NAME.json
measure() {
  local name="$1"; shift
  if ! hyperfine -N --warmup 3 --runs "$runs" --style none --export-json "$work/$name.json" "$@" \
    >/dev/null 2>"$work/$name.err"; then
    echo "bench: $name failed:" >&2; grep -v -e Warning -e '^ *$' "$work/$name.err" >&2
    for cmd in "$@"; do $cmd >/dev/null || { echo "bench: failing command: $cmd" >&2; break; }; done
    exit 1
  fi
}
ms() { median "$work/$1.json" "$2"; }
sub() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) - float(sys.argv[2])))" "$1" "$2"; }
per() { python3 -c "import sys; print('%.3f' % ((float(sys.argv[1]) - float(sys.argv[2])) / float(sys.argv[3])))" "$1" "$2" "$3"; }

# MXC's own Linux executor, as the SDK (1.0.1) ships it: the SDK tests' install keeps it aside.
mxc_lxc_exec() {
  local sdk="${MXC_SDK_DIR:-$root/target/mxc-sdk}" arch=x64
  [ "$(uname -m)" = aarch64 ] && arch=arm64
  ./conformance/sdk/setup.sh "$sdk" >/dev/null
  echo "$sdk/mxc-reference/$arch/lxc-exec"
}

# bwrap with MXC's baseline: the host's system directories read-only, private everything.
bwrap_baseline() {
  local binds=()
  for d in /usr/bin /usr/sbin /usr/lib /usr/lib32 /usr/lib64 /usr/libexec /usr/share /etc /run/systemd/resolve; do
    [ -e "$d" ] && binds+=(--ro-bind "$d" "$d")
  done
  for l in bin sbin lib lib32 lib64; do
    [ -L "/$l" ] && binds+=(--symlink "$(readlink "/$l")" "/$l")
  done
  echo "bwrap --unshare-all --die-with-parent --new-session --clearenv ${binds[*]} --proc /proc --dev /dev --tmpfs /tmp --chdir / /bin/sh -c true"
}

# config NAME VERSION [EXTRA-JSON]: $work/NAME.json running `true`, EXTRA merged at the top level.
config() {
  python3 - "$work/$1.json" "$2" "${3:-{\}}" <<'PY'
import json, sys
c = {"version": sys.argv[2], "process": {"commandLine": "true"}}
c.update(json.loads(sys.argv[3]))
json.dump(c, open(sys.argv[1], "w"))
PY
}

# N files (the sandbox identity can reach them) under $work/paths, as a JSON list.
paths_json() {
  mkdir -p "$work/paths"
  python3 - "$work/paths" "$1" <<'PY'
import json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
out = []
for i in range(n):
    p = os.path.join(d, "f%d" % i)
    if not os.path.exists(p):
        open(p, "w").close()
    out.append(p)
print(json.dumps(out))
PY
}

# One egress allow rule to a test-range address that nothing sends to.
one_rule='{"network": {"egress": {"default": "deny", "allow": [{"to": [{"cidr": "198.18.250.2/32"}], "ports": [{"protocol": "tcp", "port": 9000}]}]}}}'

# rules N: N allow rules, each to its own /24 of the test range.
rules_json() {
  python3 - "$1" <<'PY'
import json, sys
n = int(sys.argv[1])
rules = [{"to": [{"cidr": "198.%d.%d.0/24" % (18 + i // 256, i % 256)}], "ports": [{"protocol": "tcp", "port": 1000 + i % 60000}]} for i in range(n)]
print(json.dumps({"network": {"egress": {"default": "deny", "allow": rules}}}) if n else "{}")
PY
}

# network_bundle DIR: a busybox bundle whose annotation carries $one_rule, and $work/node.toml,
# a node config whose ceiling allows it and whose audit log is $work/runtime-audit.jsonl.
network_bundle() {
  local policy
  busybox_bundle "$1"
  policy=$(python3 -c "import json,sys; c=json.loads(sys.argv[1]); c['version']='0.8.0-alpha'; print(json.dumps(json.dumps(c)))" "$one_rule")
  python3 - "$1/config.json" "$policy" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.setdefault("annotations", {})["io.mxc.config"] = json.loads(sys.argv[2])
json.dump(c, open(sys.argv[1], "w"))
PY
  printf 'audit_log = "%s"\n[ceiling]\negress = ["198.18.0.0/15"]\n' "$work/runtime-audit.jsonl" > "$work/node.toml"
}

bench_table() {
  local lxc bw rows="$work/rows.tsv"
  lxc=$(mxc_lxc_exec)
  bw=$(bwrap_baseline)
  chmod 0755 "$work"
  : > "$rows"
  row() { printf '%s\t%s\t%s\t%s\n' "$@" >> "$rows"; }

  # A trivial config: mxc run, MXC's lxc-exec (the same config at 1.0.0), bare bwrap.
  config true 0.8.0-alpha; config true1 1.0.0
  measure trivial "mxc run $work/true.json" "$lxc --config $work/true1.json" "$bw"
  local mxc_t lxc_t bw_t
  mxc_t=$(ms trivial 0); lxc_t=$(ms trivial 1); bw_t=$(ms trivial 2)
  row "mxc run, trivial config (ms)" "$mxc_t" "MXC lxc-exec $lxc_t" "$(ratio "$mxc_t" "$lxc_t")"
  row "same" "$mxc_t" "bare bwrap $bw_t" "$(ratio "$mxc_t" "$bw_t")"

  # mxc-runtime run of a busybox bundle vs crun and runc.
  local bundle="$work/bundle"
  busybox_bundle "$bundle"
  local cmds=() r
  for r in mxc-runtime crun runc; do
    mkdir -p "$work/root-$r"
    cmds+=("$r --root $work/root-$r run --bundle $bundle bench")
  done
  measure runtime "${cmds[@]}"
  local rt crun runc
  rt=$(ms runtime 0); crun=$(ms runtime 1); runc=$(ms runtime 2)
  row "mxc-runtime run, busybox bundle (ms)" "$rt" "crun $crun" "$(ratio "$rt" "$crun")"
  row "same" "$rt" "runc $runc" "$(ratio "$rt" "$runc")"

  # Network set-up: one allow rule vs none, both sides.
  config net0 0.8.0-alpha; config net1 0.8.0-alpha "$one_rule"
  config lnet0 1.0.0; config lnet1 1.0.0 "$one_rule"
  measure net "mxc run $work/net0.json" "mxc run $work/net1.json" \
    "$lxc --config $work/lnet0.json" "$lxc --config $work/lnet1.json"
  local net_mxc net_lxc
  net_mxc=$(sub "$(ms net 1)" "$(ms net 0)"); net_lxc=$(sub "$(ms net 3)" "$(ms net 2)")
  row "network set-up, one allow rule vs none (added ms)" "$net_mxc" "MXC lxc-exec $net_lxc" "$(ratio "$net_mxc" "$net_lxc")"

  # Per deniedPaths and readonlyPaths entry: 100 entries vs none.
  local list
  list=$(paths_json 100)
  config d100 0.8.0-alpha "{\"filesystem\": {\"deniedPaths\": $list}}"
  config ld100 1.0.0 "{\"filesystem\": {\"deniedPaths\": $list}}"
  config r100 0.8.0-alpha "{\"filesystem\": {\"readonlyPaths\": $list}}"
  config lr100 1.0.0 "{\"filesystem\": {\"readonlyPaths\": $list}}"
  measure entries "mxc run $work/true.json" "mxc run $work/d100.json" "mxc run $work/r100.json" \
    "$lxc --config $work/true1.json" "$lxc --config $work/ld100.json" "$lxc --config $work/lr100.json"
  local d_mxc d_lxc r_mxc r_lxc
  d_mxc=$(per "$(ms entries 1)" "$(ms entries 0)" 100); r_mxc=$(per "$(ms entries 2)" "$(ms entries 0)" 100)
  d_lxc=$(per "$(ms entries 4)" "$(ms entries 3)" 100); r_lxc=$(per "$(ms entries 5)" "$(ms entries 3)" 100)
  row "per deniedPaths entry, at 100 (ms)" "$d_mxc" "MXC lxc-exec $d_lxc" "$(ratio "$d_mxc" "$d_lxc")"
  row "per readonlyPaths entry, at 100 (ms)" "$r_mxc" "MXC lxc-exec $r_lxc" "$(ratio "$r_mxc" "$r_lxc")"

  # The audit listener: mxc run --audit-log with an egress rule vs the same without the log.
  measure audit "mxc run $work/net1.json" "mxc run --audit-log $work/audit.jsonl $work/net1.json"
  local audit_mxc
  audit_mxc=$(sub "$(ms audit 1)" "$(ms audit 0)")
  row "mxc run --audit-log, one egress rule (added ms)" "$audit_mxc" "" ""

  # mxc-runtime with a network policy (rules, the userspace stack and the per-container denial
  # listener, auditing to the node's log) vs the same bundle without one.
  local nbundle="$work/netbundle"
  network_bundle "$nbundle"
  mkdir -p "$work/root-net"
  measure rtnet "mxc-runtime --config $work/node.toml --root $work/root-net run --bundle $bundle bench" \
    "mxc-runtime --config $work/node.toml --root $work/root-net run --bundle $nbundle bench"
  local rtnet
  rtnet=$(sub "$(ms rtnet 1)" "$(ms rtnet 0)")
  row "mxc-runtime run with a network policy and the audit log (added ms)" "$rtnet" "" ""

  if [ "${BENCH_SHIM:-1}" != 0 ]; then
    local out shim runc2
    out=$(BENCH_CONTAINERS=1 BENCH_RUNS="$runs" ./conformance/bench/shim.sh 2>/dev/null | grep -A4 '^ctr run')
    shim=$(echo "$out" | awk '$1 == "mxc" && $3 == "ms" {print $2}'); runc2=$(echo "$out" | awk '$1 == "runc" {print $2}')
    row "shim, ctr run --rm busybox true (ms)" "$shim" "runc v2 shim $runc2" "$(ratio "$shim" "$runc2")"
    row "shim with a network policy and the audit log (added ms)" \
      "$(echo "$out" | sed -n 's/.*network policy.*(added \(-\?[0-9.]*\) ms).*/\1/p')" "" ""
  fi

  echo "start times, medians of $runs runs, each group interleaved in one hyperfine run"
  echo "(load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  python3 - "$rows" <<'PY'
import sys
print("| measure | mxc-oci | anchor | ratio |")
print("|---|---|---|---|")
for line in open(sys.argv[1]):
    print("| " + " | ".join(line.rstrip("\n").split("\t")) + " |")
PY
}

bench_scaling() {
  local lxc n kind
  lxc=$(mxc_lxc_exec)
  chmod 0755 "$work"
  echo "scaling: median start time in ms ($runs runs each, mxc run and MXC's lxc-exec interleaved)"
  for kind in readonlyPaths deniedPaths; do
    local cmds=() sizes=(0 10 100 1000)
    for n in "${sizes[@]}"; do
      local list
      list=$(paths_json "$n")
      config "s-$kind-$n" 0.8.0-alpha "{\"filesystem\": {\"$kind\": $list}}"
      config "ls-$kind-$n" 1.0.0 "{\"filesystem\": {\"$kind\": $list}}"
      cmds+=("mxc run $work/s-$kind-$n.json" "$lxc --config $work/ls-$kind-$n.json")
    done
    measure "scale-$kind" "${cmds[@]}"
    local i=0
    for n in "${sizes[@]}"; do
      printf '  %-14s %5d entries: mxc run %8s   lxc-exec %8s   ratio %s\n' "$kind" "$n" \
        "$(ms "scale-$kind" $i)" "$(ms "scale-$kind" $((i + 1)))" "$(ratio "$(ms "scale-$kind" $i)" "$(ms "scale-$kind" $((i + 1)))")"
      i=$((i + 2))
    done
  done
  local cmds=()
  for n in 0 50 500; do
    local rules
    rules=$(rules_json "$n")
    config "s-rules-$n" 0.8.0-alpha "$rules"; config "ls-rules-$n" 1.0.0 "$rules"
    cmds+=("mxc run $work/s-rules-$n.json" "$lxc --config $work/ls-rules-$n.json")
  done
  measure scale-rules "${cmds[@]}"
  local i=0
  for n in 0 50 500; do
    printf '  %-14s %5d rules:   mxc run %8s   lxc-exec %8s   ratio %s\n' "egress" "$n" \
      "$(ms scale-rules $i)" "$(ms scale-rules $((i + 1)))" "$(ratio "$(ms scale-rules $i)" "$(ms scale-rules $((i + 1)))")"
    i=$((i + 2))
  done
}

# What the host holds that a run could leak: mounts, cgroup directories, network namespaces,
# processes, and this shell's open descriptors; first what the runs could have left by name
# (other work on a shared machine changes the host-wide counts that follow).
host_snapshot() {
  echo "mounts of the runs $(grep -c -e /run/mxc -e soak /proc/self/mountinfo)"
  echo "cgroups of the runs $(find /sys/fs/cgroup -mindepth 2 -type d \( -name 'mxc-*' -o -name 'soak*' \) 2>/dev/null | wc -l)"
  echo "processes of the runs $(pgrep -c -f 'slirp4netns|mxc-runtime|(^|/)mxc ' || true)"
  echo "fds $(ls /proc/$$/fd | wc -l)"
  echo "mounts $(wc -l < /proc/self/mountinfo)"
  echo "cgroups $(find /sys/fs/cgroup -mindepth 1 -type d 2>/dev/null | wc -l)"
  echo "netns $(ip netns list | wc -l) $(find /proc/[0-9]*/ns/net -maxdepth 0 -printf '%l\n' 2>/dev/null | sort -u | wc -l)"
  echo "processes $(ls -d /proc/[0-9]* | wc -l)"
}

bench_soak() {
  local n="${BENCH_SOAK:-1000}" bundle="$work/bundle" nbundle="$work/netbundle"
  config true 0.8.0-alpha
  config net1 0.8.0-alpha "$one_rule"
  busybox_bundle "$bundle"
  network_bundle "$nbundle"
  mkdir -p "$work/root-soak"
  host_snapshot > "$work/before.txt"
  python3 - "$n" "$work" "$bundle" "$nbundle" "$work/root-soak" <<'PY'
import statistics, subprocess, sys, time
n, work, bundle, nbundle, root = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
def timed(args):
    t = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]
def bundle_cycle(bundle, node=()):
    runtime = ["mxc-runtime", *node, "--root", root]
    return lambda i: sum(timed(a) for a in (
        runtime + ["create", "--bundle", bundle, "soak%d" % i],
        runtime + ["start", "soak%d" % i],
        ["sh", "-c", "while %s state soak%d 2>/dev/null | grep -q running; do :; done" % (" ".join(runtime), i)],
        runtime + ["delete", "soak%d" % i]))
for name, cycle in [
    ("mxc run", lambda i: timed(["mxc", "run", work + "/true.json"])),
    ("mxc run, one egress rule", lambda i: timed(["mxc", "run", work + "/net1.json"])),
    ("mxc-runtime create/start/delete", bundle_cycle(bundle)),
    ("mxc-runtime create/start/delete, network policy and audit log",
     bundle_cycle(nbundle, ("--config", work + "/node.toml")))]:
    times = [cycle(i) for i in range(n)]
    first, last = times[:100], times[-100:]
    print("soak: %s, %d cycles: first hundred p50 %.1f p99 %.1f ms; last hundred p50 %.1f p99 %.1f ms"
          % (name, n, pct(first, .5), pct(first, .99), pct(last, .5), pct(last, .99)))
PY
  # A killed userspace stack is reaped after its run reports (the kernel tears its tap device
  # down for tens of milliseconds): wait for that, and say how long it took.
  local waited=0
  host_snapshot > "$work/after.txt"
  while ! diff <(head -4 "$work/before.txt") <(head -4 "$work/after.txt") >/dev/null && [ "$waited" -lt 150 ]; do
    sleep 0.1; waited=$((waited + 1)); host_snapshot > "$work/after.txt"
  done
  if diff <(head -4 "$work/before.txt") <(head -4 "$work/after.txt") >/dev/null; then
    echo "soak: nothing left by the runs (settled $((waited / 10)).$((waited % 10)) s after the last): $(head -4 "$work/after.txt" | paste -sd, -)"
  else
    echo "soak: the runs left something 15 s after the last (before / after):"
    diff <(head -4 "$work/before.txt") <(head -4 "$work/after.txt") || true
  fi
  echo "soak: host-wide, before: $(tail -n +5 "$work/before.txt" | paste -sd, -)"
  echo "soak: host-wide, after:  $(tail -n +5 "$work/after.txt" | paste -sd, -)"
}

# Where one start's time goes: each phase's span (MXC_SPANS), median over $runs runs.
bench_phases() {
  local bundle="$work/bundle"
  config true 0.8.0-alpha
  busybox_bundle "$bundle"
  mkdir -p "$work/root-phases"
  local i
  for i in $(seq "$runs"); do
    MXC_SPANS="$work/oneshot.spans" mxc run "$work/true.json"
    MXC_SPANS="$work/runtime.spans" mxc-runtime --root "$work/root-phases" run --bundle "$bundle" phases >/dev/null
  done
  python3 - "$work/oneshot.spans" "$work/runtime.spans" "$runs" <<'PY'
import collections, json, statistics, sys
runs = int(sys.argv[3])
for title, path in (("mxc run (trivial config)", sys.argv[1]), ("mxc-runtime run (busybox bundle)", sys.argv[2])):
    spans, starts = collections.defaultdict(list), collections.defaultdict(list)
    for line in open(path):
        r = json.loads(line)
        spans[r["path"]].append(r["ms"])
        starts[r["path"]].append(r["at"])
    print("%s: median ms over %d runs, in the order they start (indented: part of the line above;"
          " 'at': when it starts, from the process's first span)" % (title, runs))
    for name in sorted(spans, key=lambda p: (statistics.median(starts[p]), p.count("/"))):
        times = spans[name]
        depth = name.count("/")
        per_run = len(times) / runs
        note = "" if per_run == 1 else "  (x%g per run)" % per_run
        print("  %-52s %8.2f   at %7.2f%s" % ("  " * depth + name.rsplit("/", 1)[-1],
              statistics.median(times), statistics.median(starts[name]), note))
PY
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
  local bwrap
  bwrap=$(bwrap_baseline)
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
  table) bench_table ;;
  scaling) bench_scaling ;;
  soak) bench_soak ;;
  phases) bench_phases ;;
  runtime) bench_runtime ;;
  oneshot) bench_oneshot ;;
  network) bench_network ;;
  egress) bench_egress ;;
  sdk) bench_sdk ;;
  all) bench_runtime; bench_oneshot; bench_network; bench_egress; bench_sdk ;;
  *) echo "usage: $0 [table|scaling|soak|phases|runtime|oneshot|network|egress|sdk|all]" >&2; exit 2 ;;
esac

//! The shim against containerd's runc v2 shim, side by side in one run on one private
//! containerd and the same busybox image:
//!
//! - the median wall time of `ctr run --rm ... true` (runs alternate between the two
//!   runtimes, so that drift on a shared machine hits both alike), and of the mxc shim with a
//!   network policy (one allow rule) and the node's audit log;
//! - the resident memory (RSS and PSS) of the shim processes per running idle container, with
//!   one container and with 50 at once (each container has its own shim, as with `ctr`).
//!
//! Prints the medians, the memory and the ratios mxc/runc. Run it with
//! `conformance/bench/shim.sh` (or `cargo bench -p mxc-conformance --bench shim`), after a
//! release build of the workspace's binaries. `BENCH_RUNS` (default 30) and
//! `BENCH_CONTAINERS` (default 50) change the sizes.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mxc_conformance::command::poll;
use mxc_conformance::containerd::{Containerd, MXC_RUNTIME_TYPE, RUNC_RUNTIME_TYPE};
use mxc_conformance::images::BUSYBOX_REF;
use mxc_conformance::node::{Node, TEST_NETWORK_CEILING};
use mxc_conformance::processes::{self, ProcessInfo};

#[derive(Clone, Copy, PartialEq)]
enum Runtime {
    Mxc,
    Runc,
}

impl Runtime {
    fn name(self) -> &'static str {
        match self {
            Runtime::Mxc => "mxc",
            Runtime::Runc => "runc",
        }
    }

    fn runtime_type(self) -> &'static str {
        match self {
            Runtime::Mxc => MXC_RUNTIME_TYPE,
            Runtime::Runc => RUNC_RUNTIME_TYPE,
        }
    }

    /// The shim binary's file name, which starts every shim process's command line (the
    /// mxc shim's zygote included).
    fn binary(self) -> &'static str {
        match self {
            Runtime::Mxc => "containerd-shim-mxc-v1",
            Runtime::Runc => "containerd-shim-runc-v2",
        }
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let runs = env_number("BENCH_RUNS", 30);
    let many = env_number("BENCH_CONTAINERS", 50);
    let containerd = Containerd::start()?;
    let runc_root = containerd.runc_root().to_string_lossy().into_owned();
    let ctr_run = |runtime: Runtime, extra: &[&str], id: &str, command: &[&str]| {
        let mut args = vec!["run", "--runtime", runtime.runtime_type()];
        if runtime == Runtime::Runc {
            args.extend(["--runc-root", runc_root.as_str()]);
        }
        args.extend(extra);
        args.extend([BUSYBOX_REF, id]);
        args.extend(command);
        containerd.ctr(&args)
    };

    // Start-to-exit time; and the mxc shim again with a network policy (one allow rule, the
    // userspace stack, the per-container denial listener writing to the node's audit log).
    let node = Node::with(TEST_NETWORK_CEILING)?;
    let node_config = node.config().display().to_string();
    let policy = format!(
        "io.mxc.config={}",
        serde_json::json!({
            "version": "0.8.0-alpha",
            "network": {"egress": {"default": "deny", "allow": [
                {"to": [{"cidr": "198.18.250.2/32"}], "ports": [{"protocol": "tcp", "port": 9000}]}
            ]}}
        })
    );
    let with_policy: [&str; 5] = [
        "--rm",
        "--runtime-config-path",
        &node_config,
        "--annotation",
        &policy,
    ];
    let mut times: Vec<(Runtime, &[&str], Vec<f64>)> = vec![
        (Runtime::Mxc, &["--rm"], Vec::new()),
        (Runtime::Runc, &["--rm"], Vec::new()),
        (Runtime::Mxc, &with_policy, Vec::new()),
    ];
    for round in 0..runs + 3 {
        for (n, (runtime, extra, samples)) in times.iter_mut().enumerate() {
            let id = format!("bench-{}-{n}-{round}", runtime.name());
            let started = Instant::now();
            let out = ctr_run(*runtime, extra, &id, &["true"])?;
            let elapsed = started.elapsed();
            if !out.success() {
                bail!("{out}");
            }
            if round >= 3 {
                samples.push(elapsed.as_secs_f64() * 1000.0);
            }
        }
    }
    let median = |samples: &mut Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    let mxc_time = median(&mut times[0].2);
    let runc_time = median(&mut times[1].2);
    let policy_time = median(&mut times[2].2);
    println!("ctr run --rm busybox true, median of {runs} runs each:");
    println!("  mxc  {mxc_time:8.1} ms");
    println!("  runc {runc_time:8.1} ms");
    println!("  ratio mxc/runc {:.2}", mxc_time / runc_time);
    println!(
        "  mxc with a network policy and the audit log {policy_time:8.1} ms (added {:.1} ms)",
        policy_time - mxc_time
    );
    // The policy was applied, not ignored.
    node.record(&format!("bench-mxc-2-{}", runs + 2), "policy.applied")?;

    // Memory of idle containers' shims.
    for count in [1, many] {
        let mut results = Vec::new();
        for runtime in [Runtime::Mxc, Runtime::Runc] {
            let ids: Vec<String> = (0..count)
                .map(|n| format!("idle-{}-{count}-{n}", runtime.name()))
                .collect();
            for id in &ids {
                ctr_run(runtime, &["-d"], id, &["sleep", "3600"])?.ok()?;
            }
            wait_running(&containerd, &ids)?;
            // Let the shims settle (threads parked, lazy pages touched) before measuring.
            std::thread::sleep(Duration::from_secs(2));
            let memory = shim_memory(&containerd, runtime);
            for id in &ids {
                let _ = containerd.ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", id]);
            }
            for id in &ids {
                poll(Duration::from_secs(60), || {
                    let out = containerd.ctr(&["tasks", "delete", id])?;
                    Ok((out.success() || out.stderr.contains("not found")).then_some(()))
                })?;
                containerd.ctr(&["containers", "delete", id])?.ok()?;
            }
            let (rss, pss, processes) = memory?;
            results.push((
                runtime,
                rss as f64 / count as f64,
                pss as f64 / count as f64,
            ));
            println!(
                "{count} idle container(s), {}: {processes} shim process(es), per container RSS {:.0} KiB, PSS {:.0} KiB",
                runtime.name(),
                rss as f64 / count as f64,
                pss as f64 / count as f64
            );
        }
        let (_, mxc_rss, mxc_pss) = results[0];
        let (_, runc_rss, runc_pss) = results[1];
        println!(
            "  ratio mxc/runc with {count}: RSS {:.2}, PSS {:.2}",
            mxc_rss / runc_rss,
            mxc_pss / runc_pss
        );
    }
    Ok(())
}

fn wait_running(containerd: &Containerd, ids: &[String]) -> Result<()> {
    poll(Duration::from_secs(120), || {
        let out = containerd.ctr(&["tasks", "ls"])?.ok()?;
        let running = out
            .stdout
            .lines()
            .filter(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() >= 3 && fields[2] == "RUNNING" && ids.iter().any(|id| id == fields[0])
            })
            .count();
        Ok((running == ids.len()).then_some(()))
    })
    .context("waiting for the idle containers")
}

/// Total RSS and PSS (KiB) of every process of `runtime`'s shims, and how many there are.
fn shim_memory(containerd: &Containerd, runtime: Runtime) -> Result<(u64, u64, usize)> {
    let address = containerd.address().to_string_lossy().into_owned();
    let shims: Vec<ProcessInfo> = processes::with_argument(&address, &processes::list())
        .into_iter()
        .filter(|p| {
            !p.is_zombie()
                && p.cmdline
                    .first()
                    .is_some_and(|argv0| argv0.ends_with(runtime.binary()))
        })
        .collect();
    if shims.is_empty() {
        bail!("no {} shim processes found", runtime.name());
    }
    let mut rss = 0;
    let mut pss = 0;
    for shim in &shims {
        let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", shim.pid))
            .with_context(|| format!("reading smaps_rollup of {}", shim.pid))?;
        rss += field_kib(&rollup, "Rss:");
        pss += field_kib(&rollup, "Pss:");
    }
    Ok((rss, pss, shims.len()))
}

fn field_kib(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

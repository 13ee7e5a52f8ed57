//! The OCI runtime conformance suite of runtime-tools (its `validation/` programs, built by
//! `conformance/ocivalidation/setup.sh` from Debian's packages) against runc and `mxc-runtime`
//! side by side. `mxc-runtime` runs under a node configuration whose `[ceiling]` allows what an
//! ordinary OCI spec asks for (the README's "OCI conformance" ceiling). Every program that
//! passes under runc must pass under `mxc-runtime`, except the refusals listed in [`REFUSED`],
//! which must fail for exactly the reason given there.
//!
//! Every program of the suite runs: none is left out (the programs that fail under runc on
//! these hosts take a few seconds and show where `mxc-runtime` already goes further). Each
//! program runs under runc, then under `mxc-runtime`, in one of two lanes that run side by side:
//! the `linux_cgroups_*` programs, which use fixed cgroup paths, one after another in the first
//! with the slowest lifecycle programs (mostly waiting), all others in the second.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mxc_conformance::bins;
use mxc_conformance::command::{run, Output};
use mxc_conformance::containerd::unmount_all_under;
use mxc_conformance::leaks::{self, LeakCheck};
use mxc_conformance::scratch_dir;

/// One program's limit; the slowest take about 15 s.
const PROGRAM_LIMIT: Duration = Duration::from_secs(120);

/// Programs that pass under runc and that `mxc-runtime` refuses on purpose, with the words its
/// refusal must contain. The ceiling cannot lift these.
const REFUSED: &[(&str, &str)] = &[(
    // The container lists no namespace at all and shares every one of the runtime's: the
    // policy's network rules must live in a network namespace of the container's own, and a
    // container in the host's namespaces would get them installed on the host, or none.
    "linux_ns_itype",
    "the policy requires a private network namespace, but the container shares the host's",
)];

/// The node configuration `mxc-runtime` runs the suite under: the ceiling the README gives for
/// ordinary OCI specs.
const NODE_CEILING: &str = r#"
[ceiling]
capabilities = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"]
new_privileges = true
egress = ["0.0.0.0/0", "::/0"]
"#;

/// Programs that take about 10 s under each runtime, mostly waiting for a state: they go in the
/// lane of the cgroup programs, which is otherwise short.
const SLOW: &[&str] = &["delete", "kill", "pidfile"];

/// The relative cgroup path the suite gives (`testdir/cgrouptest/container`) leaves its two
/// parents behind under runc and `mxc-runtime` alike: both remove the container's own cgroup
/// only, as runc always has. They are removed here when empty; one that is not (a container's
/// cgroup still below it) stays and is reported as a leak.
fn remove_suite_cgroup_parents() {
    for dir in leaks::cgroups_named("cgrouptest") {
        let Some(parent) = dir.parent().filter(|p| p.ends_with("testdir")) else {
            // `/cgrouptest`, the absolute path, is a container's own cgroup: never removed here.
            continue;
        };
        if std::fs::remove_dir(&dir).is_ok() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Where the built suite is: `MXC_OCIVALIDATION_DIR` if set (test.sh sets it), else
/// `<target>/ocivalidation`; the programs are in its `bin/`.
fn suite_dir() -> PathBuf {
    let dir = match std::env::var_os("MXC_OCIVALIDATION_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => bins::bin_dir()
            .parent()
            .map(|target| target.join("ocivalidation"))
            .unwrap_or_else(|| PathBuf::from("target/ocivalidation")),
    };
    dir.join("bin")
}

/// The validation programs (`NAME.t`) in `dir`, by name.
fn programs(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "runtime-tools' validation suite is not built in {}: run ./conformance/setup.sh \
             (conformance/ocivalidation/setup.sh builds it from Debian's packages)",
            dir.display()
        )
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".t"))
                .map(String::from)
        })
        .collect();
    names.sort();
    for needed in ["runtimetest", "rootfs-amd64.tar.gz"] {
        ensure!(
            dir.join(needed).exists(),
            "{needed} is missing from {}: run ./conformance/setup.sh",
            dir.display()
        );
    }
    Ok(names)
}

/// What one program reported.
#[derive(Debug)]
struct Outcome {
    passed: bool,
    output: Output,
}

/// A program passes when it exits 0 and reports no failed test (a test marked TODO is not one),
/// having reported at least one test or, as the programs that check a refusal do, nothing at
/// all. A program that prints a TAP stream with no test in it stopped before testing.
fn passed(output: &Output) -> bool {
    let tests: Vec<&str> = output
        .stdout
        .lines()
        .filter(|l| l.starts_with("ok ") || l.starts_with("not ok "))
        .collect();
    let failed = tests
        .iter()
        .any(|l| l.starts_with("not ok ") && !l.contains("# TODO"));
    output.success() && !failed && (!tests.is_empty() || output.stdout.trim().is_empty())
}

/// A runtime as the suite calls it: one executable (`RUNTIME`), here a script that adds the
/// runtime's own state root and, for `mxc-runtime`, the node configuration.
struct SuiteRuntime {
    name: &'static str,
    script: PathBuf,
    root: PathBuf,
}

impl SuiteRuntime {
    fn new(
        scratch: &Path,
        name: &'static str,
        binary: &Path,
        global: &[&Path],
    ) -> Result<SuiteRuntime> {
        let root = scratch.join(format!("{name}-root"));
        std::fs::create_dir_all(&root)?;
        let script = scratch.join(format!("{name}.sh"));
        let words: Vec<String> = [binary, Path::new("--root"), &root]
            .iter()
            .chain(global)
            .map(|word| format!("'{}'", word.display()))
            .collect();
        std::fs::write(
            &script,
            format!("#!/bin/sh\nexec {} \"$@\"\n", words.join(" ")),
        )?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
        Ok(SuiteRuntime { name, script, root })
    }

    fn run(&self, dir: &Path, tmp: &Path, program: &str) -> Result<Outcome> {
        let tmp = tmp.join(format!("{}-{program}", self.name));
        std::fs::create_dir_all(&tmp)?;
        let mut cmd = Command::new(dir.join(format!("{program}.t")));
        cmd.current_dir(dir)
            .env("RUNTIME", &self.script)
            // The programs unpack their bundles with os.MkdirTemp and leave some behind.
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null());
        let output = run(&mut cmd, PROGRAM_LIMIT)?;
        Ok(Outcome {
            passed: passed(&output),
            output,
        })
    }
}

#[test]
fn what_passes_under_runc_passes_under_mxc_runtime() -> Result<()> {
    let dir = suite_dir();
    let programs = programs(&dir)?;
    ensure!(
        programs.len() >= 50,
        "only {} validation programs in {}: the build is incomplete; run ./conformance/setup.sh",
        programs.len(),
        dir.display()
    );

    let scratch = scratch_dir("mxc-ocival")?;
    let node = scratch.path().join("node.toml");
    let policies = scratch.path().join("policies");
    std::fs::create_dir_all(&policies)?;
    std::fs::write(
        &node,
        format!(
            "policy_dir = {:?}\naudit_log = {:?}\n{NODE_CEILING}",
            policies,
            scratch.path().join("audit.jsonl")
        ),
    )?;
    let runc_bin = bins::runc();
    let mxc_bin = bins::mxc_runtime()?;
    let runc = SuiteRuntime::new(scratch.path(), "runc", &runc_bin, &[])?;
    let mxc = SuiteRuntime::new(
        scratch.path(),
        "mxc-runtime",
        &mxc_bin,
        &[Path::new("--config"), &node],
    )?;
    let tmp = scratch.path().join("tmp");

    let mut leaks = LeakCheck::snapshot();
    leaks
        .watch_dir(scratch.path())
        .runtime_root(&runc.root)
        .runtime_root(&mxc.root)
        .container("cgrouptest");

    let (cgroups, others): (Vec<&String>, Vec<&String>) = programs
        .iter()
        .partition(|name| name.starts_with("linux_cgroups_") || SLOW.contains(&name.as_str()));
    // Some programs race the container they test (killsig signals the shell before it may have
    // set its trap, and a lost signal fails it under runc too on a loaded machine): a program
    // that passed under runc and failed under mxc-runtime gets up to two more runs there.
    let lane = |names: Vec<&String>| -> Result<Vec<(String, Outcome, Outcome)>> {
        names
            .into_iter()
            .map(|name| {
                let under_runc = runc.run(&dir, &tmp, name)?;
                let mut under_mxc = mxc.run(&dir, &tmp, name)?;
                for _ in 0..2 {
                    let refused = REFUSED.iter().any(|(program, _)| program == name);
                    if under_mxc.passed || !under_runc.passed || refused {
                        break;
                    }
                    eprintln!(
                        "{name}: failed under mxc-runtime, running it again:\n{}",
                        under_mxc.output
                    );
                    under_mxc = mxc.run(&dir, &tmp, name)?;
                }
                Ok((name.clone(), under_runc, under_mxc))
            })
            .collect()
    };
    let results: BTreeMap<String, (Outcome, Outcome)> = std::thread::scope(|s| {
        let cgroup_lane = s.spawn(|| lane(cgroups));
        let rest = lane(others);
        let cgroup_lane = cgroup_lane.join().expect("the cgroup lane panicked");
        Ok::<_, anyhow::Error>(
            rest?
                .into_iter()
                .chain(cgroup_lane?)
                .map(|(name, a, b)| (name, (a, b)))
                .collect(),
        )
    })?;

    remove_suite_cgroup_parents();
    // runc runs the container of a spec that lists no namespace (`linux_ns_itype`) in the
    // host's mount namespace and leaves its mounts (the bundle's `/proc`, `/dev`, `/sys`) there,
    // below that program's temporary directory; `mxc-runtime` refuses that spec. Any other mount
    // left below the scratch directory is a leak.
    for (program, _) in REFUSED {
        unmount_all_under(&tmp.join(format!("{}-{program}", runc.name)));
    }
    let clean = leaks.assert_clean();

    let word = |passed: bool| if passed { "pass" } else { "fail" };
    let mut table = String::new();
    for (name, (under_runc, under_mxc)) in &results {
        table.push_str(&format!(
            "{name:<34} runc {}  mxc-runtime {}\n",
            word(under_runc.passed),
            word(under_mxc.passed)
        ));
    }
    let count =
        |pick: fn(&(Outcome, Outcome)) -> bool| results.values().filter(|r| pick(r)).count();
    let runc_passed = count(|(r, _)| r.passed);
    let mxc_passed = count(|(_, m)| m.passed);
    println!(
        "{table}{} programs: {runc_passed} pass under runc, {mxc_passed} under mxc-runtime",
        results.len()
    );

    // The suite itself works: runc passes its basic programs.
    for basic in ["default", "create", "state", "mounts", "process"] {
        let (under_runc, _) = &results[basic];
        ensure!(
            under_runc.passed,
            "runc fails the basic program {basic}, so the suite itself is broken here:\n{}",
            under_runc.output
        );
    }

    let mut regressions = Vec::new();
    for (name, (under_runc, under_mxc)) in &results {
        let refusal = REFUSED.iter().find(|(program, _)| program == name);
        match refusal {
            Some((_, reason)) => {
                let said = format!("{}{}", under_mxc.output.stdout, under_mxc.output.stderr);
                if under_mxc.passed || !said.contains(reason) {
                    regressions.push(format!(
                        "{name} is listed as refused ({reason}), but mxc-runtime did otherwise:\n{}",
                        under_mxc.output
                    ));
                }
            }
            None if under_runc.passed && !under_mxc.passed => regressions.push(format!(
                "{name} passes under runc and fails under mxc-runtime:\n{}",
                under_mxc.output
            )),
            None => {}
        }
    }
    ensure!(
        regressions.is_empty(),
        "{}\n\n{table}",
        regressions.join("\n\n")
    );
    clean
}

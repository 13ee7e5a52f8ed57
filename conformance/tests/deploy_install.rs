//! `deploy/install.sh` on this machine: the `mxc` it installs finds every program the runtime
//! runs (`mxc doctor` lists them with their packages, and install.sh installs each package),
//! and runs a config that allows egress (the first config that needs more than the kernel: a
//! userspace network stack).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use mxc_conformance::bins;
use mxc_conformance::command::{run, Output};
use mxc_conformance::engines::ContainerdRelease;
use mxc_conformance::leaks::LeakCheck;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(120);

fn install_script() -> PathBuf {
    mxc_conformance::workspace_root().join("deploy/install.sh")
}

/// The Debian package that owns `path`.
fn package_of(path: &Path) -> Result<String> {
    let owner = |path: &Path| {
        run(
            Command::new("dpkg-query").arg("-S").arg(path),
            Duration::from_secs(30),
        )
    };
    let mut out = owner(path)?;
    if !out.success() {
        // /sbin/x is /usr/sbin/x on a merged-/usr system; dpkg knows one of the two names.
        let other = match path.strip_prefix("/usr") {
            Ok(rest) => Path::new("/").join(rest),
            Err(_) => Path::new("/usr").join(path.strip_prefix("/")?),
        };
        out = owner(&other)?.ok()?;
    }
    Ok(out
        .stdout
        .split(':')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// Where a host program is, as the runtime looks for it.
fn mxc_runtime_path(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

fn install(prefix: &Path) -> Result<Output> {
    let mut cmd = Command::new(install_script());
    cmd.env("MXC_PREFIX", prefix)
        .env("MXC_ETC", prefix.join("etc/mxc"))
        .env("MXC_INSTALL_FROM", bins::bin_dir())
        .env(
            "CONTAINERD_CONFIG",
            prefix.join("etc/containerd/config.toml"),
        )
        .env("CONTAINERD", ContainerdRelease::V1_6.containerd());
    run(&mut cmd, LIMIT)?.ok()
}

#[test]
fn the_installed_mxc_runs_a_config_that_allows_egress() -> Result<()> {
    let dir = mxc_conformance::scratch_dir("install")?;
    let prefix = dir.path();
    let out = install(prefix)?;
    for file in [
        "bin/mxc",
        "bin/mxc-runtime",
        "bin/containerd-shim-mxc-v1",
        "etc/mxc/config.toml",
        "lib/mxc/libmxc_ffi.so",
        if cfg!(target_arch = "aarch64") {
            "lib/mxc/arm64/lxc-exec"
        } else {
            "lib/mxc/x64/lxc-exec"
        },
    ] {
        assert!(prefix.join(file).is_file(), "{file} installed:\n{out}");
    }
    assert!(
        std::fs::read_to_string(prefix.join("etc/containerd/config.toml"))?
            .contains("io.containerd.mxc.v1"),
        "{out}"
    );
    // Again: nothing to change, nothing fails.
    let again = install(prefix)?;
    assert!(again.stdout.contains("kept existing"), "{again}");

    // The installed mxc finds everything it runs, and install.sh installs each of those
    // programs' packages.
    let doctor = run(
        Command::new(prefix.join("bin/mxc")).args(["doctor", "--json"]),
        LIMIT,
    )?;
    assert_eq!(doctor.code(), Some(0), "{doctor}");
    let report: Value = serde_json::from_str(&doctor.stdout)?;
    let packages = run(
        Command::new(install_script()).arg("--print-packages"),
        LIMIT,
    )?
    .ok()?
    .stdout;
    let packages: Vec<&str> = packages.lines().collect();
    let programs = report["host_programs"]
        .as_array()
        .context("host_programs")?;
    assert!(!programs.is_empty(), "{report}");
    for program in programs {
        let name = program["program"].as_str().context("program")?;
        let package = program["package"].as_str().context("package")?;
        let check = report["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|c| c["name"] == name));
        let found = mxc_runtime_path(name).with_context(|| format!("{name} is not installed"))?;
        assert_eq!(package_of(&found)?, package, "{name} ({})", found.display());
        assert!(
            packages.contains(&package),
            "{name} comes from {package}, which install.sh does not install: {packages:?}"
        );
        if let Some(check) = check {
            assert_eq!(check["status"], "ok", "{check}");
        }
    }

    let mut leaks = LeakCheck::snapshot();
    leaks.runtime_root("/run/mxc");
    let config = prefix.join("egress.json");
    std::fs::write(
        &config,
        json!({
            "version": "0.8.0-alpha",
            "process": {"commandLine": "ip -o link show | grep -c tap0; echo egress-config-ran"},
            "network": {"egress": {"default": "allow"}},
        })
        .to_string(),
    )?;
    let out = run(
        Command::new(prefix.join("bin/mxc")).arg("run").arg(&config),
        LIMIT,
    )?;
    assert_eq!(out.code(), Some(0), "{out}");
    // The userspace stack's interface is in the sandbox.
    assert_eq!(out.stdout, "1\negress-config-ran\n", "{out}");
    leaks.assert_clean()?;
    Ok(())
}

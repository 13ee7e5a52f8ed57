//! `deploy/install.sh` on this machine: what it installs is what the binaries run, and the
//! `mxc` it installs runs a config that allows egress (the first config that needs more than
//! the kernel: a userspace network stack).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use mxc_conformance::bins;
use mxc_conformance::command::{run, Output};
use mxc_conformance::leaks::LeakCheck;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(120);

/// Programs the engine executes on the host, whatever the config: network rules, the
/// userspace stack of a sandbox with egress, id mappings of several ranges, `mxc-runtime ps`.
const HOST_PROGRAMS: &[&str] = &["nft", "slirp4netns", "newuidmap", "newgidmap", "ps"];

fn install_script() -> PathBuf {
    mxc_conformance::workspace_root().join("deploy/install.sh")
}

fn which(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// The Debian package that owns `path`.
fn package_of(path: &Path) -> Result<String> {
    let out = run(
        Command::new("dpkg-query").arg("-S").arg(path),
        Duration::from_secs(30),
    )?;
    let out = if out.success() {
        out
    } else {
        // /sbin/x is /usr/sbin/x on a merged-/usr system; dpkg knows one of the two names.
        let other = match path.strip_prefix("/usr") {
            Ok(rest) => Path::new("/").join(rest),
            Err(_) => Path::new("/usr").join(path.strip_prefix("/")?),
        };
        run(
            Command::new("dpkg-query").arg("-S").arg(other),
            Duration::from_secs(30),
        )?
        .ok()?
    };
    let package = out.stdout.split(':').next().unwrap_or_default().trim();
    Ok(package.to_string())
}

#[test]
fn the_packages_it_installs_provide_every_program_the_engine_runs() -> Result<()> {
    let out = run(
        Command::new(install_script()).arg("--print-packages"),
        LIMIT,
    )?
    .ok()?;
    let packages: Vec<&str> = out.stdout.lines().collect();
    for program in HOST_PROGRAMS {
        let path = which(program).with_context(|| format!("{program} is not installed here"))?;
        let package = package_of(&path)?;
        assert!(
            packages.contains(&package.as_str()),
            "{program} ({}) comes from {package}, which install.sh does not install: {packages:?}",
            path.display()
        );
    }
    Ok(())
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
        .env("CONTAINERD", bins::containerd());
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

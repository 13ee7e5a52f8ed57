//! `mxc run` from a test: a scratch tree of grants reachable by the sandbox identity, and one
//! run of a config with a leak check around it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::bins;
use crate::command::{run, Output};
use crate::leaks::LeakCheck;
use crate::unique_name;

/// `mxc run`'s state lives here; nothing may remain below it after a run.
pub const STATE_ROOT: &str = "/run/mxc";
pub const LIMIT: Duration = Duration::from_secs(60);
pub const NOBODY: u32 = 65534;

/// A directory tree for grants, reachable by the sandbox identity.
pub struct Scratch {
    dir: TempDir,
}

impl Scratch {
    pub fn new() -> Result<Scratch> {
        let dir = tempfile::Builder::new().prefix("mxc-oneshot-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        Ok(Scratch { dir })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// A directory owned by the sandbox identity (a writable grant).
    pub fn owned_dir(&self, rel: &str) -> Result<PathBuf> {
        let path = self.path(rel);
        std::fs::create_dir_all(&path)?;
        std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY))?;
        Ok(path)
    }

    /// A root-owned directory, world-readable (a read-only grant).
    pub fn root_dir(&self, rel: &str) -> Result<PathBuf> {
        let path = self.path(rel);
        std::fs::create_dir_all(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(path)
    }

    pub fn file(&self, rel: &str, content: &str, mode: u32) -> Result<PathBuf> {
        let path = self.path(rel);
        std::fs::write(&path, content)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(path)
    }
}

/// One `mxc run` of `config` (written to a file), with a leak check around it.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> &str {
        &self.output.stdout
    }
    pub fn stderr(&self) -> &str {
        &self.output.stderr
    }
    pub fn code(&self) -> Option<i32> {
        self.output.code()
    }
}

pub fn mxc_run(config: Value, extra: &[&str]) -> Result<Run> {
    let (id, file) = config_file(config)?;
    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id).watch_dir(STATE_ROOT);
    let output = run_file(file.path(), extra)?;
    leaks.assert_clean()?;
    ensure!(
        !Path::new(STATE_ROOT).join("bundles").join(&id).exists(),
        "bundle of {id} left behind"
    );
    ensure!(
        !Path::new(STATE_ROOT).join("state/:mxc").join(&id).exists()
            && !Path::new(STATE_ROOT).join("state").join(&id).exists(),
        "state of {id} left behind"
    );
    Ok(Run { output })
}

/// One `mxc run` of `config`, without a leak check of its own: for scenarios that run several
/// at once under one check.
pub fn mxc_run_within(config: Value, extra: &[&str]) -> Result<Run> {
    let (_, file) = config_file(config)?;
    Ok(Run {
        output: run_file(file.path(), extra)?,
    })
}

/// The config with a `containerId` of its own, written to a temporary file.
pub fn config_file(mut config: Value) -> Result<(String, tempfile::NamedTempFile)> {
    if config.get("containerId").is_none() {
        config["containerId"] = json!(unique_name("oneshot"));
    }
    let id = config["containerId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::fs::write(file.path(), serde_json::to_vec_pretty(&config)?)?;
    Ok((id, file))
}

fn run_file(file: &Path, extra: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(bins::mxc()?);
    cmd.arg("run").args(extra).arg(file);
    run(&mut cmd, LIMIT)
}

/// `mxc run FILE` in the background, once its command has printed `up`. The second value keeps
/// the command's stdout open.
pub fn start_until_up(file: &Path) -> Result<(std::process::Child, std::process::ChildStdout)> {
    let mut child = Command::new(bins::mxc()?)
        .arg("run")
        .arg(file)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut first = [0u8; 3];
    std::io::Read::read_exact(&mut stdout, &mut first)?;
    ensure!(&first == b"up\n", "mxc run printed {first:?}");
    Ok((child, stdout))
}

pub fn shell(command: &str) -> Value {
    json!({"version": "0.8.0-alpha", "process": {"commandLine": command}})
}

pub fn shell_with_fs(command: &str, filesystem: Value) -> Value {
    json!({"version": "0.8.0-alpha", "process": {"commandLine": command}, "filesystem": filesystem})
}

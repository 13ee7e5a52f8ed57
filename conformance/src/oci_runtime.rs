//! A runc-compatible runtime binary (`runc`, `crun`, `mxc-runtime`) with a state root of its
//! own, so that tests running side by side never see each other's containers.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use tempfile::TempDir;

use crate::bins;
use crate::command::{run, Output};

/// How long one runtime command may take before the test fails.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// A runtime binary and its private `--root`.
#[derive(Debug)]
pub struct OciRuntime {
    binary: PathBuf,
    root: TempDir,
}

impl OciRuntime {
    pub fn new(binary: impl Into<PathBuf>) -> Result<OciRuntime> {
        Ok(OciRuntime {
            binary: binary.into(),
            root: crate::scratch_dir("mxc-rtroot")?,
        })
    }

    pub fn runc() -> Result<OciRuntime> {
        OciRuntime::new(bins::runc())
    }

    pub fn crun() -> Result<OciRuntime> {
        OciRuntime::new(bins::crun())
    }

    /// The project's `mxc-runtime`.
    pub fn mxc_runtime() -> Result<OciRuntime> {
        OciRuntime::new(bins::mxc_runtime()?)
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The state root passed as `--root`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `BINARY --root ROOT ARGS...`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(self.root.path()).args(args);
        cmd
    }

    /// Runs `BINARY --root ROOT ARGS...` and returns its output, whatever its status.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        run(&mut self.command(args), COMMAND_LIMIT)
    }

    /// `run --bundle BUNDLE ID` in the foreground: the container's output and exit status.
    pub fn run_bundle(&self, bundle: &Path, id: &str) -> Result<Output> {
        let bundle = bundle.to_string_lossy();
        self.run(&["run", "--bundle", &bundle, id])
    }

    /// Container state directories left under the root.
    pub fn state_entries(&self) -> Vec<PathBuf> {
        fs::read_dir(self.root.path())
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

impl Drop for OciRuntime {
    fn drop(&mut self) {
        // A test that failed half-way may leave containers: delete them with the same runtime.
        for state in self.state_entries() {
            if let Some(id) = state.file_name().and_then(|n| n.to_str()) {
                let _ = self.run(&["delete", "--force", id]);
            }
        }
    }
}

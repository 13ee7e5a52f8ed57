//! Where the project's own binaries are: `MXC_BIN_DIR` if set (test.sh sets it), otherwise
//! `<workspace>/target/release`.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The one-shot command.
pub const MXC: &str = "mxc";
/// The runc-compatible command line.
pub const MXC_RUNTIME: &str = "mxc-runtime";
/// The containerd shim; containerd finds it on its `PATH` for runtime `io.containerd.mxc.v1`.
pub const SHIM: &str = "containerd-shim-mxc-v1";

/// The directory holding the project's built binaries.
pub fn bin_dir() -> PathBuf {
    match env::var_os("MXC_BIN_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => crate::workspace_root().join("target").join("release"),
    }
}

/// The path of the project binary `name`, which must have been built.
pub fn binary(name: &str) -> Result<PathBuf> {
    let path = bin_dir().join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release --workspace --bins --lib` \
             or point MXC_BIN_DIR at the directory that holds it",
            path.display()
        );
    }
    Ok(path)
}

pub fn mxc() -> Result<PathBuf> {
    binary(MXC)
}

pub fn mxc_runtime() -> Result<PathBuf> {
    binary(MXC_RUNTIME)
}

pub fn shim() -> Result<PathBuf> {
    binary(SHIM)
}

/// `PATH` with the project's binary directory in front, for daemons that look up shims or
/// runtimes by name.
pub fn path_with_bin_dir() -> OsString {
    path_with(&[])
}

/// `PATH` with the project's binary directory, then `extra`, in front.
pub fn path_with(extra: &[PathBuf]) -> OsString {
    let mut dirs = vec![bin_dir()];
    dirs.extend(extra.iter().cloned());
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    } else {
        dirs.extend(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        );
    }
    env::join_paths(dirs).unwrap_or_else(|_| OsString::from("/usr/sbin:/usr/bin:/sbin:/bin"))
}

/// The first of `candidates` that exists, else `fallback` (looked up on `PATH`).
fn first_existing(candidates: &[&str], fallback: &str) -> PathBuf {
    candidates
        .iter()
        .map(Path::new)
        .find(|path| path.is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(fallback))
}

/// The busybox-static binary the test images are made of.
pub fn busybox() -> PathBuf {
    first_existing(&["/bin/busybox", "/usr/bin/busybox"], "busybox")
}

/// The reference runtime `runc`.
pub fn runc() -> PathBuf {
    first_existing(&["/usr/sbin/runc", "/usr/bin/runc"], "runc")
}

/// The reference runtime `crun`.
pub fn crun() -> PathBuf {
    first_existing(&["/usr/bin/crun", "/usr/sbin/crun"], "crun")
}

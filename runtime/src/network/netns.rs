//! Doing things inside a container's network namespace from the host side.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use nix::sched::{setns, CloneFlags};

use super::NetworkError;

fn open_netns(pid: i32) -> Result<File, NetworkError> {
    let path = format!("/proc/{pid}/ns/net");
    File::open(&path).map_err(|e| NetworkError::io(format!("opening {path}"), e))
}

/// Runs `f` on a thread that has joined the network namespace of `pid` (a namespace change is
/// per thread, so the caller's threads are untouched).
pub fn in_netns<T: Send + 'static>(
    pid: i32,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, NetworkError> {
    let ns = open_netns(pid)?;
    std::thread::spawn(move || {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)?;
        f()
    })
    .join()
    .map_err(|_| {
        NetworkError::io(
            "network namespace worker",
            std::io::Error::other("panicked"),
        )
    })?
    .map_err(|e| NetworkError::io(format!("inside the network namespace of {pid}"), e))
}

/// Runs a program inside the network namespace of `pid` with `input` on its stdin.
pub fn run_in_netns(
    pid: i32,
    program: &Path,
    args: &[&str],
    input: &[u8],
) -> Result<Output, NetworkError> {
    run_in_netns_file(&open_netns(pid)?, program, args, input)
}

/// Runs a program inside the network namespace open as `ns`.
pub fn run_in_netns_file(
    ns: &File,
    program: &Path,
    args: &[&str],
    input: &[u8],
) -> Result<Output, NetworkError> {
    let ns = ns
        .try_clone()
        .map_err(|e| NetworkError::io("duplicating a namespace descriptor", e))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setns is async-signal-safe; the descriptor stays open until the child execs.
    unsafe {
        command.pre_exec(move || {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| NetworkError::io(format!("starting {}", program.display()), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|e| NetworkError::io(format!("feeding {}", program.display()), e))?;
    }
    child
        .wait_with_output()
        .map_err(|e| NetworkError::io(format!("waiting for {}", program.display()), e))
}

//! Connectivity for a network namespace the runtime created itself: slirp4netns, a userspace
//! network stack that opens host sockets on the sandbox's behalf. Nothing on the host's own
//! routes, bridges or firewall changes; host loopback is not reachable through its gateway
//! (`--disable-host-loopback`), its DNS forwarder is off (`--disable-dns`: DNS is closed unless
//! a rule opens a resolver), and it sandboxes itself (own mount namespace, capabilities dropped,
//! seccomp). It exits when its exit pipe closes, so it never outlives whoever started it.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{which, NetworkError};

const READY_LIMIT: Duration = Duration::from_secs(10);
const READY_FD: i32 = 3;
const EXIT_FD: i32 = 4;

#[derive(Debug)]
pub struct Slirp {
    child: Child,
    /// Closing it tells slirp4netns to exit.
    exit: Option<OwnedFd>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), NetworkError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that we take ownership of.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(NetworkError::io(
            "creating a pipe",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: both descriptors are fresh and owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Runs in the child before exec: a private copy of the mount tree, so that nothing
/// slirp4netns's own sandbox does to its mounts (it pivots into a tmpfs and detaches the old
/// root, with only `/` made private) propagates back to the host's shared mounts, such as the
/// `/run/netns` bind mounts of `ip netns` and CNI.
///
/// # Safety
/// Only async-signal-safe system calls: fit for `pre_exec`.
unsafe fn private_mounts() -> std::io::Result<()> {
    if libc::unshare(libc::CLONE_NEWNS) != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let none = c"none";
    let root = c"/";
    if libc::mount(
        none.as_ptr(),
        root.as_ptr(),
        std::ptr::null(),
        libc::MS_REC | libc::MS_PRIVATE,
        std::ptr::null(),
    ) != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A caller that forwards signals (`mxc-runtime run`, the shim) blocks them in every thread, and
/// a blocked mask survives exec: slirp4netns must start with the defaults, or the SIGTERM that
/// stops it never arrives.
fn default_signals() {
    crate::executor::reset_signals();
}

/// slirp4netns for the network namespace of `pid`, reporting readiness on [`READY_FD`] and,
/// with `exit_fd`, exiting when [`EXIT_FD`] closes. Standard input and output are closed.
fn command(pid: i32, exit_fd: bool) -> Result<Command, NetworkError> {
    let program =
        which("slirp4netns").ok_or(NetworkError::MissingTool("slirp4netns", "slirp4netns"))?;
    let mut command = Command::new(program);
    command.args([
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        "--disable-dns",
        "--enable-ipv6",
        "--enable-sandbox",
        "--enable-seccomp",
        &format!("--ready-fd={READY_FD}"),
    ]);
    if exit_fd {
        command.arg(format!("--exit-fd={EXIT_FD}"));
    }
    let userns = format!("/proc/{pid}/ns/user");
    if !same_namespace(&userns, "/proc/self/ns/user") {
        command.arg(format!("--userns-path={userns}"));
    }
    command
        .arg(pid.to_string())
        .arg("tap0")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Ok(command)
}

/// Whether slirp4netns reported the interface configured (it writes one byte to the ready
/// descriptor) within [`READY_LIMIT`].
fn wait_ready(ready_read: OwnedFd) -> bool {
    let mut fds = [libc::pollfd {
        fd: ready_read.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: polling one descriptor we own.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, READY_LIMIT.as_millis() as i32) };
    let mut byte = [0u8; 1];
    rc > 0 && File::from(ready_read).read(&mut byte).is_ok_and(|n| n == 1)
}

impl Slirp {
    /// Starts slirp4netns for the network namespace of `pid`; [`Starting::ready`] waits until
    /// it has configured the interface, so that other set-up can go on meanwhile.
    pub fn spawn(pid: i32) -> Result<Starting<Slirp>, NetworkError> {
        let (ready_read, ready_write) = pipe()?;
        let (exit_read, exit_write) = pipe()?;
        let mut command = command(pid, true)?;
        command.stderr(Stdio::piped());
        let (ready_child, exit_child) = (ready_write.as_raw_fd(), exit_read.as_raw_fd());
        // SAFETY: only raw signal calls, dup2, unshare, mount and prctl between fork and exec.
        unsafe {
            command.pre_exec(move || {
                default_signals();
                if libc::dup2(ready_child, READY_FD) < 0 || libc::dup2(exit_child, EXIT_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                private_mounts()?;
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| NetworkError::Slirp(format!("cannot start slirp4netns: {e}")))?;
        drop(ready_write);
        drop(exit_read);
        Ok(Starting {
            running: Some(Slirp {
                child,
                exit: Some(exit_write),
            }),
            ready: Some(ready_read),
        })
    }

    /// Starts slirp4netns for the network namespace of `pid` and waits until it has configured
    /// the interface.
    pub fn start(pid: i32) -> Result<Slirp, NetworkError> {
        Slirp::spawn(pid)?.ready()
    }

    fn configured(mut self, ready_read: OwnedFd) -> Result<Slirp, NetworkError> {
        let ready = wait_ready(ready_read);
        if !ready {
            let mut log = String::new();
            self.stop_inner();
            if let Some(mut stderr) = self.child.stderr.take() {
                let _ = stderr.read_to_string(&mut log);
            }
            return Err(NetworkError::Slirp(format!(
                "the namespace was not configured: {}",
                log.trim()
            )));
        }
        // Keep its stderr drained so that it can never block on a full pipe.
        if let Some(mut stderr) = self.child.stderr.take() {
            std::thread::spawn(move || {
                let mut sink = [0u8; 4096];
                while matches!(stderr.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
        Ok(self)
    }

    fn stop_inner(&mut self) {
        self.exit.take();
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    pub fn stop(mut self) {
        self.stop_inner();
    }

    /// Stops it without waiting for its exit to finish: the kernel takes tens of milliseconds
    /// to tear down its tap device after the kill (an RCU grace period per unregistered
    /// device), and the caller need not wait for that. The process is dead to everything but
    /// that teardown once SIGKILL is sent; a thread reaps it, and if this process exits first,
    /// whoever inherits it does.
    pub fn stop_in_background(mut self) {
        self.exit.take();
        let _ = self.child.kill();
        let mut child = self.child;
        let pid = child.id() as libc::pid_t;
        let reaper = std::thread::Builder::new()
            .name("slirp-reaper".into())
            .spawn(move || {
                let _ = child.wait();
            });
        if reaper.is_err() {
            // No thread to spare: reap it here (the dropped handle never did).
            // SAFETY: waits for our own child by pid; no memory is shared.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
}

fn same_namespace(a: &str, b: &str) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// slirp4netns started, configuring a namespace: [`Starting::ready`] waits until it has. Dropped
/// before that, it is killed.
#[derive(Debug)]
pub struct Starting<T: Stack> {
    running: Option<T>,
    ready: Option<OwnedFd>,
}

/// A slirp4netns process, beside the caller ([`Slirp`]) or detached from it.
pub trait Stack: Sized {
    /// Waits for its readiness byte on `ready`; on failure it is stopped.
    fn configured(self, ready: OwnedFd) -> Result<Self, NetworkError>;
    fn kill(self);
}

impl Stack for Slirp {
    fn configured(self, ready: OwnedFd) -> Result<Slirp, NetworkError> {
        Slirp::configured(self, ready)
    }
    fn kill(self) {
        self.stop();
    }
}

/// slirp4netns in a session of its own, not tied to the process that started it.
#[derive(Debug)]
pub struct Detached(Child);

impl Stack for Detached {
    fn configured(self, ready: OwnedFd) -> Result<Detached, NetworkError> {
        if wait_ready(ready) {
            return Ok(self);
        }
        self.kill();
        Err(NetworkError::Slirp(
            "the namespace was not configured".into(),
        ))
    }
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl<T: Stack> Starting<T> {
    /// Waits until the namespace is configured.
    pub fn ready(mut self) -> Result<T, NetworkError> {
        let (Some(running), Some(ready)) = (self.running.take(), self.ready.take()) else {
            return Err(NetworkError::Slirp(
                "slirp4netns was already waited for".into(),
            ));
        };
        running.configured(ready)
    }
}

impl<T: Stack> Drop for Starting<T> {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.kill();
        }
    }
}

/// Starts slirp4netns in its own session, not tied to this process; once [`Starting::ready`],
/// [`Detached::record`] says what the caller records (delete stops it).
pub fn spawn_detached(pid: i32) -> Result<Starting<Detached>, NetworkError> {
    let (ready_read, ready_write) = pipe()?;
    let mut command = command(pid, false)?;
    command.stderr(Stdio::null());
    let ready_child = ready_write.as_raw_fd();
    // SAFETY: only raw signal calls, setsid, dup2, unshare and mount between fork and exec.
    unsafe {
        command.pre_exec(move || {
            default_signals();
            libc::setsid();
            if libc::dup2(ready_child, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            private_mounts()?;
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| NetworkError::Slirp(format!("cannot start slirp4netns: {e}")))?;
    drop(ready_write);
    Ok(Starting {
        running: Some(Detached(child)),
        ready: Some(ready_read),
    })
}

impl Detached {
    /// The process as the container's record keeps it.
    pub fn record(self) -> Result<crate::process::InitProcess, NetworkError> {
        match crate::process::InitProcess::capture(self.0.id() as i32) {
            Some(process) => Ok(process),
            None => {
                self.kill();
                Err(NetworkError::Slirp(
                    "the namespace was not configured".into(),
                ))
            }
        }
    }
}

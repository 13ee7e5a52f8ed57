//! The zygote: a single-threaded helper that does the libcontainer calls which clone processes
//! or change the whole calling process.
//!
//! libcontainer clones a container's processes from its caller and runs Rust code in the copy
//! until `exec`; cloned from a multithreaded process, the copy may inherit a lock (malloc,
//! logging) that no thread will ever release. libcontainer also `chdir`s, marks the caller
//! non-dumpable and writes its `oom_score_adj` while it builds. So the shim forks this helper
//! at the very top of `main`, before any thread exists, and never clones from itself.
//!
//! For each call, the zygote forks a worker that does the one engine operation, answers on a
//! socket that came with the call, and exits. Calls therefore run in parallel, whatever the
//! worker changed about itself dies with it, and the processes it created (a container's
//! init, an exec process) are reparented to the shim, the nearest subreaper, when it exits: the
//! shim reaps them and collects their exit statuses.
//!
//! Every call has a deadline ([`Deadline`]: a little before the request's, when containerd
//! sets one, so that the failure still reaches it). A worker that has not answered by then is
//! killed with everything it started in its process group (a hook, a helper), and the call
//! fails; what a killed worker had made of a container is the caller's to remove.
//!
//! Wire format: one `SOCK_SEQPACKET` message per call, JSON ([`Call`]) plus descriptors
//! (`SCM_RIGHTS`): first the socket for the reply, then those that [`Call::fds`] lists. On the
//! reply socket the worker first introduces itself ([`Started`], with a pidfd of itself), then
//! answers with one message of JSON ([`Reply`]).

use std::io::{IoSlice, IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mxc_runtime::policy::NodeContext;
use mxc_runtime::PidFd;
use mxc_runtime::{CreateOptions, Engine, EngineError, ExecOptions, Stdio};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::mount::{self, MountSpec};

/// The largest call the zygote reads (an exec's process spec is the big one).
const MAX_MESSAGE: usize = 200 * 1024;
/// Descriptors per call: the reply socket and up to four more.
const MAX_FDS: usize = 5;
/// How long a call may take when its request has no deadline: the kubelet's default runtime
/// request timeout. A call that runs longer has lost its caller anyway.
pub const CALL_LIMIT: Duration = Duration::from_secs(120);
/// How long a killed worker and its process group get to be gone.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How much of a request's time the shim keeps for itself after its call's deadline: to stop
/// the worker, remove what it made and answer while the caller still listens. A quarter of
/// the request's time, at most this.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// When a zygote call must have been answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    limit: Duration,
}

impl Deadline {
    pub fn after(limit: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }

    /// The deadline for the calls of a ttrpc request: somewhat before the request's own
    /// (`timeout_nano`, which containerd fills in from its caller's deadline; 0 when there is
    /// none), else [`CALL_LIMIT`] from now. Containerd gives up on the shim at the request's
    /// deadline, so an answer that comes later, and the reason it carries, would be lost.
    pub fn of_request(timeout_nano: i64) -> Deadline {
        match u64::try_from(timeout_nano) {
            Ok(nanos) if nanos > 0 => {
                let timeout = Duration::from_nanos(nanos);
                Deadline::after(timeout - (timeout / 4).min(ANSWER_MARGIN))
            }
            _ => Deadline::after(CALL_LIMIT),
        }
    }

    fn remaining(self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// One engine operation for a worker.
#[derive(Debug, Serialize, Deserialize)]
pub struct Call {
    /// The engine's state root.
    pub root: PathBuf,
    /// The node configuration (`ConfigPath`), if containerd named one.
    pub config_path: Option<PathBuf>,
    /// The container.
    pub id: String,
    pub op: Op,
    /// What the descriptors after the reply socket are, in order.
    pub fds: Vec<Slot>,
}

/// The role of a descriptor passed with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Slot {
    Stdin,
    Stdout,
    Stderr,
    /// A logging binary's readiness pipe (its fd 5).
    Ready,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Op {
    /// Mount the root filesystem on `<bundle>/rootfs`, then create the container.
    Create {
        bundle: PathBuf,
        rootfs: Vec<MountSpec>,
        console_socket: Option<PathBuf>,
    },
    Start,
    /// Run `process` (an OCI process spec) in the container.
    Exec {
        process: serde_json::Value,
        console_socket: Option<PathBuf>,
    },
    /// Remove the container (killing what is left of it) and unmount `rootfs`.
    Delete {
        rootfs: Option<PathBuf>,
    },
    /// Start a logging binary (`binary://` log URI) with the container's stdout and stderr
    /// pipes as its fds 3 and 4 and the readiness pipe as fd 5, as containerd's shims do.
    SpawnLogger {
        path: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
    },
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Start => "start",
            Op::Exec { .. } => "exec",
            Op::Delete { .. } => "delete",
            Op::SpawnLogger { .. } => "starting a logging binary",
        }
    }
}

/// A worker's first message: its pid, sent with a pidfd of itself.
#[derive(Debug, Serialize, Deserialize)]
struct Started {
    worker: i32,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The process created (a container's init, an exec process).
    Pid(i32),
    Done,
    /// The operation failed; the message is for the user (it reaches ctr and the kubelet).
    Failed(String),
}

/// Descriptors passed with a call: a process's stdin, stdout and stderr (`None`: the
/// zygote's `/dev/null`), or a logging binary's pipes.
#[derive(Debug, Default)]
pub struct Passed {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub ready: Option<OwnedFd>,
}

impl Passed {
    fn slots(&self) -> Vec<(Slot, RawFd)> {
        [
            (Slot::Stdin, &self.stdin),
            (Slot::Stdout, &self.stdout),
            (Slot::Stderr, &self.stderr),
            (Slot::Ready, &self.ready),
        ]
        .into_iter()
        .filter_map(|(slot, fd)| fd.as_ref().map(|fd| (slot, fd.as_raw_fd())))
        .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    #[error("the shim's zygote process is gone ({0}); restart the task")]
    Gone(std::io::Error),
    #[error("the zygote's worker exited without answering")]
    NoAnswer,
    #[error(
        "{op} did not finish within its deadline ({}s): its worker was stopped{}",
        limit.as_secs_f32(),
        if *killed { "" } else { " (the zygote never started one)" }
    )]
    TimedOut {
        op: &'static str,
        limit: Duration,
        killed: bool,
    },
    #[error("talking to the zygote: {0}")]
    Protocol(String),
}

/// The shim's handle on its zygote.
pub struct Zygote {
    socket: OwnedFd,
    pid: i32,
}

/// What a worker does with a call.
type Perform = fn(Call, Passed) -> Reply;

impl Zygote {
    /// Forks the zygote. Call it before any thread exists; the child never returns.
    pub fn fork(shim_id: &str, debug: bool) -> std::io::Result<Zygote> {
        Zygote::fork_with(shim_id, debug, perform)
    }

    fn fork_with(shim_id: &str, debug: bool, perform: Perform) -> std::io::Result<Zygote> {
        let (shim_end, zygote_end) = seqpacket_pair()?;
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the process is single-threaded here (the caller's contract), so the child
        // may run arbitrary code.
        match unsafe { libc::fork() } {
            -1 => Err(std::io::Error::last_os_error()),
            0 => {
                drop(shim_end);
                serve(zygote_end, parent, shim_id, debug, perform)
            }
            pid => Ok(Zygote {
                socket: shim_end,
                pid,
            }),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Runs `call` in a worker and waits for its answer until `deadline`. `call.fds` is
    /// filled in from `passed`.
    pub fn call(
        &self,
        mut call: Call,
        passed: Passed,
        deadline: Deadline,
    ) -> Result<Reply, ZygoteError> {
        let (ours, theirs) = seqpacket_pair().map_err(ZygoteError::Gone)?;
        let slots = passed.slots();
        call.fds = slots.iter().map(|(slot, _)| *slot).collect();
        let json = serde_json::to_vec(&call).map_err(|e| ZygoteError::Protocol(e.to_string()))?;
        if json.len() > MAX_MESSAGE {
            return Err(ZygoteError::Protocol(format!(
                "the request is {} bytes, more than the {MAX_MESSAGE} the zygote reads",
                json.len()
            )));
        }
        let mut fds: Vec<RawFd> = vec![theirs.as_raw_fd()];
        fds.extend(slots.iter().map(|(_, fd)| *fd));
        let rights = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(
            self.socket.as_raw_fd(),
            &[IoSlice::new(&json)],
            &rights,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(|e| ZygoteError::Gone(e.into()))?;
        drop(theirs);
        drop(passed);

        let mut worker: Option<Worker> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let remaining = deadline.remaining();
            if remaining.is_zero() || !readable(&ours, remaining) {
                if let Some(worker) = &worker {
                    worker.kill();
                }
                return Err(ZygoteError::TimedOut {
                    op: call.op.name(),
                    limit: deadline.limit,
                    killed: worker.is_some(),
                });
            }
            let (n, fds) = match receive(&ours, &mut buf) {
                Ok(received) => received,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(ZygoteError::Protocol(e.to_string())),
            };
            if n == 0 && fds.is_empty() {
                return Err(ZygoteError::NoAnswer);
            }
            match (fds.into_iter().next(), worker.is_none()) {
                (Some(pidfd), true) => {
                    let started: Started = serde_json::from_slice(&buf[..n])
                        .map_err(|e| ZygoteError::Protocol(e.to_string()))?;
                    worker = Some(Worker {
                        pid: started.worker,
                        pidfd: PidFd::from(pidfd),
                    });
                }
                _ => {
                    return serde_json::from_slice(&buf[..n])
                        .map_err(|e| ZygoteError::Protocol(e.to_string()))
                }
            }
        }
    }
}

/// A worker that is serving a call, as its caller knows it.
struct Worker {
    pid: i32,
    pidfd: PidFd,
}

impl Worker {
    /// Kills the worker and everything in its process group (it leads one: what it started
    /// and did not move elsewhere), and waits until they are gone.
    fn kill(&self) {
        tracing::warn!(
            worker = self.pid,
            "killing a zygote worker past its deadline"
        );
        // While the worker has not exited, its pid, which is its group's id, cannot have been
        // reused.
        if !self.pidfd.wait_exit(Some(Duration::ZERO)).unwrap_or(true) {
            // SAFETY: kill with a negative pid signals that process group.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
        let _ = self.pidfd.send_signal(libc::SIGKILL);
        let _ = self.pidfd.wait_exit(Some(KILL_WAIT));
        let until = Instant::now() + KILL_WAIT;
        // SAFETY: signal 0 only asks whether the group still has members.
        while unsafe { libc::kill(-self.pid, 0) } == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn seqpacket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(std::io::Error::from)
}

/// The zygote's loop: one worker per call, until the shim goes away.
fn serve(socket: OwnedFd, parent: i32, shim_id: &str, debug: bool, perform: Perform) -> ! {
    // SAFETY: prctl, getppid, dup2 and signal with valid arguments, single-threaded.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
        // fd 1 is the pipe on which `start` waits for the daemon to be ready; only the shim
        // itself may hold it.
        libc::dup2(2, 1);
        // Workers are reaped by the kernel; a worker puts the default back for its own
        // children.
        libc::signal(libc::SIGCHLD, libc::SIG_IGN);
    }
    set_process_name(b"mxc-zygote\0");
    crate::logging::init(shim_id, debug);
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut trimmed = false;
    loop {
        // Idle for a second: give back what setting up and serving touched.
        if !trimmed && !readable(&socket, Duration::from_secs(1)) {
            crate::footprint::trim();
            trimmed = true;
            continue;
        }
        trimmed = false;
        let (n, fds) = match receive(&socket, &mut buf) {
            Ok(received) => received,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => {
                tracing::error!(error = %err, "zygote: reading a call failed; exiting");
                // SAFETY: ending this process.
                unsafe { libc::_exit(1) }
            }
        };
        if n == 0 && fds.is_empty() {
            // The shim closed its end: it is exiting.
            // SAFETY: ending this process.
            unsafe { libc::_exit(0) }
        }
        // SAFETY: single-threaded; the child only runs the worker and exits.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: restoring the default disposition, and leading a process group of
                // its own (what it starts can be killed with it), in the single-threaded
                // worker.
                unsafe {
                    libc::signal(libc::SIGCHLD, libc::SIG_DFL);
                    libc::setpgid(0, 0);
                }
                drop(socket);
                set_process_name(b"mxc-worker\0");
                work(&buf[..n], fds, perform);
                // SAFETY: ending the worker without running the zygote's destructors.
                unsafe { libc::_exit(0) }
            }
            -1 => {
                let err = std::io::Error::last_os_error();
                if let Some(reply) = fds.into_iter().next() {
                    answer(&reply, &Reply::Failed(format!("forking a worker: {err}")));
                }
            }
            _ => drop(fds),
        }
    }
}

/// Whether `socket` has something to read (or is closed) within `timeout`.
fn readable(socket: &OwnedFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) != 0 }
}

fn receive(socket: &OwnedFd, buf: &mut [u8]) -> nix::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            // SAFETY: the kernel just installed these descriptors for us.
            fds.extend(
                received
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((msg.bytes, fds))
}

/// Sends the caller this worker's pid and a pidfd of it, with which the caller kills it if it
/// misses its deadline. Without them the call still runs, only without that remedy.
fn introduce(reply_socket: &OwnedFd) {
    let pid = std::process::id() as i32;
    let Ok(pidfd) = PidFd::open(pid) else {
        return;
    };
    let Ok(json) = serde_json::to_vec(&Started { worker: pid }) else {
        return;
    };
    let fds = [pidfd.as_raw_fd()];
    let _ = sendmsg::<()>(
        reply_socket.as_raw_fd(),
        &[IoSlice::new(&json)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
}

fn answer(reply_socket: &OwnedFd, reply: &Reply) {
    let json = serde_json::to_vec(reply).unwrap_or_default();
    let _ = nix::sys::socket::send(reply_socket.as_raw_fd(), &json, MsgFlags::MSG_NOSIGNAL);
}

/// A worker: introduce itself, decode the call, do it, answer.
fn work(message: &[u8], fds: Vec<OwnedFd>, perform: Perform) {
    let mut fds = fds.into_iter();
    let Some(reply_socket) = fds.next() else {
        return;
    };
    introduce(&reply_socket);
    let call: Call = match serde_json::from_slice(message) {
        Ok(call) => call,
        Err(err) => {
            answer(
                &reply_socket,
                &Reply::Failed(format!("bad zygote call: {err}")),
            );
            return;
        }
    };
    let mut passed = Passed::default();
    for (slot, fd) in call.fds.iter().zip(fds) {
        let place = match slot {
            Slot::Stdin => &mut passed.stdin,
            Slot::Stdout => &mut passed.stdout,
            Slot::Stderr => &mut passed.stderr,
            Slot::Ready => &mut passed.ready,
        };
        *place = Some(fd);
    }
    let span = tracing::info_span!("zygote", id = %call.id);
    let _entered = span.enter();
    let reply = perform(call, passed);
    if let Reply::Failed(message) = &reply {
        tracing::debug!(error = %message, "operation failed");
    }
    answer(&reply_socket, &reply);
}

fn perform(call: Call, passed: Passed) -> Reply {
    let node = NodeContext {
        config_path: call.config_path.clone(),
        ..NodeContext::default()
    };
    let engine = Engine::new(&call.root).with_node_context(node);
    let id = call.id.as_str();
    let streams = Stdio::Fds {
        stdin: passed.stdin,
        stdout: passed.stdout,
        stderr: passed.stderr,
    };
    match call.op {
        Op::Create {
            bundle,
            rootfs,
            console_socket,
        } => {
            let target = bundle.join("rootfs");
            let mounted = match mount::mount_rootfs(&rootfs, &target) {
                Ok(mounted) => mounted,
                Err(err) => return Reply::Failed(err.to_string()),
            };
            let options = CreateOptions {
                stdio: streams,
                console_socket,
                ..CreateOptions::default()
            };
            match engine.create(id, &bundle, options) {
                Ok(container) => Reply::Pid(container.pid()),
                Err(err) => {
                    if mounted {
                        mount::unmount_all(&target);
                    }
                    Reply::Failed(err.to_string())
                }
            }
        }
        Op::Start => match engine.start(id) {
            Ok(()) => Reply::Done,
            Err(err) => Reply::Failed(err.to_string()),
        },
        Op::Exec {
            process,
            console_socket,
        } => {
            // The engine reads the process spec from a path; a memfd keeps it off disk.
            let file = match process_file(&process) {
                Ok(file) => file,
                Err(err) => return Reply::Failed(format!("passing the process spec: {err}")),
            };
            let options = ExecOptions {
                process: Some(PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))),
                console_socket,
                stdio: streams,
                ..ExecOptions::default()
            };
            match engine.exec(id, options) {
                Ok(process) => Reply::Pid(process.pid),
                Err(err) => Reply::Failed(err.to_string()),
            }
        }
        Op::Delete { rootfs } => {
            let result = match engine.delete(id, true) {
                Ok(()) | Err(EngineError::NotFound { .. }) => Reply::Done,
                Err(err) => Reply::Failed(err.to_string()),
            };
            if let Some(rootfs) = rootfs {
                mount::unmount_all(&rootfs);
            }
            result
        }
        Op::SpawnLogger { path, args, env } => {
            let Stdio::Fds {
                stdout: Some(out),
                stderr: Some(err),
                ..
            } = streams
            else {
                return Reply::Failed("a logging binary needs its stdout and stderr pipes".into());
            };
            let Some(ready) = passed.ready else {
                return Reply::Failed("a logging binary needs its readiness pipe".into());
            };
            match spawn_logger(&path, &args, &env, [out, err, ready]) {
                Ok(pid) => Reply::Pid(pid),
                Err(err) => Reply::Failed(format!(
                    "starting the logging binary {}: {err}",
                    path.display()
                )),
            }
        }
    }
}

/// Starts a logging binary with `fds` as its descriptors 3, 4 and 5. The worker exits right
/// after, without waiting for it: the binary is reparented to the shim, which reaps it.
fn spawn_logger(
    path: &std::path::Path,
    args: &[String],
    env: &[(String, String)],
    fds: [OwnedFd; 3],
) -> std::io::Result<i32> {
    use std::os::unix::process::CommandExt;
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut command = std::process::Command::new(path);
    command
        .args(args)
        // containerd gives a logging binary exactly these variables.
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec the child only calls dup2/fcntl, which are
    // async-signal-safe; the worker is single-threaded anyway.
    unsafe {
        command.pre_exec(move || {
            // Move the sources above the targets first so that no dup2 clobbers one.
            let mut moved = [0; 3];
            for (i, fd) in raw.iter().enumerate() {
                let high = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
                if high < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                moved[i] = high;
            }
            for (i, fd) in moved.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    Ok(child.id() as i32)
}

fn process_file(process: &serde_json::Value) -> std::io::Result<std::fs::File> {
    // SAFETY: memfd_create with a valid C string and flags.
    let fd = unsafe { libc::memfd_create(c"mxc-exec-process".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(&serde_json::to_vec(process).map_err(std::io::Error::other)?)?;
    Ok(file)
}

fn set_process_name(name: &[u8]) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker body that, for Start, starts a child (as a hook would) and never answers; for
    /// anything else answers at once. It writes its pid and its child's into `call.root`.
    fn hang_on_start(call: Call, _passed: Passed) -> Reply {
        if !matches!(call.op, Op::Start) {
            return Reply::Done;
        }
        let Ok(child) = std::process::Command::new("sleep").arg("600").spawn() else {
            return Reply::Failed("cannot start sleep".into());
        };
        let pids = format!("{} {}", std::process::id(), child.id());
        let _ = std::fs::write(&call.root, pids);
        loop {
            std::thread::sleep(Duration::from_secs(600));
        }
    }

    fn call(root: &std::path::Path, op: Op) -> Call {
        Call {
            root: root.to_path_buf(),
            config_path: None,
            id: "c1".into(),
            op,
            fds: Vec::new(),
        }
    }

    /// Whether `pid` is gone (or dead and waiting to be reaped by its new parent).
    fn gone(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    #[test]
    fn a_hung_worker_is_killed_with_what_it_started_and_the_zygote_serves_on() {
        let zygote = Zygote::fork_with("test", false, hang_on_start).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pids_file = dir.path().join("pids");

        let err = zygote
            .call(
                call(&pids_file, Op::Start),
                Passed::default(),
                Deadline::after(Duration::from_secs(3)),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                ZygoteError::TimedOut {
                    op: "start",
                    killed: true,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("start did not finish"), "{err}");

        let pids: Vec<i32> = std::fs::read_to_string(&pids_file)
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!(pids.len(), 2);
        let until = Instant::now() + Duration::from_secs(30);
        while !pids.iter().all(|pid| gone(*pid)) {
            assert!(Instant::now() < until, "still alive: {pids:?}");
            std::thread::sleep(Duration::from_millis(20));
        }

        let reply = zygote.call(
            call(&pids_file, Op::Delete { rootfs: None }),
            Passed::default(),
            Deadline::after(CALL_LIMIT),
        );
        assert_eq!(reply.unwrap(), Reply::Done);
    }

    #[test]
    fn a_call_ends_before_its_request_or_at_the_limit() {
        assert_eq!(Deadline::of_request(0).limit, CALL_LIMIT);
        assert_eq!(Deadline::of_request(-5).limit, CALL_LIMIT);
        // The shim keeps a quarter of a short request's time, and at most the margin of a
        // long one's, to answer before the caller gives up.
        assert_eq!(
            Deadline::of_request(2_000_000_000).limit,
            Duration::from_millis(1500)
        );
        assert_eq!(
            Deadline::of_request(120_000_000_000).limit,
            Duration::from_secs(120) - ANSWER_MARGIN
        );
    }
}

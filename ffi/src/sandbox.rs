//! One sandbox as the SDK sees it: an `lxc-exec` process this library started and supervises
//! through its progress events, the sandbox's stdio as real descriptors, and a control
//! descriptor (terminal size; when it closes, `lxc-exec` removes the sandbox, so even a
//! crashed or killed Node process leaves nothing behind).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mxc_runtime::oneshot::progress::{Event, ProgressReader};
use mxc_runtime::ExitStatus;

use crate::abi::{status, status_of};
use crate::executor::{self, Child};

/// How long a stopped `lxc-exec` gets to remove its sandbox before it is killed outright.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why a request did not become a running sandbox: a status code and MXC-style message.
#[derive(Debug)]
pub struct Refusal {
    pub status: i32,
    pub message: String,
}

impl Refusal {
    pub fn backend(message: impl Into<String>) -> Refusal {
        Refusal {
            status: status::BACKEND_ERROR,
            message: message.into(),
        }
    }

    fn of(event: Event) -> Refusal {
        match event {
            Event::Refused { class, message } => {
                let message = match class {
                    mxc_translate::Class::Request => {
                        format!("Configuration parse error: {message}")
                    }
                    _ => message,
                };
                Refusal {
                    status: status_of(class),
                    message,
                }
            }
            other => Refusal::backend(format!("unexpected first event from lxc-exec: {other:?}")),
        }
    }
}

/// What the sandbox's stdio is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// Three pipes, raw bytes.
    Pipes,
    /// A terminal of this size; its input and merged output are pipes to `lxc-exec`, which
    /// runs the terminal.
    Pty { rows: u16, columns: u16 },
}

/// An `lxc-exec` started for one request, before its first event.
pub struct Launch {
    child: Child,
    progress: File,
    control: OwnedFd,
}

/// Starts `lxc-exec` for `request` with `stdio` as the sandbox's stdin, stdout and stderr.
pub fn launch(
    request: &str,
    experimental: bool,
    terminal: Terminal,
    stdio: [&OwnedFd; 3],
) -> Result<Launch, Refusal> {
    let failed = |what: &str, e: io::Error| Refusal::backend(format!("{what}: {e}"));
    let program = executor::locate().map_err(|e| Refusal {
        status: status::BACKEND_UNAVAILABLE,
        message: e.to_string(),
    })?;
    let config = executor::request_file(request).map_err(|e| failed("passing the request", e))?;
    let (progress_read, progress_write) =
        executor::pipe().map_err(|e| failed("creating the progress pipe", e))?;
    let (control_read, control_write) =
        executor::pipe().map_err(|e| failed("creating the control pipe", e))?;
    let mut args: Vec<OsString> = [
        "--config",
        "/dev/fd/3",
        "--report-fd",
        "4",
        "--control-fd",
        "5",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    if experimental {
        args.push("--experimental".into());
    }
    if let Terminal::Pty { rows, columns } = terminal {
        args.push("--pty".into());
        args.push(format!("{rows}x{columns}").into());
    }
    let child = executor::spawn(
        &program,
        &args,
        &[
            stdio[0],
            stdio[1],
            stdio[2],
            &config,
            &progress_write,
            &control_read,
        ],
    )
    .map_err(|e| failed(&format!("starting {}", program.display()), e))?;
    Ok(Launch {
        child,
        progress: progress_read.into(),
        control: control_write,
    })
}

impl Launch {
    /// Waits for the first event: the sandbox started (its pid), or a refusal.
    pub fn started(self) -> Result<(Launch, i32), Refusal> {
        match first_event(&self.progress) {
            Ok(Some(Event::Started { pid })) => Ok((self, pid)),
            Ok(Some(event)) => {
                self.reap();
                Err(Refusal::of(event))
            }
            Ok(None) | Err(_) => {
                let status = self.reap();
                Err(Refusal::backend(format!(
                    "lxc-exec ended before the sandbox started ({})",
                    describe(status)
                )))
            }
        }
    }

    /// Collects `lxc-exec` once it has said its last word (it exits right after).
    fn reap(&self) -> Option<ExitStatus> {
        let pidfd = &self.child.pidfd;
        if !pidfd.wait_exit(Some(STOP_GRACE)).unwrap_or(false) {
            let _ = pidfd.send_signal(libc::SIGKILL);
        }
        pidfd.reap(true).ok().flatten()
    }
}

/// The first event, read a byte at a time so that nothing after it is consumed.
fn first_event(mut progress: &File) -> io::Result<Option<Event>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match progress.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    ProgressReader::new(line.as_slice()).next_event()
}

/// The last final event left in `progress` once `lxc-exec` has exited, read without blocking.
fn final_event(mut progress: &File) -> Option<Event> {
    {
        set_nonblocking(progress);
        let mut rest = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match progress.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let mut reader = ProgressReader::new(rest.as_slice());
        let mut last = None;
        while let Ok(Some(event)) = reader.next_event() {
            if event.is_final() {
                last = Some(event);
            }
        }
        last
    }
}

fn set_nonblocking(file: &File) {
    // SAFETY: reading and setting the status flags of a descriptor we own.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(ExitStatus::Exited(code)) => format!("exit status {code}"),
        Some(ExitStatus::Signaled(signal)) => format!("killed by signal {signal}"),
        None => "status unknown".to_string(),
    }
}

/// How a sandbox ended, as the SDK reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The workload's status; -1 when it did not exit by itself (killed, timed out, failed).
    pub exit_code: i32,
    pub timed_out: bool,
    pub warnings: Vec<String>,
}

fn ending(event: Option<Event>, status: Option<ExitStatus>, deadline_hit: bool) -> Ending {
    let mut warnings = Vec::new();
    let (exit_code, timed_out) = match event {
        Some(Event::Exited { code }) => (code, deadline_hit),
        Some(Event::TimedOut { .. }) => (-1, true),
        Some(Event::Stopped { .. }) => (-1, deadline_hit),
        Some(Event::Failed { message }) => {
            warnings.push(format!("the sandbox failed: {message}"));
            (-1, deadline_hit)
        }
        Some(event) => {
            warnings.push(format!("unexpected event from lxc-exec: {event:?}"));
            (-1, deadline_hit)
        }
        None => {
            if !deadline_hit {
                warnings.push(format!(
                    "lxc-exec ended without reporting a result ({})",
                    describe(status)
                ));
            }
            (-1, deadline_hit)
        }
    };
    Ending {
        exit_code,
        timed_out,
        warnings,
    }
}

/// A running (or finished) sandbox behind an `MxcSandbox*` handle. The SDK polls, waits, kills
/// and frees it from different threads, so its state sits behind a lock that is never held
/// while blocking.
pub struct Sandbox {
    pub pid: u32,
    terminal: Terminal,
    /// `lxc-exec`. Signals and polls go to it without a lock; only reaping takes `state`.
    child: Child,
    state: Mutex<State>,
    stdio: Mutex<Option<[Option<OwnedFd>; 3]>>,
}

struct State {
    progress: File,
    control: OwnedFd,
    ended: Option<Ending>,
    /// The SDK's own deadline passed (`mxc_sandbox_kill_for_timeout`).
    deadline_hit: bool,
    /// When the first stop signal went to `lxc-exec`.
    stopped_at: Option<Instant>,
}

impl Sandbox {
    /// Starts a sandbox whose stdio the SDK takes as descriptors.
    pub fn spawn(
        request: &str,
        experimental: bool,
        terminal: Terminal,
    ) -> Result<Sandbox, Refusal> {
        let failed = |e: io::Error| Refusal::backend(format!("creating the sandbox's stdio: {e}"));
        let (stdin_read, stdin_write) = executor::pipe().map_err(failed)?;
        let (stdout_read, stdout_write) = executor::pipe().map_err(failed)?;
        let (launch, sdk_stdio) = match terminal {
            Terminal::Pipes => {
                let (stderr_read, stderr_write) = executor::pipe().map_err(failed)?;
                let launch = launch(
                    request,
                    experimental,
                    terminal,
                    [&stdin_read, &stdout_write, &stderr_write],
                )?;
                (
                    launch,
                    [Some(stdin_write), Some(stdout_read), Some(stderr_read)],
                )
            }
            // A terminal merges its output: lxc-exec writes it all to one pipe.
            Terminal::Pty { .. } => {
                let launch = launch(
                    request,
                    experimental,
                    terminal,
                    [&stdin_read, &stdout_write, &stdout_write],
                )?;
                (launch, [Some(stdin_write), Some(stdout_read), None])
            }
        };
        // The child holds its ends now; ours close here, so EOF reaches the SDK when it exits.
        drop((stdin_read, stdout_write));
        let (launch, pid) = launch.started()?;
        Ok(Sandbox {
            pid: pid.max(0) as u32,
            terminal,
            child: launch.child,
            state: Mutex::new(State {
                progress: launch.progress,
                control: launch.control,
                ended: None,
                deadline_hit: false,
                stopped_at: None,
            }),
            stdio: Mutex::new(Some(sdk_stdio)),
        })
    }

    /// The stdio descriptors, once; the SDK owns them afterwards.
    pub fn take_stdio(&self) -> Option<[Option<OwnedFd>; 3]> {
        lock(&self.stdio).take()
    }

    /// `Some` once the sandbox has ended.
    pub fn try_wait(&self) -> io::Result<Option<Ending>> {
        let mut state = lock(&self.state);
        if state.ended.is_none() {
            if let Some(status) = self.child.pidfd.reap(false)? {
                let event = final_event(&state.progress);
                state.ended = Some(ending(event, Some(status), state.deadline_hit));
            }
        }
        Ok(state.ended.clone())
    }

    /// Blocks until the sandbox has ended. A stopped `lxc-exec` that does not finish removing
    /// its sandbox within the grace period is killed.
    pub fn wait(&self) -> io::Result<Ending> {
        loop {
            if let Some(ending) = self.try_wait()? {
                return Ok(ending);
            }
            let stopped_at = lock(&self.state).stopped_at;
            let timeout = match stopped_at {
                Some(at) => {
                    let left = STOP_GRACE.saturating_sub(at.elapsed());
                    if left.is_zero() {
                        self.child.pidfd.send_signal(libc::SIGKILL)?;
                    }
                    Some(left.max(Duration::from_millis(100)))
                }
                None => None,
            };
            self.child.pidfd.wait_exit(timeout)?;
        }
    }

    /// Asks `lxc-exec` to stop: it kills the workload, removes the whole sandbox and exits.
    pub fn kill(&self, deadline_hit: bool) -> io::Result<()> {
        let mut state = lock(&self.state);
        if deadline_hit {
            state.deadline_hit = true;
        }
        if state.ended.is_some() {
            return Ok(());
        }
        state.stopped_at.get_or_insert_with(Instant::now);
        self.child.pidfd.send_signal(libc::SIGTERM)
    }

    /// Tells the terminal its new size.
    pub fn resize(&self, rows: u16, columns: u16) -> Result<(), i32> {
        if !matches!(self.terminal, Terminal::Pty { .. }) {
            return Err(status::MALFORMED_REQUEST);
        }
        let state = lock(&self.state);
        let mut control = &File::from(
            state
                .control
                .try_clone()
                .map_err(|_| status::BACKEND_ERROR)?,
        );
        control
            .write_all(format!("resize {rows} {columns}\n").as_bytes())
            .map_err(|_| status::BACKEND_ERROR)
    }

    /// Stops the sandbox if it still runs and waits until everything is gone.
    pub fn release(self) {
        if self.try_wait().ok().flatten().is_none() {
            let _ = self.kill(false);
            let _ = self.wait();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a run to completion produced.
pub struct Completed {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub ending: Ending,
}

/// Runs `request` to completion with no input and captured output. Blocking; the SDK calls it
/// from a worker thread. Every descriptor is read from this one thread with `poll`.
pub fn run(request: &str, experimental: bool) -> Result<Completed, Refusal> {
    let failed = |e: io::Error| Refusal::backend(format!("creating the sandbox's stdio: {e}"));
    let input = executor::null_input().map_err(failed)?;
    let (stdout_read, stdout_write) = executor::pipe().map_err(failed)?;
    let (stderr_read, stderr_write) = executor::pipe().map_err(failed)?;
    let launch = launch(
        request,
        experimental,
        Terminal::Pipes,
        [&input, &stdout_write, &stderr_write],
    )?;
    drop((input, stdout_write, stderr_write));
    let (launch, _pid) = launch.started()?;

    let mut outputs = [
        (File::from(stdout_read), Vec::new(), true),
        (File::from(stderr_read), Vec::new(), true),
    ];
    let mut buf = vec![0u8; 64 * 1024];
    while outputs.iter().any(|(_, _, open)| *open) {
        let mut fds: Vec<libc::pollfd> = outputs
            .iter()
            .map(|(file, _, open)| libc::pollfd {
                fd: if *open { file.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: a valid array of pollfds; negative descriptors are ignored.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(Refusal::backend(format!(
                "reading the sandbox's output: {err}"
            )));
        }
        for (pfd, (file, out, open)) in fds.iter().zip(outputs.iter_mut()) {
            if pfd.revents == 0 || !*open {
                continue;
            }
            match file.read(&mut buf) {
                Ok(0) => *open = false,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => *open = false,
            }
        }
    }
    let status = launch.child.pidfd.reap(true).ok().flatten();
    let event = final_event(&launch.progress);
    if let Some(Event::Failed { message }) = &event {
        return Err(Refusal::backend(message.clone()));
    }
    let [(_, stdout, _), (_, stderr, _)] = outputs;
    Ok(Completed {
        stdout,
        stderr,
        ending: ending(event, status, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_follow_mxc() {
        assert_eq!(
            ending(Some(Event::Exited { code: 3 }), None, false).exit_code,
            3
        );
        let timed_out = ending(Some(Event::TimedOut { ms: 5 }), None, false);
        assert_eq!((timed_out.exit_code, timed_out.timed_out), (-1, true));
        let killed = ending(Some(Event::Stopped { signal: 15 }), None, false);
        assert_eq!((killed.exit_code, killed.timed_out), (-1, false));
        let deadline = ending(Some(Event::Stopped { signal: 15 }), None, true);
        assert_eq!((deadline.exit_code, deadline.timed_out), (-1, true));
        let lost = ending(None, Some(ExitStatus::Signaled(9)), false);
        assert_eq!(lost.exit_code, -1);
        assert!(lost.warnings[0].contains("signal 9"), "{:?}", lost.warnings);
    }

    #[test]
    fn refusals_carry_mxc_status_and_wording() {
        let refusal = Refusal::of(Event::Refused {
            class: mxc_translate::Class::Request,
            message: "bad".into(),
        });
        assert_eq!(refusal.status, status::MALFORMED_REQUEST);
        assert_eq!(refusal.message, "Configuration parse error: bad");
        let refusal = Refusal::of(Event::Refused {
            class: mxc_translate::Class::Containment,
            message: "no".into(),
        });
        assert_eq!(refusal.status, status::UNSUPPORTED_CONTAINMENT);
    }
}

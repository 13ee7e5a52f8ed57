//! Knowing which process is a container's init: a pid alone can be reused, so the engine stores
//! the pid together with its start time (field 22 of `/proc/<pid>/stat`) and compares both.
//! Signals and waits go through a pidfd opened after that check, so they cannot reach a
//! stranger.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The state letter: R, S, D, Z, X, T, t, ...
    pub state: char,
    pub ppid: i32,
    /// Start time after boot, in clock ticks.
    pub start_time: u64,
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        start_time,
    })
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|text| parse_stat(&text))
}

/// A container's init process as the engine recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitProcess {
    pub pid: i32,
    pub start_time: u64,
}

/// Whether a recorded process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Exited, waiting to be reaped: it holds no resources any more but its pid.
    Zombie,
    /// Gone, or the pid now belongs to another process.
    Gone,
}

impl InitProcess {
    /// Records the process that has `pid` now.
    pub fn capture(pid: i32) -> Option<InitProcess> {
        read_stat(pid).map(|stat| InitProcess {
            pid,
            start_time: stat.start_time,
        })
    }

    pub fn liveness(&self) -> Liveness {
        Self::judge(self, read_stat(self.pid))
    }

    /// The pure part of [`InitProcess::liveness`].
    pub fn judge(&self, stat: Option<ProcStat>) -> Liveness {
        match stat {
            Some(stat) if stat.start_time == self.start_time => match stat.state {
                'Z' | 'X' | 'x' => Liveness::Zombie,
                _ => Liveness::Alive,
            },
            _ => Liveness::Gone,
        }
    }

    pub fn is_alive(&self) -> bool {
        self.liveness() == Liveness::Alive
    }

    /// Opens a pidfd for this process, checking after the open that the pid still belongs to
    /// it: from then on the pidfd names it and nothing else. `None` if it is gone.
    pub fn open_pidfd(&self) -> Option<PidFd> {
        let fd = PidFd::open(self.pid).ok()?;
        (self.liveness() != Liveness::Gone).then_some(fd)
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The status a shell reports: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(sig) => 128 + sig,
        }
    }
}

/// A process file descriptor (`pidfd_open(2)`).
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    pub fn open(pid: i32) -> std::io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    pub fn send_signal(&self, signal: i32) -> std::io::Result<()> {
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            // ESRCH: it has exited already, which is what the caller wanted.
            if err.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(err);
        }
        Ok(())
    }

    /// Waits until the process exits or `timeout` passes. Returns whether it exited.
    pub fn wait_exit(&self, timeout: Option<Duration>) -> std::io::Result<bool> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let remaining = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(false);
                    }
                    (d - now).as_millis().min(i32::MAX as u128) as i32
                }
                None => -1,
            };
            let mut pfd = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, remaining) };
            if rc < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if rc > 0 {
                return Ok(true);
            }
        }
    }

    /// Reaps the process if it is our child and has exited. `Ok(None)` when it is not our
    /// child or something else reaped it first (ECHILD): a containerd shim's reaper, say.
    pub fn reap(&self, block: bool) -> std::io::Result<Option<ExitStatus>> {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
        loop {
            // SAFETY: P_PIDFD with a valid pidfd and a zeroed siginfo to fill in.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PIDFD,
                    self.0.as_raw_fd() as libc::id_t,
                    &mut info,
                    flags,
                )
            };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(None),
                _ => return Err(err),
            }
        }
        // SAFETY: waitid filled in a SIGCHLD siginfo (or left it zeroed with WNOHANG).
        let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        Ok(Some(match code {
            libc::CLD_EXITED => ExitStatus::Exited(status),
            _ => ExitStatus::Signaled(status),
        }))
    }
}

/// A pidfd received from elsewhere (another process sent it over a socket).
impl From<OwnedFd> for PidFd {
    fn from(fd: OwnedFd) -> PidFd {
        PidFd(fd)
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (sleep (x) y) S 4200 4242 4242 0 -1 4194560 97 0 0 0 0 0 0 0 20 0 1 0 987654 2428928 144 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.ppid, 4200);
        assert_eq!(stat.start_time, 987654);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 0"), None);
    }

    #[test]
    fn liveness_compares_start_time() {
        let init = InitProcess {
            pid: 4242,
            start_time: 987654,
        };
        let alive = parse_stat(STAT);
        assert_eq!(init.judge(alive), Liveness::Alive);
        let reused = ProcStat {
            start_time: 1,
            ..alive.unwrap()
        };
        assert_eq!(init.judge(Some(reused)), Liveness::Gone);
        let zombie = ProcStat {
            state: 'Z',
            ..alive.unwrap()
        };
        assert_eq!(init.judge(Some(zombie)), Liveness::Zombie);
        assert_eq!(init.judge(None), Liveness::Gone);
    }

    #[test]
    fn own_process_is_alive_and_pidfd_works() {
        let me = InitProcess::capture(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        let fd = me.open_pidfd().unwrap();
        assert!(!fd.wait_exit(Some(Duration::from_millis(10))).unwrap());
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped through the pidfd, which is the point
    fn child_exit_is_reaped_through_pidfd() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let init = InitProcess {
            pid: child.id() as i32,
            start_time: 0,
        };
        let fd = PidFd::open(init.pid).unwrap();
        assert!(fd.wait_exit(Some(Duration::from_secs(10))).unwrap());
        assert_eq!(fd.reap(true).unwrap(), Some(ExitStatus::Exited(7)));
        // Already reaped: ECHILD is not an error.
        assert_eq!(fd.reap(true).unwrap(), None);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
    }
}

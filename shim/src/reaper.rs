//! The shim is a subreaper: container init and exec processes are its children (they are
//! reparented to it when the zygote's worker that created them exits), and so are the
//! processes of a container without a pid namespace of its own when their parent dies.
//! One thread collects every exit and hands it to whoever watches that pid.
//!
//! A process can exit before the shim knows its pid (a quick exec, an init that dies during
//! create). Exits nobody watches are kept for a while, stamped with a sequence number; a
//! caller takes [`Reaper::mark`] before it starts a process and [`Reaper::watch`] returns an
//! exit recorded after that mark, so an old exit of a reused pid is never mistaken for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How a child ended, as containerd reports it: the exit code, or 128 + the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    pub status: u32,
    pub at: SystemTime,
}

type Callback = Box<dyn FnOnce(Exit) + Send>;

/// How long an exit nobody watched is kept.
const UNCLAIMED_KEEP: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    seq: u64,
    watchers: HashMap<i32, Callback>,
    unclaimed: HashMap<i32, (u64, Exit, Instant)>,
}

pub struct Reaper {
    state: Mutex<State>,
}

impl Reaper {
    /// Makes this process a subreaper and starts the reaping thread. SIGCHLD must already be
    /// blocked in the calling thread (see [`block_sigchld`]) so that every thread inherits the
    /// mask and only the reaper waits for it.
    pub fn start() -> std::io::Result<Arc<Reaper>> {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let reaper = Arc::new(Reaper {
            state: Mutex::new(State::default()),
        });
        let thread_reaper = reaper.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(128 * 1024)
            .spawn(move || thread_reaper.run())?;
        Ok(reaper)
    }

    /// The sequence number that exits recorded from now on exceed.
    pub fn mark(&self) -> u64 {
        self.lock().seq
    }

    /// Calls `on_exit` (on the reaper's thread) when `pid` exits. If `pid` already exited
    /// after `since`, returns that exit instead and registers nothing.
    pub fn watch(
        &self,
        pid: i32,
        since: u64,
        on_exit: impl FnOnce(Exit) + Send + 'static,
    ) -> Option<Exit> {
        let mut state = self.lock();
        if let Some((seq, exit, _)) = state.unclaimed.remove(&pid) {
            if seq > since {
                return Some(exit);
            }
        }
        state.watchers.insert(pid, Box::new(on_exit));
        None
    }

    /// Stops watching `pid` (its process was handed elsewhere, or will not be waited for).
    pub fn forget(&self, pid: i32) {
        self.lock().watchers.remove(&pid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: initialising a local signal set.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
        }
        loop {
            // SIGCHLD stays blocked (pending) while the thread reaps, so a child that exits
            // meanwhile wakes the next wait at once; no exit is missed.
            // SAFETY: a valid set; the siginfo is not needed.
            unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
            self.reap_all();
        }
    }

    fn reap_all(&self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid on any child, non-blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status) as u32
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status) as u32
            } else {
                continue;
            };
            self.record(Exit {
                pid,
                status: code,
                at: SystemTime::now(),
            });
        }
    }

    /// Hands `exit` to whoever watches its pid, or keeps it for a watch to come.
    pub(crate) fn record(&self, exit: Exit) {
        let callback = {
            let mut state = self.lock();
            state.seq += 1;
            let seq = state.seq;
            match state.watchers.remove(&exit.pid) {
                Some(callback) => Some(callback),
                None => {
                    let now = Instant::now();
                    state
                        .unclaimed
                        .retain(|_, (_, _, at)| now.duration_since(*at) < UNCLAIMED_KEEP);
                    state.unclaimed.insert(exit.pid, (seq, exit, now));
                    None
                }
            }
        };
        match callback {
            Some(callback) => callback(exit),
            None => tracing::debug!(
                pid = exit.pid,
                status = exit.status,
                "reaped a process nobody waits for"
            ),
        }
    }

    /// A reaper that reaps nothing: exits reach it only through [`Reaper::record`].
    #[cfg(test)]
    pub fn detached() -> Arc<Reaper> {
        Arc::new(Reaper {
            state: Mutex::new(State::default()),
        })
    }
}

/// Blocks SIGCHLD in the calling thread; threads spawned afterwards inherit the mask.
pub fn block_sigchld() {
    // SAFETY: building a local signal set and changing this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(pid: i32) -> Exit {
        Exit {
            pid,
            status: 3,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn an_exit_before_the_watch_is_returned_only_if_newer_than_the_mark() {
        let reaper = Reaper {
            state: Mutex::new(State::default()),
        };
        let before = reaper.mark();
        {
            let mut state = reaper.lock();
            state.seq += 1;
            let seq = state.seq;
            state.unclaimed.insert(42, (seq, exit(42), Instant::now()));
        }
        let after = reaper.mark();
        assert_eq!(reaper.watch(42, before, |_| {}).map(|e| e.status), Some(3));
        // Taken once; a later watcher registers instead.
        assert_eq!(reaper.watch(42, before, |_| {}), None);
        reaper.forget(42);
        {
            let mut state = reaper.lock();
            state.unclaimed.insert(7, (after, exit(7), Instant::now()));
        }
        assert_eq!(
            reaper.watch(7, after, |_| {}),
            None,
            "an exit recorded before the mark belongs to an older process"
        );
    }
}

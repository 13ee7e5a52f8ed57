//! The host's process table as the tests see it: who descends from whom, and stopping only
//! what the harness itself started.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// One row of `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// The state letter of `/proc/PID/stat` (`R`, `S`, `Z`, ...).
    pub state: char,
    pub comm: String,
    pub cmdline: Vec<String>,
}

impl ProcessInfo {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }

    /// `comm` and arguments, for error messages.
    pub fn describe(&self) -> String {
        if self.cmdline.is_empty() {
            format!("{} [{}]", self.pid, self.comm)
        } else {
            format!("{} {}", self.pid, self.cmdline.join(" "))
        }
    }
}

fn read_process(pid: u32) -> Option<ProcessInfo> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name sits in parentheses and may itself contain spaces or parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let mut rest = stat[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect()
        })
        .unwrap_or_default();
    Some(ProcessInfo {
        pid,
        ppid,
        state,
        comm,
        cmdline,
    })
}

/// Every process visible in `/proc` right now.
pub fn list() -> Vec<ProcessInfo> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_process)
        .collect()
}

/// The processes below `root` in the parent chain (not `root` itself).
pub fn descendants_of(root: u32, table: &[ProcessInfo]) -> Vec<ProcessInfo> {
    let mut children: HashMap<u32, Vec<&ProcessInfo>> = HashMap::new();
    for process in table {
        children.entry(process.ppid).or_default().push(process);
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    let mut seen = HashSet::from([root]);
    while let Some(pid) = queue.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if seen.insert(child.pid) {
                found.push((*child).clone());
                queue.push(child.pid);
            }
        }
    }
    found
}

/// Processes whose command line contains `needle` as one whole argument.
pub fn with_argument(needle: &str, table: &[ProcessInfo]) -> Vec<ProcessInfo> {
    table
        .iter()
        .filter(|process| process.cmdline.iter().any(|arg| arg == needle))
        .cloned()
        .collect()
}

/// Makes this test process the reaper of its orphaned descendants.
///
/// containerd's shims daemonise (their starter exits), so without this they would be
/// re-parented to init and no parent chain would lead back to the test that caused them. With
/// it, everything a test's daemons leave behind stays below the test process, which is what
/// the leak checks look at.
pub fn adopt_orphans() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes a plain integer argument.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        if rc != 0 {
            eprintln!(
                "mxc-conformance: PR_SET_CHILD_SUBREAPER failed: {}",
                std::io::Error::last_os_error()
            );
        }
    });
}

/// Collects the exit status of orphans that were re-parented to this process and have exited.
///
/// Only processes whose name says they came from a container engine are reaped, so that no
/// `std::process::Child` held elsewhere in this process loses its status. libcontainer names
/// its container processes `youki:[1:INTER]` and `youki:[2:INIT]`; an unreaped one keeps the
/// first process of a pid namespace it joined from exiting.
pub fn reap_adopted_orphans() {
    const ADOPTED: &[&str] = &[
        "containerd-shim",
        "runc",
        "crun",
        "mxc-runtime",
        "docker-",
        "youki:",
    ];
    let me = std::process::id();
    for process in list() {
        if process.ppid == me
            && process.is_zombie()
            && ADOPTED.iter().any(|name| process.comm.starts_with(name))
        {
            let _ = waitpid(
                Pid::from_raw(process.pid as i32),
                Some(WaitPidFlag::WNOHANG),
            );
        }
    }
}

fn alive(pid: u32) -> bool {
    read_process(pid).is_some_and(|process| !process.is_zombie())
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub fn signal(pid: u32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), signal);
}

/// SIGTERM, then SIGKILL if `pid` is still alive after `grace`. Callers pass only processes the
/// harness started itself (or that the daemons it started created for it).
pub fn terminate(pid: u32, grace: Duration) {
    signal(pid, Signal::SIGTERM);
    if !wait_gone(pid, grace) {
        signal(pid, Signal::SIGKILL);
        wait_gone(pid, Duration::from_secs(5));
    }
}

/// Waits until `pid` has exited (or is a zombie); true if it did within `limit`.
pub fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs `roots` and everything below them, leaves first.
pub fn kill_trees(roots: &[u32]) {
    let table = list();
    let mut victims = Vec::new();
    for root in roots {
        let mut below = descendants_of(*root, &table);
        below.reverse();
        victims.extend(below.into_iter().map(|process| process.pid));
        victims.push(*root);
    }
    for pid in &victims {
        signal(*pid, Signal::SIGKILL);
    }
    for pid in &victims {
        wait_gone(*pid, Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_itself_and_its_children() {
        let table = list();
        let me = std::process::id();
        let mine = table
            .iter()
            .find(|p| p.pid == me)
            .expect("own process listed");
        assert!(!mine.cmdline.is_empty());

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let below = descendants_of(me, &list());
        assert!(below
            .iter()
            .any(|p| p.pid == child.id() && p.comm == "sleep"));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn terminate_stops_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        terminate(child.id(), Duration::from_secs(5));
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}

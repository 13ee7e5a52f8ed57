//! OOM notifications: the cgroup v1 memory controller signals an eventfd registered through
//! `cgroup.event_control` whenever the OOM killer acts in the cgroup (and once more when the
//! cgroup is removed, which is told apart by the cgroup being gone). One thread waits on all
//! of a shim's containers.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

type OnOom = Arc<dyn Fn() + Send + Sync>;

struct Watch {
    eventfd: OwnedFd,
    _control: File,
    dir: PathBuf,
    on_oom: OnOom,
}

pub struct OomMonitor {
    epoll: OwnedFd,
    watches: Mutex<HashMap<u64, Watch>>,
    next: AtomicU64,
}

impl OomMonitor {
    pub fn start() -> std::io::Result<Arc<OomMonitor>> {
        // SAFETY: epoll_create1 with a valid flag.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let monitor = Arc::new(OomMonitor {
            // SAFETY: a new descriptor nothing else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            watches: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        let thread_monitor = monitor.clone();
        std::thread::Builder::new()
            .name("oom".into())
            .stack_size(64 * 1024)
            .spawn(move || thread_monitor.run())?;
        Ok(monitor)
    }

    /// Calls `on_oom` whenever the OOM killer acts in the memory cgroup of `pid`. Returns a
    /// token for [`OomMonitor::unwatch`], or `None` where there is no v1 memory controller.
    pub fn watch(&self, pid: i32, on_oom: OnOom) -> std::io::Result<Option<u64>> {
        let Some(dir) = memory_cgroup_dir(pid) else {
            return Ok(None);
        };
        let control = File::open(dir.join("memory.oom_control"))?;
        // SAFETY: eventfd with valid flags.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
        let mut event_control = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.event_control"))?;
        event_control
            .write_all(format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd()).as_bytes())?;
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: registering a descriptor we own with our epoll instance.
        let rc = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                eventfd.as_raw_fd(),
                &mut event,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.lock().insert(
            token,
            Watch {
                eventfd,
                _control: control,
                dir,
                on_oom,
            },
        );
        Ok(Some(token))
    }

    pub fn unwatch(&self, token: u64) {
        // Closing the eventfd removes it from the epoll set.
        self.lock().remove(&token);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Watch>> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
        loop {
            // SAFETY: waiting on our epoll instance into a local array.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    -1,
                )
            };
            if n < 0 {
                continue; // EINTR
            }
            for event in &events[..n as usize] {
                let token = event.u64;
                let on_oom = {
                    let mut watches = self.lock();
                    let Some(watch) = watches.get(&token) else {
                        continue;
                    };
                    let mut count = [0u8; 8];
                    // SAFETY: an eventfd read of its 8-byte counter into a local.
                    unsafe { libc::read(watch.eventfd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
                    if !watch.dir.join("memory.oom_control").exists() {
                        // The cgroup was removed: this was its last notification.
                        watches.remove(&token);
                        continue;
                    }
                    watch.on_oom.clone()
                };
                // Called without the lock: the callback may take a container's lock, whose
                // holder may be unwatching.
                on_oom();
            }
        }
    }
}

/// The v1 memory cgroup directory of `pid`.
fn memory_cgroup_dir(pid: i32) -> Option<PathBuf> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    })?;
    let mount = memory_mount()?;
    let dir = mount.join(path.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// Where the v1 memory hierarchy is mounted, from `/proc/self/mountinfo`.
fn memory_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        let (fstype, _source, options) = (right.next()?, right.next()?, right.next()?);
        let fields: Vec<&str> = left.split_whitespace().collect();
        let memory = fstype == "cgroup"
            && fields.get(3) == Some(&"/")
            && options.split(',').any(|o| o == "memory");
        memory.then(|| fields.get(4).map(|m| Path::new(m).to_path_buf()))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_memory_cgroup_when_there_is_one() {
        if let Some(dir) = memory_cgroup_dir(std::process::id() as i32) {
            assert!(dir.join("memory.oom_control").exists(), "{}", dir.display());
        }
    }
}

//! Starting the project's executor, `lxc-exec`, for one sandbox. This library lives inside a
//! multi-threaded process (Node), so it never builds a sandbox itself and never forks: it
//! `posix_spawn`s `lxc-exec` (a `vfork`-style start straight into `exec`) with the request in a
//! memfd, the sandbox's stdio, a progress descriptor and a control descriptor, and supervises it.

use std::ffi::{c_char, c_int, CString, OsString};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mxc_runtime::PidFd;

/// The directory name the SDK and `deploy/install.sh` use for this architecture.
pub const ARCH_DIR: &str = if cfg!(target_arch = "aarch64") {
    "arm64"
} else {
    "x64"
};

const EXECUTOR: &str = "lxc-exec";

/// Where this library was loaded from.
fn library_dir() -> io::Result<PathBuf> {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let here = library_dir as *const ();
    // SAFETY: dladdr reads the address of one of this library's functions and fills `info`.
    if unsafe { libc::dladdr(here.cast(), &mut info) } == 0 || info.dli_fname.is_null() {
        return Err(io::Error::other(
            "cannot tell where libmxc_ffi.so was loaded from",
        ));
    }
    // SAFETY: dladdr set dli_fname to a NUL-terminated path that lives as long as the library.
    let path = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let path = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    let path = std::fs::canonicalize(path)?;
    Ok(path.parent().unwrap_or(Path::new("/")).to_path_buf())
}

/// This project's `lxc-exec`: beside the library (the build leaves both in `target/release`),
/// or in its architecture directory (`deploy/install.sh` puts it in `<dir>/x64`). Never
/// `MXC_BIN_DIR`: that may name MXC's own executor, which does not speak to this library.
pub fn locate() -> io::Result<PathBuf> {
    let dir = library_dir()?;
    let candidates = [dir.join(EXECUTOR), dir.join(ARCH_DIR).join(EXECUTOR)];
    candidates
        .iter()
        .find(|path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .cloned()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "mxc-oci's lxc-exec was not found beside libmxc_ffi.so (looked for {} and {})",
                    candidates[0].display(),
                    candidates[1].display()
                ),
            )
        })
}

/// A pipe whose both ends close on exec (only the ends handed to a child reach it).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The request as a sealed-off in-memory file the executor reads as `/dev/fd/3`: it never
/// appears in a command line or in the environment, where other users could read it.
pub fn request_file(request: &str) -> io::Result<OwnedFd> {
    let name = c"mxc-request";
    // SAFETY: a constant name and flags; returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    file.write_all(request.as_bytes())?;
    Ok(file.into())
}

/// `/dev/null`, for a run whose workload reads no input.
pub fn null_input() -> io::Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")?.into())
}

/// A started executor.
pub struct Child {
    pub pid: i32,
    pub pidfd: PidFd,
}

extern "C" {
    // glibc 2.34 and later.
    fn posix_spawn_file_actions_addclosefrom_np(
        actions: *mut libc::posix_spawn_file_actions_t,
        from: c_int,
    ) -> c_int;
}

fn check(rc: c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Starts `program args...` with `fds[i]` as its descriptor `i` and nothing else open, default
/// signal dispositions and an empty signal mask (Node ignores SIGPIPE; the executor must not
/// inherit that).
pub fn spawn(program: &Path, args: &[OsString], fds: &[&OwnedFd]) -> io::Result<Child> {
    // Move every source above the targets first, so that no dup2 overwrites a later source.
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| {
            // SAFETY: duplicating a valid descriptor to one >= 64, close-on-exec.
            let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
            if new < 0 {
                Err(io::Error::last_os_error())
            } else {
                // SAFETY: fcntl just returned this descriptor.
                Ok(unsafe { OwnedFd::from_raw_fd(new) })
            }
        })
        .collect::<io::Result<_>>()?;
    let program = CString::new(program.as_os_str().as_bytes())?;
    let mut argv: Vec<CString> = vec![program.clone()];
    for arg in args {
        argv.push(CString::new(arg.as_bytes())?);
    }
    let envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            CString::new(entry).ok()
        })
        .collect();
    let pointers = |list: &[CString]| -> Vec<*mut c_char> {
        list.iter()
            .map(|s| s.as_ptr() as *mut c_char)
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect()
    };
    let argv_ptrs = pointers(&argv);
    let envp_ptrs = pointers(&envp);

    // SAFETY: the file actions and attributes are initialised, used and destroyed here; every
    // pointer handed to posix_spawn stays alive until it returns.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut actions))?;
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        if let Err(e) = check(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut actions);
            return Err(e);
        }
        let result = (|| -> io::Result<libc::pid_t> {
            for (target, source) in high.iter().enumerate() {
                check(libc::posix_spawn_file_actions_adddup2(
                    &mut actions,
                    source.as_raw_fd(),
                    target as RawFd,
                ))?;
            }
            check(posix_spawn_file_actions_addclosefrom_np(
                &mut actions,
                high.len() as c_int,
            ))?;
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            check(libc::posix_spawnattr_setsigmask(&mut attr, &empty))?;
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            check(libc::posix_spawnattr_setsigdefault(&mut attr, &all))?;
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            ))?;
            let mut pid: libc::pid_t = 0;
            check(libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                &actions,
                &attr,
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
            ))?;
            Ok(pid)
        })();
        libc::posix_spawnattr_destroy(&mut attr);
        libc::posix_spawn_file_actions_destroy(&mut actions);
        let pid = result?;
        // Our own child cannot be reaped by anyone else, so the pid is still ours here.
        let pidfd = PidFd::open(pid)?;
        Ok(Child { pid, pidfd })
    }
}

/// Runs `program args...` with no input and returns its standard output, if it exits with
/// status 0 within `timeout` (it is killed otherwise).
pub fn output(program: &Path, args: &[&str], timeout: std::time::Duration) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let input = null_input()?;
    let (out_read, out_write) = pipe()?;
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let child = spawn(program, &args, &[&input, &out_write, &input])?;
    drop((input, out_write));
    let mut stdout = Vec::new();
    let deadline = std::time::Instant::now() + timeout;
    let mut file = std::fs::File::from(out_read);
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if rc == 0 {
            let _ = child.pidfd.send_signal(libc::SIGKILL);
            let _ = child.pidfd.reap(true);
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
        }
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => stdout.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    match child.pidfd.reap(true)? {
        Some(mxc_runtime::ExitStatus::Exited(0)) => Ok(stdout),
        status => Err(io::Error::other(format!("exited with {status:?}"))),
    }
}

//! What this host gives the runtime, checked by trying it where that is safe (a user
//! namespace, nftables in a fresh network namespace, an idmapped mount of a directory), and
//! what is missing with the fix for each. `mxc doctor` prints it; `--json` gives the same data.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Ok,
    /// Missing or broken, and something `mxc run` or the runtime needs.
    Missing,
    /// Missing, needed only for some configs or entry points; or works with a caveat.
    Warning,
    /// Not set up, and not needed unless this host should run it (an engine's config).
    Info,
}

/// One fact about the host.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked, e.g. `user namespaces`.
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it, when the status is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Everything `mxc doctor` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub kernel: String,
    /// The host is a WSL2 distribution (Microsoft's kernel).
    pub wsl: bool,
    /// What runs as pid 1 (systemd, init, ...).
    pub init: String,
    pub checks: Vec<Check>,
    /// The programs the runtime runs on the host, and their Debian packages.
    pub host_programs: &'static [HostProgram],
}

impl Report {
    /// Nothing that the runtime needs is missing.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Missing)
    }

    /// The report as lines for a terminal.
    pub fn render(&self) -> String {
        let mut out = format!(
            "kernel {}{}, pid 1 is {}\n",
            self.kernel,
            if self.wsl { " (WSL2)" } else { "" },
            self.init
        );
        for check in &self.checks {
            let tag = match check.status {
                Status::Ok => "ok",
                Status::Missing => "MISSING",
                Status::Warning => "warning",
                Status::Info => "info",
            };
            out.push_str(&format!("{tag:<8} {}: {}\n", check.name, check.detail));
            if let Some(fix) = &check.fix {
                out.push_str(&format!("{:<8}   fix: {fix}\n", ""));
            }
        }
        out.push_str(if self.ready() {
            "this host can run mxc sandboxes\n"
        } else {
            "this host cannot run mxc sandboxes until what is MISSING is fixed\n"
        });
        out
    }
}

/// A program the runtime runs on the host, and the Debian package that has it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HostProgram {
    pub program: &'static str,
    pub package: &'static str,
    /// What it is for.
    pub purpose: &'static str,
    /// Every sandbox needs it (else only some configs or entry points).
    pub always: bool,
}

/// The programs the engine executes on the host.
pub const HOST_PROGRAMS: &[HostProgram] = &[
    HostProgram {
        program: "nft",
        package: "nftables",
        purpose: "network rules inside every sandbox",
        always: true,
    },
    HostProgram {
        program: "slirp4netns",
        package: "slirp4netns",
        purpose: "connectivity of a sandbox whose policy allows egress",
        always: true,
    },
    HostProgram {
        program: "newuidmap",
        package: "uidmap",
        purpose: "bundles that map several id ranges into a user namespace",
        always: false,
    },
    HostProgram {
        program: "ps",
        package: "procps",
        purpose: "`mxc-runtime ps`",
        always: false,
    },
];

/// Runs every check.
pub fn examine() -> Report {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let wsl = kernel.to_ascii_lowercase().contains("microsoft");
    let init = std::fs::read_to_string("/proc/1/comm")
        .unwrap_or_else(|_| "unknown".into())
        .trim()
        .to_string();
    let mut checks = vec![user_namespaces(), seccomp(), nftables()];
    let mountinfo = read("/proc/self/mountinfo");
    checks.extend(cgroups(&mountinfo, Path::new("/sys/fs/cgroup")));
    checks.push(cgroup_attach(&mountinfo, &read("/proc/cmdline")));
    checks.extend(
        HOST_PROGRAMS
            .iter()
            .filter(|p| p.program != "nft")
            .map(program),
    );
    checks.push(idmapped_mounts());
    checks.push(node_config());
    checks.push(containerd(Path::new("/etc/containerd/config.toml")));
    checks.push(docker(Path::new("/etc/docker/daemon.json")));
    Report {
        kernel,
        wsl,
        init,
        checks,
        host_programs: HOST_PROGRAMS,
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        fix: None,
    }
}

impl Check {
    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// Runs `command` in a child that first unshares `flags`; whether it exited 0, and its stderr.
fn in_new_namespaces(mut command: Command, flags: nix::sched::CloneFlags) -> (bool, String) {
    // SAFETY: unshare is async-signal-safe.
    unsafe {
        command.pre_exec(move || nix::sched::unshare(flags).map_err(std::io::Error::from));
    }
    match command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(out) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ),
        Err(err) => (false, err.to_string()),
    }
}

fn user_namespaces() -> Check {
    let max = read("/proc/sys/user/max_user_namespaces");
    if max.trim() == "0" {
        return check(
            "user namespaces",
            Status::Missing,
            "user.max_user_namespaces is 0",
        )
        .fix("sysctl -w user.max_user_namespaces=15000 (and in /etc/sysctl.d/ to keep it)");
    }
    let (ok, err) = in_new_namespaces(
        Command::new("/bin/true"),
        nix::sched::CloneFlags::CLONE_NEWUSER,
    );
    if ok {
        check(
            "user namespaces",
            Status::Ok,
            format!("a new user namespace works (max {})", max.trim()),
        )
    } else {
        check(
            "user namespaces",
            Status::Missing,
            format!("creating one failed: {err}"),
        )
        .fix("a kernel with CONFIG_USER_NS; check user.max_user_namespaces and any LSM that restricts them (kernel.apparmor_restrict_unprivileged_userns)")
    }
}

fn seccomp() -> Check {
    let status = read("/proc/self/status");
    let mode = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim);
    let filters = read("/proc/sys/kernel/seccomp/actions_avail");
    match mode {
        Some(_) if filters.contains("errno") => check(
            "seccomp",
            Status::Ok,
            format!("filters available (actions: {})", filters.trim()),
        ),
        _ => check(
            "seccomp",
            Status::Missing,
            "the kernel has no seccomp filter support",
        )
        .fix("a kernel built with CONFIG_SECCOMP_FILTER"),
    }
}

fn nftables() -> Check {
    let Some(nft) = mxc_runtime::network::which("nft") else {
        return check("nftables", Status::Missing, "nft is not installed")
            .fix("apt-get install nftables");
    };
    let mut command = Command::new(&nft);
    command.args(["add", "table", "inet", "mxc_doctor"]);
    let (ok, err) = in_new_namespaces(command, nix::sched::CloneFlags::CLONE_NEWNET);
    if ok {
        check(
            "nftables",
            Status::Ok,
            format!("{} adds a table in a new network namespace", nft.display()),
        )
    } else {
        check(
            "nftables",
            Status::Missing,
            format!("{} cannot add a table: {err}", nft.display()),
        )
        .fix("a kernel with nf_tables (modprobe nf_tables; CONFIG_NF_TABLES_INET), and run as root")
    }
}

fn program(program: &HostProgram) -> Check {
    match mxc_runtime::network::which(program.program) {
        Some(path) => check(
            program.program,
            Status::Ok,
            format!("{} ({})", path.display(), program.purpose),
        ),
        None => check(
            program.program,
            if program.always {
                Status::Missing
            } else {
                Status::Warning
            },
            format!("not installed; needed for {}", program.purpose),
        )
        .fix(format!("apt-get install {}", program.package)),
    }
}

/// The cgroup layout from `/proc/self/mountinfo`, and the controllers the runtime uses.
pub fn cgroups(mountinfo: &str, root: &Path) -> Vec<Check> {
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split_whitespace();
        let fstype = right.next().unwrap_or_default();
        let options = right.nth(1).unwrap_or_default();
        let point = left.split_whitespace().nth(4).unwrap_or_default();
        match fstype {
            "cgroup2" => v2 = v2.or(Some(PathBuf::from(point))),
            "cgroup" => v1.extend(
                options
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                    .filter(|o| !o.starts_with("no") && !o.starts_with("rel"))
                    .map(String::from),
            ),
            _ => {}
        }
    }
    let wanted = ["cpu", "memory", "pids"];
    let v1_is_empty = v1.is_empty();
    let layout;
    let mut available: Vec<String>;
    match (&v2, v1.is_empty()) {
        (Some(mount), true) => {
            layout = format!("v2 (unified at {})", mount.display());
            let controllers =
                std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
            available = controllers.split_whitespace().map(String::from).collect();
            // cgroup.kill and cgroup.freeze need no controller.
            available.push("freezer".into());
        }
        (_, false) => {
            layout = match &v2 {
                Some(mount) => format!("hybrid (v1 controllers, cgroup2 at {})", mount.display()),
                None => "v1 (legacy)".into(),
            };
            available = v1;
        }
        (None, true) => {
            return vec![
                check("cgroups", Status::Missing, "no cgroup hierarchy is mounted")
                    .fix(format!("mount -t cgroup2 none {}", root.display())),
            ];
        }
    }
    let missing: Vec<&str> = wanted
        .iter()
        .chain(["freezer"].iter())
        .filter(|c| !available.iter().any(|a| a == *c))
        .copied()
        .collect();
    let mut checks = vec![check("cgroup version", Status::Ok, layout)];
    let controllers = format!("available: {}", {
        let mut list = available.clone();
        list.sort();
        list.dedup();
        list.join(" ")
    });
    checks.push(if missing.is_empty() {
        check("cgroup controllers", Status::Ok, controllers)
    } else {
        check(
            "cgroup controllers",
            Status::Missing,
            format!("{} missing ({controllers})", missing.join(", ")),
        )
        .fix(if v1_is_empty {
            "enable them for child groups: echo '+cpu +memory +pids' > /sys/fs/cgroup/cgroup.subtree_control".to_string()
        } else {
            "boot with the controllers enabled (for WSL2: kernelCommandLine = cgroup_no_v1=all in .wslconfig gives a v2-only layout with all of them)".to_string()
        })
    });
    checks
}

/// Whether moving a process into a cgroup is cheap. Every container start moves its first
/// process into the container's cgroups, and by default that write waits for an RCU grace
/// period whenever no other move happened in the last few milliseconds: 8 to 16 ms per start
/// where this was measured. `favordynmods` (a cgroup2 mount option since Linux 6.0, or
/// `cgroup_favordynmods=true` on the kernel command line since 6.7, for every layout) makes
/// moves cheap at the price of slightly slower forks and exits host-wide; the kernel's own
/// default (`CONFIG_CGROUP_FAVOR_DYNMODS`) is not visible from here.
pub fn cgroup_attach(mountinfo: &str, cmdline: &str) -> Check {
    let on_mount = mountinfo.lines().any(|line| {
        line.split_once(" - ").is_some_and(|(_, right)| {
            let mut fields = right.split_whitespace();
            matches!(fields.next(), Some("cgroup" | "cgroup2"))
                && fields
                    .nth(1)
                    .is_some_and(|options| options.split(',').any(|o| o == "favordynmods"))
        })
    });
    let on_cmdline = cmdline.split_whitespace().any(|arg| {
        matches!(
            arg.strip_prefix("cgroup_favordynmods="),
            Some("1" | "y" | "Y" | "true" | "on")
        )
    });
    if on_mount || on_cmdline {
        let how = if on_cmdline {
            "cgroup_favordynmods on the kernel command line"
        } else {
            "a cgroup mount with favordynmods"
        };
        return check(
            "cgroup attach latency",
            Status::Ok,
            format!("moving a process into a cgroup is cheap ({how})"),
        );
    }
    check(
        "cgroup attach latency",
        Status::Info,
        "each container start may wait for an RCU grace period (8-16 ms) when it moves its first \
         process into its cgroups, unless starts follow each other within a few milliseconds",
    )
    .fix(
        "for lower start latency, boot with cgroup_favordynmods=true (Linux 6.7 or later), or on \
         a v2-only host remount with `mount -o remount,favordynmods /sys/fs/cgroup`; forks and \
         exits become slightly slower host-wide",
    )
}

/// Whether an idmapped mount of a directory under the temporary directory works: a user
/// namespace of a child process, `open_tree` and `mount_setattr(MOUNT_ATTR_IDMAP)`.
fn idmapped_mounts() -> Check {
    match probe_idmapped_mount(&std::env::temp_dir()) {
        Ok(()) => check(
            "idmapped mounts",
            Status::Ok,
            format!("an idmapped mount of {} works", std::env::temp_dir().display()),
        ),
        Err(reason) => check(
            "idmapped mounts",
            Status::Warning,
            format!("not available: {reason}; bundles whose mounts ask for uidMappings fail"),
        )
        .fix("Linux 5.12 or newer, on a filesystem that supports them (ext4, xfs, btrfs, tmpfs from 6.3, overlayfs from 5.19)"),
    }
}

fn probe_idmapped_mount(dir: &Path) -> Result<(), String> {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;

    // A child in a user namespace of its own, waiting until it is told to exit.
    let mut child = unsafe {
        Command::new("/bin/sh")
            .args(["-c", "read x"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .pre_exec(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)
                    .map_err(std::io::Error::from)
            })
            .spawn()
            .map_err(|e| format!("starting a process in a user namespace: {e}"))?
    };
    let result = (|| {
        let pid = child.id();
        std::fs::write(format!("/proc/{pid}/uid_map"), "0 65534 1\n")
            .map_err(|e| format!("writing uid_map: {e}"))?;
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny")
            .map_err(|e| format!("writing setgroups: {e}"))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), "0 65534 1\n")
            .map_err(|e| format!("writing gid_map: {e}"))?;
        let userns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .map_err(|e| format!("opening the user namespace: {e}"))?;
        let path = CString::new(dir.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: open_tree with a valid path; the result is checked.
        let tree = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                path.as_ptr(),
                libc::OPEN_TREE_CLONE
                    | libc::OPEN_TREE_CLOEXEC
                    | libc::AT_RECURSIVE as libc::c_uint,
            )
        };
        if tree < 0 {
            return Err(format!("open_tree: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: the kernel just returned this descriptor.
        let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
        let attr = libc::mount_attr {
            attr_set: libc::MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.as_raw_fd() as u64,
        };
        let empty = CString::default();
        // SAFETY: mount_setattr on a detached tree we own, with a valid struct and size.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                tree.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_EMPTY_PATH as libc::c_uint,
                &attr as *const libc::mount_attr,
                std::mem::size_of::<libc::mount_attr>(),
            )
        };
        if rc < 0 {
            return Err(format!(
                "mount_setattr(MOUNT_ATTR_IDMAP) on {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    })();
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn node_config() -> Check {
    let path = Path::new(mxc_runtime::policy::DEFAULT_NODE_CONFIG);
    if !path.exists() {
        return check(
            "node configuration",
            Status::Info,
            format!("{} does not exist: the shim and mxc-runtime apply the built-in default-deny policy", path.display()),
        )
        .fix("deploy/install.sh writes one (see deploy/config.toml)");
    }
    match mxc_runtime::policy::NodeConfig::load(&mxc_runtime::policy::NodeContext::default()) {
        Ok(config) => check(
            "node configuration",
            Status::Ok,
            format!(
                "{} (policies in {}, audit log {})",
                path.display(),
                config.policy_dir.display(),
                config.audit_log.display()
            ),
        ),
        Err(err) => check("node configuration", Status::Missing, err.to_string()).fix(format!(
            "correct {} (see deploy/config.toml)",
            path.display()
        )),
    }
}

/// containerd's config and whether it has the `mxc` runtime.
pub fn containerd(config: &Path) -> Check {
    let Some(binary) = mxc_runtime::network::which("containerd") else {
        return check("containerd", Status::Info, "containerd is not installed");
    };
    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let shim = mxc_runtime::network::which("containerd-shim-mxc-v1");
    let text = std::fs::read_to_string(config).unwrap_or_default();
    let has_runtime = text.lines().any(|l| {
        let l = l.trim();
        l.starts_with('[') && (l.contains("runtimes.mxc]") || l.contains("runtimes.\"mxc\"]"))
    });
    match (has_runtime, shim) {
        (true, Some(shim)) => check(
            "containerd",
            Status::Ok,
            format!(
                "{version}: {} has the mxc runtime; shim {}",
                config.display(),
                shim.display()
            ),
        ),
        (true, None) => check(
            "containerd",
            Status::Missing,
            format!(
                "{version}: {} has the mxc runtime but containerd-shim-mxc-v1 is not on PATH",
                config.display()
            ),
        )
        .fix("deploy/install.sh (installs it in /usr/local/bin)"),
        (false, _) => check(
            "containerd",
            Status::Info,
            format!("{version}: {} has no mxc runtime", config.display()),
        )
        .fix("deploy/containerd-config.sh, then restart containerd"),
    }
}

/// Docker's daemon.json and whether it has the `mxc` runtime.
pub fn docker(daemon_json: &Path) -> Check {
    if mxc_runtime::network::which("dockerd").is_none() {
        return check("docker", Status::Info, "dockerd is not installed");
    }
    let mut text = String::new();
    let _ = std::fs::File::open(daemon_json).and_then(|mut f| f.read_to_string(&mut text));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    match json["runtimes"]["mxc"]["path"].as_str() {
        Some(path) if Path::new(path).is_file() => check(
            "docker",
            Status::Ok,
            format!("{} has the mxc runtime ({path})", daemon_json.display()),
        ),
        Some(path) => check(
            "docker",
            Status::Missing,
            format!(
                "{} names {path} for the mxc runtime, which does not exist",
                daemon_json.display()
            ),
        )
        .fix("deploy/install.sh, or correct the path"),
        None => check(
            "docker",
            Status::Info,
            format!("{} has no mxc runtime", daemon_json.display()),
        )
        .fix("add deploy/docker-daemon.json's runtimes entry to it and restart dockerd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_only_host() {
        let dir = tempfile::tempdir().unwrap();
        let mount = format!(
            "25 1 0:22 / {} rw - cgroup2 cgroup2 rw\n",
            dir.path().display()
        );
        std::fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let checks = cgroups(&mount, dir.path());
        assert!(checks[0].detail.starts_with("v2 (unified"), "{checks:?}");
        assert_eq!(checks[1].status, Status::Ok, "{checks:?}");
        // Without the memory controller.
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu pids\n").unwrap();
        let checks = cgroups(&mount, dir.path());
        assert_eq!(checks[1].status, Status::Missing, "{checks:?}");
        assert!(checks[1].detail.starts_with("memory missing"), "{checks:?}");
        assert!(checks[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("subtree_control"));
    }

    #[test]
    fn a_hybrid_host() {
        let info = "\
31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
34 30 0:30 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
35 30 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
36 30 0:32 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
";
        let checks = cgroups(info, Path::new("/sys/fs/cgroup"));
        assert!(checks[0].detail.starts_with("hybrid"), "{checks:?}");
        assert_eq!(checks[1].status, Status::Ok, "{checks:?}");
    }

    #[test]
    fn cgroup_attach_latency() {
        let hybrid = "\
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
";
        let plain = cgroup_attach(hybrid, "console=ttyS0 quiet");
        assert_eq!(plain.status, Status::Info, "{plain:?}");
        assert!(plain
            .fix
            .as_deref()
            .unwrap()
            .contains("cgroup_favordynmods=true"));
        // Not fooled by a mount point or another option that merely contains the word.
        let named = "40 30 0:40 / /mnt/favordynmods rw - tmpfs tmpfs rw,favordynmods\n";
        assert_eq!(cgroup_attach(named, "").status, Status::Info);
        let off = cgroup_attach(hybrid, "cgroup_favordynmods=false");
        assert_eq!(off.status, Status::Info, "{off:?}");
        let booted = cgroup_attach(hybrid, "quiet cgroup_favordynmods=true");
        assert_eq!(booted.status, Status::Ok, "{booted:?}");
        let v2 = "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,favordynmods\n";
        let mounted = cgroup_attach(v2, "");
        assert_eq!(mounted.status, Status::Ok, "{mounted:?}");
        assert!(mounted.detail.contains("mount"), "{mounted:?}");
    }

    #[test]
    fn engine_configs() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("daemon.json");
        std::fs::write(
            &json,
            r#"{"runtimes": {"mxc": {"path": "/nonexistent/mxc-runtime"}}}"#,
        )
        .unwrap();
        if mxc_runtime::network::which("dockerd").is_some() {
            assert_eq!(docker(&json).status, Status::Missing);
            std::fs::write(&json, "{}").unwrap();
            assert_eq!(docker(&json).status, Status::Info);
        }
    }

    #[test]
    fn this_host_is_examined() {
        let report = examine();
        let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
        for name in [
            "user namespaces",
            "seccomp",
            "nftables",
            "cgroup version",
            "cgroup controllers",
            "cgroup attach latency",
            "slirp4netns",
            "idmapped mounts",
            "containerd",
            "docker",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        assert!(report.render().contains("user namespaces"));
    }
}

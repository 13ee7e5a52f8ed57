//! Shared set-up for the runtime-level tests: a busybox bundle in a temporary directory, the
//! built `mxc-runtime` binary with a private `--root`, and leak checks.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_mxc-runtime");

/// Real containers need root and busybox. Without them a test fails, saying why: a test that
/// returned early would pass without having run anything.
pub fn require_containers() {
    let root = nix::unistd::geteuid().is_root();
    let busybox = Path::new("/bin/busybox").exists();
    assert!(
        root && busybox,
        "this test runs real containers: it needs root and /bin/busybox (package busybox-static), \
         as ./conformance/test.sh provides"
    );
}

/// A unique container id (it also names the cgroup, so it must not collide across tests).
pub fn unique_id(name: &str) -> String {
    format!("mxcrt-{name}-{}", std::process::id())
}

pub struct Runtime {
    pub root: tempfile::TempDir,
}

impl Runtime {
    pub fn new() -> Runtime {
        Runtime {
            root: tempfile::tempdir().expect("temp root"),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--root").arg(self.root.path()).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs a command to completion. Output goes through files, not pipes: a container
    /// created by the command inherits them and would otherwise hold a pipe open for as long
    /// as it lives (as with runc).
    pub fn run(&self, args: &[&str]) -> Output {
        let out = tempfile::tempfile().unwrap();
        let err = tempfile::tempfile().unwrap();
        let status = self
            .cmd(args)
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .status()
            .expect("run mxc-runtime");
        let read = |mut f: std::fs::File| {
            use std::io::{Read, Seek};
            let mut buf = Vec::new();
            f.rewind().unwrap();
            f.read_to_end(&mut buf).unwrap();
            buf
        };
        Output {
            status,
            stdout: read(out),
            stderr: read(err),
        }
    }

    /// Runs a command that must succeed silently on stderr, as runc's callers expect.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "mxc-runtime {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "mxc-runtime {args:?} wrote to stderr on success: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail with exit status 1 and one line on stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "mxc-runtime {args:?} should fail: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "one line on stderr: {stderr:?}"
        );
        stderr
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status(id);
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id} stayed {status}, wanted {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that nothing of container `id` remains: state directories, cgroups, processes.
    pub fn assert_no_leaks(&self, id: &str) {
        let leftovers: Vec<PathBuf> = std::fs::read_dir(self.root.path())
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for path in &leftovers {
            if path.file_name().is_some_and(|n| n == ":mxc") {
                let inner: Vec<_> = std::fs::read_dir(path).unwrap().flatten().collect();
                assert!(inner.is_empty(), "engine state left: {inner:?}");
            } else {
                panic!("state left under the root: {}", path.display());
            }
        }
        assert_no_cgroups(id);
        assert_no_mounts(&[self.root.path().to_str().unwrap(), id]);
    }
}

/// No mount in this (the host's) mount namespace mentions any of `needles`.
pub fn assert_no_mounts(needles: &[&str]) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in info.lines() {
        for needle in needles {
            assert!(!line.contains(needle), "mount left: {line}");
        }
    }
}

/// Every cgroup hierarchy's mount point.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let fields: Vec<&str> = left.split_whitespace().collect();
            ((fstype == "cgroup" || fstype == "cgroup2") && fields.get(3) == Some(&"/"))
                .then(|| PathBuf::from(fields[4]))
        })
        .collect()
}

pub fn assert_no_cgroups(id: &str) {
    for hierarchy in cgroup_hierarchies() {
        let dir = hierarchy.join(id);
        assert!(!dir.exists(), "cgroup left: {}", dir.display());
    }
}

/// A bundle with a busybox root filesystem and `config.json` from `mxc-runtime spec`, edited
/// to run `args` without a terminal.
pub struct Bundle {
    pub dir: tempfile::TempDir,
}

const APPLETS: &[&str] = &[
    "sh", "sleep", "cat", "echo", "id", "grep", "ls", "true", "false", "kill", "ps", "touch",
    "hostname", "env", "head", "yes", "mkdir",
];

impl Bundle {
    pub fn busybox(args: &[&str]) -> Bundle {
        let dir = tempfile::tempdir().expect("bundle dir");
        let rootfs = dir.path().join("rootfs");
        for sub in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(sub)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let out = Command::new(BIN)
            .args(["spec", "--bundle"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "spec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bundle = Bundle { dir };
        bundle.edit(|config| {
            config["process"]["terminal"] = Value::Bool(false);
            config["process"]["args"] = serde_json::json!(args);
        });
        bundle
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn path_str(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    pub fn config(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path().join("config.json")).unwrap()).unwrap()
    }

    pub fn edit(&self, f: impl FnOnce(&mut Value)) {
        let mut config = self.config();
        f(&mut config);
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
    }
}

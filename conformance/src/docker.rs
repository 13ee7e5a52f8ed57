//! A private dockerd on a private containerd: its own data root, exec root, pid file, socket
//! and `daemon.json` (with the runtime `mxc` pointing at the project's `mxc-runtime`), no
//! iptables and no default bridge. Containers run with `--network none` unless a test builds
//! its own network.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;
use tempfile::TempDir;

use crate::bins;
use crate::command::{poll, run, Output};
use crate::containerd::{unmount_all_under, Containerd, ContainerdOptions};
use crate::engines::DockerRelease;
use crate::images::Images;
use crate::processes;

/// The name of the project's runtime in `daemon.json` (`docker run --runtime mxc`).
pub const MXC_RUNTIME_NAME: &str = "mxc";

/// How long one `docker` command may take.
pub const DOCKER_LIMIT: Duration = Duration::from_secs(120);
/// How long dockerd may take to come up.
pub const START_LIMIT: Duration = Duration::from_secs(60);

/// What a test may change about the private dockerd.
#[derive(Debug, Clone)]
pub struct DockerdOptions {
    /// Which Docker (and so which containerd under it).
    pub release: DockerRelease,
    /// `runtimeArgs` of the `mxc` runtime (e.g. `["--config", "/path/config.toml"]`).
    pub mxc_runtime_args: Vec<String>,
    /// Extra environment for dockerd.
    pub env: Vec<(String, String)>,
    /// `docker load` the busybox image once it is up.
    pub load_busybox: bool,
}

impl Default for DockerdOptions {
    fn default() -> Self {
        DockerdOptions {
            release: DockerRelease::default(),
            mxc_runtime_args: Vec::new(),
            env: Vec::new(),
            load_busybox: true,
        }
    }
}

/// A running private dockerd and the containerd under it.
#[derive(Debug)]
pub struct Dockerd {
    release: DockerRelease,
    child: Child,
    containerd: Option<Containerd>,
    // Last: removed after both daemons have stopped.
    dir: TempDir,
}

impl Dockerd {
    /// A private dockerd with the default options, busybox loaded.
    pub fn start() -> Result<Dockerd> {
        Dockerd::start_with(DockerdOptions::default())
    }

    /// A private dockerd of `release` with the default options, busybox loaded.
    pub fn start_release(release: DockerRelease) -> Result<Dockerd> {
        Dockerd::start_with(DockerdOptions {
            release,
            ..DockerdOptions::default()
        })
    }

    pub fn start_with(options: DockerdOptions) -> Result<Dockerd> {
        crate::engines::require(&options.release.dockerd())?;
        processes::adopt_orphans();
        if options.load_busybox {
            Images::get()?;
        }
        let containerd = Containerd::start_with(ContainerdOptions {
            release: options.release.containerd(),
            import_images: false,
            ..ContainerdOptions::default()
        })?;
        let dir = crate::scratch_dir("mxc-dkd")?;
        for sub in ["data", "exec", "cli"] {
            fs::create_dir_all(dir.path().join(sub))?;
        }
        let daemon_json = json!({
            "runtimes": {
                MXC_RUNTIME_NAME: {
                    "path": bins::bin_dir().join(bins::MXC_RUNTIME),
                    "runtimeArgs": options.mxc_runtime_args,
                }
            }
        });
        let config = dir.path().join("daemon.json");
        fs::write(&config, serde_json::to_vec_pretty(&daemon_json)?)?;

        let log = File::create(dir.path().join("dockerd.log"))?;
        let mut cmd = Command::new(options.release.dockerd());
        cmd.arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("docker.pid"))
            .arg("-H")
            .arg(format!(
                "unix://{}",
                dir.path().join("docker.sock").display()
            ))
            .arg("--containerd")
            .arg(containerd.address())
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--userland-proxy=false",
            ])
            .env("PATH", bins::path_with(&options.release.helper_dirs()))
            .env_remove("DOCKER_HOST")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("starting dockerd")?;
        let mut dockerd = Dockerd {
            release: options.release,
            child,
            containerd: Some(containerd),
            dir,
        };
        dockerd.wait_ready()?;
        if options.load_busybox {
            dockerd.load(&Images::get()?.busybox_archive())?;
        }
        Ok(dockerd)
    }

    fn wait_ready(&mut self) -> Result<()> {
        poll(START_LIMIT, || {
            if let Some(status) = self.child.try_wait()? {
                bail!("dockerd exited with {status}:\n{}", self.log_tail(40));
            }
            if !self.socket().exists() {
                return Ok(None);
            }
            Ok(self.docker(&["version"])?.success().then_some(()))
        })
        .with_context(|| format!("waiting for dockerd:\n{}", self.log_tail(40)))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Which Docker this is.
    pub fn release(&self) -> DockerRelease {
        self.release
    }

    /// The API socket (`docker -H unix://...`).
    pub fn socket(&self) -> PathBuf {
        self.dir().join("docker.sock")
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir().join("data")
    }

    pub fn exec_root(&self) -> PathBuf {
        self.dir().join("exec")
    }

    /// The state root runc gets for containers of runtime `runtime` (`runc`, `mxc`).
    pub fn runtime_root(&self, runtime: &str) -> PathBuf {
        self.exec_root().join(format!("runtime-{runtime}"))
    }

    /// The containerd this dockerd drives.
    pub fn containerd(&self) -> &Containerd {
        self.containerd
            .as_ref()
            .expect("the containerd of a running dockerd")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `docker -H unix://SOCKET ARGS...`; its output whatever its status.
    pub fn docker(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(self.release.docker_cli());
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args)
            .env("DOCKER_CONFIG", self.dir().join("cli"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        run(&mut cmd, DOCKER_LIMIT)
    }

    /// `docker load -i ARCHIVE`.
    pub fn load(&self, archive: &Path) -> Result<()> {
        let archive = archive.to_string_lossy();
        self.docker(&["load", "-i", &archive])?.ok().map(drop)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- dockerd log ({}) ---\n{}",
                self.dir().display(),
                self.log_tail(60)
            );
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Ok(out) = self.docker(&["ps", "-aq"]) {
                for id in out.stdout.split_whitespace() {
                    let _ = self.docker(&["rm", "-f", id]);
                }
            }
        }
        processes::terminate(self.child.id(), Duration::from_secs(15));
        let _ = self.child.wait();
        // containerd's own drop stops the shims of containers dockerd left.
        self.containerd.take();
        unmount_all_under(self.dir());
        processes::reap_adopted_orphans();
    }
}

//! A private containerd: its own root, state, socket and config under a temporary directory,
//! the project's binaries first on its `PATH` (so that it finds `containerd-shim-mxc-v1`), and
//! the CRI plugin set up as TESTING.md describes. Dropping it removes what its containers left,
//! stops it, stops the shims it started and removes its directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::mount::{umount2, MntFlags};
use serde_json::json;
use tempfile::TempDir;

use crate::bins;
use crate::command::{poll, run, Output};
use crate::engines::ContainerdRelease;
use crate::images::{Images, BUSYBOX_REF, PAUSE_REF};
use crate::leaks::mounts_under;
use crate::netns::Subnet;
use crate::processes;

/// The runtime type of the project's shim (containerd finds `containerd-shim-mxc-v1`).
pub const MXC_RUNTIME_TYPE: &str = "io.containerd.mxc.v1";
/// The runtime type of containerd's own runc shim.
pub const RUNC_RUNTIME_TYPE: &str = "io.containerd.runc.v2";
/// The CRI runtime handler of the project's shim, as a `RuntimeClass` names it.
pub const MXC_HANDLER: &str = "mxc";
/// The CRI runtime handler of containerd's runc shim.
pub const RUNC_HANDLER: &str = "runc";
/// The namespace the CRI plugin keeps its images and containers in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// How long one `ctr` command may take.
pub const CTR_LIMIT: Duration = Duration::from_secs(120);
/// How long containerd (and its CRI plugin) may take to come up.
pub const START_LIMIT: Duration = Duration::from_secs(60);

/// How CRI pods get a network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PodNetwork {
    /// An empty private CNI config dir: only host-network pods start.
    #[default]
    HostOnly,
    /// A `ptp` network with `host-local` IPAM on a /24 of 198.18.0.0/15 claimed for this
    /// instance; the host side of each pod's veth is in the root namespace.
    Ptp,
}

/// What a test may change about the private containerd.
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    /// Which containerd.
    pub release: ContainerdRelease,
    pub pod_network: PodNetwork,
    /// The shim's node configuration (its `ConfigPath` option); by default an empty one of
    /// this instance's own.
    pub node_config: Option<PathBuf>,
    /// Extra environment for containerd and so for its shims (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Import the busybox and pause images (into `default` and `k8s.io`) once it is up.
    pub import_images: bool,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        ContainerdOptions {
            release: ContainerdRelease::default(),
            pod_network: PodNetwork::HostOnly,
            node_config: None,
            env: Vec::new(),
            import_images: true,
        }
    }
}

/// A running private containerd.
#[derive(Debug)]
pub struct Containerd {
    release: ContainerdRelease,
    child: Child,
    env: Vec<(String, String)>,
    subnet: Option<Subnet>,
    // Last: removed after everything above has been stopped.
    dir: TempDir,
}

impl Containerd {
    /// A private containerd with the default options, test images imported.
    pub fn start() -> Result<Containerd> {
        Containerd::start_with(ContainerdOptions::default())
    }

    /// A private containerd of `release` with the default options, test images imported.
    pub fn start_release(release: ContainerdRelease) -> Result<Containerd> {
        Containerd::start_with(ContainerdOptions {
            release,
            ..ContainerdOptions::default()
        })
    }

    pub fn start_with(options: ContainerdOptions) -> Result<Containerd> {
        crate::engines::require(&options.release.containerd())?;
        processes::adopt_orphans();
        if options.import_images {
            Images::get()?;
        }
        let dir = crate::scratch_dir("mxc-ctd")?;
        for sub in ["root", "state", "cni/net.d", "cni/ipam", "runc", "opt"] {
            fs::create_dir_all(dir.path().join(sub))?;
        }
        let subnet = match options.pod_network {
            PodNetwork::HostOnly => None,
            PodNetwork::Ptp => Some(Subnet::claim()?),
        };
        if let Some(subnet) = &subnet {
            write_ptp_network(dir.path(), subnet)?;
        }
        let config = dir.path().join("config.toml");
        fs::write(&config, config_toml(dir.path(), options.release))?;
        let node_config = match &options.node_config {
            Some(path) => path.clone(),
            None => {
                let path = dir.path().join("mxc-node.toml");
                fs::write(&path, "")?;
                path
            }
        };
        add_mxc_runtime(&config, &node_config, options.release)?;

        let child = spawn_daemon(dir.path(), options.release, &options.env)?;
        let mut containerd = Containerd {
            release: options.release,
            child,
            env: options.env,
            subnet,
            dir,
        };
        containerd.wait_ready()?;
        if options.import_images {
            containerd.import_test_images()?;
        }
        Ok(containerd)
    }

    /// Stops containerd and starts it again on the same root, state, socket and config, as a
    /// node's service manager does on an upgrade: shims and their containers keep running,
    /// and containerd reconnects to them from its state directory.
    pub fn restart(&mut self) -> Result<()> {
        processes::terminate(self.child.id(), Duration::from_secs(10));
        let _ = self.child.wait();
        self.child = spawn_daemon(self.dir.path(), self.release, &self.env)?;
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let address = self.address();
        poll(START_LIMIT, || {
            if let Some(status) = self.child.try_wait()? {
                bail!("containerd exited with {status}:\n{}", self.log_tail(40));
            }
            if !address.exists() {
                return Ok(None);
            }
            let out = self.ctr(&["version"])?;
            Ok(out.success().then_some(()))
        })
        .with_context(|| format!("waiting for containerd:\n{}", self.log_tail(40)))
    }

    /// Which containerd this is.
    pub fn release(&self) -> ContainerdRelease {
        self.release
    }

    /// The temporary directory that holds everything of this instance.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The gRPC socket (`ctr --address`, the CRI endpoint, `dockerd --containerd`).
    pub fn address(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// The state root of runc for containers of the CRI runtime `runc`; pass it to
    /// `ctr run --runc-root` too, to keep `ctr`'s runc containers private.
    pub fn runc_root(&self) -> PathBuf {
        self.dir().join("runc")
    }

    /// The private CNI config directory.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir().join("cni/net.d")
    }

    /// The pod subnet, with [`PodNetwork::Ptp`].
    pub fn pod_subnet(&self) -> Option<&Subnet> {
        self.subnet.as_ref()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `ctr --address SOCKET ARGS...` in namespace `default`; its output whatever its status.
    pub fn ctr(&self, args: &[&str]) -> Result<Output> {
        self.ctr_in("default", args)
    }

    /// `ctr --address SOCKET --namespace NAMESPACE ARGS...`.
    pub fn ctr_in(&self, namespace: &str, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(self.release.ctr());
        cmd.arg("--address")
            .arg(self.address())
            .args(["--namespace", namespace])
            .args(args)
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINERD_NAMESPACE");
        run(&mut cmd, CTR_LIMIT)
    }

    /// `ctr run --rm --runtime RUNTIME_TYPE [EXTRA...] busybox ID COMMAND...` in namespace
    /// `default`: the container's output and exit status. For the runc shim, runc's state goes
    /// to [`Containerd::runc_root`].
    pub fn run_container(
        &self,
        runtime_type: &str,
        id: &str,
        extra: &[&str],
        command: &[&str],
    ) -> Result<Output> {
        let runc_root = self.runc_root().to_string_lossy().into_owned();
        let mut args = vec!["run", "--rm", "--runtime", runtime_type];
        if runtime_type == RUNC_RUNTIME_TYPE {
            args.extend(["--runc-root", &runc_root]);
        }
        args.extend(extra);
        args.extend([BUSYBOX_REF, id]);
        args.extend(command);
        self.ctr(&args)
    }

    /// Imports a Docker or OCI archive into `namespace`, unpacked for the default snapshotter.
    pub fn import(&self, namespace: &str, archive: &Path) -> Result<()> {
        let archive = archive.to_string_lossy();
        self.ctr_in(namespace, &["images", "import", &archive])?
            .ok()
            .map(drop)
    }

    /// The busybox image into `default` and `k8s.io`, the pause image into `k8s.io`.
    pub fn import_test_images(&self) -> Result<()> {
        let images = Images::get()?;
        self.import("default", &images.busybox_archive())?;
        self.import(CRI_NAMESPACE, &images.busybox_archive())?;
        self.import(CRI_NAMESPACE, &images.pause_archive())?;
        Ok(())
    }

    /// The shims this instance started (their command line names its socket).
    pub fn shim_pids(&self) -> Vec<u32> {
        let address = self.address().to_string_lossy().into_owned();
        processes::with_argument(&address, &processes::list())
            .into_iter()
            .filter(|process| process.pid != self.child.id() && !process.is_zombie())
            .map(|process| process.pid)
            .collect()
    }

    /// Kills and removes every task and container of every namespace.
    fn remove_all_containers(&self) {
        let Ok(namespaces) = self.ctr(&["namespaces", "ls", "-q"]) else {
            return;
        };
        for namespace in namespaces
            .stdout
            .lines()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let tasks = self.ctr_in(namespace, &["tasks", "ls", "-q"]);
            for task in tasks.iter().flat_map(|out| out.stdout.lines()) {
                let _ = self.ctr_in(
                    namespace,
                    &["tasks", "kill", "--all", "-s", "SIGKILL", task],
                );
                let _ = self.ctr_in(namespace, &["tasks", "delete", "--force", task]);
            }
            let containers = self.ctr_in(namespace, &["containers", "ls", "-q"]);
            for container in containers.iter().flat_map(|out| out.stdout.lines()) {
                let _ = self.ctr_in(namespace, &["containers", "delete", container]);
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- containerd log ({}) ---\n{}",
                self.dir().display(),
                self.log_tail(60)
            );
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            self.remove_all_containers();
        }
        processes::terminate(self.child.id(), Duration::from_secs(10));
        let _ = self.child.wait();
        // Shims and their containers that outlived containerd belong to this instance only.
        processes::kill_trees(&self.shim_pids());
        unmount_all_under(self.dir());
        processes::reap_adopted_orphans();
    }
}

/// Starts containerd on the config in `dir`, appending to its log.
fn spawn_daemon(dir: &Path, release: ContainerdRelease, env: &[(String, String)]) -> Result<Child> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))?;
    let mut cmd = Command::new(release.containerd());
    cmd.arg("--config")
        .arg(dir.join("config.toml"))
        .args(["--log-level", "info"])
        // The shim first, then the release's own runc shim.
        .env("PATH", bins::path_with(&[release.bin_dir()]))
        .env_remove("CONTAINERD_ADDRESS")
        .env_remove("CONTAINERD_NAMESPACE")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    cmd.spawn().context("starting containerd")
}

/// Detaches every mount at or below `dir`, deepest first.
pub fn unmount_all_under(dir: &Path) {
    let mut mounts = mounts_under(dir);
    mounts.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    for mount in mounts {
        let _ = umount2(&mount, MntFlags::MNT_DETACH);
    }
}

/// A TOML basic string (JSON's escapes are valid TOML ones).
fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into())
}

/// The `mxc` runtime added to `config` as a node's administrator adds it: by
/// `deploy/containerd-config.sh`, for the real daemon of `release` to read.
fn add_mxc_runtime(config: &Path, node_config: &Path, release: ContainerdRelease) -> Result<()> {
    let mut cmd = Command::new(crate::workspace_root().join("deploy/containerd-config.sh"));
    cmd.arg("add")
        .env("CONTAINERD_CONFIG", config)
        .env("MXC_NODE_CONFIG", node_config)
        .env("CONTAINERD", release.containerd());
    run(&mut cmd, Duration::from_secs(60))?
        .ok()
        .context("adding the mxc runtime with deploy/containerd-config.sh")?;
    // Its backup of the file as it was is not needed here.
    let _ = fs::remove_file(config.with_extension("toml.mxc-backup"));
    Ok(())
}

/// The instance's config in the schema of `release` (2 for 1.x, 3 for 2.x), the `mxc`
/// runtime not yet in it.
fn config_toml(dir: &Path, release: ContainerdRelease) -> String {
    let path = |sub: &str| toml_string(&dir.join(sub).to_string_lossy());
    let common = format!(
        r#"root = {root}
state = {state}
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {address}

[ttrpc]
  address = {ttrpc}

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}
"#,
        root = path("root"),
        state = path("state"),
        address = path("containerd.sock"),
        ttrpc = path("containerd.sock.ttrpc"),
        opt = path("opt"),
    );
    let sandbox = toml_string(PAUSE_REF);
    let cni_conf = path("cni/net.d");
    let runc_root = path("runc");
    match release.config_schema() {
        2 => {
            let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
            format!(
                r#"version = 2
{common}
[{cri}]
  sandbox_image = {sandbox}
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = {cni_conf}
  max_conf_num = 1

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "{RUNC_RUNTIME_TYPE}"

[{cri}.containerd.runtimes.runc.options]
  Root = {runc_root}
"#
            )
        }
        _ => {
            let images = r#"plugins."io.containerd.cri.v1.images""#;
            let runtime = r#"plugins."io.containerd.cri.v1.runtime""#;
            let grpc = r#"plugins."io.containerd.grpc.v1.cri""#;
            format!(
                r#"version = 3
{common}
[{images}]
  snapshotter = "overlayfs"

[{images}.pinned_images]
  sandbox = {sandbox}

[{runtime}]
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true

[{runtime}.cni]
  bin_dirs = ["/usr/lib/cni"]
  conf_dir = {cni_conf}
  max_conf_num = 1

[{runtime}.containerd]
  default_runtime_name = "runc"

[{runtime}.containerd.runtimes.runc]
  runtime_type = "{RUNC_RUNTIME_TYPE}"

[{runtime}.containerd.runtimes.runc.options]
  Root = {runc_root}

[{grpc}]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false
"#
            )
        }
    }
}

fn write_ptp_network(dir: &Path, subnet: &Subnet) -> Result<()> {
    let conflist = json!({
        "cniVersion": "0.4.0",
        "name": crate::unique_name("mxc-pods"),
        "plugins": [{
            "type": "ptp",
            "ipMasq": false,
            "mtu": 1500,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": subnet.v4_net() }]],
                "dataDir": dir.join("cni/ipam"),
                "routes": []
            }
        }]
    });
    fs::write(
        dir.join("cni/net.d/10-mxc-ptp.conflist"),
        serde_json::to_vec_pretty(&conflist)?,
    )?;
    Ok(())
}

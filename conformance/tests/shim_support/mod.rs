//! What the shim's suites share: finding the shim's processes, sockets and state, and the
//! check that a scenario left none of them behind.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mxc_conformance::command::poll;
use mxc_conformance::containerd::Containerd;
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::processes::{self, ProcessInfo};
use sha2::{Digest, Sha256};

/// The shim's name in `/proc/PID/comm` (truncated to 15 bytes by the kernel). Its zygote and
/// workers carry the same command line but other names.
pub const SHIM_COMM: &str = "containerd-shim";

/// The other runtime name containerd maps to the same binary.
pub const MXC_SHORT_RUNTIME: &str = "io.mxc.v1";

/// Shim daemons (not their zygotes) started by `containerd`.
pub fn shim_daemons(containerd: &Containerd) -> Vec<ProcessInfo> {
    let address = containerd.address().to_string_lossy().into_owned();
    processes::with_argument(&address, &processes::list())
        .into_iter()
        .filter(|p| p.comm == SHIM_COMM && !p.is_zombie())
        .collect()
}

/// The socket of the shim serving `group` in `namespace`, as containerd's shims name it.
pub fn shim_socket(containerd: &Containerd, namespace: &str, group: &str) -> PathBuf {
    let key = format!("{}/{namespace}/{group}", containerd.address().display());
    let hash = Sha256::digest(key.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from(format!("/run/containerd/s/{hex}"))
}

/// Where the engine keeps the state of containerd's containers in `namespace`.
pub fn engine_root(containerd: &Containerd, namespace: &str) -> PathBuf {
    containerd.state().join("mxc").join(namespace)
}

/// Entries the engine keeps for containers (its own `:mxc` directory aside).
pub fn engine_state(containerd: &Containerd, namespace: &str) -> Vec<PathBuf> {
    let root = engine_root(containerd, namespace);
    let mut entries = entries(&root);
    entries.retain(|e| e.file_name().is_some_and(|n| n != ":mxc"));
    entries.extend(entries_of(&root.join(":mxc")));
    entries
}

fn entries_of(dir: &Path) -> Vec<PathBuf> {
    entries(dir)
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|list| list.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Task bundles containerd keeps in `namespace`.
pub fn bundles(containerd: &Containerd, namespace: &str) -> Vec<PathBuf> {
    entries(
        &containerd
            .state()
            .join("io.containerd.runtime.v2.task")
            .join(namespace),
    )
}

/// The scenario left nothing: no process, mount or cgroup ([`LeakCheck`]), no engine state,
/// no bundle, no shim socket of `groups`.
pub fn assert_clean(
    leaks: &LeakCheck,
    containerd: &Containerd,
    namespace: &str,
    groups: &[&str],
) -> Result<()> {
    leaks.assert_clean()?;
    let settled = poll(Duration::from_secs(15), || {
        Ok((engine_state(containerd, namespace).is_empty()
            && bundles(containerd, namespace).is_empty()
            && groups
                .iter()
                .all(|g| !shim_socket(containerd, namespace, g).exists()))
        .then_some(()))
    });
    if settled.is_err() {
        let sockets: Vec<PathBuf> = groups
            .iter()
            .map(|g| shim_socket(containerd, namespace, g))
            .filter(|s| s.exists())
            .collect();
        bail!(
            "left behind: engine state {:?}, bundles {:?}, shim sockets {:?}",
            engine_state(containerd, namespace),
            bundles(containerd, namespace),
            sockets
        );
    }
    Ok(())
}

/// An MXC policy as the annotation `io.mxc.config` carries it, for `ctr --annotation`.
pub fn policy_annotation(policy: &serde_json::Value) -> String {
    format!("io.mxc.config={policy}")
}

/// `ctr events` running in the background, writing to a file.
pub struct EventLog {
    child: Child,
    path: PathBuf,
}

impl EventLog {
    pub fn start(containerd: &Containerd) -> Result<EventLog> {
        let path = containerd
            .dir()
            .join(format!("events-{}.log", mxc_conformance::unique_name("ev")));
        let file = fs::File::create(&path)?;
        let child = Command::new(containerd.release().ctr())
            .arg("--address")
            .arg(containerd.address())
            .arg("events")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .context("starting ctr events")?;
        // `ctr events` subscribes once connected; give it a moment by waiting for a round trip.
        std::thread::sleep(Duration::from_millis(300));
        Ok(EventLog { child, path })
    }

    /// The topics seen so far for container `id`, in order.
    pub fn topics(&self, id: &str) -> Vec<String> {
        fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(&format!("\"{id}\"")))
            .filter_map(|line| line.split_whitespace().find(|w| w.starts_with("/tasks/")))
            .map(str::to_string)
            .collect()
    }

    /// Waits until `topic` was seen for `id`.
    pub fn wait_for(&self, id: &str, topic: &str) -> Result<()> {
        poll(Duration::from_secs(30), || {
            Ok(self.topics(id).iter().any(|t| t == topic).then_some(()))
        })
        .with_context(|| format!("waiting for {topic} of {id}: saw {:?}", self.topics(id)))
    }

    pub fn raw(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status column of `ctr tasks ls` for `id`, if listed.
pub fn task_status(containerd: &Containerd, namespace: &str, id: &str) -> Result<Option<String>> {
    let out = containerd.ctr_in(namespace, &["tasks", "ls"])?.ok()?;
    Ok(out.stdout.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.first() == Some(&id)).then(|| fields.get(2).unwrap_or(&"").to_string())
    }))
}

/// Waits until `ctr tasks ls` shows `id` with `status`.
pub fn wait_status(containerd: &Containerd, namespace: &str, id: &str, status: &str) -> Result<()> {
    poll(Duration::from_secs(30), || {
        Ok((task_status(containerd, namespace, id)?.as_deref() == Some(status)).then_some(()))
    })
    .with_context(|| format!("waiting for task {id} to be {status}"))
}

//! The end-to-end harness of mxc-oci: real binaries, a real containerd (and its CRI plugin), a
//! real dockerd and real network namespaces, each private to the test that starts it and
//! removed when it is dropped.
//!
//! The integration tests in `conformance/tests/` are the users of this library; `test.sh`
//! builds the workspace's binaries first and points `MXC_BIN_DIR` at them.
//!
//! | module | what it is |
//! |---|---|
//! | [`bins`] | where `mxc`, `mxc-runtime`, `containerd-shim-mxc-v1` and the host's tools are |
//! | [`images`] | the busybox and pause images, built once per cache key under a file lock |
//! | [`bundle`] | a plain OCI bundle (busybox rootfs, `runc spec` defaults) |
//! | [`oci_runtime`] | a runc-compatible binary with a private `--root` |
//! | [`containerd`] | a private containerd with the `mxc` runtime and the CRI plugin |
//! | [`cri`] | a blocking CRI v1 client on that containerd |
//! | [`docker`] | a private dockerd (on its own private containerd) with the `mxc` runtime |
//! | [`engines`] | the containerd and Docker releases the suites run against |
//! | [`netns`] | test hosts in network namespaces, veth pairs, bounded TCP/UDP servers |
//! | [`node`] | a node configuration of the test's own, and its audit log's records |
//! | [`egress_world`] | a test world for egress by name: its own DNS server, HTTP/TLS/TCP/UDP servers |
//! | [`leaks`] | what a scenario must not leave: processes, mounts, cgroups, netns, state |
//! | [`oneshot`] | `mxc run` of a config, with a scratch tree of grants and a leak check |
//! | [`command`] | running a host command with a time limit |
//! | [`processes`] | the process table, and stopping only what the harness started |
//! | [`sdk`] | MXC's TypeScript SDK and MXC's own executor, as clients and reference |
//!
//! A scenario reads:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use mxc_conformance::containerd::{Containerd, MXC_RUNTIME_TYPE};
//! use mxc_conformance::leaks::LeakCheck;
//!
//! let containerd = Containerd::start()?; // busybox and pause imported
//! let mut leaks = LeakCheck::snapshot();
//! leaks.watch_dir(containerd.dir());
//! let id = mxc_conformance::unique_name("hello");
//! leaks.container(&id);
//! let out = containerd.run_container(MXC_RUNTIME_TYPE, &id, &[], &["echo", "hi"])?;
//! assert_eq!(out.stdout, "hi\n", "{out}");
//! leaks.assert_clean()?;
//! # Ok(())
//! # }
//! ```
//!
//! Leak checks follow parent chains from the test process, so they expect one test per
//! process: run the suites with nextest (`conformance/test.sh`), not `cargo test`.

pub mod bins;
pub mod bundle;
pub mod command;
pub mod containerd;
pub mod cri;
pub mod docker;
pub mod egress_world;
pub mod engines;
pub mod images;
pub mod leaks;
pub mod netns;
pub mod node;
pub mod oci_runtime;
pub mod oneshot;
pub mod processes;
pub mod sdk;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use tempfile::TempDir;

/// The repository's root directory (the parent of `conformance/`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// A name no other test of this run uses: `PREFIX-PID-N`. Container ids, namespaces, pod
/// names and network namespace names come from here so that tests running in parallel (each
/// in its own process under nextest) never meet.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A fresh directory under the system's temporary directory, removed on drop. Its path is
/// short, so that unix sockets below it stay under the kernel's 108-byte limit.
pub fn scratch_dir(prefix: &str) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir_in("/tmp")
        .context("creating a temporary directory in /tmp")
}

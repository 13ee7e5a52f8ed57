//! The shim when things go wrong around it: its own death (containerd cleans up through the
//! `delete` subcommand), a containerd restart (the container keeps running and is still
//! managed through the same shim), and a create that hangs past its caller's deadline.

mod shim_support;

use std::time::Duration;

use anyhow::{Context, Result};
use mxc_conformance::command::poll;
use mxc_conformance::containerd::{Containerd, MXC_RUNTIME_TYPE};
use mxc_conformance::each_containerd;
use mxc_conformance::engines::ContainerdRelease;
use mxc_conformance::images::{copy_rootfs, BUSYBOX_REF};
use mxc_conformance::leaks::{self, LeakCheck};
use mxc_conformance::processes;
use mxc_conformance::unique_name;
use nix::sys::signal::Signal;
use serde_json::json;
use shim_support::{assert_clean, shim_daemons, task_status, wait_status};

const NS: &str = "default";

each_containerd!(
    a_killed_shim_is_cleaned_up_by_containerd,
    a_container_survives_a_containerd_restart,
    a_create_past_its_deadline_is_stopped_and_leaves_nothing,
);

fn start_detached(containerd: &Containerd, id: &str) -> Result<()> {
    containerd
        .ctr(&[
            "run",
            "-d",
            "--runtime",
            MXC_RUNTIME_TYPE,
            BUSYBOX_REF,
            id,
            "sh",
            "-c",
            "sleep 600 & exec sleep 601",
        ])?
        .ok()?;
    wait_status(containerd, NS, id, "RUNNING")
}

fn a_killed_shim_is_cleaned_up_by_containerd(release: ContainerdRelease) -> Result<()> {
    let containerd = Containerd::start_release(release)?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(containerd.dir());
    let id = unique_name("victim");
    leaks.container(&id);
    start_detached(&containerd, &id)?;
    let shims = shim_daemons(&containerd);
    assert_eq!(shims.len(), 1, "{shims:?}");
    assert!(!leaks::cgroups_named(&id).is_empty());

    processes::signal(shims[0].pid, Signal::SIGKILL);

    // containerd notices, runs `containerd-shim-mxc-v1 delete`, and the task is gone with
    // every process of the container.
    poll(Duration::from_secs(60), || {
        let status = task_status(&containerd, NS, &id)?;
        Ok(matches!(status.as_deref(), None | Some("STOPPED")).then_some(()))
    })
    .context("containerd reporting the task gone")?;
    poll(Duration::from_secs(30), || {
        Ok(leaks::cgroups_named(&id).is_empty().then_some(()))
    })
    .context("the container's processes and cgroups removed")?;
    let _ = containerd.ctr(&["tasks", "delete", &id]);
    containerd.ctr(&["containers", "delete", &id])?.ok()?;
    assert!(
        containerd.log().contains("cleaning up dead shim"),
        "{}",
        containerd.log_tail(20)
    );
    assert_clean(&leaks, &containerd, NS, &[&id])?;
    Ok(())
}

fn a_container_survives_a_containerd_restart(release: ContainerdRelease) -> Result<()> {
    let mut containerd = Containerd::start_release(release)?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(containerd.dir());
    let id = unique_name("survivor");
    leaks.container(&id);
    start_detached(&containerd, &id)?;
    let shim_before: Vec<u32> = shim_daemons(&containerd).iter().map(|p| p.pid).collect();
    let pids_before = containerd.ctr(&["tasks", "ps", &id])?.ok()?.stdout;

    containerd.restart()?;
    leaks.allow_process(containerd.pid());

    // The same shim, the same processes, and the task is still managed through it.
    wait_status(&containerd, NS, &id, "RUNNING")?;
    let shim_after: Vec<u32> = shim_daemons(&containerd).iter().map(|p| p.pid).collect();
    assert_eq!(shim_after, shim_before);
    assert_eq!(
        containerd.ctr(&["tasks", "ps", &id])?.ok()?.stdout,
        pids_before
    );
    let exec = containerd
        .ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            "after",
            &id,
            "echo",
            "after-restart",
        ])?
        .ok()?;
    assert_eq!(exec.stdout, "after-restart\n");
    containerd.ctr(&["tasks", "pause", &id])?.ok()?;
    wait_status(&containerd, NS, &id, "PAUSED")?;
    containerd.ctr(&["tasks", "resume", &id])?.ok()?;

    // Exit events reach the new containerd.
    containerd
        .ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", &id])?
        .ok()?;
    wait_status(&containerd, NS, &id, "STOPPED")?;
    containerd.ctr(&["tasks", "delete", &id])?.ok()?;
    containerd.ctr(&["containers", "delete", &id])?.ok()?;

    // The shim's log reaches the restarted containerd too.
    let log = containerd.log();
    let after_restart = log
        .rsplit_once("containerd successfully booted")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(
        after_restart.contains(&format!("id={id} span=kill")),
        "{}",
        containerd.log_tail(30)
    );
    assert_clean(&leaks, &containerd, NS, &[&id])?;
    Ok(())
}

fn a_create_past_its_deadline_is_stopped_and_leaves_nothing(
    release: ContainerdRelease,
) -> Result<()> {
    let containerd = Containerd::start_release(release)?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(containerd.dir());
    let id = unique_name("hung");
    leaks.container(&id);

    // A container whose createRuntime hook never returns: the engine waits for it inside
    // create, so the shim's worker hangs until the request's deadline.
    let rootfs = containerd.dir().join(format!("{id}-rootfs"));
    copy_rootfs(&rootfs)?;
    let mut spec: serde_json::Value =
        serde_json::from_str(&containerd.ctr(&["oci", "spec"])?.ok()?.stdout)?;
    spec["root"] = json!({ "path": rootfs, "readonly": true });
    spec["process"]["args"] = json!(["true"]);
    // `ctr oci spec` names the namespace's cgroup itself, which other containers share.
    spec["linux"]["cgroupsPath"] = json!(format!("/{NS}/{id}"));
    spec["hooks"] =
        json!({ "createRuntime": [{ "path": "/bin/sleep", "args": ["sleep", "600"] }] });
    let spec_path = containerd.dir().join(format!("{id}.json"));
    std::fs::write(&spec_path, serde_json::to_vec(&spec)?)?;
    let spec_arg = spec_path.to_string_lossy().into_owned();

    let run = containerd.ctr(&[
        "--timeout",
        "10s",
        "run",
        "--runtime",
        MXC_RUNTIME_TYPE,
        "--config",
        &spec_arg,
        &id,
    ])?;
    assert!(!run.status.success(), "{run:?}");
    // The shim answered before containerd gave up, and the answer says why.
    assert!(
        run.stderr
            .contains("create did not finish within its deadline"),
        "{run:?}"
    );

    // The shim stopped the worker and the hook with it, removed what the create had made,
    // and exited once containerd let it go.
    let _ = containerd.ctr(&["tasks", "delete", &id]);
    let _ = containerd.ctr(&["containers", "delete", &id]);
    assert_clean(&leaks, &containerd, NS, &[&id])?;
    assert!(
        containerd
            .log()
            .contains("create did not finish within its deadline"),
        "{}",
        containerd.log_tail(30)
    );
    Ok(())
}

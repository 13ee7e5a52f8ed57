//! The shim through the CRI, exactly as a kubelet uses a `RuntimeClass` with handler `mxc`: a
//! pod on a pod network whose annotation carries the policy, containers in it, ExecSync,
//! logs, resource updates, stop and removal; one shim process for the whole pod.

mod shim_support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::{ContainerState, LinuxContainerResources, UpdateContainerResourcesRequest};
use mxc_conformance::containerd::{
    Containerd, ContainerdOptions, PodNetwork, CRI_NAMESPACE, MXC_HANDLER,
};
use mxc_conformance::cri::Cri;
use mxc_conformance::each_containerd;
use mxc_conformance::engines::ContainerdRelease;
use mxc_conformance::images::BUSYBOX_REF;
use mxc_conformance::leaks::{self, LeakCheck};
use mxc_conformance::unique_name;
use serde_json::json;
use shim_support::{assert_clean, shim_daemons};

each_containerd!(a_pod_with_a_policy_annotation_runs_under_the_mxc_handler,);

fn exec(cri: &mut Cri, id: &str, script: &str) -> Result<(i32, String, String)> {
    let out = cri.exec_sync(id, &["sh", "-c", script], 30)?;
    Ok((
        out.exit_code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn a_pod_with_a_policy_annotation_runs_under_the_mxc_handler(
    release: ContainerdRelease,
) -> Result<()> {
    let containerd = Containerd::start_with(ContainerdOptions {
        release,
        pod_network: PodNetwork::Ptp,
        ..ContainerdOptions::default()
    })?;
    let mut cri = Cri::connect(&containerd)?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(containerd.dir());

    // The pod's policy: an environment entry, a masked file, no network but the pod's own
    // namespace (which the CNI set up).
    let policy = json!({
        "version": "0.8.0-alpha",
        "process": { "env": ["AGENT_MODE=pod-policy"] },
        "filesystem": { "deniedPaths": ["/etc/passwd"] },
    });
    let mut pod_config = cri.pod_config(&unique_name("pod"), false)?;
    pod_config
        .annotations
        .insert("io.mxc.config".into(), policy.to_string());
    let pod = cri.run_pod_sandbox(&pod_config, MXC_HANDLER)?;
    leaks.container(&pod);
    let pod_ip = cri.pod_ip(&pod)?;
    ensure!(
        !pod_ip.is_empty(),
        "the pod has an address on the pod network"
    );

    let config = Cri::container_config(
        &pod_config,
        "main",
        BUSYBOX_REF,
        &["sh", "-c", "echo started; exec sleep 600"],
    );
    let main = cri.create_container(&pod, &config, &pod_config)?;
    leaks.container(&main);
    cri.start_container(&main)?;

    let (code, stdout, _) = exec(
        &mut cri,
        &main,
        "tr '\\0' '\\n' </proc/1/environ | grep AGENT_MODE; \
         [ -e /etc/passwd ] && echo passwd-listed; \
         cat /etc/passwd >/dev/null 2>&1 || echo passwd-denied; \
         grep CapEff /proc/self/status; ip -o -4 addr show eth0 | wc -l",
    )?;
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        stdout,
        "AGENT_MODE=pod-policy\npasswd-listed\npasswd-denied\nCapEff:\t0000000000000000\n1\n",
        "the pod's policy is enforced inside, on the pod's network"
    );
    let (code, stdout, stderr) = exec(&mut cri, &main, "echo out; echo err >&2; exit 3")?;
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (3, "out\n", "err\n")
    );

    // A container annotation overrides the pod's policy for that container.
    let mut config = Cri::container_config(
        &pod_config,
        "once",
        BUSYBOX_REF,
        &["sh", "-c", "echo done-$AGENT_MODE; exit 5"],
    );
    config.annotations.insert(
        "io.mxc.config".into(),
        json!({"version": "0.8.0-alpha", "process": {"env": ["AGENT_MODE=own"]}}).to_string(),
    );
    let once = cri.create_container(&pod, &config, &pod_config)?;
    leaks.container(&once);
    cri.start_container(&once)?;
    let status = cri.wait_exited(&once, Duration::from_secs(60))?;
    assert_eq!(status.exit_code, 5);
    assert_eq!(cri.container_log(&pod_config, "once")?, "done-own\n");

    // The whole pod (its sandbox and both containers) is one shim.
    assert_eq!(shim_daemons(&containerd).len(), 1, "one shim per pod");

    // Resource updates reach the container's cgroup.
    let limit: i64 = 96 * 1024 * 1024;
    let request = UpdateContainerResourcesRequest {
        container_id: main.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: limit,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut runtime = cri.runtime_service().clone();
    cri.block_on(async move { runtime.update_container_resources(request).await })
        .context("UpdateContainerResources")?;
    let memory_dir = leaks::cgroups_named(&main)
        .into_iter()
        .find(|dir| dir.starts_with("/sys/fs/cgroup/memory"))
        .context("the container's memory cgroup")?;
    let applied: i64 = std::fs::read_to_string(memory_dir.join("memory.limit_in_bytes"))?
        .trim()
        .parse()?;
    assert_eq!(applied, limit);

    // A policy the runtime refuses fails the container's start with the reason.
    let mut config = Cri::container_config(&pod_config, "refused", BUSYBOX_REF, &["true"]);
    config.annotations.insert(
        "io.mxc.config".into(),
        json!({"version": "0.8.0-alpha", "process": {"commandLine": "agent"}}).to_string(),
    );
    let refused = cri.create_container(&pod, &config, &pod_config)?;
    leaks.container(&refused);
    let err = cri
        .start_container(&refused)
        .expect_err("a bad policy must not start");
    assert!(
        err.to_string().contains("process.commandLine"),
        "the kubelet sees why: {err}"
    );
    cri.remove_container(&refused)?;

    cri.stop_container(&main, 0)?;
    let status = cri.container_status(&main)?;
    assert_eq!(status.state, ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 137);
    assert_eq!(cri.container_log(&pod_config, "main")?, "started\n");

    for id in [&main, &once] {
        cri.remove_container(id)?;
    }
    cri.stop_pod_sandbox(&pod)?;
    cri.remove_pod_sandbox(&pod)?;
    assert_clean(&leaks, &containerd, CRI_NAMESPACE, &[&pod])?;
    Ok(())
}

//! Docker drives `mxc-runtime` as a runc-compatible runtime (`"runtimes": {"mxc": ...}`):
//! run, exec, stop, rm -f, exit statuses, and the node's policy enforced inside.

use std::time::Duration;

use anyhow::{ensure, Result};
use mxc_conformance::command::poll;
use mxc_conformance::docker::{Dockerd, DockerdOptions};
use mxc_conformance::each_docker;
use mxc_conformance::engines::DockerRelease;
use mxc_conformance::images::BUSYBOX_REF;
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::node::Node;
use mxc_conformance::unique_name;
use serde_json::json;

each_docker!(
    run_exec_stop_and_rm_through_mxc_runtime_with_the_default_policy,
    the_node_policy_is_enforced_and_host_networking_refused,
    the_policys_timeout_kills_the_container_under_docker,
);

fn docker_with_policy(
    release: DockerRelease,
    policy: Option<serde_json::Value>,
    node: Option<&Node>,
) -> Result<(Dockerd, Option<tempfile::NamedTempFile>)> {
    let file = match policy {
        Some(policy) => {
            let file = tempfile::Builder::new().suffix(".json").tempfile()?;
            std::fs::write(file.path(), policy.to_string())?;
            Some(file)
        }
        None => None,
    };
    let mut args = Vec::new();
    if let Some(file) = &file {
        args = vec!["--policy".to_string(), file.path().display().to_string()];
    }
    if let Some(node) = node {
        args.extend(["--config".to_string(), node.config().display().to_string()]);
    }
    let dockerd = Dockerd::start_with(DockerdOptions {
        release,
        mxc_runtime_args: args,
        ..DockerdOptions::default()
    })?;
    Ok((dockerd, file))
}

fn run_exec_stop_and_rm_through_mxc_runtime_with_the_default_policy(
    release: DockerRelease,
) -> Result<()> {
    let (docker, _policy) = docker_with_policy(release, None, None)?;
    let mut leaks = LeakCheck::snapshot();
    leaks.runtime_root(docker.runtime_root("mxc"));

    // Exit statuses and output pass through.
    let out = docker.docker(&[
        "run",
        "--rm",
        "--runtime",
        "mxc",
        "--network",
        "none",
        BUSYBOX_REF,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ])?;
    assert_eq!(out.code(), Some(7), "{out}");
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err"), "{out}");

    // The default-deny policy: no capabilities although Docker asks for its default set.
    let out = docker.docker(&["run", "--rm", "--runtime", "mxc", "--network", "none", BUSYBOX_REF, "sh", "-c",
        "grep -E '^Cap(Eff|Bnd)' /proc/self/status; ip -o link | wc -l; chown 1 /tmp; echo chown=$?; unshare -n true; echo unshare=$?"])?;
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("CapEff:\t0000000000000000")
            && out.stdout.contains("CapBnd:\t0000000000000000"),
        "{out}"
    );
    assert!(
        out.stdout.contains("chown=1") && !out.stdout.contains("unshare=0"),
        "{out}"
    );

    // A detached container, exec into it, stop it, remove it.
    let name = unique_name("dk");
    let out = docker
        .docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--runtime",
            "mxc",
            "--network",
            "none",
            BUSYBOX_REF,
            "sleep",
            "300",
        ])?
        .ok()?;
    let id = out.stdout.trim().to_string();
    leaks.container(&id);
    let out = docker.docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo from-exec; grep CapEff /proc/self/status; exit 3",
    ])?;
    assert_eq!(out.code(), Some(3), "{out}");
    assert!(
        out.stdout.contains("from-exec") && out.stdout.contains("CapEff:\t0000000000000000"),
        "{out}"
    );
    let out = docker.docker(&["stop", "-t", "1", &name])?.ok()?;
    assert_eq!(out.stdout.trim(), name);
    let status = docker
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            &name,
        ])?
        .ok()?;
    assert!(
        status.stdout.starts_with("exited 137") || status.stdout.starts_with("exited 143"),
        "{status}"
    );
    docker.docker(&["rm", &name])?.ok()?;

    // rm -f of a running container.
    let other = unique_name("dk");
    let out = docker
        .docker(&[
            "run",
            "-d",
            "--name",
            &other,
            "--runtime",
            "mxc",
            "--network",
            "none",
            BUSYBOX_REF,
            "sleep",
            "300",
        ])?
        .ok()?;
    leaks.container(out.stdout.trim());
    docker.docker(&["rm", "-f", &other])?.ok()?;
    poll(Duration::from_secs(30), || {
        Ok(leaks.leaks().is_empty().then_some(()))
    })?;
    leaks.assert_clean()?;
    Ok(())
}

fn the_node_policy_is_enforced_and_host_networking_refused(release: DockerRelease) -> Result<()> {
    let policy = json!({
        "version": "0.8.0-alpha",
        "filesystem": {"deniedPaths": ["/etc/passwd", "/home"]},
    });
    let node = Node::new()?;
    let (docker, policy) = docker_with_policy(release, Some(policy), Some(&node))?;
    let mut leaks = LeakCheck::snapshot();
    leaks.runtime_root(docker.runtime_root("mxc"));
    let out = docker.docker(&["run", "--rm", "--runtime", "mxc", "--network", "none", BUSYBOX_REF, "sh", "-c",
        "cat /etc/passwd; echo passwd=$?; ls /home; echo home=$?; cat /etc/group >/dev/null; echo group=$?"])?;
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("passwd=1")
            && out.stdout.contains("home=1")
            && out.stdout.contains("group=0"),
        "{out}"
    );
    assert!(!out.stdout.contains("root:x:0"), "{out}");
    // In the node's audit log: the policy applied, and the exit once `mxc-runtime delete` ran
    // (its status is the runc shim's to know, not the runtime's).
    let applied = poll(Duration::from_secs(10), || {
        Ok(node
            .audit()?
            .into_iter()
            .find(|r| r["event"] == "policy.applied"))
    })?;
    let source = policy.as_ref().map(|f| f.path().display().to_string());
    assert_eq!(applied["source"].as_str(), source.as_deref(), "{applied}");
    assert_eq!(applied["policy_sha256"].as_str().map(str::len), Some(64));
    let id = applied["container"].as_str().unwrap_or_default();
    let exit = node.record(id, "exit")?;
    assert!(exit["status"].is_null(), "{exit}");

    // The policy needs a private network namespace: --network host is refused with the reason.
    let out = docker.docker(&[
        "run",
        "--rm",
        "--runtime",
        "mxc",
        "--network",
        "host",
        BUSYBOX_REF,
        "true",
    ])?;
    ensure!(!out.success(), "a host-network container ran: {out}");
    assert!(out.stderr.contains("private network namespace"), "{out}");
    let refused = node
        .audit()?
        .into_iter()
        .find(|r| r["event"] == "start.failed");
    assert!(
        refused.as_ref().is_some_and(|r| r["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("private network namespace"))),
        "{:#?}",
        node.audit()
    );
    // And nothing was installed in the host's own namespace.
    let tables = mxc_conformance::command::run(
        std::process::Command::new("nft").args(["list", "tables"]),
        Duration::from_secs(10),
    )?;
    assert!(
        !tables.stdout.contains("inet mxc"),
        "sandbox rules landed in the host's namespace: {tables}"
    );
    poll(Duration::from_secs(30), || {
        Ok(leaks.leaks().is_empty().then_some(()))
    })?;
    leaks.assert_clean()?;
    Ok(())
}

fn the_policys_timeout_kills_the_container_under_docker(release: DockerRelease) -> Result<()> {
    // mxc-runtime start returns at once under Docker, so a detached keeper holds the deadline.
    let policy = json!({"version": "0.8.0-alpha", "process": {"timeout": 1500}});
    let node = Node::new()?;
    let (docker, _policy) = docker_with_policy(release, Some(policy), Some(&node))?;
    let mut leaks = LeakCheck::snapshot();
    leaks.runtime_root(docker.runtime_root("mxc"));
    // Control: a command that ends within the timeout exits as it chose.
    let out = docker.docker(&[
        "run",
        "--rm",
        "--runtime",
        "mxc",
        "--network",
        "none",
        BUSYBOX_REF,
        "sh",
        "-c",
        "exit 3",
    ])?;
    assert_eq!(out.code(), Some(3), "{out}");
    // A command that outlives it is killed: 137 (SIGKILL), and the timeout is in the audit log.
    let out = docker.docker(&[
        "run",
        "--rm",
        "--runtime",
        "mxc",
        "--network",
        "none",
        BUSYBOX_REF,
        "sh",
        "-c",
        "echo up; sleep 60 & sleep 60; echo survived",
    ])?;
    assert_eq!(out.code(), Some(137), "{out}");
    assert!(
        out.stdout.contains("up") && !out.stdout.contains("survived"),
        "{out}"
    );
    let timeout = poll(Duration::from_secs(10), || {
        Ok(node.audit()?.into_iter().find(|r| r["event"] == "timeout"))
    })?;
    assert_eq!(timeout["timeout_ms"], 1500, "{timeout}");
    poll(Duration::from_secs(30), || {
        Ok(leaks.leaks().is_empty().then_some(()))
    })?;
    leaks.assert_clean()?;
    Ok(())
}

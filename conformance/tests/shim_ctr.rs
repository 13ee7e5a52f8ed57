//! The shim under `ctr`, against a private containerd and the locally built busybox image:
//! both runtime names, stdio and exit statuses, detached tasks and everything `ctr tasks`
//! does to them, terminals, log URIs, policies from annotations and from the node
//! configuration, and events. Every scenario ends with nothing left behind: processes,
//! mounts, cgroups, engine state, bundles, shim sockets.

mod shim_support;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mxc_conformance::command::{poll, run};
use mxc_conformance::containerd::{Containerd, MXC_RUNTIME_TYPE};
use mxc_conformance::each_containerd;
use mxc_conformance::engines::ContainerdRelease;
use mxc_conformance::images::BUSYBOX_REF;
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::node::{events, Node};
use mxc_conformance::unique_name;
use serde_json::{json, Value};
use shim_support::{
    assert_clean, engine_state, policy_annotation, shim_daemons, wait_status, EventLog,
    MXC_SHORT_RUNTIME,
};

const NS: &str = "default";

each_containerd!(
    ctr_run_rm_with_both_runtime_names,
    detached_task_exec_ps_metrics_pause_resume_kill_delete,
    tty_runs_the_workload_on_a_terminal,
    log_uris_file_and_binary,
    policy_from_an_annotation_is_enforced_and_a_bad_one_is_refused,
    node_configuration_from_the_runtime_config_path,
    process_timeout_kills_the_container,
    oom_kill_is_reported,
);

fn fixture(release: ContainerdRelease) -> Result<(Containerd, LeakCheck)> {
    let containerd = Containerd::start_release(release)?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(containerd.dir());
    Ok((containerd, leaks))
}

fn ctr_run_rm_with_both_runtime_names(release: ContainerdRelease) -> Result<()> {
    let (containerd, mut leaks) = fixture(release)?;
    let mut ids = Vec::new();
    for runtime in [MXC_SHORT_RUNTIME, MXC_RUNTIME_TYPE] {
        let id = unique_name("run");
        leaks.container(&id);
        let out = containerd.run_container(
            runtime,
            &id,
            &[],
            &["sh", "-c", "echo out-$((6*7)); echo err-1 >&2; exit 3"],
        )?;
        assert_eq!(out.code(), Some(3), "{out}");
        assert_eq!(out.stdout, "out-42\n", "{out}");
        assert_eq!(out.stderr, "err-1\n", "{out}");
        ids.push(id);
    }

    // The shim drove the engine: its state lived beside containerd's.
    let groups: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_clean(&leaks, &containerd, NS, &groups)?;
    assert!(shim_daemons(&containerd).is_empty());
    let log = containerd.log();
    for id in &ids {
        assert!(
            log.contains(&format!("level=info id={id} span=create container created")),
            "the shim's log reaches containerd's, with the container id:\n{}",
            containerd.log_tail(30)
        );
    }
    Ok(())
}

fn detached_task_exec_ps_metrics_pause_resume_kill_delete(
    release: ContainerdRelease,
) -> Result<()> {
    let (containerd, mut leaks) = fixture(release)?;
    let events = EventLog::start(&containerd)?;
    let id = unique_name("det");
    leaks.container(&id);
    containerd
        .ctr(&[
            "run",
            "-d",
            "--runtime",
            MXC_SHORT_RUNTIME,
            BUSYBOX_REF,
            &id,
            "sleep",
            "600",
        ])?
        .ok()?;
    wait_status(&containerd, NS, &id, "RUNNING")?;
    assert_eq!(shim_daemons(&containerd).len(), 1);
    assert!(!engine_state(&containerd, NS).is_empty());

    let exec = containerd.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo exec-out; echo exec-err >&2; cat /proc/1/cmdline | tr '\\0' ' '; exit 4",
    ])?;
    assert_eq!(exec.code(), Some(4), "{exec}");
    assert_eq!(exec.stdout, "exec-out\nsleep 600 ", "{exec}");
    assert_eq!(exec.stderr, "exec-err\n", "{exec}");

    // A second exec, detached, shows in ps until it is killed.
    containerd
        .ctr(&[
            "tasks",
            "exec",
            "-d",
            "--exec-id",
            "e2",
            &id,
            "sleep",
            "500",
        ])?
        .ok()?;
    let ps = containerd.ctr(&["tasks", "ps", &id])?.ok()?;
    let pids: Vec<&str> = ps.stdout.lines().skip(1).collect();
    assert_eq!(pids.len(), 2, "init and one exec process: {ps}");
    assert!(ps.stdout.contains("e2"), "ps names the exec process: {ps}");
    containerd
        .ctr(&["tasks", "kill", "--exec-id", "e2", "-s", "SIGKILL", &id])?
        .ok()?;
    events.wait_for(&id, "/tasks/exit")?;

    let metrics = containerd.ctr(&["tasks", "metrics", &id])?.ok()?;
    assert!(
        metrics.stdout.contains("pids.current") && metrics.stdout.contains("memory.usage_in_bytes"),
        "{metrics}"
    );

    containerd.ctr(&["tasks", "pause", &id])?.ok()?;
    wait_status(&containerd, NS, &id, "PAUSED")?;
    // A request that does not fit the task's phase is refused, naming the transition.
    let again = containerd.ctr(&["tasks", "pause", &id])?;
    ensure!(!again.success(), "{again}");
    assert!(
        again.stderr.contains("cannot pause: paused -> paused"),
        "{again}"
    );
    // containerd 1.x prints the status code's name; 2.x turns the code into its own error
    // type and prints only the message.
    if release != ContainerdRelease::V2 {
        assert!(again.stderr.contains("failed precondition"), "{again}");
    }
    containerd.ctr(&["tasks", "resume", &id])?.ok()?;
    wait_status(&containerd, NS, &id, "RUNNING")?;

    let checkpoint = containerd.ctr(&["tasks", "checkpoint", &id])?;
    ensure!(!checkpoint.success(), "{checkpoint}");
    assert!(checkpoint.stderr.contains("not supported"), "{checkpoint}");

    // A running task cannot be deleted; once killed it can.
    let refused = containerd.ctr(&["tasks", "delete", &id])?;
    ensure!(!refused.success(), "{refused}");
    containerd
        .ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", &id])?
        .ok()?;
    wait_status(&containerd, NS, &id, "STOPPED")?;
    let killed = containerd.ctr(&["tasks", "ls"])?.ok()?;
    assert!(killed.stdout.contains("STOPPED"), "{killed}");
    containerd.ctr(&["tasks", "delete", &id])?.ok()?;
    containerd.ctr(&["containers", "delete", &id])?.ok()?;

    events.wait_for(&id, "/tasks/delete")?;
    let topics = events.topics(&id);
    let expected = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/exit",
        "/tasks/paused",
        "/tasks/resumed",
        "/tasks/delete",
    ];
    for topic in expected {
        assert!(topics.iter().any(|t| t == topic), "{topic} in {topics:?}");
    }
    let position = |topic: &str| topics.iter().position(|t| t == topic).unwrap();
    assert!(position("/tasks/create") < position("/tasks/start"));
    assert!(position("/tasks/exec-added") < position("/tasks/exec-started"));
    assert!(position("/tasks/paused") < position("/tasks/resumed"));
    assert!(
        topics.last().map(String::as_str) == Some("/tasks/delete"),
        "{topics:?}"
    );
    // SIGKILL from outside: 128 + 9, as containerd reports a signal.
    assert!(
        events.raw().contains("\"exit_status\":137"),
        "{}",
        events.raw()
    );
    drop(events);

    assert_clean(&leaks, &containerd, NS, &[&id])?;
    Ok(())
}

fn tty_runs_the_workload_on_a_terminal(release: ContainerdRelease) -> Result<()> {
    let (containerd, mut leaks) = fixture(release)?;
    // `ctr run -t` needs a terminal of its own: script(1) gives it one.
    let id = unique_name("tty");
    leaks.container(&id);
    let ctr_line = format!(
        "{} --address {} run --rm -t --runtime {} {} {} sh -c 'tty; echo tty-ok; exit 5'",
        containerd.release().ctr().display(),
        containerd.address().display(),
        MXC_RUNTIME_TYPE,
        BUSYBOX_REF,
        id
    );
    let mut script = std::process::Command::new("script");
    script
        .args(["-qefc", &ctr_line, "/dev/null"])
        .stdin(std::process::Stdio::null());
    let out = run(&mut script, Duration::from_secs(120))?;
    assert_eq!(out.code(), Some(5), "{out}");
    let text = out.stdout.replace('\r', "");
    assert!(text.contains("/dev/pts/0\n"), "a terminal inside: {out}");
    assert!(text.contains("tty-ok\n"), "{out}");
    assert_clean(&leaks, &containerd, NS, &[&id])?;
    Ok(())
}

fn log_uris_file_and_binary(release: ContainerdRelease) -> Result<()> {
    let (containerd, mut leaks) = fixture(release)?;
    let dir = mxc_conformance::scratch_dir("logs")?;

    let id = unique_name("file");
    leaks.container(&id);
    let log = dir.path().join("sub/file.log");
    let uri = format!("file://{}", log.display());
    let out = containerd.run_container(
        MXC_RUNTIME_TYPE,
        &id,
        &["--log-uri", &uri],
        &["sh", "-c", "echo to-out; echo to-err >&2"],
    )?;
    assert!(out.success(), "{out}");
    let text = std::fs::read_to_string(&log)?;
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(lines, ["to-err", "to-out"], "both streams in the file");

    // A logging binary gets stdout and stderr as fds 3 and 4, signals readiness on fd 5, and
    // knows the container from its environment.
    let id = unique_name("bin");
    leaks.container(&id);
    let logger = dir.path().join("logger.sh");
    let sink = dir.path().join("binary.log");
    std::fs::write(
        &logger,
        "#!/bin/sh\nexec 5>&-\n{ echo \"id=$CONTAINER_ID ns=$CONTAINER_NAMESPACE arg=$1 $2\"; cat <&3; cat <&4; } > \"$2\"\n",
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755))?;
    let uri = format!("binary://{}?tag={}", logger.display(), sink.display());
    let out = containerd.run_container(
        MXC_RUNTIME_TYPE,
        &id,
        &["--log-uri", &uri],
        &["sh", "-c", "echo bin-out; echo bin-err >&2"],
    )?;
    assert!(out.success(), "{out}");
    poll(Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&sink).unwrap_or_default();
        Ok(text.contains("bin-err").then_some(()))
    })
    .context("the logging binary's output")?;
    let text = std::fs::read_to_string(&sink)?;
    assert_eq!(
        text,
        format!(
            "id={id} ns={NS} arg=tag {}\nbin-out\nbin-err\n",
            sink.display()
        )
    );

    assert_clean(&leaks, &containerd, NS, &[])?;
    Ok(())
}

fn policy_from_an_annotation_is_enforced_and_a_bad_one_is_refused(
    release: ContainerdRelease,
) -> Result<()> {
    let (containerd, mut leaks) = fixture(release)?;

    let policy = json!({
        "version": "0.8.0-alpha",
        "process": { "env": ["AGENT_MODE=sandboxed"] },
        "filesystem": { "deniedPaths": ["/etc/passwd"] },
    });
    let annotation = policy_annotation(&policy);
    let id = unique_name("pol");
    leaks.container(&id);
    let out = containerd.run_container(
        MXC_SHORT_RUNTIME,
        &id,
        &["--annotation", &annotation],
        &[
            "sh",
            "-c",
            "echo env=$AGENT_MODE; cat /etc/passwd >/dev/null 2>&1 && echo passwd-readable; \
             grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status",
        ],
    )?;
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("env=sandboxed\n"),
        "process.env applied: {out}"
    );
    assert!(
        !out.stdout.contains("passwd-readable"),
        "deniedPaths masked: {out}"
    );
    assert!(
        out.stdout.contains("CapEff:\t0000000000000000"),
        "no capabilities: {out}"
    );
    assert!(out.stdout.contains("NoNewPrivs:\t1"), "{out}");

    // A policy that bundle mode cannot honour is refused with the reason, at create.
    let bad = json!({ "version": "0.8.0-alpha", "process": { "commandLine": "python3 agent.py" } });
    let id = unique_name("bad");
    leaks.container(&id);
    let annotation = policy_annotation(&bad);
    let out = containerd.run_container(
        MXC_RUNTIME_TYPE,
        &id,
        &["--annotation", &annotation],
        &["true"],
    )?;
    ensure!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("io.mxc.config") && out.stderr.contains("process.commandLine"),
        "the message names the annotation and the field: {out}"
    );

    let id = unique_name("json");
    leaks.container(&id);
    let out = containerd.run_container(
        MXC_RUNTIME_TYPE,
        &id,
        &["--annotation", "io.mxc.config={not json"],
        &["true"],
    )?;
    ensure!(!out.success(), "{out}");
    assert!(out.stderr.contains("io.mxc.config"), "{out}");

    assert_clean(&leaks, &containerd, NS, &[])?;
    Ok(())
}

fn node_configuration_from_the_runtime_config_path(release: ContainerdRelease) -> Result<()> {
    let (containerd, mut leaks) = fixture(release)?;
    let scratch = mxc_conformance::scratch_dir("policies")?;
    let policies = scratch.path().join("policies");
    std::fs::create_dir(&policies)?;
    std::fs::write(
        policies.join("named.json"),
        json!({"version": "0.8.0-alpha", "process": {"env": ["WHICH=named"]}}).to_string(),
    )?;
    let default = scratch.path().join("default.json");
    std::fs::write(
        &default,
        json!({"version": "0.8.0-alpha", "process": {"env": ["WHICH=default"]}}).to_string(),
    )?;
    let node = Node::with(&format!(
        "policy_dir = {:?}\ndefault_policy = {:?}\n",
        policies.display().to_string(),
        default.display().to_string(),
    ))?;
    let config_arg = node.config().to_string_lossy().into_owned();

    let mut ids = Vec::new();
    let id = unique_name("dflt");
    leaks.container(&id);
    ids.push(id.clone());
    let out = containerd.run_container(
        MXC_RUNTIME_TYPE,
        &id,
        &["--runtime-config-path", &config_arg],
        &["sh", "-c", "echo $WHICH"],
    )?;
    assert_eq!(out.stdout, "default\n", "{out}");

    let id = unique_name("named");
    leaks.container(&id);
    ids.push(id.clone());
    let out = containerd.run_container(
        MXC_RUNTIME_TYPE,
        &id,
        &[
            "--runtime-config-path",
            &config_arg,
            "--annotation",
            "io.mxc.config.name=named",
        ],
        &["sh", "-c", "echo $WHICH"],
    )?;
    assert_eq!(out.stdout, "named\n", "{out}");

    let id = unique_name("missing");
    leaks.container(&id);
    ids.push(id.clone());
    let out = containerd.run_container(
        MXC_RUNTIME_TYPE,
        &id,
        &[
            "--runtime-config-path",
            &config_arg,
            "--annotation",
            "io.mxc.config.name=nope",
        ],
        &["true"],
    )?;
    ensure!(!out.success(), "{out}");
    assert!(out.stderr.contains("no policy named \"nope\""), "{out}");

    // Each decision is in the node's audit log: the policy applied (which one, by its hash)
    // and the exit, or why the container could not start.
    let records = node.audit()?;
    let of = |id: &str| events(&records, id);
    let (default_id, named_id, missing_id) = (&ids[0], &ids[1], &ids[2]);
    assert_eq!(of(default_id), ["policy.applied", "exit"], "{records:#?}");
    assert_eq!(of(named_id), ["policy.applied", "exit"], "{records:#?}");
    let applied = |id: &str| node.record(id, "policy.applied");
    let (default_applied, named_applied) = (applied(default_id)?, applied(named_id)?);
    assert_eq!(default_applied["source"], default.display().to_string());
    assert_eq!(named_applied["network"], "isolated");
    let hash = |record: &Value| record["policy_sha256"].as_str().map(str::to_string);
    assert_eq!(hash(&default_applied).map(|h| h.len()), Some(64));
    assert_ne!(hash(&default_applied), hash(&named_applied));
    assert_eq!(node.record(named_id, "exit")?["status"], 0);
    assert_eq!(
        hash(&node.record(named_id, "exit")?),
        hash(&named_applied),
        "every record names the policy"
    );
    assert_eq!(of(missing_id), ["start.failed"], "{records:#?}");
    let failed = node.record(missing_id, "start.failed")?;
    assert!(
        failed["reason"].as_str().unwrap_or("").contains("nope"),
        "{failed}"
    );
    assert!(failed.get("policy_sha256").is_none(), "{failed}");

    assert_clean(&leaks, &containerd, NS, &[])?;
    Ok(())
}

fn process_timeout_kills_the_container(release: ContainerdRelease) -> Result<()> {
    let (containerd, mut leaks) = fixture(release)?;
    let node = Node::new()?;
    let config = node.config().display().to_string();
    let policy = json!({ "version": "0.8.0-alpha", "process": { "timeout": 500 } });
    let annotation = policy_annotation(&policy);
    let id = unique_name("tmo");
    leaks.container(&id);
    let out = containerd.run_container(
        MXC_RUNTIME_TYPE,
        &id,
        &[
            "--runtime-config-path",
            &config,
            "--annotation",
            &annotation,
        ],
        &["sh", "-c", "echo started; sleep 600 & sleep 600"],
    )?;
    assert_eq!(
        out.code(),
        Some(137),
        "killed when the timeout passed: {out}"
    );
    assert_eq!(out.stdout, "started\n");
    assert!(
        containerd
            .log()
            .contains(&format!("id={id} span=timeout process.timeout expired")),
        "{}",
        containerd.log_tail(20)
    );
    assert_eq!(
        node.events(&id)?,
        ["policy.applied", "timeout", "exit"],
        "{:#?}",
        node.audit()
    );
    assert_eq!(node.record(&id, "timeout")?["timeout_ms"], 500);
    assert_eq!(node.record(&id, "exit")?["status"], 137);
    assert_clean(&leaks, &containerd, NS, &[])?;
    Ok(())
}

fn oom_kill_is_reported(release: ContainerdRelease) -> Result<()> {
    let (containerd, mut leaks) = fixture(release)?;
    let events = EventLog::start(&containerd)?;
    let node = Node::new()?;
    let config = node.config().display().to_string();
    let id = unique_name("oom");
    leaks.container(&id);
    let out = containerd.run_container(
        MXC_RUNTIME_TYPE,
        &id,
        &[
            "--runtime-config-path",
            &config,
            "--memory-limit",
            "16777216",
        ],
        &[
            "sh",
            "-c",
            "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived",
        ],
    )?;
    ensure!(!out.stdout.contains("survived"), "{out}");
    events.wait_for(&id, "/tasks/oom")?;
    drop(events);
    // Counted when the container is deleted, which `ctr run --rm` waits for.
    let oom = node.record(&id, "oom")?;
    assert!(oom["kills"].as_u64() >= Some(1), "{oom}");
    assert_clean(&leaks, &containerd, NS, &[])?;
    Ok(())
}

#[test]
fn the_binary_describes_itself() -> Result<()> {
    // containerd 2.x asks a shim for its runtime info (a RuntimeInfo protobuf with the OCI
    // features); `-v` prints the version.
    let shim = mxc_conformance::bins::shim()?;
    let mut cmd = std::process::Command::new(&shim);
    cmd.arg("-info").stdin(std::process::Stdio::null());
    let out = run(&mut cmd, Duration::from_secs(30))?.ok()?;
    for expected in [
        "io.containerd.mxc.v1",
        "types.containerd.io/opencontainers/runtime-spec/1/features/Features",
        "ociVersionMin",
    ] {
        assert!(out.stdout.contains(expected), "{expected} in {out}");
    }
    let mut cmd = std::process::Command::new(&shim);
    cmd.arg("-v");
    let out = run(&mut cmd, Duration::from_secs(30))?.ok()?;
    assert!(
        out.stdout.contains("Runtime: io.containerd.mxc.v1"),
        "{out}"
    );
    Ok(())
}

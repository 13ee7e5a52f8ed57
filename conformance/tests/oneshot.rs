//! `mxc run` for real: MXC's result contract, and the escape battery. Each test tries to break a
//! guarantee from inside the sandbox and checks that it fails the way the policy says, then that
//! nothing the run set up remains.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mxc_conformance::bins;
use mxc_conformance::command::run;
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::oneshot::{
    config_file, mxc_run, shell, shell_with_fs, start_until_up, Run, Scratch, LIMIT, NOBODY,
    STATE_ROOT,
};
use mxc_conformance::unique_name;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// MXC's result contract.

#[test]
fn exit_status_and_output_pass_through() -> Result<()> {
    let (run, audit) = audited_run(shell("echo out; echo err >&2; exit 7"), &[])?;
    assert_eq!(run.code(), Some(7));
    assert_eq!(run.stdout(), "out\n");
    assert_eq!(run.stderr(), "err\n");
    assert_eq!(events(&audit), ["policy.applied", "exit"], "{audit:#?}");
    assert_eq!(audit[0]["network"], "isolated");
    assert_eq!(audit[1]["status"], 7);
    // The shell reports a child killed by a signal as 128+n, and that is the run's status.
    let run = mxc_run(shell("sh -c 'kill -9 $$'"), &[])?;
    assert_eq!(run.code(), Some(137), "a signal is reported as 128+n");
    Ok(())
}

#[test]
fn command_line_is_shell_source() -> Result<()> {
    let run = mxc_run(
        shell("set -e; X=\"a b\"; for w in $X; do printf '[%s]' \"$w\"; done; echo; echo $((6*7)) | cat"),
        &[],
    )?;
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert_eq!(run.stdout(), "[a][b]\n42\n");
    Ok(())
}

#[test]
fn environment_is_exactly_the_configs() -> Result<()> {
    std::env::set_var("MXC_TEST_LEAK", "from-the-caller");
    let config = json!({"version": "0.8.0-alpha", "process": {"commandLine": "env | sort", "env": ["A=1=2", "B=x", "B=y"]}});
    let run = mxc_run(config, &[])?;
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        run.stdout().contains("A=1=2\n") && run.stdout().contains("B=y\n"),
        "{}",
        run.stdout()
    );
    assert!(
        !run.stdout().contains("MXC_TEST_LEAK"),
        "the caller's environment leaked"
    );
    Ok(())
}

#[test]
fn timeout_kills_every_process_and_exits_255() -> Result<()> {
    let marker = unique_name("orphan-sleeper");
    let config = json!({"version": "0.8.0-alpha", "process": {
        "commandLine": format!("(exec -a {marker} sleep 300) & sleep 300 & echo started; wait"),
        "timeout": 700
    }});
    let (run, audit) = audited_run(config, &[])?;
    assert_eq!(run.code(), Some(255));
    assert_eq!(events(&audit), ["policy.applied", "timeout"], "{audit:#?}");
    assert_eq!(audit[1]["timeout_ms"], 700);
    assert_eq!(
        run.stdout(),
        "started\n",
        "output before the deadline is delivered"
    );
    assert!(
        run.stderr().contains("script timed out after 700ms"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains(
        r#"{"error":{"code":"backend_error","message":"script timed out after 700ms"}}"#
    ));
    let ps = run_ps()?;
    assert!(
        !ps.contains(&marker),
        "a sandbox process survived the timeout"
    );
    Ok(())
}

fn run_ps() -> Result<String> {
    Ok(run(Command::new("ps").args(["-eo", "args"]), LIMIT)?.stdout)
}

/// [`mxc_run`] with `--audit-log`: the run, and the records of its one container, which must
/// all name it and the policy's hash.
fn audited_run(config: Value, extra: &[&str]) -> Result<(Run, Vec<Value>)> {
    let scratch = Scratch::new()?;
    let log = scratch.s("audit.jsonl");
    let mut args = vec!["--audit-log", log.as_str()];
    args.extend(extra);
    let run = mxc_run(config, &args)?;
    let records = mxc_conformance::node::read_audit(Path::new(&log))?;
    let first = records.first().context("no audit record")?;
    for record in &records {
        ensure!(
            record["container"] == first["container"]
                && record["policy_sha256"].as_str().map(str::len) == Some(64)
                && record["policy_sha256"] == first["policy_sha256"]
                && record["time"].is_string(),
            "{records:#?}"
        );
    }
    Ok((run, records))
}

fn events(records: &[Value]) -> Vec<&str> {
    records.iter().filter_map(|r| r["event"].as_str()).collect()
}

#[test]
fn the_oom_killer_is_reported_on_stderr_and_in_the_audit_log() -> Result<()> {
    // 256 MiB touched under a 32M limit: the kernel kills the allocation, not the host.
    let (run, audit) = audited_run(
        shell("python3 -c 'b = bytearray(256 << 20)'"),
        &["--memory", "32M"],
    )?;
    assert_eq!(run.code(), Some(137), "{}", run.stderr());
    assert!(
        run.stderr().contains("reached its memory limit"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        events(&audit),
        ["policy.applied", "oom", "exit"],
        "{audit:#?}"
    );
    assert!(audit[1]["kills"].as_u64() >= Some(1), "{audit:#?}");
    assert_eq!(audit[2]["status"], 137);
    Ok(())
}

#[test]
fn rejected_configs_exit_1_with_mxcs_message_and_leave_nothing() -> Result<()> {
    let run = mxc_run(
        json!({"version": "0.8.0-alpha", "process": {"commandLine": "true"}, "filesystem": {"deniedPathz": []}}),
        &[],
    )?;
    assert_eq!(run.code(), Some(1));
    let mut lines = run.stderr().lines();
    assert_eq!(lines.next(), Some("Request error"));
    let line = lines.next().context("a parse error line")?;
    assert!(
        line.starts_with("Configuration parse error: ") && line.contains("filesystem.deniedPathz"),
        "{line}"
    );

    let run = mxc_run(
        json!({"version": "0.8.0-alpha", "process": {"commandLine": "true"}, "phase": "exec", "sandboxId": "x:1"}),
        &[],
    )?;
    assert_eq!(run.code(), Some(1));
    assert!(run
        .stderr()
        .contains("'phase' is only valid on state-aware lifecycle requests"));
    Ok(())
}

#[test]
fn a_refused_config_is_a_failed_start_in_the_audit_log() -> Result<()> {
    let scratch = Scratch::new()?;
    let log = scratch.path("audit.jsonl");
    // Refused while parsing: the record says why, in the words the caller saw, and names no
    // container or policy (neither existed).
    let marker = unique_name("never-ran");
    let refused = json!({"version": "0.8.0-alpha", "process": {"commandLine": format!("echo {marker}")},
                         "filesystem": {"deniedPathz": []}});
    let refusal = mxc_run(refused, &["--audit-log", &scratch.s("audit.jsonl")])?;
    assert_eq!(refusal.code(), Some(1));
    assert!(!refusal.stdout().contains(&marker));
    let records = mxc_conformance::node::read_audit(&log)?;
    assert_eq!(events(&records), ["start.failed"], "{records:#?}");
    assert_refusal(&records[0], "filesystem.deniedPathz", refusal.stderr());

    // Refused while resolving for this host, with the log named by MXC_AUDIT_LOG instead.
    let (_, file) = config_file(refused_for_this_host())?;
    refused_into_env_log(
        Command::new(bins::mxc()?).arg("run").arg(file.path()),
        &scratch.path("from-env.jsonl"),
    )?;

    // Control: a config that is not refused runs, and its records name its container.
    let (ran, audit) = audited_run(shell("true"), &[])?;
    assert_eq!(ran.code(), Some(0), "{}", ran.stderr());
    assert_eq!(events(&audit), ["policy.applied", "exit"], "{audit:#?}");
    assert!(audit[0]["container"].is_string(), "{audit:#?}");
    Ok(())
}

/// A config this host's one-shot sandbox refuses (it takes no inbound connections).
fn refused_for_this_host() -> Value {
    json!({"version": "0.8.0-alpha", "process": {"commandLine": "true"},
           "network": {"egress": {"default": "deny"}, "ingress": {"default": "allow"}}})
}

/// Runs `command` (of a [`refused_for_this_host`] config) with `MXC_AUDIT_LOG=log`: MXC's
/// status for a backend refusal, and the refusal as the log's one record.
fn refused_into_env_log(command: &mut Command, log: &Path) -> Result<()> {
    let output = run(command.env("MXC_AUDIT_LOG", log), LIMIT)?;
    assert_eq!(output.code(), Some(255), "{output}");
    let records = mxc_conformance::node::read_audit(log)?;
    assert_eq!(events(&records), ["start.failed"], "{records:#?}");
    assert_refusal(&records[0], "network.ingress.default", &output.stderr);
    Ok(())
}

/// A refusal's record: a failed start with the caller's reason, under no container or policy.
fn assert_refusal(record: &Value, field: &str, stderr: &str) {
    assert_eq!(record["event"], "start.failed", "{record}");
    assert!(record.get("container").is_none(), "{record}");
    assert!(record.get("policy_sha256").is_none(), "{record}");
    assert!(record["time"].is_string(), "{record}");
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(field), "{reason}");
    assert!(
        reason.lines().all(|line| stderr.contains(line)),
        "the reason is the one the caller saw: {reason:?} / {stderr}"
    );
}

#[test]
fn lxc_exec_writes_the_audit_log_as_mxc_run_does() -> Result<()> {
    let scratch = Scratch::new()?;
    let lxc_exec = bins::binary("lxc-exec")?;
    let (id, file) = config_file(shell("exit 3"))?;
    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id).watch_dir(STATE_ROOT);
    let log = scratch.path("audit.jsonl");
    let output = run(
        Command::new(&lxc_exec)
            .arg("--audit-log")
            .arg(&log)
            .arg(file.path()),
        LIMIT,
    )?;
    leaks.assert_clean()?;
    assert_eq!(output.code(), Some(3), "{output}");
    let records = mxc_conformance::node::read_audit(&log)?;
    assert_eq!(events(&records), ["policy.applied", "exit"], "{records:#?}");
    for record in &records {
        assert_eq!(record["container"], id.as_str(), "{record}");
        assert_eq!(
            record["policy_sha256"].as_str().map(str::len),
            Some(64),
            "{record}"
        );
    }
    assert_eq!(records[1]["status"], 3);

    // MXC_AUDIT_LOG (what the SDK's library hands on) and a refused config.
    let (_, refused) = config_file(refused_for_this_host())?;
    refused_into_env_log(
        Command::new(&lxc_exec).arg(refused.path()),
        &scratch.path("from-env.jsonl"),
    )?;

    // Control: a dry run runs nothing and records nothing, refused or not.
    let dry_log = scratch.path("dry-run.jsonl");
    for config in [refused.path(), file.path()] {
        let output = run(
            Command::new(&lxc_exec)
                .arg("--dry-run")
                .arg("--audit-log")
                .arg(&dry_log)
                .arg(config),
            LIMIT,
        )?;
        assert!(output.code().is_some(), "{output}");
    }
    assert_eq!(
        mxc_conformance::node::read_audit(&dry_log)?,
        Vec::<Value>::new()
    );

    // An audit log that cannot be opened refuses the run before anything runs.
    let marker = unique_name("unaudited");
    let (_, unaudited) = config_file(shell(&format!("echo {marker}")))?;
    let plain = scratch.file("plain", "", 0o644)?;
    let output = run(
        Command::new(&lxc_exec)
            .arg("--audit-log")
            .arg(plain.join("audit.jsonl"))
            .arg(unaudited.path()),
        LIMIT,
    )?;
    assert_eq!(output.code(), Some(255), "{output}");
    assert!(output.stderr.contains("audit.jsonl"), "{output}");
    assert!(!output.stdout.contains(&marker), "{output}");
    Ok(())
}

#[test]
fn setup_failures_exit_255_with_the_envelope_and_leave_nothing() -> Result<()> {
    // A root filesystem without /bin/sh: the sandbox cannot start.
    let scratch = Scratch::new()?;
    let rootfs = scratch.root_dir("empty-rootfs")?;
    let (run, audit) = audited_run(shell("true"), &["--rootfs", rootfs.to_str().unwrap()])?;
    assert_eq!(run.code(), Some(255), "{}", run.stderr());
    assert_eq!(
        events(&audit),
        ["policy.applied", "start.failed"],
        "{audit:#?}"
    );
    let reason = audit[1]["reason"].as_str().unwrap_or_default();
    assert!(
        run.stderr().contains(reason) && !reason.is_empty(),
        "the reason is the one the caller saw: {reason:?}"
    );
    assert!(
        run.stderr().contains(r#""code":"backend_error""#),
        "{}",
        run.stderr()
    );
    Ok(())
}

#[test]
fn a_signal_to_mxc_run_removes_the_sandbox() -> Result<()> {
    let id = unique_name("interrupted");
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    let config = json!({"version": "0.8.0-alpha", "containerId": id, "process": {"commandLine": "echo up; sleep 300"}});
    std::fs::write(file.path(), config.to_string())?;
    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id).watch_dir(STATE_ROOT);
    let (mut child, _stdout) = start_until_up(file.path())?;
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status =
        mxc_conformance::command::wait_until(&mut child, LIMIT)?.context("mxc run did not stop")?;
    assert_eq!(status.code(), Some(128 + libc::SIGTERM));
    leaks.assert_clean()?;
    assert!(!Path::new(STATE_ROOT).join("bundles").join(&id).exists());
    Ok(())
}

/// Processes whose command line mentions `marker`.
fn processes_mentioning(marker: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(marker))
        .collect()
}

#[test]
fn sigkill_to_mxc_run_takes_the_sandbox_with_it_and_the_next_run_removes_the_rest() -> Result<()> {
    // SIGKILL leaves mxc run no chance to clean up: the workload (and the userspace network
    // stack) must die with it anyway, and what remains on disk and in the cgroup tree is
    // removed by the next run.
    let id = unique_name("sigkilled");
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    let config = json!({
        "version": "0.8.0-alpha",
        "containerId": id,
        "process": {"commandLine": format!("echo up; sleep 300; : {id}")},
        "network": {"egress": {"default": "allow"}},
    });
    std::fs::write(file.path(), config.to_string())?;
    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id).watch_dir(STATE_ROOT);
    let (mut child, _stdout) = start_until_up(file.path())?;
    ensure!(!processes_mentioning(&id).is_empty(), "the workload runs");
    child.kill()?;
    child.wait()?;
    mxc_conformance::command::poll(Duration::from_secs(10), || {
        Ok(processes_mentioning(&id).is_empty().then_some(()))
    })
    .with_context(|| {
        format!(
            "the workload outlived mxc run: {:?}",
            processes_mentioning(&id)
        )
    })?;

    let next = mxc_run(shell("true"), &[])?;
    assert_eq!(next.code(), Some(0), "{}", next.stderr());
    leaks.assert_clean()?;
    assert!(!Path::new(STATE_ROOT).join("bundles").join(&id).exists());
    Ok(())
}

#[test]
fn a_sandbox_whose_bundle_is_gone_is_removed_by_the_next_run() -> Result<()> {
    // A run that died after its bundle went but before its container's state did: the next run
    // removes the state (and with it the container's id is free again).
    let id = unique_name("bundleless");
    let file = tempfile::Builder::new().suffix(".json").tempfile()?;
    let config = json!({
        "version": "0.8.0-alpha",
        "containerId": id,
        "process": {"commandLine": format!("echo up; sleep 300; : {id}")},
    });
    std::fs::write(file.path(), config.to_string())?;
    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id).watch_dir(STATE_ROOT);
    let (mut child, _stdout) = start_until_up(file.path())?;
    child.kill()?;
    child.wait()?;
    mxc_conformance::command::poll(Duration::from_secs(10), || {
        Ok(processes_mentioning(&id).is_empty().then_some(()))
    })?;
    std::fs::remove_dir_all(Path::new(STATE_ROOT).join("bundles").join(&id))?;
    let state = Path::new(STATE_ROOT).join("state").join(":mxc").join(&id);
    ensure!(
        state.exists(),
        "the container's state remains: {}",
        state.display()
    );

    let next = mxc_run(shell("true"), &[])?;
    assert_eq!(next.code(), Some(0), "{}", next.stderr());
    assert!(!state.exists(), "{} remains", state.display());
    leaks.assert_clean()?;
    // The id can be used again.
    let again = mxc_run(
        json!({"version": "0.8.0-alpha", "containerId": id, "process": {"commandLine": "true"}}),
        &[],
    )?;
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The escape battery.

#[test]
fn ungranted_host_paths_are_invisible() -> Result<()> {
    let scratch = Scratch::new()?;
    scratch.file("secret", "host secret", 0o644)?;
    let command = format!(
        "cat {} ; ls /home /root /var/lib /opt /usr/local /run/user 2>&1; ls /",
        scratch.s("secret")
    );
    let run = mxc_run(shell(&command), &[])?;
    assert!(!run.stdout().contains("host secret"));
    assert!(run.stderr().contains("No such file"), "{}", run.stderr());
    for hidden in [
        "/home",
        "/root",
        "/var/lib",
        "/opt",
        "/usr/local",
        "/run/user",
    ] {
        assert!(
            run.stdout()
                .contains(&format!("ls: {hidden}: No such file"))
                || run
                    .stdout()
                    .contains(&format!("ls: cannot access '{hidden}': No such file")),
            "{hidden} is visible: {}",
            run.stdout()
        );
    }
    Ok(())
}

#[test]
fn read_only_grants_cannot_be_written_even_below_sub_mounts() -> Result<()> {
    let scratch = Scratch::new()?;
    let ro = scratch.owned_dir("ro")?;
    scratch.file("ro/data", "data\n", 0o666)?;
    // A writable mount below the grant on the host: `rro` must make it read-only inside too.
    let sub = scratch.owned_dir("ro/sub")?;
    run(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=0777", "tmpfs"])
            .arg(&sub),
        LIMIT,
    )?
    .ok()?;
    let command = format!(
        "cat {d}/data; echo x > {d}/data; echo rc=$?; touch {d}/new; echo rc=$?; rm {d}/data; echo rc=$?; \
         touch {d}/sub/new; echo rc=$?",
        d = ro.display()
    );
    let result = mxc_run(shell_with_fs(&command, json!({"readonlyPaths": [ro]})), &[]);
    let _ = run(Command::new("umount").arg(&sub), LIMIT);
    let run = result?;
    assert!(run.stdout().starts_with("data\n"), "{}", run.stdout());
    assert_eq!(run.stdout().matches("rc=").count(), 4, "{}", run.stdout());
    assert_eq!(
        run.stdout().matches("rc=0").count(),
        0,
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    assert!(
        run.stderr().contains("Read-only file system"),
        "{}",
        run.stderr()
    );
    assert_eq!(std::fs::read_to_string(scratch.path("ro/data"))?, "data\n");
    assert!(!scratch.path("ro/sub/new").exists());
    Ok(())
}

#[test]
fn writable_grants_write_through_to_the_host() -> Result<()> {
    let scratch = Scratch::new()?;
    let rw = scratch.owned_dir("rw")?;
    let command = format!(
        "echo written > {}/out; cat {}/out",
        rw.display(),
        rw.display()
    );
    let run = mxc_run(
        shell_with_fs(&command, json!({"readwritePaths": [rw]})),
        &[],
    )?;
    assert_eq!(run.stdout(), "written\n", "{}", run.stderr());
    let out = scratch.path("rw/out");
    assert_eq!(std::fs::read_to_string(&out)?, "written\n");
    assert_eq!(
        std::fs::metadata(&out)?.uid(),
        NOBODY,
        "files are created as the sandbox identity, never as root"
    );
    Ok(())
}

#[test]
fn denied_files_and_directories_cannot_be_opened_or_listed() -> Result<()> {
    let scratch = Scratch::new()?;
    let rw = scratch.owned_dir("ws")?;
    scratch.file("ws/token", "TOKEN", 0o644)?;
    scratch.owned_dir("ws/private")?;
    scratch.file("ws/private/key", "KEY", 0o644)?;
    let command = format!(
        "cat {d}/token; echo rc=$?; echo x > {d}/token; echo rc=$?; ls {d}/private; echo rc=$?; \
         cat {d}/private/key; echo rc=$?; touch {d}/private/new; echo rc=$?; ls {d}",
        d = rw.display()
    );
    let fs = json!({"readwritePaths": [rw], "deniedPaths": [scratch.s("ws/token"), scratch.s("ws/private")]});
    let run = mxc_run(shell_with_fs(&command, fs), &[])?;
    assert!(!run.stdout().contains("TOKEN") && !run.stdout().contains("KEY"));
    assert_eq!(
        run.stdout().matches("rc=0").count(),
        0,
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    assert!(
        run.stderr().contains("Permission denied"),
        "{}",
        run.stderr()
    );
    // The names stay visible in their parent.
    assert!(
        run.stdout().contains("token") && run.stdout().contains("private"),
        "{}",
        run.stdout()
    );
    assert_eq!(std::fs::read_to_string(scratch.path("ws/token"))?, "TOKEN");
    assert!(!scratch.path("ws/private/new").exists());
    Ok(())
}

#[test]
fn symlinks_do_not_escape_grants_or_denials() -> Result<()> {
    let scratch = Scratch::new()?;
    let rw = scratch.owned_dir("ws")?;
    scratch.file("outside", "OUTSIDE", 0o644)?;
    scratch.file("ws/secret", "SECRET", 0o644)?;
    // A link the sandbox identity could not have made (in a root-owned directory) is followed.
    let fixed = scratch.root_dir("ws/fixed")?;
    std::os::unix::fs::symlink(scratch.path("outside"), scratch.path("ws/to-outside"))?;
    std::os::unix::fs::symlink(scratch.path("ws/secret"), fixed.join("to-secret"))?;
    let command = format!(
        "echo ran; cat {d}/to-outside; cat {d}/fixed/to-secret; cat {d}/secret; \
         ln -s /etc/shadow {d}/made; cat {d}/made; ln -s {o} {d}/made2; cat {d}/made2",
        d = rw.display(),
        o = scratch.s("outside")
    );
    // The denial names the link; its target is what gets masked.
    let fs = json!({"readwritePaths": [rw], "deniedPaths": [fixed.join("to-secret")]});
    let run = mxc_run(shell_with_fs(&command, fs), &[])?;
    assert!(run.stdout().starts_with("ran\n"), "{}", run.stderr());
    assert!(!run.stdout().contains("OUTSIDE"), "{}", run.stdout());
    assert!(!run.stdout().contains("SECRET"), "{}", run.stdout());
    assert!(!run.stdout().contains("root:"), "{}", run.stdout());
    Ok(())
}

#[test]
fn host_secrets_in_the_baseline_stay_unreadable() -> Result<()> {
    let run = mxc_run(
        shell("cat /etc/shadow; echo rc=$?; cat /etc/gshadow; echo rc=$?; ls /root; id"),
        &[],
    )?;
    assert!(!run.stdout().contains("root:"), "{}", run.stdout());
    assert_eq!(run.stdout().matches("rc=1").count(), 2, "{}", run.stdout());
    // uid 0 inside is the unprivileged host identity.
    assert!(run.stdout().contains("uid=0"), "{}", run.stdout());
    Ok(())
}

#[test]
fn no_capability_can_be_held_or_gained() -> Result<()> {
    let scratch = Scratch::new()?;
    let rw = scratch.owned_dir("ws")?;
    let command = format!(
        "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; grep NoNewPrivs /proc/self/status; \
         chown 1:1 {d}; echo chown=$?; mknod {d}/dev c 1 3; echo mknod=$?; \
         hostname evil; echo hostname=$?; ip link add dummy0 type dummy; echo iplink=$?",
        d = rw.display()
    );
    let run = mxc_run(
        shell_with_fs(&command, json!({"readwritePaths": [rw]})),
        &[],
    )?;
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            run.stdout().contains(&format!("{set}:\t0000000000000000")),
            "{set}: {}",
            run.stdout()
        );
    }
    assert!(run.stdout().contains("NoNewPrivs:\t1"));
    for op in ["chown", "mknod", "hostname", "iplink"] {
        assert!(
            !run.stdout().contains(&format!("{op}=0")),
            "{op} succeeded: {}",
            run.stdout()
        );
    }
    Ok(())
}

#[test]
fn setuid_binaries_do_not_elevate() -> Result<()> {
    let scratch = Scratch::new()?;
    let dir = scratch.root_dir("suid")?;
    let id = dir.join("id");
    std::fs::copy("/usr/bin/id", &id)?;
    std::os::unix::fs::chown(&id, Some(0), Some(0))?;
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o4755))?;
    ensure!(
        std::fs::metadata(&id)?.mode() & 0o4000 != 0,
        "precondition: a setuid-root binary"
    );
    let command = format!("{} -u; grep -E '^Uid' /proc/self/status", id.display());
    let run = mxc_run(
        shell_with_fs(&command, json!({"readonlyPaths": [dir]})),
        &[],
    )?;
    // Elevated to host root, the id would show as the overflow id (65534) inside the namespace.
    assert_eq!(
        run.stdout().lines().next(),
        Some("0"),
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    Ok(())
}

#[test]
fn mounts_namespaces_and_module_loading_are_refused() -> Result<()> {
    let command =
        "mount -t tmpfs none /tmp; echo mount=$?; unshare -U true; echo unshare_user=$?; \
                   unshare -r true; echo unshare_root=$?; unshare -n true; echo unshare_net=$?; \
                   modprobe dummy; echo modprobe=$?; insmod /nonexistent.ko; echo insmod=$?";
    let run = mxc_run(shell(command), &[])?;
    for op in [
        "mount",
        "unshare_user",
        "unshare_root",
        "unshare_net",
        "modprobe",
        "insmod",
    ] {
        assert!(
            run.stdout().contains(&format!("{op}=")),
            "{op} did not run: {}",
            run.stdout()
        );
        assert!(
            !run.stdout().contains(&format!("{op}=0")),
            "{op} succeeded: {}\n{}",
            run.stdout(),
            run.stderr()
        );
    }
    Ok(())
}

#[test]
fn host_processes_are_invisible_and_unsignalable() -> Result<()> {
    let mut sleeper = Command::new("sleep").arg("300").spawn()?;
    let pid = sleeper.id();
    // ptrace(PTRACE_ATTACH, 1) through perl's raw syscall (101 on x86_64, 117 on aarch64).
    let ptrace = if cfg!(target_arch = "aarch64") {
        117
    } else {
        101
    };
    let command = format!(
        "ls -d /proc/[0-9]* | wc -l; ls /proc/{pid} 2>&1; kill -9 {pid}; echo kill=$?; kill -9 1; echo kill1=$?; \
         perl -e 'print syscall({ptrace}, 16, 1, 0, 0) == -1 ? \"ptrace=$!\\n\" : \"ptrace=attached\\n\"'"
    );
    let run = mxc_run(shell(&command), &[]);
    let alive = sleeper.try_wait()?.is_none();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let run = run?;
    assert!(alive, "a host process was killed from inside the sandbox");
    let visible: usize = run
        .stdout()
        .lines()
        .next()
        .context("count")?
        .trim()
        .parse()?;
    assert!(
        visible < 10,
        "{visible} processes visible: {}",
        run.stdout()
    );
    assert!(run.stdout().contains("No such file"), "{}", run.stdout());
    assert!(!run.stdout().contains("kill=0"), "{}", run.stdout());
    assert!(
        run.stdout().contains("ptrace=Operation not permitted"),
        "{}",
        run.stdout()
    );
    Ok(())
}

#[test]
fn kernel_tunables_are_read_only() -> Result<()> {
    let command = "echo 1 > /proc/sys/kernel/sysrq; echo sysctl=$?; echo c > /proc/sysrq-trigger; \
                   echo sysrq=$?; ls /sys 2>&1 | head -1; echo x > /sys/kernel/uevent_helper; echo sys=$?; \
                   cat /proc/kcore | head -c 1 | wc -c";
    let run = mxc_run(shell(command), &[])?;
    for op in ["sysctl", "sysrq", "sys"] {
        assert!(
            !run.stdout().contains(&format!("{op}=0")),
            "{op} succeeded: {}",
            run.stdout()
        );
    }
    assert!(
        run.stdout().trim_end().ends_with('0'),
        "/proc/kcore readable: {}",
        run.stdout()
    );
    Ok(())
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() -> Result<()> {
    // perl-base is essential on Debian, so perl is in every host baseline; it reports how many
    // forks succeeded instead of dying at the first failure as a shell does.
    let command =
        "perl -e '$| = 1; my $n = 0; for (1..200) { my $p = fork(); last unless defined $p; \
                   if ($p == 0) { sleep 30; exit 0 } $n++ } print \"$n\\n\"'";
    let config =
        json!({"version": "0.8.0-alpha", "process": {"commandLine": command, "timeout": 20000}});
    let run = mxc_run(config, &["--pids-limit", "40"])?;
    let forks: usize = run
        .stdout()
        .trim()
        .parse()
        .with_context(|| format!("{}{}", run.stdout(), run.stderr()))?;
    assert!(forks < 40, "{forks} forks succeeded under a limit of 40");
    assert!(forks >= 30, "the limit was not the reason: {forks} forks");
    Ok(())
}

#[test]
fn network_is_loopback_only() -> Result<()> {
    let command = "ip -o link | wc -l; ip route | wc -l; (echo > /dev/tcp/127.0.0.1/1) 2>&1; \
                   nc -w 1 198.18.0.1 80 </dev/null; echo nc=$?";
    let run = mxc_run(shell(command), &[])?;
    let mut lines = run.stdout().lines();
    assert_eq!(
        lines.next().map(str::trim),
        Some("1"),
        "only lo: {}",
        run.stdout()
    );
    assert_eq!(
        lines.next().map(str::trim),
        Some("0"),
        "no routes: {}",
        run.stdout()
    );
    assert!(!run.stdout().contains("nc=0"));
    Ok(())
}

//! MXC's own TypeScript SDK (npm `@microsoft/mxc-sdk`, pinned by `conformance/sdk/`) as a
//! client of this project: its calls go to `libmxc_ffi.so` and `lxc-exec` (the SDK's bundled
//! MXC binaries are removed from the test install, so nothing can fall back to MXC's backend).
//! Each result is checked from inside the sandbox, with a positive control beside each denial,
//! and nothing a run set up may remain.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::netns::{tcp_client, TestHost};
use mxc_conformance::node::read_audit;
use mxc_conformance::sdk::{self, Backend, Node};
use mxc_conformance::unique_name;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(120);
const STATE_ROOT: &str = "/run/mxc";

/// Runs a 1.x scenario with this project's backend under a leak check; returns its JSON.
fn v1(node: Node, name: &str, request: Option<&Value>) -> Result<Value> {
    v1_with_env(node, name, request, &[])
}

/// [`v1`] with more variables in the Node process's environment.
fn v1_with_env(
    node: Node,
    name: &str,
    request: Option<&Value>,
    env: &[(&str, &Path)],
) -> Result<Value> {
    let backend = Backend::ours()?;
    let id = request
        .and_then(|r| r["containerName"].as_str())
        .map(str::to_string);
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(STATE_ROOT);
    if let Some(id) = &id {
        leaks.container(id);
    }
    let text = request.map(Value::to_string);
    let mut args = vec![name];
    args.extend(text.as_deref());
    let (value, output) = sdk::scenario_with_env("v1", node, &backend, &args, env, LIMIT)?;
    leaks.assert_clean()?;
    if let Some(id) = &id {
        for dir in ["bundles", "state"] {
            ensure!(
                !Path::new(STATE_ROOT).join(dir).join(id).exists(),
                "{dir} of {id} left behind"
            );
        }
    }
    ensure!(output.success(), "the scenario failed: {output}");
    Ok(value)
}

fn request(command: &str, extra: Value) -> Value {
    let mut request = json!({"command": command, "containerName": unique_name("sdk")});
    for (key, value) in extra.as_object().into_iter().flatten() {
        request[key] = value.clone();
    }
    request
}

fn ok(value: &Value) -> &Value {
    assert!(value.get("error").is_none(), "the SDK call failed: {value}");
    &value["ok"]
}

#[test]
fn run_returns_output_and_exit_status_and_denies_a_denied_read() -> Result<()> {
    let dir = sdk::fixture_dir("mxc-sdk-files")?;
    let allowed = sdk::readable_file(dir.path(), "allowed.txt", "allowed-content\n")?;
    let secret = sdk::readable_file(dir.path(), "secret.txt", "secret-content\n")?;
    let command = format!(
        "cat {}; cat {}; echo to-stderr >&2; exit 3",
        allowed.display(),
        secret.display()
    );
    let request = request(
        &command,
        json!({"filesystem": {
            "readonlyPaths": [dir.path()],
            "deniedPaths": [secret],
        }}),
    );
    let result = v1(Node::System, "run", Some(&request))?;
    let result = ok(&result);
    assert_eq!(result["exitCode"], 3, "{result}");
    assert_eq!(result["timedOut"], false, "{result}");
    let stdout = result["stdout"].as_str().unwrap_or_default();
    let stderr = result["stderr"].as_str().unwrap_or_default();
    assert_eq!(
        stdout, "allowed-content\n",
        "the granted file is readable, the denied one is not"
    );
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stderr.contains("to-stderr"), "{stderr}");
    Ok(())
}

#[test]
fn run_denies_a_connection_the_policy_does_not_allow() -> Result<()> {
    let host = TestHost::new()?;
    let allowed = host.tcp(host.v4(), "allowed-reply")?;
    let other = host.tcp(host.v4(), "other-reply")?;
    let IpAddr::V4(v4) = host.v4() else {
        unreachable!("v4() is an IPv4 address")
    };
    let command = [
        tcp_client(allowed.addr(), "allowed"),
        tcp_client(other.addr(), "other"),
    ]
    .concat();
    let request = request(
        &command,
        json!({"network": {"egress": {"default": "deny", "allow": [{
            "to": [{"cidr": format!("{v4}/32")}],
            "ports": [{"protocol": "tcp", "port": allowed.addr().port()}],
        }]}}}),
    );
    let result = v1(Node::System, "run", Some(&request))?;
    let stdout = ok(&result)["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(stdout.contains("allowed=allowed-reply"), "{stdout}");
    assert!(stdout.contains("other=blocked"), "{stdout}");
    assert_eq!(
        other.finish().len(),
        0,
        "the denied server saw a connection"
    );
    assert!(!allowed.finish().is_empty());
    Ok(())
}

#[test]
fn run_timeout_kills_the_sandbox_and_reports_it() -> Result<()> {
    let marker = unique_name("sdk-sleeper");
    let request = request(
        &format!("echo before; sh -c 'sleep 300; :' {marker} & wait"),
        json!({"timeoutMs": 800}),
    );
    let result = v1(Node::System, "run", Some(&request))?;
    let result = ok(&result);
    assert_eq!(result["timedOut"], true, "{result}");
    assert_eq!(result["exitCode"], -1, "{result}");
    assert_eq!(result["stdout"], "before\n", "{result}");
    assert!(!running(&marker)?, "a sandbox process survived the timeout");
    Ok(())
}

#[test]
fn rejected_requests_are_errors_with_mxcs_codes_and_name_the_field() -> Result<()> {
    let cases = [
        (
            json!({"network": {"egress": {"default": "deny", "allow": [{"to": [{"cidr": "10.0.0.1/8"}]}]}}}),
            "malformed_request",
            "network.egress.allow[0].to[0].cidr",
        ),
        (
            json!({"network": {"egress": {"default": "deny"}, "ingress": {"default": "allow"}}}),
            "backend_error",
            "network.ingress.default",
        ),
        (
            json!({"containment": {"type": "lxc"}}),
            "backend_error",
            "containment",
        ),
    ];
    for (extra, code, field) in cases {
        let marker = unique_name("never-ran");
        let request = request(&format!("touch /tmp/{marker}"), extra);
        let result = v1(Node::System, "run", Some(&request))?;
        assert_eq!(result["error"]["code"], code, "{result}");
        let message = result["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{message}");
        assert!(
            !message.contains(&marker),
            "the message quotes the command: {message}"
        );
    }
    Ok(())
}

#[test]
fn the_audit_log_named_in_the_environment_records_each_run_and_each_refusal() -> Result<()> {
    let dir = mxc_conformance::scratch_dir("mxc-sdk-audit")?;
    let log = dir.path().join("audit.jsonl");
    let env = [("MXC_AUDIT_LOG", log.as_path())];
    let ran = request("exit 4", json!({}));
    let result = v1_with_env(Node::System, "run", Some(&ran), &env)?;
    assert_eq!(ok(&result)["exitCode"], 4, "{result}");
    let records = read_audit(&log)?;
    let events: Vec<&str> = records.iter().filter_map(|r| r["event"].as_str()).collect();
    assert_eq!(events, ["policy.applied", "exit"], "{records:#?}");
    for record in &records {
        assert_eq!(record["container"], ran["containerName"], "{record}");
        assert_eq!(
            record["policy_sha256"].as_str().map(str::len),
            Some(64),
            "{record}"
        );
    }
    assert_eq!(records[1]["status"], 4, "{records:#?}");

    // A refused request is recorded too, before any sandbox (so under no container or hash),
    // with the reason the SDK's caller got.
    let refused = request(
        "true",
        json!({"network": {"egress": {"default": "deny"}, "ingress": {"default": "allow"}}}),
    );
    let result = v1_with_env(Node::System, "run", Some(&refused), &env)?;
    assert_eq!(result["error"]["code"], "backend_error", "{result}");
    let records = read_audit(&log)?;
    assert_eq!(records.len(), 3, "{records:#?}");
    let record = &records[2];
    assert_eq!(record["event"], "start.failed", "{record}");
    assert!(record.get("container").is_none(), "{record}");
    assert!(record.get("policy_sha256").is_none(), "{record}");
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("network.ingress.default"), "{reason}");
    let message = result["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(reason), "{message} / {reason}");

    // An audit log that cannot be opened refuses the run: nothing runs unrecorded.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "")?;
    let unopenable = plain.join("audit.jsonl");
    let marker = unique_name("unaudited");
    let unaudited = request(&format!("echo {marker}"), json!({}));
    let result = v1_with_env(
        Node::System,
        "run",
        Some(&unaudited),
        &[("MXC_AUDIT_LOG", unopenable.as_path())],
    )?;
    assert_eq!(result["error"]["code"], "backend_error", "{result}");
    let message = result["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("audit.jsonl"), "{message}");
    assert!(!result.to_string().contains(&marker), "{result}");
    Ok(())
}

#[test]
fn backends_and_platform_support_come_from_this_projects_executor() -> Result<()> {
    let backends = v1(Node::System, "backends", None)?;
    let entry = ok(&backends)
        .as_array()
        .and_then(|list| list.iter().find(|b| b["backend"] == "bubblewrap"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        entry["capabilities"],
        json!(["proxyEnforcement"]),
        "{backends}"
    );
    // The SDK asks `lxc-exec --available-backends` through MXC_BIN_DIR; MXC's own executor is
    // not in the test install, so a supported proxy enforcement can only be this project's.
    let platform = v1(Node::System, "platform", None)?;
    let platform = ok(&platform);
    assert_eq!(platform["isSupported"], true, "{platform}");
    assert_eq!(
        platform["bubblewrapNetwork"]["proxyEnforcement"], "supported",
        "{platform}"
    );
    Ok(())
}

#[test]
fn spawn_streams_output_while_the_command_runs() -> Result<()> {
    let request = request(
        "echo ready; read answer; echo done:$answer; echo to-stderr >&2; exit 5",
        json!({}),
    );
    let result = v1(Node::V24, "stream", Some(&request))?;
    let result = ok(&result);
    assert_eq!(result["runningAfterFirstLine"], true, "{result}");
    assert_eq!(result["stdout"], "ready\ndone:go\n", "{result}");
    assert_eq!(result["stderr"], "to-stderr\n", "{result}");
    assert_eq!(result["result"]["exitCode"], 5, "{result}");
    assert!(result["pid"].as_u64().unwrap_or(0) > 0, "{result}");
    Ok(())
}

#[test]
fn kill_removes_the_whole_sandbox() -> Result<()> {
    let marker = unique_name("sdk-killed");
    let request = request(
        &format!("sh -c 'sleep 300; :' {marker} & echo started; wait"),
        json!({}),
    );
    let result = v1(Node::V24, "kill", Some(&request))?;
    let result = ok(&result);
    assert_eq!(result["result"]["exitCode"], -1, "{result}");
    assert_eq!(result["result"]["timedOut"], false, "{result}");
    assert_eq!(result["stdout"], "started\n", "{result}");
    assert!(!running(&marker)?, "a sandbox process survived the kill");
    Ok(())
}

/// Whether a process whose command line holds `marker` runs on the host.
fn running(marker: &str) -> Result<bool> {
    Ok(std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker)))
}

#[test]
fn the_sdks_own_deadline_removes_the_sandbox_and_reports_a_timeout() -> Result<()> {
    let request = request("echo started; sleep 300", json!({"timeoutMs": 1000}));
    let result = v1(Node::V24, "wait", Some(&request))?;
    let result = ok(&result);
    assert_eq!(result["result"]["timedOut"], true, "{result}");
    assert_eq!(result["result"]["exitCode"], -1, "{result}");
    Ok(())
}

#[test]
fn spawn_with_pty_is_a_terminal_that_resizes() -> Result<()> {
    let request = request(
        "test -t 0 && echo tty=yes; echo size=$(stty size); read answer; echo now=$(stty size) got=$answer; exit 4",
        json!({}),
    );
    let result = v1(Node::V24, "pty", Some(&request))?;
    let result = ok(&result);
    let output = result["output"].as_str().unwrap_or_default();
    assert!(output.contains("tty=yes"), "{output}");
    assert!(output.contains("size=30 100"), "{output}");
    assert!(output.contains("now=40 120 got=go"), "{output}");
    assert_eq!(result["result"]["exitCode"], 4, "{result}");
    Ok(())
}

/// Runs an SDK 0.8.0 scenario (the executor per sandbox, found through `MXC_BIN_DIR`).
fn v0_8(name: &str, script: &str, policy: Value) -> Result<Value> {
    let backend = Backend::ours()?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(STATE_ROOT);
    let policy = policy.to_string();
    let (value, output) = sdk::scenario(
        "v0.8",
        Node::System,
        &backend,
        &[name, script, &policy],
        LIMIT,
    )?;
    leaks.assert_clean()?;
    ensure!(output.success(), "the scenario failed: {output}");
    Ok(value)
}

#[test]
fn sdk_0_8_runs_lxc_exec_per_sandbox() -> Result<()> {
    let policy = json!({"version": "0.8.0-alpha", "filesystem": {"deniedPaths": ["/etc/shadow"]}});
    let command = "echo out; echo err >&2; cat /etc/shadow; exit 3";
    // The terminal path (node-pty): output merged, the command's status.
    let result = v0_8("pty", command, policy.clone())?;
    let result = ok(&result);
    let stdout = result["stdout"].as_str().unwrap_or_default();
    assert!(stdout.contains("out") && stdout.contains("err"), "{result}");
    assert!(stdout.contains("Permission denied"), "{result}");
    assert_eq!(result["exitCode"], 3, "{result}");
    // The pipe path: stdout and stderr apart.
    let result = v0_8("pipes", command, policy)?;
    let result = ok(&result);
    assert_eq!(result["stdout"], "out\n", "{result}");
    assert!(
        result["stderr"]
            .as_str()
            .unwrap_or_default()
            .starts_with("err\n"),
        "{result}"
    );
    assert_eq!(result["exitCode"], 3, "{result}");
    // A set-up refusal and a timeout arrive as MXC's JSON envelope, which the SDK turns into
    // an MxcError.
    let refused = json!({"version": "0.8.0-alpha", "network": {"egress": {"default": "deny"}, "ingress": {"default": "allow"}}});
    let result = v0_8("pty", "true", refused)?;
    assert_eq!(result["error"]["code"], "backend_error", "{result}");
    assert!(
        result["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("network.ingress.default"),
        "{result}"
    );
    let result = v0_8(
        "pty",
        "sleep 30",
        json!({"version": "0.8.0-alpha", "timeoutMs": 700}),
    )?;
    assert_eq!(
        result["error"]["message"], "script timed out after 700ms",
        "{result}"
    );
    Ok(())
}

#[test]
fn windows_only_calls_answer_as_mxcs_own_library_does_on_linux() -> Result<()> {
    // The lifecycle API, probe() and telemetry consent are served by Windows backends only;
    // MXC's own Linux library (kept aside by the set-up) is the reference for their answers.
    let ours = Backend::ours()?;
    let (ours, _) = sdk::scenario("v1", Node::V24, &ours, &["windowsOnly"], LIMIT)?;
    let (mxc, _) = sdk::scenario("v1", Node::V24, &Backend::Mxc, &["windowsOnly"], LIMIT)?;
    let ours = ok(&ours).as_object().cloned().unwrap_or_default();
    let mxc = ok(&mxc).as_object().cloned().unwrap_or_default();
    assert_eq!(ours.len(), 11, "{ours:?}");
    for (call, expected) in &mxc {
        assert_eq!(ours.get(call), Some(expected), "{call}");
    }
    // Not vacuous: the lifecycle calls reached the library and were refused as unavailable.
    assert_eq!(
        ours["provisionIsolationSession"]["error"]["code"],
        "backend_unavailable"
    );
    Ok(())
}

#[test]
fn the_readmes_node_example_runs() -> Result<()> {
    // The README's example, as written, except for the directory it reads.
    let readme = std::fs::read_to_string(mxc_conformance::workspace_root().join("README.md"))?;
    let example = readme
        .split("```js\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .filter(|text| text.contains("@microsoft/mxc-sdk"))
        .map(str::to_string);
    let Some(example) = example else {
        anyhow::bail!("the README has no Node example with the SDK");
    };
    let dir = sdk::fixture_dir("mxc-sdk-readme")?;
    sdk::readable_file(dir.path(), "notes.txt", "the notes\n")?;
    let data = dir.path().display().to_string();
    let script = sdk::sdk_dir()
        .join("v1")
        .join(format!("{}.mjs", unique_name("readme")));
    std::fs::write(&script, example.replace("/data", &data))?;
    let backend = Backend::ours()?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(STATE_ROOT);
    let output = sdk::node_script(Node::V24, &backend, &script, LIMIT);
    let _ = std::fs::remove_file(&script);
    let output = output?;
    leaks.assert_clean()?;
    ensure!(output.success(), "the example failed: {output}");
    assert_eq!(output.stdout, "3 the notes\n\n", "{output}");
    Ok(())
}

#[test]
fn the_node_process_dying_removes_the_sandbox() -> Result<()> {
    // The library's process is killed outright while a sandbox runs: nothing of the SDK or the
    // library gets to clean up, and the sandbox must go anyway (lxc-exec sees its control
    // descriptor close).
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let marker = unique_name("sdk-orphaned");
    let request = request(
        &format!("sh -c 'sleep 300; :' {marker} & echo started; wait"),
        json!({}),
    );
    let id = request["containerName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let backend = Backend::ours()?;
    let (ffi, bin) = backend.dirs();
    let script = sdk::sdk_dir().join("v1").join("scenario.mjs");
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(STATE_ROOT).container(&id);
    let mut node = Command::new(Node::V24.program()?)
        .current_dir(script.parent().unwrap_or(Path::new(".")))
        .arg(&script)
        .args(["hold", &request.to_string()])
        .env("MXC_FFI_DIR", &ffi)
        .env("MXC_BIN_DIR", &bin)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = node.stdout.take().expect("stdout is piped");
    let held = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with('{'));
    let running_before = running(&marker)?;
    node.kill()?;
    node.wait()?;
    let held = held.unwrap_or_default();
    ensure!(
        held.contains("holding"),
        "the sandbox did not start: {held}"
    );
    ensure!(running_before, "the workload was not running: {held}");
    mxc_conformance::command::poll(Duration::from_secs(20), || {
        Ok((!running(&marker)?).then_some(()))
    })
    .context("a sandbox process outlived the Node process")?;
    leaks.assert_clean()?;
    for dir in ["bundles", "state"] {
        ensure!(
            !Path::new(STATE_ROOT).join(dir).join(&id).exists(),
            "{dir} of {id} left behind"
        );
    }
    Ok(())
}

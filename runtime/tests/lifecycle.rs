//! The `mxc-runtime` binary driven as runc's callers drive it, on a busybox bundle, as root.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;
use serde_json::Value;

#[test]
fn create_start_state_kill_delete() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique_id("life");
    let pid_file = bundle.path().join("init.pid");
    rt.ok(&[
        "create",
        &id,
        "--bundle",
        bundle.path_str(),
        "--pid-file",
        pid_file.to_str().unwrap(),
    ]);
    let state = rt.state(&id);
    assert_eq!(state["status"], "created");
    let pid = state["pid"].as_i64().unwrap();
    assert!(pid > 0);
    let written: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(written, pid);

    rt.ok(&["start", &id]);
    assert_eq!(rt.status(&id), "running");
    // A second start is refused, as by runc.
    let err = rt.fails(&["start", &id]);
    assert!(err.contains("running"), "{err}");

    // A signal the init ignores leaves it running, and the state says so.
    rt.ok(&["kill", &id, "USR1"]);
    assert_eq!(rt.status(&id), "running");

    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    let state = rt.state(&id);
    assert_eq!(
        state["pid"], 0,
        "a stopped container reports pid 0 as runc does"
    );
    let err = rt.fails(&["kill", &id, "TERM"]);
    assert!(err.contains("stopped"), "{err}");
    rt.ok(&["delete", &id]);
    rt.assert_no_leaks(&id);
    let err = rt.fails(&["state", &id]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn delete_of_a_running_container_needs_force() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["sh", "-c", "sleep 1000 & sleep 1000"]);
    let id = unique_id("force");
    rt.ok(&["run", "--detach", "--bundle", bundle.path_str(), &id]);
    assert_eq!(rt.status(&id), "running");
    let err = rt.fails(&["delete", &id]);
    assert!(
        err.contains("cannot delete container") && err.contains("running"),
        "{err}"
    );
    assert_eq!(
        rt.status(&id),
        "running",
        "a refused delete changes nothing"
    );
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert!(
        pids.len() >= 2,
        "the shell (or the sleep it became) and a sleep: {pids:?}"
    );
    rt.ok(&["delete", "--force", &id]);
    rt.assert_no_leaks(&id);
    for pid in pids {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let running = state
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'));
        assert!(!running, "process {pid} survived delete --force: {state}");
    }
    // runc: deleting what is not there succeeds with --force, fails without.
    rt.ok(&["delete", "--force", &id]);
    rt.fails(&["delete", &id]);
}

#[test]
fn pause_resume_and_forced_delete_of_a_paused_container() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique_id("pause");
    rt.ok(&["run", "-d", "-b", bundle.path_str(), &id]);
    rt.ok(&["pause", &id]);
    assert_eq!(rt.status(&id), "paused");
    let freezer = std::path::Path::new("/sys/fs/cgroup/freezer").join(&id);
    if freezer.exists() {
        let state = std::fs::read_to_string(freezer.join("freezer.state")).unwrap();
        assert_eq!(state.trim(), "FROZEN");
    }
    // A signal to a paused container leaves it paused.
    rt.ok(&["kill", &id, "USR1"]);
    assert_eq!(rt.status(&id), "paused");
    rt.fails(&["pause", &id]);
    rt.ok(&["resume", &id]);
    assert_eq!(rt.status(&id), "running");
    rt.fails(&["resume", &id]);
    rt.ok(&["pause", &id]);
    rt.ok(&["delete", "-f", &id]);
    rt.assert_no_leaks(&id);
}

#[test]
fn kill_all_and_signal_parsing() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["sh", "-c", "sleep 1000 & wait"]);
    let id = unique_id("killall");
    rt.ok(&["run", "-d", "-b", bundle.path_str(), &id]);
    let err = rt.fails(&["kill", &id, "SIGBOGUS"]);
    assert!(err.contains("unknown signal"), "{err}");
    rt.fails(&["kill", &id, "0"]);
    rt.ok(&["kill", "--all", &id, "9"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);
    rt.assert_no_leaks(&id);
}

#[test]
fn exec_runs_in_the_container_with_clean_signals() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique_id("exec");
    rt.ok(&["run", "-d", "-b", bundle.path_str(), &id]);

    let out = rt.run(&[
        "exec",
        "--env",
        "GREETING=hello",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        "echo $GREETING; pwd; hostname; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "exit status passes through");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n/tmp\nmxc\n");
    assert!(out.stderr.is_empty());

    // Neither the init nor an exec process starts with signals ignored or blocked (Rust ignores
    // SIGPIPE; libcontainer would pass that on).
    let status = rt.ok(&["exec", &id, "cat", "/proc/1/status", "/proc/self/status"]);
    let ignored: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("SigIgn:"))
        .collect();
    let blocked: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("SigBlk:"))
        .collect();
    assert_eq!(ignored.len(), 2);
    for line in ignored.iter().chain(&blocked) {
        assert!(line.ends_with("0000000000000000"), "{line}");
    }

    // Detached exec with a pid file.
    let pid_file = bundle.path().join("exec.pid");
    rt.ok(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
        "sleep",
        "1000",
    ]);
    let exec_pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "-f", "json", &id])).unwrap();
    assert!(pids.contains(&exec_pid), "{pids:?} has {exec_pid}");
    let table = rt.ok(&["ps", &id]);
    assert!(table.lines().next().unwrap().contains("PID"), "{table}");
    assert!(table.contains("sleep 1000"), "{table}");

    // exec with a process.json, as containerd's shim does.
    let process = serde_json::json!({
        "args": ["sh", "-c", "echo from-process-json; exit 5"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
        "terminal": false
    });
    let process_file = bundle.path().join("process.json");
    std::fs::write(&process_file, process.to_string()).unwrap();
    let out = rt.run(&["exec", "--process", process_file.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-process-json\n");

    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    let err = rt.fails(&["exec", &id, "true"]);
    assert!(err.contains("stopped"), "{err}");
    rt.ok(&["delete", &id]);
    rt.assert_no_leaks(&id);
}

#[test]
fn events_stats_and_update() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique_id("stats");
    rt.ok(&["run", "-d", "-b", bundle.path_str(), &id]);

    let line = rt.ok(&["events", "--stats", &id]);
    assert_eq!(line.lines().count(), 1, "{line}");
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], id.as_str());
    let data = &event["data"];
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert_eq!(data["pids"]["current"], 1);
    for key in ["blkio", "hugetlb", "intel_rdt"] {
        assert!(data[key].is_object(), "{key} in {data}");
    }

    rt.ok(&["update", "--memory", "64m", "--pids-limit", "42", &id]);
    let memory = std::path::Path::new("/sys/fs/cgroup/memory").join(&id);
    if memory.exists() {
        let limit = std::fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap();
        assert_eq!(limit.trim(), (64u64 << 20).to_string());
    }
    let line = rt.ok(&["events", "--stats", &id]);
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["data"]["pids"]["limit"], 42);

    // As containerd's shim does: resources JSON on stdin.
    let update_from_stdin = |resources: &[u8]| {
        let mut child = rt
            .cmd(&["update", "--resources", "-", &id])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(resources).unwrap();
        child.wait_with_output().unwrap()
    };
    let updated = update_from_stdin(
        br#"{"memory":{"limit":33554432},"pids":{"limit":0},"cpu":{"shares":0}}"#,
    );
    assert!(updated.status.success(), "{updated:?}");
    if memory.exists() {
        let limit = std::fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap();
        assert_eq!(limit.trim(), "33554432");
    }
    let line = rt.ok(&["events", "--stats", &id]);
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        event["data"]["pids"]["limit"], 42,
        "a zero leaves the limit unchanged"
    );
    rt.fails(&["update", &id]);
    // Turning the OOM killer off is refused (libcontainer would keep it on), the limit kept.
    let refused = update_from_stdin(br#"{"memory":{"limit":16777216,"disableOOMKiller":true}}"#);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("disableOOMKiller: true is not supported"),
        "{stderr}"
    );
    if memory.exists() {
        let limit = std::fs::read_to_string(memory.join("memory.limit_in_bytes")).unwrap();
        assert_eq!(limit.trim(), "33554432");
    }

    rt.ok(&["delete", "--force", &id]);
    rt.assert_no_leaks(&id);
}

#[test]
fn run_in_the_foreground_passes_stdio_and_status_through() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "echo out; echo err >&2; read line; echo got $line; exit 7",
    ]);
    let id = unique_id("fg");
    let mut child = rt
        .cmd(&["run", "--bundle", bundle.path_str(), &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"input\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\ngot input\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    rt.assert_no_leaks(&id);
}

#[test]
fn run_in_the_foreground_forwards_signals() {
    require_containers();
    let rt = Runtime::new();
    // The init traps TERM and exits with a status that proves it got it.
    let bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done",
    ]);
    let id = unique_id("fwd");
    let mut child = rt
        .cmd(&["run", "--bundle", bundle.path_str(), &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));
    rt.assert_no_leaks(&id);
}

#[test]
fn state_has_the_shape_runc_prints() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique_id("shape");
    rt.ok(&["create", "--bundle", bundle.path_str(), &id]);
    let text = rt.ok(&["state", &id]);
    let ours: Value = serde_json::from_str(&text).unwrap();
    rt.ok(&["delete", &id]);
    rt.assert_no_leaks(&id);

    // Annotations appear when the spec has some; the policy adds its own (io.mxc.*).
    let keys: Vec<&str> = ours
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "annotations")
        .collect();
    let mut expected = vec![
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
    ];
    expected.sort();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert!(
        text.starts_with("{\n  \"ociVersion\""),
        "indented as runc does: {text}"
    );
    assert_eq!(
        ours["bundle"],
        bundle.path().canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(
        ours["rootfs"],
        bundle
            .path()
            .join("rootfs")
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert!(chrono::DateTime::parse_from_rfc3339(ours["created"].as_str().unwrap()).is_ok());

    // The same bundle under runc, when runc is installed.
    if std::path::Path::new("/usr/sbin/runc").exists() {
        let runc_root = tempfile::tempdir().unwrap();
        let runc = |args: &[&str]| {
            // runc's container inherits stdout and stderr: files, not pipes (see `Runtime::run`).
            let err = tempfile::tempfile().unwrap();
            let out = tempfile::tempfile().unwrap();
            let status = std::process::Command::new("/usr/sbin/runc")
                .arg("--root")
                .arg(runc_root.path())
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(err.try_clone().unwrap())
                .status()
                .unwrap();
            let read = |mut f: std::fs::File| {
                use std::io::{Read, Seek};
                let mut buf = Vec::new();
                f.rewind().unwrap();
                f.read_to_end(&mut buf).unwrap();
                buf
            };
            std::process::Output {
                status,
                stdout: read(out),
                stderr: read(err),
            }
        };
        let runc_id = format!("{id}-runc");
        let out = runc(&["create", "--bundle", bundle.path_str(), &runc_id]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: Value = serde_json::from_slice(&runc(&["state", &runc_id]).stdout).unwrap();
        runc(&["delete", "--force", &runc_id]);
        let mut their_keys: Vec<&str> = theirs
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "annotations")
            .collect();
        their_keys.sort();
        assert_eq!(sorted, their_keys, "same fields as runc");
        for key in ["ociVersion", "status", "bundle", "rootfs", "owner"] {
            assert_eq!(ours[key], theirs[key], "{key}");
        }
        for (key, value) in ours
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "annotations")
        {
            let same_type = std::mem::discriminant(value) == std::mem::discriminant(&theirs[key]);
            assert!(same_type, "{key}: {value} vs {}", theirs[key]);
        }
    }
}

/// A change that makes a bundle fail to create.
type BreakBundle = Box<dyn Fn(&Bundle)>;

#[test]
fn failed_creates_leave_nothing_behind() {
    require_containers();
    let rt = Runtime::new();
    let cases: Vec<(&str, BreakBundle, &str)> = vec![
        (
            "rootfs",
            Box::new(|b: &Bundle| b.edit(|c| c["root"]["path"] = "missing".into())),
            "does not exist",
        ),
        (
            "version",
            Box::new(|b: &Bundle| b.edit(|c| c["ociVersion"] = "2.0.0".into())),
            "unsupported ociVersion",
        ),
        (
            "json",
            Box::new(|b: &Bundle| std::fs::write(b.path().join("config.json"), "{").unwrap()),
            "not valid",
        ),
        (
            "userns",
            Box::new(|b: &Bundle| {
                b.edit(|c| {
                    c["linux"]["namespaces"]
                        .as_array_mut()
                        .unwrap()
                        .push(serde_json::json!({"type": "user"}));
                    let map = serde_json::json!([{"containerID": 1000, "hostID": 1000, "size": 1}]);
                    c["linux"]["uidMappings"] = map.clone();
                    c["linux"]["gidMappings"] = map;
                })
            }),
            "does not map container id 0",
        ),
        (
            // Fails inside the container, after namespaces and cgroups exist.
            "exec",
            Box::new(|b: &Bundle| {
                b.edit(|c| c["process"]["args"] = serde_json::json!(["/no/such/binary"]))
            }),
            "create failed",
        ),
        (
            "terminal",
            Box::new(|b: &Bundle| b.edit(|c| c["process"]["terminal"] = true.into())),
            "console socket",
        ),
    ];
    for (name, break_it, expect) in cases {
        let bundle = Bundle::busybox(&["sleep", "1000"]);
        break_it(&bundle);
        let id = unique_id(&format!("fail-{name}"));
        let log = bundle.path().join("log.json");
        let err = rt.fails(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            bundle.path_str(),
            &id,
        ]);
        assert!(err.contains(expect), "{name}: {err}");
        // The last error line of the log is what containerd reports.
        let log_text = std::fs::read_to_string(&log).unwrap();
        let last: Value = serde_json::from_str(log_text.lines().last().unwrap()).unwrap();
        assert_eq!(last["level"], "error", "{name}");
        assert_eq!(last["msg"].as_str().unwrap(), err.trim_end(), "{name}");
        rt.assert_no_leaks(&id);
    }
}

#[test]
fn duplicate_ids_and_bad_ids_are_refused() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let id = unique_id("dup");
    rt.ok(&["create", "-b", bundle.path_str(), &id]);
    let err = rt.fails(&["create", "-b", bundle.path_str(), &id]);
    assert!(err.contains("exists"), "{err}");
    assert_eq!(
        rt.status(&id),
        "created",
        "the first container is untouched"
    );
    rt.ok(&["delete", &id]);
    rt.assert_no_leaks(&id);
    let err = rt.fails(&["create", "-b", bundle.path_str(), "../escape"]);
    assert!(err.contains("invalid container id"), "{err}");
}

#[test]
fn features_and_spec() {
    let out = std::process::Command::new(BIN)
        .arg("features")
        .output()
        .unwrap();
    assert!(out.status.success());
    let features: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    assert!(features["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "user"));

    let dir = tempfile::tempdir().unwrap();
    let spec = |extra: &[&str]| {
        std::process::Command::new(BIN)
            .args(["spec", "--bundle", dir.path().to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(spec(&[]).status.success());
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["root"]["path"], "rootfs");
    assert_eq!(config["process"]["terminal"], true);
    let again = spec(&[]);
    assert_eq!(again.status.code(), Some(1), "refuses to overwrite");
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    assert!(spec(&["--rootless"]).status.success());
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert!(config["linux"]["uidMappings"].is_array());
}

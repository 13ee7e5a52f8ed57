//! The engine API as `mxc run` and the shim use it, on the kind of spec `mxc run` compiles:
//! a user namespace, a read-only empty root with host directories bind-mounted read-only,
//! tmpfs /tmp and /dev, no capabilities, noNewPrivileges, seccomp.

mod common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use mxc_runtime::policy::NodeContext;
use mxc_runtime::{
    Cancel, CreateOptions, Engine, EngineError, ExecOptions, ExitStatus, RunOutcome, Stdio,
};
use serde_json::json;

fn not_cancelled() -> Cancel {
    Cancel::new().unwrap()
}

fn engine(rt: &Runtime) -> Engine {
    Engine::new(rt.root.path()).with_node_context(NodeContext {
        precompiled: true,
        ..NodeContext::default()
    })
}

/// A bundle like the one-shot compiler writes: `script` runs as uid 1000 in a user namespace
/// mapping container ids 0..=1000 to host ids 100000..=101000.
fn sandbox_bundle(script: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for sub in ["proc", "dev", "tmp", "usr", "bin", "lib", "lib64", "etc"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let host_ro = |path: &str| {
        json!({"destination": path, "type": "bind", "source": path,
               "options": ["rbind", "rro", "nosuid", "nodev"]})
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777"]}),
    ];
    for path in ["/usr", "/bin", "/lib", "/lib64", "/etc"] {
        if Path::new(path).exists() {
            mounts.push(host_ro(path));
        }
    }
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 1001}]);
    let config = json!({
        "ociVersion": "1.2.0",
        "root": {"path": "root", "readonly": true},
        "hostname": "sandbox",
        "process": {
            "terminal": false,
            "user": {"uid": 1000, "gid": 1000},
            "args": ["/bin/busybox", "sh", "-c", script],
            "env": ["PATH=/usr/bin:/bin"],
            "cwd": "/tmp",
            "capabilities": {"bounding": [], "effective": [], "permitted": [],
                             "inheritable": [], "ambient": []},
            "noNewPrivileges": true
        },
        "mounts": mounts,
        "linux": {
            "uidMappings": map,
            "gidMappings": map,
            "namespaces": [{"type": "user"}, {"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                           {"type": "mount"}, {"type": "network"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
            "seccomp": {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["keyctl", "add_key", "request_key", "unshare"],
                              "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
            }
        }
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

/// Each check exits with its own status, so a failure says which one.
const SANDBOX_CHECKS: &str = r#"
test "$(busybox id -u)" = 1000 || exit 10
busybox grep -q '^SigIgn:[[:space:]]*0000000000000000$' /proc/self/status || exit 11
busybox grep -q '^SigBlk:[[:space:]]*0000000000000000$' /proc/self/status || exit 12
busybox grep -q '^CapEff:[[:space:]]*0000000000000000$' /proc/self/status || exit 13
busybox grep -q '^NoNewPrivs:[[:space:]]*1$' /proc/self/status || exit 14
busybox grep -q '^Seccomp:[[:space:]]*2$' /proc/self/status || exit 15
busybox touch /usr/mxc-test 2>/dev/null && exit 16
busybox touch /tmp/ok || exit 17
test "$(busybox hostname)" = sandbox || exit 18
busybox unshare -U true 2>/dev/null && exit 19
exit 0
"#;

#[test]
fn one_shot_sandbox_spec_runs_confined() {
    require_containers();
    let rt = Runtime::new();
    let bundle = sandbox_bundle(SANDBOX_CHECKS);
    let id = unique_id("sandbox");
    let outcome = engine(&rt)
        .run_to_completion(&id, bundle.path(), None, &not_cancelled())
        .unwrap()
        .outcome;
    assert_eq!(
        outcome,
        RunOutcome::Exited(0),
        "see SANDBOX_CHECKS for the failing check"
    );
    rt.assert_no_leaks(&id);
}

#[test]
fn one_shot_status_timeout_and_failed_create() {
    require_containers();
    let rt = Runtime::new();
    let engine = engine(&rt);

    let bundle = sandbox_bundle("exit 7");
    let id = unique_id("status");
    assert_eq!(
        engine
            .run_to_completion(&id, bundle.path(), None, &not_cancelled())
            .unwrap()
            .outcome,
        RunOutcome::Exited(7)
    );
    rt.assert_no_leaks(&id);

    // The whole container goes at the timeout, grandchildren included.
    let bundle = sandbox_bundle("busybox sleep 100 & busybox sleep 100");
    let id = unique_id("timeout");
    let started = Instant::now();
    let outcome = engine
        .run_to_completion(
            &id,
            bundle.path(),
            Some(Duration::from_millis(300)),
            &not_cancelled(),
        )
        .unwrap()
        .outcome;
    assert_eq!(outcome, RunOutcome::TimedOut);
    assert_eq!(outcome.code(), 137);
    assert!(started.elapsed() < Duration::from_secs(10));
    rt.assert_no_leaks(&id);

    let bundle = sandbox_bundle("true");
    let config = bundle.path().join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    spec["process"]["args"] = json!(["/no/such/program"]);
    std::fs::write(&config, spec.to_string()).unwrap();
    let id = unique_id("badargs");
    let err = engine
        .run_to_completion(&id, bundle.path(), None, &not_cancelled())
        .unwrap_err();
    assert!(matches!(err, EngineError::Libcontainer { .. }), "{err}");
    rt.assert_no_leaks(&id);
}

#[test]
fn a_cancelled_run_deletes_the_container() {
    require_containers();
    let rt = Runtime::new();
    let bundle = sandbox_bundle("busybox sleep 1000 & busybox sleep 1000");
    let id = unique_id("cancel");
    let cancel = Cancel::new().unwrap();
    let canceller = cancel.clone();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        canceller.cancel(libc::SIGTERM);
    });
    let err = engine(&rt)
        .run_to_completion(&id, bundle.path(), None, &cancel)
        .unwrap_err();
    sender.join().unwrap();
    assert!(
        matches!(err, EngineError::Interrupted { signal: 15, .. }),
        "{err}"
    );
    rt.assert_no_leaks(&id);
}

fn pipe() -> (std::fs::File, OwnedFd) {
    let (r, w) = nix::unistd::pipe().unwrap();
    (std::fs::File::from(r), w)
}

#[test]
fn exec_in_a_user_namespace_keeps_the_sandbox_confinement() {
    require_containers();
    let rt = Runtime::new();
    let engine = engine(&rt);
    let bundle = sandbox_bundle("busybox sleep 1000");
    let id = unique_id("usernsexec");
    let container = engine
        .create(&id, bundle.path(), CreateOptions::default())
        .unwrap();
    engine.start(&id).unwrap();
    assert_eq!(engine.state(&id).unwrap().pid, container.pid());

    let (mut out, write) = pipe();
    let process = engine
        .exec(
            &id,
            ExecOptions {
                args: vec![
                    "/bin/busybox".into(),
                    "sh".into(),
                    "-c".into(),
                    "busybox id -u; busybox grep -E '^(CapEff|NoNewPrivs|Seccomp|SigIgn):' /proc/self/status; busybox touch /usr/x 2>/dev/null && echo WRITABLE; true".into(),
                ],
                stdio: Stdio::Fds {
                    stdin: None,
                    stdout: Some(write),
                    stderr: None,
                },
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(process.wait().unwrap(), Some(ExitStatus::Exited(0)));
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // uid 1000 inside is host uid 101000: never host root, whatever libcontainer does.
    assert_eq!(lines[0], "101000", "{text}");
    assert!(text.contains("CapEff:\t0000000000000000"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    assert!(
        text.contains("Seccomp:\t2"),
        "the container's seccomp filter applies: {text}"
    );
    assert!(text.contains("SigIgn:\t0000000000000000"), "{text}");
    assert!(!text.contains("WRITABLE"), "{text}");

    engine.kill(&id, mxc_runtime::Signal::KILL, false).unwrap();
    let status = container.wait().unwrap();
    assert_eq!(status, Some(ExitStatus::Signaled(9)));
    assert_eq!(
        engine.state(&id).unwrap().status,
        mxc_runtime::Status::Stopped
    );
    engine.delete(&id, false).unwrap();
    rt.assert_no_leaks(&id);
}

#[test]
fn liveness_survives_kill_with_a_harmless_signal() {
    require_containers();
    let rt = Runtime::new();
    let engine = engine(&rt);
    let bundle = sandbox_bundle("busybox sleep 1000");
    let id = unique_id("liveness");
    let container = engine
        .create(&id, bundle.path(), CreateOptions::default())
        .unwrap();
    engine.kill(&id, "CONT".parse().unwrap(), false).unwrap();
    assert_eq!(
        engine.state(&id).unwrap().status,
        mxc_runtime::Status::Created
    );
    engine.start(&id).unwrap();
    engine.kill(&id, "WINCH".parse().unwrap(), true).unwrap();
    assert_eq!(
        engine.state(&id).unwrap().status,
        mxc_runtime::Status::Running
    );
    engine.pause(&id).unwrap();
    engine.kill(&id, "CONT".parse().unwrap(), false).unwrap();
    assert_eq!(
        engine.state(&id).unwrap().status,
        mxc_runtime::Status::Paused
    );
    let pids = engine.pids(&id).unwrap();
    assert!(pids.contains(&container.pid()));
    engine.delete(&id, true).unwrap();
    assert_eq!(container.wait().unwrap(), Some(ExitStatus::Signaled(9)));
    rt.assert_no_leaks(&id);
}

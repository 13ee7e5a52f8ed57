//! What the OCI runtime specification asks of a runtime, as outside suites (runtime-tools'
//! `validation/`, youki's `contest`) check it, on busybox bundles through the `mxc-runtime`
//! binary: stable state output, hooks' view of the container, the cause of a refused create,
//! and bundles that run again and again.

mod common;

use common::*;
use serde_json::{json, Value};

#[test]
fn state_prints_the_same_bytes_on_every_call() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit(|config| {
        let annotations: serde_json::Map<String, Value> = (0..16)
            .map(|n| (format!("org.example.key{n}"), json!(format!("value {n}"))))
            .collect();
        config["annotations"] = Value::Object(annotations);
    });
    let id = unique_id("state-bytes");
    rt.ok(&["create", &id, "--bundle", bundle.path_str()]);
    let first = rt.ok(&["state", &id]);
    for _ in 0..4 {
        // Each call is a new process, with its own hash seed.
        assert_eq!(rt.ok(&["state", &id]), first);
    }
    let state: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(state["annotations"]["org.example.key7"], "value 7");
    rt.ok(&["delete", "--force", &id]);
    rt.assert_no_leaks(&id);
}

#[test]
fn a_bundle_that_mounts_no_dev_runs_again_and_again() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["sh", "-c", "ls /dev/fd/ >/dev/null && echo ran"]);
    bundle.edit(|config| {
        let mounts = config["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/dev" && m["destination"] != "/dev/pts");
        mounts.retain(|m| {
            !m["destination"]
                .as_str()
                .unwrap_or_default()
                .starts_with("/dev/")
        });
    });
    for round in 0..3 {
        let id = unique_id(&format!("nodev{round}"));
        let out = rt.run(&["run", "--bundle", bundle.path_str(), &id]);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "ran\n",
            "round {round}"
        );
        rt.assert_no_leaks(&id);
    }
}

#[test]
fn a_refused_create_says_why() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["true"]);
    let proc_dir = bundle.path().join("rootfs/proc");
    std::fs::remove_dir(&proc_dir).unwrap();
    std::os::unix::fs::symlink("/etc", &proc_dir).unwrap();
    let id = unique_id("procsym");
    let err = rt.fails(&["create", &id, "--bundle", bundle.path_str()]);
    assert!(
        err.contains(
            "failed to prepare rootfs: filesystem proc must be mounted on ordinary directory"
        ),
        "says what is wrong with the root filesystem: {err}"
    );
    rt.assert_no_leaks(&id);
}

/// Runs `bundle` (whose process exits by itself) in the foreground with a hook of every kind
/// recording the state it is given, with `global` flags before `run`; returns the container's
/// stdout and checks that every hook saw the container's id and the bundle given to `run`.
fn run_with_recording_hooks(rt: &Runtime, bundle: &Bundle, global: &[&str], id: &str) -> String {
    let out_dir = tempfile::tempdir().unwrap();
    let record = |name: &str| {
        let file = out_dir.path().join(format!("{name}.json"));
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", file.display())]})
    };
    const HOOKS: [&str; 5] = [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ];
    bundle.edit(|config| {
        config["hooks"] = HOOKS
            .iter()
            .map(|hook| (hook.to_string(), json!([record(hook)])))
            .collect();
    });
    let mut args = global.to_vec();
    args.extend(["run", "--bundle", bundle.path_str(), id]);
    let stdout = rt.ok(&args);
    let bundle_path = std::fs::canonicalize(bundle.path()).unwrap();
    for hook in HOOKS {
        let text = std::fs::read_to_string(out_dir.path().join(format!("{hook}.json")))
            .unwrap_or_else(|e| panic!("{hook} did not run: {e}"));
        let state: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(state["id"], id, "{hook}: {text}");
        assert_eq!(
            state["bundle"],
            bundle_path.to_str().unwrap(),
            "{hook} sees the bundle given to create: {text}"
        );
    }
    stdout
}

#[test]
fn hooks_receive_the_bundle_given_to_create() {
    require_containers();
    let rt = Runtime::new();
    let bundle = Bundle::busybox(&["echo", "ran"]);
    let id = unique_id("hooks");
    assert_eq!(run_with_recording_hooks(&rt, &bundle, &[], &id), "ran\n");
    rt.assert_no_leaks(&id);
}

/// Grants are staged in the same private mount namespace that shows libcontainer the
/// engine's spec at the bundle's path: the hooks still see the caller's bundle, and the
/// container sees the grant.
#[test]
fn hooks_receive_the_bundle_given_to_create_when_grants_are_staged() {
    use std::os::unix::fs::PermissionsExt;
    require_containers();
    let rt = Runtime::new();
    let granted = tempfile::tempdir().unwrap();
    std::fs::set_permissions(granted.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(granted.path().join("marker"), "granted\n").unwrap();
    let marker = granted.path().join("marker");
    let node = tempfile::tempdir().unwrap();
    let config = node.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "audit_log = {:?}\n[ceiling]\nreadonly_host_paths = [{:?}]\n",
            node.path().join("audit.jsonl"),
            granted.path()
        ),
    )
    .unwrap();
    let bundle = Bundle::busybox(&["cat", marker.to_str().unwrap()]);
    let policy =
        json!({"version": "0.8.0-alpha", "filesystem": {"readonlyPaths": [granted.path()]}});
    bundle.edit(|config| {
        config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        config["annotations"] = json!({"io.mxc.config": policy.to_string()});
    });
    let id = unique_id("hooks-staged");
    let stdout =
        run_with_recording_hooks(&rt, &bundle, &["--config", config.to_str().unwrap()], &id);
    assert_eq!(stdout, "granted\n");
    rt.assert_no_leaks(&id);
}

/// `open` without `O_CREAT` or `O_TMPFILE` passes no mode, so its mode register holds whatever
/// the caller left there (busybox's `sh` opening `/dev/null` for a background job, in the
/// runtime-tools rootfs). The runtime's set-id filter reads the mode only of an `open` that
/// creates: a read-only open whose register happens to carry set-id bits succeeds, and a
/// creating one with them is still refused.
#[test]
fn an_open_that_creates_nothing_is_not_judged_by_its_mode_register() {
    require_containers();
    let probe_dir = tempfile::tempdir().unwrap();
    let source = probe_dir.path().join("probe.c");
    std::fs::write(
        &source,
        r#"#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    long ro = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY, 04755);
    long creat = syscall(SYS_openat, AT_FDCWD, "/tmp/setuid", O_CREAT | O_WRONLY, 04755);
    printf("read-only %s, creating %s\n", ro >= 0 ? "opened" : "refused",
           creat >= 0 ? "opened" : "refused");
    return 0;
}
"#,
    )
    .unwrap();
    let bundle = Bundle::busybox(&["/probe"]);
    let built = std::process::Command::new("cc")
        .args(["-static", "-O", "-o"])
        .arg(bundle.path().join("rootfs/probe"))
        .arg(&source)
        .output()
        .expect("cc (package build-essential)");
    assert!(
        built.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let rt = Runtime::new();
    let id = unique_id("open-mode");
    let stdout = rt.ok(&["run", "--bundle", bundle.path_str(), &id]);
    assert_eq!(stdout, "read-only opened, creating refused\n");
    rt.assert_no_leaks(&id);
}

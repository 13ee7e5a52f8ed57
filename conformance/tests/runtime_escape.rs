//! The escape battery through `mxc-runtime` (bundle mode): a busybox bundle written as an
//! engine writes it, the policy applied on top by the runtime, and attempts from inside to break
//! each guarantee. Every run ends with a check that nothing remains.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::Result;
use mxc_conformance::bundle::Bundle;
use mxc_conformance::command::Output;
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::oci_runtime::OciRuntime;
use mxc_conformance::unique_name;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Runs `script` in a busybox bundle under `mxc-runtime run`, with `policy` (if any) as the
/// `io.mxc.config` annotation and `edit` applied to the engine's spec.
fn run(
    script: &str,
    policy: Option<Value>,
    edit: impl FnOnce(&mut Value),
    global: &[&str],
) -> Result<Output> {
    let bundle = Bundle::new(&["/bin/sh", "-c", script])?;
    bundle.edit_spec(|spec| {
        if let Some(policy) = policy {
            spec["annotations"] = json!({"io.mxc.config": policy.to_string()});
        }
        edit(spec);
    })?;
    let runtime = OciRuntime::mxc_runtime()?;
    let id = unique_name("escape");
    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id).runtime_root(runtime.root());
    let mut args: Vec<&str> = global.to_vec();
    let bundle_path = bundle.path().display().to_string();
    args.extend(["run", "--bundle", &bundle_path, &id]);
    let output = runtime.run(&args)?;
    leaks.assert_clean()?;
    Ok(output)
}

fn plain(script: &str) -> Result<Output> {
    run(script, None, |_| {}, &[])
}

#[test]
fn the_default_policy_cuts_every_privilege_the_engine_asked_for() -> Result<()> {
    // The engine's spec asks for capabilities; the default-deny policy leaves none.
    let out = plain("grep -E '^Cap(Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp:' /proc/self/status")?;
    assert!(out.success(), "{out}");
    for set in ["CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            out.stdout.contains(&format!("{set}:\t0000000000000000")),
            "{set}: {}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains("NoNewPrivs:\t1") && out.stdout.contains("Seccomp:\t2"),
        "{}",
        out.stdout
    );
    Ok(())
}

#[test]
fn namespaces_mounts_modules_and_kernel_tunables_are_refused() -> Result<()> {
    let out = plain(
        "mount -t tmpfs none /tmp; echo mount=$?; unshare -U true; echo unshare=$?; \
         unshare -n true; echo unshare_net=$?; insmod /x.ko; echo insmod=$?; \
         echo 1 > /proc/sys/kernel/sysrq; echo sysctl=$?; echo x > /sys/kernel/uevent_helper; echo sys=$?; \
         hostname evil; echo hostname=$?; chown 1 /tmp; echo chown=$?",
    )?;
    for op in [
        "mount",
        "unshare",
        "unshare_net",
        "insmod",
        "sysctl",
        "sys",
        "hostname",
    ] {
        assert!(
            out.stdout.contains(&format!("{op}=")),
            "{op} did not run: {out}"
        );
        assert!(
            !out.stdout.contains(&format!("{op}=0")),
            "{op} succeeded: {out}"
        );
    }
    Ok(())
}

#[test]
fn host_processes_are_invisible_and_unsignalable() -> Result<()> {
    let mut sleeper = std::process::Command::new("sleep").arg("300").spawn()?;
    let pid = sleeper.id();
    let out = plain(&format!("ls /proc/{pid} >/dev/null 2>&1; echo seen=$?; kill -9 {pid}; echo kill=$?; ls -d /proc/[0-9]* | wc -l"));
    let alive = sleeper.try_wait()?.is_none();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let out = out?;
    assert!(alive, "a host process was killed");
    assert!(
        out.stdout.contains("seen=1") && out.stdout.contains("kill=1"),
        "{out}"
    );
    Ok(())
}

#[test]
fn a_fork_bomb_stops_at_the_engines_pids_limit() -> Result<()> {
    let out = run(
        "i=0; while [ $i -lt 200 ]; do (sleep 5 &) 2>/dev/null || break; i=$((i+1)); done; echo forks=$i",
        None,
        |spec| spec["linux"]["resources"]["pids"] = json!({"limit": 30}),
        &[],
    )?;
    let forks: usize = out
        .stdout
        .trim()
        .strip_prefix("forks=")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no fork count: {out}"))?;
    assert!(forks < 30, "{forks} forks under a limit of 30: {out}");
    assert!(forks >= 10, "the limit was not the reason: {out}");
    Ok(())
}

struct HostTree {
    dir: TempDir,
}

impl HostTree {
    fn new() -> Result<HostTree> {
        let dir = tempfile::Builder::new()
            .prefix("mxc-bundle-grant-")
            .tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::create_dir(dir.path().join("ro"))?;
        std::fs::write(dir.path().join("ro/data"), "DATA")?;
        std::fs::write(dir.path().join("ro/secret"), "SECRET")?;
        std::fs::write(dir.path().join("ungranted"), "UNGRANTED")?;
        for entry in ["ro", "ro/data", "ro/secret"] {
            let mode = if entry == "ro" { 0o755 } else { 0o644 };
            std::fs::set_permissions(
                dir.path().join(entry),
                std::fs::Permissions::from_mode(mode),
            )?;
        }
        Ok(HostTree { dir })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

#[test]
fn grants_denials_and_ungranted_host_paths_in_bundle_mode() -> Result<()> {
    let tree = HostTree::new()?;
    let ro = tree.path("ro");
    let policy = json!({
        "version": "0.8.0-alpha",
        "filesystem": {
            "readonlyPaths": [ro],
            "deniedPaths": [tree.path("ro/secret"), "/etc/passwd"],
        }
    });
    // The node allows annotation policies to grant this tree.
    let node = tempfile::NamedTempFile::new()?;
    std::fs::write(
        node.path(),
        format!("annotation_host_paths = [{:?}]\n", tree.dir.path()),
    )?;
    let config = node.path().display().to_string();
    let script = format!(
        "cat {r}/data; echo; echo x > {r}/data; echo write=$?; cat {r}/secret; echo secret=$?; \
         cat {u}; echo ungranted=$?; cat /etc/passwd; echo passwd=$?",
        r = ro.display(),
        u = tree.path("ungranted").display()
    );
    // Grants need a non-root user (or a user namespace): the engine runs this one as 1000.
    let out = run(
        &script,
        Some(policy.clone()),
        |spec| spec["process"]["user"] = json!({"uid": 1000, "gid": 1000}),
        &["--config", &config],
    )?;
    assert!(out.stdout.starts_with("DATA\n"), "{out}");
    for op in ["write", "secret", "ungranted", "passwd"] {
        assert!(
            out.stdout.contains(&format!("{op}=")) && !out.stdout.contains(&format!("{op}=0")),
            "{op}: {out}"
        );
    }
    assert!(
        !out.stdout.contains("SECRET")
            && !out.stdout.contains("UNGRANTED")
            && !out.stdout.contains("root:"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(tree.path("ro/data"))?, "DATA");

    // As root without a user namespace, the same grant is refused at create.
    let refused = run("true", Some(policy), |_| {}, &["--config", &config])?;
    assert!(!refused.success());
    assert!(
        refused
            .stderr
            .contains("runs as root without a user namespace"),
        "{refused}"
    );

    // Without the node's permission, an annotation cannot grant host paths at all.
    let policy = json!({"version": "0.8.0-alpha", "filesystem": {"readonlyPaths": [ro]}});
    let refused = run(
        "true",
        Some(policy),
        |spec| spec["process"]["user"] = json!({"uid": 1000, "gid": 1000}),
        &[],
    )?;
    assert!(!refused.success());
    assert!(
        refused.stderr.contains("annotation io.mxc.config")
            && refused.stderr.contains("filesystem.readonlyPaths[0]"),
        "{refused}"
    );
    Ok(())
}

#[test]
fn invalid_policies_fail_create_naming_the_annotation_path_and_reason() -> Result<()> {
    let cases = [
        (
            json!({"version": "0.8.0-alpha", "filesystem": {"deniedPathz": []}}),
            "filesystem.deniedPathz",
        ),
        (
            json!({"version": "0.8.0-alpha", "process": {"commandLine": "x"}}),
            "process.commandLine",
        ),
        (
            json!({"version": "0.8.0-alpha", "network": {"egress": {"allow": [{"ports": [{"port": 0}]}]}}}),
            "network.egress.allow[0].ports[0].port",
        ),
    ];
    for (policy, path) in cases {
        let out = run("true", Some(policy), |_| {}, &[])?;
        assert!(!out.success());
        assert!(
            out.stderr.contains("annotation io.mxc.config") && out.stderr.contains(path),
            "{path}: {out}"
        );
    }
    let out = run(
        "true",
        None,
        |spec| spec["annotations"] = json!({"io.mxc.config": "{not json"}),
        &[],
    )?;
    assert!(
        !out.success() && out.stderr.contains("annotation io.mxc.config"),
        "{out}"
    );
    Ok(())
}

#[test]
fn host_network_is_refused_by_the_default_policy() -> Result<()> {
    let out = run(
        "true",
        None,
        |spec| {
            let namespaces: Vec<Value> = spec["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|ns| ns["type"] != "network")
                .cloned()
                .collect();
            spec["linux"]["namespaces"] = json!(namespaces);
        },
        &[],
    )?;
    assert!(!out.success());
    assert!(out.stderr.contains("private network namespace"), "{out}");
    Ok(())
}

#[test]
fn an_isolated_policy_leaves_loopback_only() -> Result<()> {
    let out = plain("ip -o link | wc -l; ip route | wc -l")?;
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["1", "0"],
        "{out}"
    );
    Ok(())
}

#[test]
fn the_runtime_binary_cannot_be_overwritten_through_proc_exe() -> Result<()> {
    // CVE-2019-5736: whoever reaches `/proc/<pid>/exe` of a runtime process must not be able
    // to write the binary on the host. `mxc-runtime run` stays alive while its container runs.
    let bundle = Bundle::new(&["/bin/sh", "-c", "sleep 30"])?;
    let runtime = OciRuntime::mxc_runtime()?;
    let id = unique_name("exe");
    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id).runtime_root(runtime.root());
    let bundle_path = bundle.path().display().to_string();
    let mut child = runtime
        .command(&["run", "--bundle", &bundle_path, &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let exe = PathBuf::from(format!("/proc/{}/exe", child.id()));
    // Wait until the container runs, so that the process is past any re-execution.
    let running = mxc_conformance::command::poll(std::time::Duration::from_secs(20), || {
        let state = runtime.run(&["state", &id])?;
        Ok(state.stdout.contains("\"running\"").then_some(()))
    });
    let write = std::fs::OpenOptions::new().write(true).open(&exe);
    let image = std::fs::read(&exe);
    runtime.run(&["kill", &id, "KILL"])?;
    mxc_conformance::command::wait_until(&mut child, std::time::Duration::from_secs(20))?;
    running?;
    let err = write.expect_err("the runtime's own image was opened for writing");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    // It is the installed binary, seen read-only, not some other program.
    assert_eq!(image?, std::fs::read(runtime.binary())?);
    leaks.assert_clean()?;
    Ok(())
}

/// A node configuration file for `mxc-runtime --config`.
fn node_config(text: &str) -> Result<tempfile::NamedTempFile> {
    let file = tempfile::Builder::new().suffix(".toml").tempfile()?;
    std::fs::write(file.path(), text)?;
    Ok(file)
}

#[test]
fn an_annotation_cannot_loosen_what_the_node_allows() -> Result<()> {
    let open = json!({"version": "0.8.0-alpha", "network": {"egress": {"default": "allow"}}});
    // No ceiling configured: the node's default (here the built-in default-deny) is the most an
    // annotation may ask for.
    let refused = run("echo ran", Some(open.clone()), |_| {}, &[])?;
    assert!(
        !refused.success() && !refused.stdout.contains("ran"),
        "{refused}"
    );
    assert!(
        refused.stderr.contains("annotation io.mxc.config")
            && refused.stderr.contains("network.egress.default")
            && refused.stderr.contains("ceiling"),
        "{refused}"
    );
    // A rule to one network is refused the same way, naming the rule.
    let one = json!({"version": "0.8.0-alpha", "network": {"egress": {"allow": [{"to": [{"cidr": "198.18.0.0/24"}]}]}}});
    let refused = run("echo ran", Some(one.clone()), |_| {}, &[])?;
    assert!(
        refused
            .stderr
            .contains("network.egress.allow[0].to[0].cidr"),
        "{refused}"
    );
    // Control: once the node's ceiling allows that network, the same annotation runs.
    let node = node_config("[ceiling]\negress = [\"198.18.0.0/15\"]\n")?;
    let config = node.path().display().to_string();
    let ok = run("echo ran", Some(one), |_| {}, &["--config", &config])?;
    assert!(ok.success() && ok.stdout.contains("ran"), "{ok}");
    // ... but not more than it.
    let refused = run("echo ran", Some(open), |_| {}, &["--config", &config])?;
    assert!(
        !refused.success() && refused.stderr.contains("network.egress.default"),
        "{refused}"
    );
    // An explicit ceiling bounds the node's own default policy too.
    let default = tempfile::Builder::new().suffix(".json").tempfile()?;
    std::fs::write(
        default.path(),
        json!({"version": "0.8.0-alpha", "network": {"egress": {"default": "allow"}}}).to_string(),
    )?;
    let node = node_config(&format!(
        "default_policy = {:?}\n[ceiling]\negress = [\"198.18.0.0/15\"]\n",
        default.path()
    ))?;
    let config = node.path().display().to_string();
    let refused = run("echo ran", None, |_| {}, &["--config", &config])?;
    assert!(
        !refused.success()
            && refused
                .stderr
                .contains(&default.path().display().to_string())
            && refused.stderr.contains("network.egress.default"),
        "{refused}"
    );
    Ok(())
}

#[test]
fn the_ceiling_is_where_a_node_lets_a_spec_keep_capabilities_and_new_privileges() -> Result<()> {
    let script = "grep -E '^CapEff|NoNewPrivs' /proc/self/status";
    let ask = |spec: &mut Value| {
        let caps = json!(["CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_CHOWN"]);
        for set in ["bounding", "effective", "permitted"] {
            spec["process"]["capabilities"][set] = caps.clone();
        }
        spec["process"]["noNewPrivileges"] = json!(false);
    };
    // Control: by default nothing of it is kept.
    let out = run(script, None, ask, &[])?;
    assert!(
        out.stdout.contains("CapEff:\t0000000000000000") && out.stdout.contains("NoNewPrivs:\t1"),
        "{out}"
    );
    let node = node_config(
        "[ceiling]\ncapabilities = [\"CAP_NET_BIND_SERVICE\"]\nnew_privileges = true\n",
    )?;
    let config = node.path().display().to_string();
    let out = run(script, None, ask, &["--config", &config])?;
    // CAP_NET_BIND_SERVICE is bit 10: only it.
    assert!(
        out.stdout.contains("CapEff:\t0000000000000400") && out.stdout.contains("NoNewPrivs:\t0"),
        "{out}"
    );
    Ok(())
}

#[test]
fn bundle_mode_bounds_memory_by_default_and_by_the_ceiling() -> Result<()> {
    // Control: 100M is fine.
    let out = plain("dd if=/dev/zero of=/dev/null bs=100M count=1 2>/dev/null; echo dd=$?")?;
    assert!(out.stdout.contains("dd=0"), "{out}");
    // A 3G buffer is more than the node's default 2G: the container's process dies, the host is
    // untouched.
    let out = plain("dd if=/dev/zero of=/dev/null bs=3000M count=1 2>/dev/null; echo dd=$?")?;
    assert!(out.stdout.contains("dd=137"), "{out}");
    // A spec asking for more than the ceiling is refused, naming the field.
    let node = node_config("[ceiling]\nmemory = \"1G\"\n")?;
    let config = node.path().display().to_string();
    let out = run(
        "true",
        None,
        |spec| spec["linux"]["resources"]["memory"] = json!({"limit": 4u64 << 30}),
        &["--config", &config],
    )?;
    assert!(
        !out.success() && out.stderr.contains("linux.resources.memory.limit"),
        "{out}"
    );
    Ok(())
}

#[test]
fn bundle_mode_refuses_set_id_files_and_planted_symlinks() -> Result<()> {
    let tree = HostTree::new()?;
    let ws = tree.path("ws");
    std::fs::create_dir(&ws)?;
    std::os::unix::fs::chown(&ws, Some(1000), Some(1000))?;
    let node = node_config(&format!(
        "[ceiling]\nreadwrite_host_paths = [{:?}]\n",
        tree.dir.path()
    ))?;
    let config = node.path().display().to_string();
    let policy = json!({"version": "0.8.0-alpha", "filesystem": {"readwritePaths": [ws]}});
    let as_1000 = |spec: &mut Value| spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let script = format!(
        "cd {}; cp /bin/busybox bb; chmod 755 bb; echo plain=$?; chmod u+s bb; echo setuid=$?; \
         chmod g+s bb; echo setgid=$?",
        ws.display()
    );
    let out = run(&script, Some(policy), as_1000, &["--config", &config])?;
    assert!(out.stdout.contains("plain=0"), "{out}");
    assert!(
        out.stdout.contains("setuid=1") && out.stdout.contains("setgid=1"),
        "{out}"
    );
    assert_eq!(
        std::fs::metadata(ws.join("bb"))?.permissions().mode() & 0o6000,
        0
    );
    // A symlink the container's identity planted in its workspace is not followed into a grant.
    std::os::unix::fs::symlink("/", ws.join("root"))?;
    std::os::unix::fs::lchown(ws.join("root"), Some(1000), Some(1000))?;
    let policy =
        json!({"version": "0.8.0-alpha", "filesystem": {"readonlyPaths": [ws.join("root")]}});
    let out = run("ls /", Some(policy), as_1000, &["--config", &config])?;
    assert!(
        !out.success()
            && out.stderr.contains("filesystem.readonlyPaths[0]")
            && out.stderr.contains("could have planted"),
        "{out}"
    );
    Ok(())
}

#[test]
fn a_new_user_namespace_is_owned_by_its_root_and_bounded() -> Result<()> {
    let script = "cat /proc/self/uid_map; cat /proc/sys/user/max_inotify_instances /proc/sys/user/max_user_namespaces";
    let out = run(
        script,
        None,
        |spec| {
            let mut namespaces = spec["linux"]["namespaces"].as_array().unwrap().clone();
            namespaces.push(json!({"type": "user"}));
            spec["linux"]["namespaces"] = json!(namespaces);
            spec["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            spec["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        },
        &[],
    )?;
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(words, ["0", "100000", "65536", "64", "0"], "{out}");
    Ok(())
}

#[test]
fn delete_kills_the_userspace_stack_of_a_namespace_the_runtime_made() -> Result<()> {
    // A network policy in a namespace the runtime creates itself gets a detached slirp4netns.
    // Delete kills it without waiting for its exit; it must still be gone for good.
    let node = node_config("[ceiling]\negress = [\"198.18.0.0/15\"]\n")?;
    let config = node.path().display().to_string();
    let policy = json!({"version": "0.8.0-alpha", "network": {"egress": {"default": "deny",
        "allow": [{"to": [{"cidr": "198.18.250.2/32"}], "ports": [{"protocol": "tcp", "port": 9000}]}]}}});
    let bundle = Bundle::new(&["/bin/sh", "-c", "sleep 600"])?;
    bundle.edit_spec(|spec| {
        spec["annotations"] = json!({"io.mxc.config": policy.to_string()});
    })?;
    let runtime = OciRuntime::mxc_runtime()?;
    let id = unique_name("stack");
    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id).runtime_root(runtime.root());
    let bundle_path = bundle.path().display().to_string();
    let global = ["--config", config.as_str()];
    let with = |args: &[&str]| runtime.run(&[&global[..], args].concat());
    with(&["create", "--bundle", &bundle_path, &id])?.ok()?;
    let state: Value = serde_json::from_str(&with(&["state", &id])?.ok()?.stdout)?;
    let init = state["pid"]
        .as_u64()
        .expect("a created container has a pid")
        .to_string();
    let stack_of_init = || {
        mxc_conformance::processes::list().into_iter().find(|p| {
            !p.is_zombie()
                && p.comm == "slirp4netns"
                && p.cmdline
                    .iter()
                    .rev()
                    .nth(1)
                    .is_some_and(|arg| *arg == init)
        })
    };
    // Control: while the container exists, its stack runs.
    let stack = stack_of_init().expect("the container's slirp4netns runs while it exists");
    with(&["delete", "--force", &id])?.ok()?;
    mxc_conformance::command::poll(mxc_conformance::leaks::SETTLE_LIMIT, || {
        mxc_conformance::processes::reap_adopted_orphans();
        let alive = mxc_conformance::processes::list()
            .into_iter()
            .any(|p| p.pid == stack.pid && !p.is_zombie());
        Ok((!alive).then_some(()))
    })?;
    leaks.assert_clean()?;
    Ok(())
}

//! Egress by host name where the process that sets a container up exits at once, and where the
//! engine provides the network namespace: `ctr run` through the shim (in a namespace of the
//! runtime's own, and `--with-ns`), Docker through `mxc-runtime`, and a CRI pod on a CNI
//! network. The egress proxy and resolver run detached beside the container and go with it.
//! Host rules come from the node configuration (`[egress]`) and the annotation
//! `io.mxc.egress.hosts`, bounded by the node's ceiling; the resolver is the egress test
//! world's (198.18.0.0/15 only).
//!
//! Every container runs the same busybox probes, each with its positive control: an allowed
//! name is reachable (transparently and through the proxy variables) while a denied one is
//! refused; the world's address by name works while the bare address is refused; DNS to the
//! world's server is answered by the sandbox's resolver (allowed names only) and a denied name
//! never reaches it; UDP never leaves. Every refusal is an audit line.

mod shim_support;

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use mxc_conformance::command::{poll, run_ok};
use mxc_conformance::containerd::{
    Containerd, ContainerdOptions, PodNetwork, CRI_NAMESPACE, MXC_HANDLER, MXC_RUNTIME_TYPE,
};
use mxc_conformance::cri::Cri;
use mxc_conformance::docker::{Dockerd, DockerdOptions};
use mxc_conformance::egress_world::{EgressWorld, HTTP_PORT, UDP_PORT};
use mxc_conformance::images::BUSYBOX_REF;
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::netns::NetNamespace;
use mxc_conformance::node::Node;
use mxc_conformance::processes;
use mxc_conformance::unique_name;
use serde_json::Value;
use shim_support::{assert_clean, wait_status};

/// How long an audit record may take to appear.
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// A node configuration whose `[egress]` section allows `allow` (none: only the resolver).
fn node(world: &EgressWorld, allow: &[&str], extra: &str) -> Result<Node> {
    let allow: Vec<String> = allow.iter().map(|p| format!("{p:?}")).collect();
    Node::with(&format!(
        "{extra}\n[egress]\nallow_hosts = [{}]\nresolver = {:?}\n",
        allow.join(", "),
        world.resolver()
    ))
}

/// The annotation that allows `api.allowed.test`, as `ctr --annotation` takes it.
const ANNOTATION_HOSTS: &str = r#"{"allow": ["api.allowed.test"], "deny": ["other.allowed.test"]}"#;

/// The probes, one `TAG=ok ...` or `TAG=fail ...` line each, with what the tool said. HTTP is
/// spoken through busybox's `nc` (its `wget` does not run in the test image): to a name
/// (transparently captured), to the proxy the proxy variables name, to the bare address.
fn probes(world: &EgressWorld) -> String {
    let ip = world.address();
    let get = |path: &str, host: &str| {
        format!("printf 'GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n'")
    };
    let direct = |tag: &str, host: &str| {
        format!(
            "p {tag} sh -c \"{} | nc -w 5 {host} {HTTP_PORT}\"; ",
            get("/", &format!("{host}:{HTTP_PORT}"))
        )
    };
    let proxied = |tag: &str, host: &str| {
        let target = format!("{host}:{HTTP_PORT}");
        format!(
            "p {tag} sh -c \"{} | nc -w 5 127.0.0.1 3128\"; ",
            get(&format!("http://{target}/"), &target)
        )
    };
    [
        "p() { t=$1; shift; if o=$(\"$@\" 2>&1); then s=ok; else s=fail; fi; \
         echo \"$t=$s $(echo \"$o\" | tr '\\r\\n' '  ')\"; }; "
            .to_string(),
        direct("allowed", "api.allowed.test"),
        proxied("allowed_proxied", "api.allowed.test"),
        direct("denied", "other.test"),
        proxied("denied_proxied", "other.test"),
        direct("bare_address", &ip.to_string()),
        "p resolv_conf cat /etc/resolv.conf; ".into(),
        "p dns_default nslookup api.allowed.test; ".into(),
        format!("p dns_allowed nslookup api.allowed.test {ip}; "),
        format!("p dns_denied nslookup secret-1234.exfil.test {ip}; "),
        format!("echo quic | nc -u -w 2 {ip} {UDP_PORT} >/dev/null 2>&1; true"),
    ]
    .concat()
}

/// What the probes must have printed, and seen from the world's side.
fn check_probes(world: &EgressWorld, out: &str) -> Result<()> {
    let line = |tag: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{tag}=")))
            .with_context(|| format!("no {tag} line in {out:?}"))
    };
    let expect = [
        ("allowed", "ok", "200 OK"),
        ("allowed", "ok", "host=api.allowed.test"),
        ("allowed_proxied", "ok", "host=api.allowed.test"),
        ("denied", "fail", "bad address"),
        ("denied_proxied", "ok", "403 Forbidden"),
        ("denied_proxied", "ok", "X-Mxc-Denied: name not allowed"),
        ("bare_address", "ok", "403 Forbidden"),
        // The sandbox's resolver answered, with an address that stands for the name.
        ("dns_allowed", "ok", "240."),
        ("dns_denied", "fail", "NXDOMAIN"),
    ];
    for (tag, status, said) in expect {
        let got = line(tag)?;
        ensure!(
            got.starts_with(status) && got.contains(said),
            "{tag}: expected {status} with {said:?}, got {got:?}\n{out}"
        );
    }
    let dns = world.dns_log();
    ensure!(
        dns.contains("api.allowed.test"),
        "the proxy's lookups went upstream: {dns}"
    );
    for name in ["exfil", "other.test"] {
        ensure!(!dns.contains(name), "{name} reached the world's DNS: {dns}");
    }
    ensure!(world.udp_log().is_empty(), "UDP left: {}", world.udp_log());
    Ok(())
}

/// The audit lines the probes must have left, for one of `containers`.
fn check_audit(node: &Node, world: &EgressWorld, containers: &[&str]) -> Result<()> {
    let ip = world.address().to_string();
    let expected: [(&str, &str, &str, &str, &str); 4] = [
        ("name.denied", "dns", "name", "other.test", "not allowed"),
        (
            "name.denied",
            "dns",
            "name",
            "secret-1234.exfil.test",
            "not allowed",
        ),
        ("name.denied", "http", "name", "other.test", "not allowed"),
        (
            "network.denied",
            "transparent",
            "destination",
            &ip,
            "bare address",
        ),
    ];
    for (event, via, field, value, reason) in expected {
        poll(RECORD_WAIT, || {
            Ok(node.audit()?.into_iter().find(|r: &Value| {
                r["event"] == event
                    && r["via"] == via
                    && r[field] == value
                    && r["reason"].as_str().is_some_and(|t| t.contains(reason))
                    && containers.iter().any(|c| r["container"] == *c)
                    && r["policy_sha256"].as_str().map(str::len) == Some(64)
                    && r["time"].is_string()
            }))
        })
        .with_context(|| {
            format!(
                "no {event} record via {via} of {field} {value}: {:#?}",
                node.audit()
            )
        })?;
    }
    Ok(())
}

/// The egress proxies running on this machine that the test started (their command line is
/// the engine's helper marker and a description naming the proxy).
fn egress_helpers() -> Vec<u32> {
    let me = std::process::id();
    let all = processes::list();
    processes::descendants_of(me, &all)
        .into_iter()
        .filter(|p| {
            !p.is_zombie()
                && p.cmdline.get(1).is_some_and(|a| a == "mxc-engine-helper")
                && p.cmdline.get(2).is_some_and(|a| a.contains("egress-proxy"))
        })
        .map(|p| p.pid)
        .collect()
}

/// The `mxc_` tables and the routes into the name pools in the namespace open as `held`.
fn traces_in(held: &std::fs::File) -> Result<Vec<String>> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/{}/fd/{}", std::process::id(), held.as_raw_fd());
    let ns = NetNamespace::at(path);
    let limit = Duration::from_secs(10);
    let tables = run_ok(ns.command("nft").args(["list", "tables"]), limit)?.stdout;
    let routes = run_ok(ns.command("ip").args(["route", "show"]), limit)?.stdout;
    let routes6 = run_ok(ns.command("ip").args(["-6", "route", "show"]), limit)?.stdout;
    Ok(tables
        .lines()
        .filter(|l| l.contains(" mxc_"))
        .chain(
            routes
                .lines()
                .chain(routes6.lines())
                .filter(|l| l.starts_with("240.") || l.starts_with("fd6d:")),
        )
        .map(str::to_string)
        .collect())
}

fn ctr_exec(containerd: &Containerd, id: &str, script: &str) -> Result<String> {
    let out = containerd
        .ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            &unique_name("probe"),
            id,
            "sh",
            "-c",
            script,
        ])?
        .ok()?;
    Ok(out.stdout)
}

fn ctr_remove(containerd: &Containerd, id: &str) -> Result<()> {
    containerd
        .ctr(&["tasks", "kill", "-s", "SIGKILL", id])?
        .ok()?;
    wait_status(containerd, "default", id, "STOPPED")?;
    containerd.ctr(&["tasks", "delete", id])?.ok()?;
    containerd.ctr(&["containers", "delete", id])?.ok()?;
    Ok(())
}

fn wait_for_no_helpers() -> Result<()> {
    poll(Duration::from_secs(15), || {
        Ok(egress_helpers().is_empty().then_some(()))
    })
    .with_context(|| format!("egress proxies left running: {:?}", egress_helpers()))
}

#[test]
fn ctr_with_ns_filters_by_name_through_a_detached_proxy_in_the_given_namespace() -> Result<()> {
    let world = EgressWorld::start()?;
    let containerd = Containerd::start()?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(containerd.dir());
    // The annotation's names, within the ceiling; the node adds only the resolver.
    let node = node(
        &world,
        &[],
        "[ceiling]\negress_hosts = [\"**.allowed.test\"]\n",
    )?;
    let ns = NetNamespace::create()?;
    let _link = world.link(&ns)?;
    let held = std::fs::File::open(ns.path())?;

    let id = unique_name("egwithns");
    leaks.container(&id);
    let config = node.config().display().to_string();
    let with_ns = format!("network:{}", ns.path().display());
    let hosts = format!("io.mxc.egress.hosts={ANNOTATION_HOSTS}");
    containerd
        .ctr(&[
            "run",
            "-d",
            "--runtime",
            MXC_RUNTIME_TYPE,
            "--runtime-config-path",
            &config,
            "--with-ns",
            &with_ns,
            "--annotation",
            &hosts,
            BUSYBOX_REF,
            &id,
            "sleep",
            "600",
        ])?
        .ok()?;
    wait_status(&containerd, "default", &id, "RUNNING")?;
    ensure!(
        egress_helpers().len() == 1,
        "one egress proxy: {:?}",
        egress_helpers()
    );
    ensure!(
        !traces_in(&held)?.is_empty(),
        "the proxy's table and routes are in the namespace"
    );

    let out = ctr_exec(&containerd, &id, &probes(&world))?;
    check_probes(&world, &out)?;
    check_audit(&node, &world, &[&id])?;

    ctr_remove(&containerd, &id)?;
    wait_for_no_helpers()?;
    let left = traces_in(&held)?;
    ensure!(left.is_empty(), "left in the namespace: {left:?}");
    assert_clean(&leaks, &containerd, "default", &[])?;
    Ok(())
}

#[test]
fn ctr_in_a_namespace_of_its_own_filters_by_name_and_the_proxy_goes_with_a_crash() -> Result<()> {
    let world = EgressWorld::start()?;
    let containerd = Containerd::start()?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(containerd.dir());
    let node = node(&world, &["api.allowed.test"], "")?;

    let id = unique_name("egown");
    leaks.container(&id);
    let config = node.config().display().to_string();
    containerd
        .ctr(&[
            "run",
            "-d",
            "--runtime",
            MXC_RUNTIME_TYPE,
            "--runtime-config-path",
            &config,
            BUSYBOX_REF,
            &id,
            "sleep",
            "600",
        ])?
        .ok()?;
    wait_status(&containerd, "default", &id, "RUNNING")?;
    let helpers = egress_helpers();
    ensure!(helpers.len() == 1, "one egress proxy: {helpers:?}");

    let out = ctr_exec(&containerd, &id, &probes(&world))?;
    check_probes(&world, &out)?;
    check_audit(&node, &world, &[&id])?;

    // The container's init dies behind everyone's back: the proxy goes with it, before any
    // delete.
    let task = containerd.ctr(&["tasks", "ls"])?.ok()?.stdout;
    let pid: i32 = task
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("the task's pid in {task}"))?;
    // SAFETY: killing the container's init process, which this test started.
    ensure!(unsafe { libc::kill(pid, libc::SIGKILL) } == 0);
    wait_for_no_helpers()?;
    wait_status(&containerd, "default", &id, "STOPPED")?;
    containerd.ctr(&["tasks", "delete", &id])?.ok()?;
    containerd.ctr(&["containers", "delete", &id])?.ok()?;
    assert_clean(&leaks, &containerd, "default", &[])?;
    Ok(())
}

#[test]
fn host_names_beyond_the_ceiling_in_the_annotation_are_refused_naming_it() -> Result<()> {
    let world = EgressWorld::start()?;
    let containerd = Containerd::start()?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(containerd.dir());
    let node = node(
        &world,
        &[],
        "[ceiling]\negress_hosts = [\"api.allowed.test\"]\n",
    )?;
    let id = unique_name("egceiling");
    leaks.container(&id);
    let config = node.config().display().to_string();
    let out = containerd.run_container(
        MXC_RUNTIME_TYPE,
        &id,
        &[
            "--runtime-config-path",
            &config,
            "--annotation",
            r#"io.mxc.egress.hosts={"allow": ["api.allowed.test", "*.wild.test"]}"#,
        ],
        &["true"],
    )?;
    ensure!(!out.success(), "ran beyond the ceiling: {out}");
    ensure!(
        out.stderr
            .contains("annotation io.mxc.egress.hosts: allow[1] = \"*.wild.test\": exceeds"),
        "{out}"
    );
    // The same container within the ceiling runs (the positive control).
    let out = containerd.run_container(
        MXC_RUNTIME_TYPE,
        &unique_name("egceiling"),
        &[
            "--runtime-config-path",
            &config,
            "--annotation",
            r#"io.mxc.egress.hosts={"allow": ["api.allowed.test"]}"#,
        ],
        &["true"],
    )?;
    ensure!(out.success(), "{out}");
    let _ = containerd.ctr(&["containers", "delete", &id]);
    wait_for_no_helpers()?;
    assert_clean(&leaks, &containerd, "default", &[])?;
    Ok(())
}

#[test]
fn docker_filters_by_name_through_mxc_runtime() -> Result<()> {
    let world = EgressWorld::start()?;
    let node = node(&world, &["api.allowed.test"], "")?;
    let dockerd = Dockerd::start_with(DockerdOptions {
        mxc_runtime_args: vec!["--config".into(), node.config().display().to_string()],
        ..DockerdOptions::default()
    })?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(dockerd.dir());
    leaks.runtime_root(dockerd.runtime_root("mxc"));

    let name = unique_name("egdocker");
    let dns = world.address().to_string();
    let out = dockerd.docker(&[
        "run",
        "-d",
        "--runtime",
        "mxc",
        "--network",
        "none",
        "--dns",
        &dns,
        "--name",
        &name,
        BUSYBOX_REF,
        "sleep",
        "600",
    ])?;
    ensure!(out.success(), "{out}");
    let id = out.stdout.trim().to_string();
    leaks.container(&id);
    let pid = dockerd
        .docker(&["inspect", "-f", "{{.State.Pid}}", &name])?
        .ok()?
        .stdout
        .trim()
        .to_string();
    // The engine's network is `none`: the test gives the container a link to the world.
    let ns = NetNamespace::at(format!("/proc/{pid}/ns/net"));
    let link = world.link(&ns)?;
    ensure!(
        egress_helpers().len() == 1,
        "one egress proxy: {:?}",
        egress_helpers()
    );

    let out = dockerd.docker(&["exec", &name, "sh", "-c", &probes(&world)])?;
    ensure!(out.success(), "{out}");
    check_probes(&world, &out.stdout)?;
    check_audit(&node, &world, &[&id])?;

    drop(link);
    let out = dockerd.docker(&["rm", "-f", &name])?;
    ensure!(out.success(), "{out}");
    wait_for_no_helpers()?;
    leaks.assert_clean()?;
    Ok(())
}

/// A private containerd on the ptp network whose node allows `**.allowed.test` at most, and a
/// pod configuration asking for [`ANNOTATION_HOSTS`].
struct CriPod {
    world: EgressWorld,
    node: Node,
    containerd: Containerd,
    cri: Cri,
    leaks: LeakCheck,
    pod_config: k8s_cri::v1::PodSandboxConfig,
}

impl CriPod {
    fn start(pod_name: &str) -> Result<CriPod> {
        let world = EgressWorld::start()?;
        let node = node(
            &world,
            &[],
            "[ceiling]\negress_hosts = [\"**.allowed.test\"]\n",
        )?;
        let containerd = Containerd::start_with(ContainerdOptions {
            pod_network: PodNetwork::Ptp,
            node_config: Some(node.config()),
            ..ContainerdOptions::default()
        })?;
        let cri = Cri::connect(&containerd)?;
        let mut leaks = LeakCheck::snapshot();
        leaks.watch_dir(containerd.dir());
        let mut pod_config = cri.pod_config(&unique_name(pod_name), false)?;
        pod_config
            .annotations
            .insert("io.mxc.egress.hosts".into(), ANNOTATION_HOSTS.into());
        Ok(CriPod {
            world,
            node,
            containerd,
            cri,
            leaks,
            pod_config,
        })
    }
}

#[test]
fn a_cri_pod_filters_by_name_with_one_proxy_for_its_namespace() -> Result<()> {
    let CriPod {
        world,
        node,
        containerd,
        mut cri,
        mut leaks,
        mut pod_config,
    } = CriPod::start("egpod")?;
    // The pod's DNS server, as a cluster's would be: reachable from the pod (over the link
    // below), answered by the sandbox's resolver.
    pod_config.dns_config = Some(k8s_cri::v1::DnsConfig {
        servers: vec![world.address().to_string()],
        ..Default::default()
    });
    let pod = cri.run_pod_sandbox(&pod_config, MXC_HANDLER)?;
    leaks.container(&pod);
    let pod_ns = cri
        .pod_netns_path(&pod)?
        .context("the pod has a network namespace")?;
    let held = std::fs::File::open(&pod_ns)?;
    // A link of the test's own to the world: the CNI's leads only to the root namespace.
    let link = world.link(&NetNamespace::at(&pod_ns))?;
    // The sandbox container started the pod's proxy.
    ensure!(
        egress_helpers().len() == 1,
        "one egress proxy: {:?}",
        egress_helpers()
    );

    let config = Cri::container_config(&pod_config, "agent", BUSYBOX_REF, &["sleep", "600"]);
    let agent = cri.create_container(&pod, &config, &pod_config)?;
    leaks.container(&agent);
    cri.start_container(&agent)?;
    // The agent shares the pod's proxy: still one, and a table of its own beside the pod's.
    ensure!(
        egress_helpers().len() == 1,
        "one egress proxy for the pod: {:?}",
        egress_helpers()
    );
    let tables = |t: Vec<String>| t.into_iter().filter(|l| l.contains(" mxc_")).count();
    ensure!(tables(traces_in(&held)?) == 2, "{:?}", traces_in(&held));

    let out = cri.exec_sync(&agent, &["sh", "-c", &probes(&world)], 60)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    check_probes(&world, &stdout)?;
    check_audit(&node, &world, &[&pod, &agent])?;

    cri.stop_container(&agent, 0)?;
    cri.remove_container(&agent)?;
    ensure!(tables(traces_in(&held)?) == 1, "{:?}", traces_in(&held));
    cri.stop_pod_sandbox(&pod)?;
    wait_for_no_helpers()?;
    drop(link);
    cri.remove_pod_sandbox(&pod)?;
    assert_clean(&leaks, &containerd, CRI_NAMESPACE, &[&pod])?;
    Ok(())
}

#[test]
fn containers_of_one_pod_with_different_host_rules_are_refused() -> Result<()> {
    let CriPod {
        world: _world,
        node: _node,
        containerd,
        mut cri,
        mut leaks,
        pod_config,
    } = CriPod::start("egpod2")?;
    let pod = cri.run_pod_sandbox(&pod_config, MXC_HANDLER)?;
    leaks.container(&pod);
    let mut config = Cri::container_config(&pod_config, "agent", BUSYBOX_REF, &["sleep", "600"]);
    config.annotations.insert(
        "io.mxc.egress.hosts".into(),
        r#"{"allow": ["www.allowed.test"]}"#.into(),
    );
    let refused = cri
        .create_container(&pod, &config, &pod_config)
        .and_then(|agent| {
            leaks.container(&agent);
            cri.start_container(&agent).map(|()| agent)
        });
    match refused {
        Ok(agent) => bail!("{agent} started with host rules that differ from its pod's"),
        Err(error) => {
            let text = format!("{error:#}");
            ensure!(text.contains("same host rules"), "{text}");
        }
    }
    ensure!(egress_helpers().len() == 1, "{:?}", egress_helpers());
    cri.remove_everything()?;
    wait_for_no_helpers()?;
    assert_clean(&leaks, &containerd, CRI_NAMESPACE, &[&pod])?;
    Ok(())
}

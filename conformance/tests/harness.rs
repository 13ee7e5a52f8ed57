//! The harness itself, proven against the reference runtimes: a private containerd with its
//! runc shim, the CRI plugin with handler `runc`, a private dockerd with runc, runc and crun on
//! a plain bundle, and test hosts in network namespaces. Each scenario ends with a leak check.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_cri::v1::ContainerState;
use mxc_conformance::bundle::Bundle;
use mxc_conformance::containerd::{
    Containerd, ContainerdOptions, PodNetwork, CRI_NAMESPACE, RUNC_HANDLER, RUNC_RUNTIME_TYPE,
};
use mxc_conformance::cri::Cri;
use mxc_conformance::docker::Dockerd;
use mxc_conformance::images::{Images, BUSYBOX_REF};
use mxc_conformance::leaks::{self, LeakCheck};
use mxc_conformance::netns::{
    tcp_request, udp_request, NetNamespace, TcpServer, TestLink, UdpServer,
};
use mxc_conformance::oci_runtime::OciRuntime;
use mxc_conformance::unique_name;

const NET_LIMIT: Duration = Duration::from_secs(10);

#[test]
fn images_are_built_once_with_every_applet() -> Result<()> {
    let images = Images::get()?;
    let rootfs = images.rootfs();
    for applet in [
        "bin/sh",
        "bin/echo",
        "bin/sleep",
        "usr/bin/nc",
        "sbin/ip",
        "bin/hostname",
    ] {
        let link = std::fs::read_link(rootfs.join(applet)).with_context(|| applet.to_string())?;
        assert_eq!(link.to_str(), Some("/bin/busybox"), "{applet}");
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(images.oci_layout().join("index.json"))?)?;
    let mut tags: Vec<&str> = index["manifests"]
        .as_array()
        .context("index.json has manifests")?
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    tags.sort();
    assert_eq!(tags, ["busybox", "pause"]);
    assert!(images.busybox_archive().metadata()?.len() > 1_000_000);
    assert!(images.pause_archive().metadata()?.len() > 1_000_000);
    // A second call is the same build.
    assert_eq!(Images::get()?.rootfs(), rootfs);
    Ok(())
}

#[test]
fn containerd_runs_busybox_with_the_runc_shim() -> Result<()> {
    let containerd = Containerd::start()?;
    let runc_root = containerd.runc_root();
    let runc_root_arg = runc_root.to_string_lossy().into_owned();
    let mut leaks = LeakCheck::snapshot();
    leaks
        .watch_dir(containerd.dir())
        .runtime_root(runc_root.join("default"));

    let id = unique_name("ctr");
    leaks.container(&id);
    let out = containerd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNC_RUNTIME_TYPE,
        "--runc-root",
        &runc_root_arg,
        BUSYBOX_REF,
        &id,
        "sh",
        "-c",
        "echo out-$((6*7)); echo err-1 >&2; ls /bin/busybox",
    ])?;
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "out-42\n/bin/busybox\n", "{out}");
    assert_eq!(out.stderr, "err-1\n", "{out}");

    // The container's exit status is ctr's.
    let id = unique_name("ctr");
    leaks.container(&id);
    let out = containerd.run_container(RUNC_RUNTIME_TYPE, &id, &[], &["sh", "-c", "exit 7"])?;
    assert_eq!(out.code(), Some(7), "{out}");

    assert!(
        runc_root.join("default").is_dir(),
        "ctr's runc used the private root"
    );
    let listed = containerd.ctr(&["containers", "ls", "-q"])?.ok()?;
    assert_eq!(
        listed.stdout.trim(),
        "",
        "containers left: {}",
        listed.stdout
    );
    leaks.assert_clean()?;
    assert!(containerd.shim_pids().is_empty());
    Ok(())
}

#[test]
fn cri_runs_a_host_network_pod_with_handler_runc() -> Result<()> {
    let containerd = Containerd::start()?;
    let mut cri = Cri::connect(&containerd)?;
    let mut leaks = LeakCheck::snapshot();
    leaks
        .watch_dir(containerd.dir())
        .runtime_root(containerd.runc_root().join(CRI_NAMESPACE));

    let pod_config = cri.pod_config(&unique_name("pod"), true)?;
    let pod = cri.run_pod_sandbox(&pod_config, RUNC_HANDLER)?;
    leaks.container(&pod);
    assert_eq!(cri.pod_ip(&pod)?, "", "a host-network pod has no pod IP");
    assert_eq!(cri.pod_netns_path(&pod)?, None);

    let config = Cri::container_config(
        &pod_config,
        "main",
        BUSYBOX_REF,
        &["sh", "-c", "echo started; exec sleep 600"],
    );
    let main = cri.create_container(&pod, &config, &pod_config)?;
    leaks.container(&main);
    cri.start_container(&main)?;
    // What the leak check looks for is there while the pod runs.
    assert!(
        !leaks::cgroups_named(&main).is_empty(),
        "a cgroup named after {main}"
    );
    assert!(!leaks::mounts_under(containerd.dir()).is_empty());
    assert!(containerd
        .runc_root()
        .join(CRI_NAMESPACE)
        .join(&main)
        .is_dir());
    let running = leaks.leaks();
    assert!(
        running
            .iter()
            .any(|l| matches!(l, leaks::Leak::Process(p) if p.contains("sleep 600"))),
        "{running:?}"
    );

    let exec = cri.exec_sync(
        &main,
        &["sh", "-c", "echo exec-$((40+2)); echo oops >&2; exit 3"],
        30,
    )?;
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "exec-42\n");
    assert_eq!(String::from_utf8_lossy(&exec.stderr), "oops\n");
    assert_eq!(exec.exit_code, 3);

    // The container sees the image's environment plus the config's.
    let exec = cri.exec_sync(
        &main,
        &[
            "sh",
            "-c",
            "echo $MXC_CONFORMANCE; cat /proc/1/cmdline | tr '\\0' ' '; echo",
        ],
        30,
    )?;
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "1\nsleep 600 \n");
    assert_eq!(exec.exit_code, 0);

    // A host-network pod shares the node's network (and so its hostname).
    let exec = cri.exec_sync(&main, &["cat", "/proc/sys/kernel/hostname"], 30)?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    assert_eq!(String::from_utf8_lossy(&exec.stdout), host);
    let exec = cri.exec_sync(&main, &["sh", "-c", "ip -o link | wc -l"], 30)?;
    let inside: usize = String::from_utf8_lossy(&exec.stdout).trim().parse()?;
    let outside = std::fs::read_dir("/sys/class/net")?.count();
    assert_eq!(inside, outside, "the pod sees the host's interfaces");

    // A second container that ends by itself, with its own status.
    let config = Cri::container_config(
        &pod_config,
        "once",
        BUSYBOX_REF,
        &["sh", "-c", "echo done; exit 5"],
    );
    let once = cri.create_container(&pod, &config, &pod_config)?;
    leaks.container(&once);
    cri.start_container(&once)?;
    let status = cri.wait_exited(&once, Duration::from_secs(60))?;
    assert_eq!(status.exit_code, 5);
    assert_eq!(cri.container_log(&pod_config, "once")?, "done\n");

    cri.stop_container(&main, 0)?;
    let status = cri.container_status(&main)?;
    assert_eq!(status.state, ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 137, "SIGKILL after a zero grace period");
    assert_eq!(cri.container_log(&pod_config, "main")?, "started\n");

    for id in [&main, &once] {
        cri.remove_container(id)?;
    }
    cri.stop_pod_sandbox(&pod)?;
    cri.remove_pod_sandbox(&pod)?;
    leaks.assert_clean()?;
    Ok(())
}

#[test]
fn cri_pod_on_a_ptp_network_reaches_a_server_on_its_gateway() -> Result<()> {
    let containerd = Containerd::start_with(ContainerdOptions {
        pod_network: PodNetwork::Ptp,
        ..ContainerdOptions::default()
    })?;
    let subnet = containerd.pod_subnet().context("a ptp pod subnet")?;
    let gateway = subnet.v4(1);
    let mut cri = Cri::connect(&containerd)?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(containerd.dir());

    let pod_config = cri.pod_config(&unique_name("pod"), false)?;
    let pod = cri.run_pod_sandbox(&pod_config, RUNC_HANDLER)?;
    leaks.container(&pod);
    let pod_ip = cri.pod_ip(&pod)?;
    ensure!(
        pod_ip.starts_with(&format!(
            "{}.",
            subnet.v4(0).to_string().rsplit_once('.').unwrap().0
        )),
        "pod IP {pod_ip} outside {}",
        subnet.v4_net()
    );
    let netns = cri
        .pod_netns_path(&pod)?
        .context("a pod network namespace")?;
    assert!(netns.starts_with(containerd.state()), "{}", netns.display());

    let config = Cri::container_config(&pod_config, "main", BUSYBOX_REF, &["sleep", "600"]);
    let main = cri.create_container(&pod, &config, &pod_config)?;
    leaks.container(&main);
    cri.start_container(&main)?;

    // The host side of the pod's veth carries the gateway address; a server there answers
    // the pod, and nothing else is routable from inside.
    let host = NetNamespace::at("/proc/self/ns/net");
    let server = TcpServer::start(
        &host,
        SocketAddr::new(gateway.into(), 0),
        "pong\n",
        1,
        Duration::from_secs(60),
    )?;
    let script = format!("echo ping | nc -w 5 {} {}", gateway, server.addr().port());
    let exec = cri.exec_sync(&main, &["sh", "-c", &script], 30)?;
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        "pong\n",
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    assert_eq!(server.finish(), ["ping\n"]);
    let exec = cri.exec_sync(&main, &["ip", "route"], 30)?;
    let routes = String::from_utf8_lossy(&exec.stdout).into_owned();
    assert!(
        !routes.contains("default"),
        "the pod has a default route: {routes}"
    );

    cri.remove_everything()?;
    leaks.assert_clean()?;
    assert!(!netns.exists());
    Ok(())
}

#[test]
fn dockerd_runs_busybox_with_runc() -> Result<()> {
    let docker = Dockerd::start()?;
    let mut leaks = LeakCheck::snapshot();
    leaks
        .watch_dir(docker.dir())
        .watch_dir(docker.containerd().dir())
        .runtime_root(docker.runtime_root("runc").join("moby"));

    let out = docker.docker(&["run", "--rm", "--network", "none", "busybox", "echo", "hi"])?;
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "hi\n");

    let cidfile = docker.dir().join("cid");
    let cidfile_arg = cidfile.to_string_lossy().into_owned();
    let out = docker.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cidfile",
        &cidfile_arg,
        "busybox",
        "sh",
        "-c",
        "ip -o link | cut -d: -f2 | tr -d ' '; exit 4",
    ])?;
    assert_eq!(out.code(), Some(4), "{out}");
    assert_eq!(
        out.stdout, "lo\n",
        "--network none has only loopback: {out}"
    );
    leaks.container(std::fs::read_to_string(&cidfile)?.trim());

    assert!(
        docker.runtime_root("runc").join("moby").is_dir(),
        "runc's root under the exec root"
    );
    let ps = docker.docker(&["ps", "-aq"])?.ok()?;
    assert_eq!(ps.stdout.trim(), "");
    leaks.assert_clean()?;
    Ok(())
}

fn run_plain_bundle(runtime: OciRuntime) -> Result<()> {
    let bundle = Bundle::new(&["sh", "-c", "echo bundle-ok; hostname; id -u"])?;
    let id = unique_name("bnd");
    let mut leaks = LeakCheck::snapshot();
    leaks
        .watch_dir(bundle.path())
        .container(&id)
        .runtime_root(runtime.root());

    let out = runtime.run_bundle(bundle.path(), &id)?;
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout, "bundle-ok\nrunc\n0\n", "{out}");

    bundle.edit_spec(|spec| spec["process"]["args"] = serde_json::json!(["sh", "-c", "exit 9"]))?;
    let id = unique_name("bnd");
    leaks.container(&id);
    let out = runtime.run_bundle(bundle.path(), &id)?;
    assert_eq!(out.code(), Some(9), "{out}");

    leaks.assert_clean()?;
    assert!(runtime.state_entries().is_empty());
    Ok(())
}

#[test]
fn runc_runs_a_plain_bundle() -> Result<()> {
    run_plain_bundle(OciRuntime::runc()?)
}

#[test]
fn crun_runs_a_plain_bundle() -> Result<()> {
    run_plain_bundle(OciRuntime::crun()?)
}

#[test]
fn test_hosts_talk_tcp_and_udp_over_ipv4_and_ipv6() -> Result<()> {
    let names;
    {
        let link = TestLink::new()?;
        names = [
            link.left.name().unwrap().to_string(),
            link.right.name().unwrap().to_string(),
        ];
        for name in &names {
            assert!(leaks::netns_names().contains(name));
        }
        for server_ip in [
            link.veth.right_v4.into(),
            std::net::IpAddr::from(link.veth.right_v6),
        ] {
            let tcp = TcpServer::start(
                &link.right,
                SocketAddr::new(server_ip, 0),
                "tcp-pong\n",
                2,
                NET_LIMIT,
            )?;
            assert_eq!(
                tcp_request(&link.left, tcp.addr(), "one\n", NET_LIMIT)?,
                "tcp-pong\n"
            );
            assert_eq!(
                tcp_request(&link.left, tcp.addr(), "two\n", NET_LIMIT)?,
                "tcp-pong\n"
            );
            assert_eq!(tcp.finish(), ["one\n", "two\n"]);

            let udp = UdpServer::start(
                &link.right,
                SocketAddr::new(server_ip, 0),
                "udp:",
                1,
                NET_LIMIT,
            )?;
            assert_eq!(
                udp_request(&link.left, udp.addr(), "hello", NET_LIMIT)?,
                "udp:hello"
            );
            assert_eq!(udp.finish(), ["hello"]);
        }

        // The server's namespace is not the client's: nothing listens on the client side.
        let refused = tcp_request(
            &link.left,
            SocketAddr::new(link.veth.left_v4.into(), 9),
            "x\n",
            NET_LIMIT,
        );
        assert!(refused.is_err());
        // Addresses outside the test ranges are refused before any packet leaves.
        let outside = tcp_request(&link.left, "192.0.2.1:80".parse()?, "x\n", NET_LIMIT);
        assert!(outside
            .unwrap_err()
            .to_string()
            .contains("outside the test ranges"));
    }
    let after = leaks::netns_names();
    for name in &names {
        assert!(!after.contains(name), "{name} left behind");
    }
    Ok(())
}

#[test]
fn leak_check_sees_a_container_left_behind() -> Result<()> {
    let runtime = OciRuntime::runc()?;
    let bundle = Bundle::new(&["sleep", "600"])?;
    let id = unique_name("left");
    let mut leaks = LeakCheck::snapshot();
    leaks
        .watch_dir(bundle.path())
        .container(&id)
        .runtime_root(runtime.root());

    let bundle_arg = bundle.path().to_string_lossy().into_owned();
    runtime
        .run(&["create", "--bundle", &bundle_arg, &id])?
        .ok()?;
    let found = leaks.leaks();
    let kinds = |f: fn(&leaks::Leak) -> bool| found.iter().any(f);
    assert!(kinds(|l| matches!(l, leaks::Leak::Process(_))), "{found:?}");
    assert!(kinds(|l| matches!(l, leaks::Leak::Cgroup(_))), "{found:?}");
    assert!(
        kinds(|l| matches!(l, leaks::Leak::RuntimeState(_))),
        "{found:?}"
    );
    // runc mounts only inside the container's mount namespace: nothing shows on the host.

    runtime.run(&["delete", "--force", &id])?.ok()?;
    leaks.assert_clean()?;
    Ok(())
}

#[test]
fn dropping_containerd_removes_what_its_containers_left() -> Result<()> {
    let containerd = Containerd::start()?;
    let dir = containerd.dir().to_path_buf();
    let id = unique_name("orphan");
    let runc_root = containerd.runc_root().to_string_lossy().into_owned();
    containerd
        .ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNC_RUNTIME_TYPE,
            "--runc-root",
            &runc_root,
            BUSYBOX_REF,
            &id,
            "sleep",
            "600",
        ])?
        .ok()?;
    let shims = containerd.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for one container");
    assert!(!leaks::mounts_under(&dir).is_empty());

    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id);
    drop(containerd);

    assert!(!dir.exists(), "{} removed", dir.display());
    assert!(leaks::mounts_under(&dir).is_empty());
    for shim in shims {
        assert!(
            !std::path::Path::new(&format!("/proc/{shim}/cmdline")).exists() || {
                let stat =
                    std::fs::read_to_string(format!("/proc/{shim}/stat")).unwrap_or_default();
                stat.contains(") Z")
            }
        );
    }
    leaks.assert_clean()?;
    Ok(())
}

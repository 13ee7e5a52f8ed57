//! Network enforcement in a namespace the engine provides: `ctr run --with-ns network:PATH`
//! through the shim, and a CRI pod whose namespace a CNI config (`ptp`, `host-local` IPAM) set
//! up. The rules go into that namespace and nowhere else. The test links the namespace to a
//! test host of its own by a veth pair (198.18.0.0/15 and 2001:2::/48 only); every attempt the
//! policy denies must fail and appear in the shim's audit log, and once the container is gone
//! its rules are gone from the namespace.

mod shim_support;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mxc_conformance::command::{poll, run_ok};
use mxc_conformance::containerd::{
    Containerd, ContainerdOptions, PodNetwork, CRI_NAMESPACE, MXC_HANDLER, MXC_RUNTIME_TYPE,
};
use mxc_conformance::cri::Cri;
use mxc_conformance::each_containerd;
use mxc_conformance::engines::ContainerdRelease;
use mxc_conformance::images::BUSYBOX_REF;
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::netns::{tcp_request, NetNamespace, Subnet, TcpServer, UdpServer, Veth};
use mxc_conformance::node::{Node, TEST_NETWORK_CEILING};
use mxc_conformance::unique_name;
use serde_json::{json, Value};
use shim_support::{assert_clean, policy_annotation, wait_status};

const SERVER_LIMIT: Duration = Duration::from_secs(60);

each_containerd!(
    ctr_with_ns_gets_the_rules_in_the_given_namespace,
    a_cri_pod_on_a_cni_network_gets_its_policy_in_the_pod_namespace,
);

/// The test host's servers: the allowed port, another port, IPv6 and UDP. The host is a
/// namespace of the test's own, so fixed ports are free there, and the policy can name them
/// before the servers (and the link that brings their addresses) exist.
struct Servers {
    allowed: TcpServer,
    other_port: TcpServer,
    v6: TcpServer,
    udp: UdpServer,
}

const ALLOWED_PORT: u16 = 8080;
const OTHER_PORT: u16 = 8081;
const UDP_PORT: u16 = 8082;

/// Only TCP to `host_v4`, on the allowed port.
fn policy(host_v4: IpAddr) -> Value {
    json!({
        "version": "0.8.0-alpha",
        "network": {"egress": {"default": "deny", "allow": [{
            "to": [{"cidr": format!("{host_v4}/32")}],
            "ports": [{"protocol": "tcp", "port": ALLOWED_PORT}],
        }]}},
    })
}

impl Servers {
    fn start(host: &NetNamespace, v4: IpAddr, v6: IpAddr) -> Result<Servers> {
        let tcp = |ip, port, reply| {
            TcpServer::start(host, SocketAddr::new(ip, port), reply, 4, SERVER_LIMIT)
        };
        Ok(Servers {
            allowed: tcp(v4, ALLOWED_PORT, "allowed")?,
            other_port: tcp(v4, OTHER_PORT, "other-port")?,
            v6: tcp(v6, ALLOWED_PORT, "v6")?,
            udp: UdpServer::start(host, SocketAddr::new(v4, UDP_PORT), "udp", 4, SERVER_LIMIT)?,
        })
    }

    /// A busybox script that tries each server, DNS to the test host, ICMP on both families,
    /// and changing the namespace from inside, printing `tag=result` lines.
    fn probes(&self) -> String {
        let nc = |addr: SocketAddr, tag: &str| {
            format!(
                "r=$(echo hi | nc -w 2 {} {} 2>/dev/null); echo \"{tag}=${{r:-blocked}}\"; ",
                addr.ip(),
                addr.port()
            )
        };
        let host = self.allowed.addr().ip();
        [
            nc(self.allowed.addr(), "allowed"),
            nc(self.other_port.addr(), "other_port"),
            nc(self.v6.addr(), "v6"),
            format!(
                "timeout 3 tftp -g -r x -l /dev/null {} {} >/dev/null 2>&1; echo udp=$?; ",
                host,
                self.udp.addr().port()
            ),
            format!("timeout 3 nslookup example.test {host} >/dev/null 2>&1; echo dns=$?; "),
            format!("icmp-echo {host}; echo ping=$?; "),
            format!("icmp-echo {}; echo ping6=$?; ", self.v6.addr().ip()),
            "ip route add 198.19.255.0/24 dev lo 2>/dev/null; echo route=$?; ".into(),
            "ip link set lo down 2>/dev/null; echo link=$?; ".into(),
            format!(
                "IF=$(ip -o link | awk -F': ' '$2 != \"lo\" {{print $2}}' | cut -d@ -f1 | head -1); \
                 arping -c 1 -w 1 -I \"$IF\" {host} >/dev/null 2>&1; echo raw=$?; "
            ),
        ]
        .concat()
    }

    /// What the probes printed means: the allowed port answered, nothing else did, and the
    /// namespace could not be changed. The servers saw only the allowed connection.
    fn check(self, stdout: &str) -> Result<()> {
        let expect = [
            "allowed=allowed",
            "other_port=blocked",
            "v6=blocked",
            "route=",
            "link=",
            "raw=",
            "ping=1",
            "ping6=1",
        ];
        for line in expect {
            ensure!(stdout.contains(line), "expected {line:?} in {stdout:?}");
        }
        for tag in ["udp", "dns", "ping", "ping6", "route", "link", "raw"] {
            ensure!(
                !stdout.contains(&format!("{tag}=0\n")),
                "{tag} succeeded: {stdout:?}"
            );
        }
        ensure!(self.allowed.finish().len() == 1, "the allowed server");
        ensure!(self.other_port.finish().is_empty(), "the other port");
        ensure!(self.v6.finish().is_empty(), "the v6 server");
        ensure!(self.udp.finish().is_empty(), "the UDP server");
        Ok(())
    }
}

/// The denials the probes must have left, decided by the default egress rule and written for
/// one of `containers`.
fn check_denials(node: &Node, host_v4: IpAddr, host_v6: IpAddr, containers: &[&str]) -> Result<()> {
    let (v4, v6) = (host_v4.to_string(), host_v6.to_string());
    // (what, protocol, destination, whether the port is DNS's; None: any port)
    let expected = [
        ("tcp to another port", "tcp", &v4, None),
        ("tcp over IPv6", "tcp", &v6, None),
        ("udp", "udp", &v4, Some(false)),
        ("dns to an unlisted resolver", "udp", &v4, Some(true)),
        ("icmp", "icmp", &v4, None),
        ("icmpv6", "icmpv6", &v6, None),
    ];
    for (what, protocol, destination, dns) in expected {
        node.denial(what, |r| {
            r["rule"] == "network.egress.default"
                && containers.iter().any(|c| r["container"] == *c)
                && r["policy_sha256"].as_str().map(str::len) == Some(64)
                && r["time"].is_string()
                && r["protocol"] == protocol
                && r["destination"] == destination.as_str()
                && dns.is_none_or(|dns| (r["port"] == 53) == dns)
        })?;
    }
    Ok(())
}

/// A network namespace held open by this test, so that its rules can be listed whatever
/// happens to the path it was found at (a bind mount another process may detach).
struct Held {
    file: std::fs::File,
}

impl Held {
    fn open(path: &Path) -> Result<Held> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening network namespace {}", path.display()))?;
        Ok(Held { file })
    }

    /// The `mxc_` tables in the namespace.
    fn mxc_tables(&self) -> Result<Vec<String>> {
        use std::os::fd::AsRawFd;
        let path = format!("/proc/{}/fd/{}", std::process::id(), self.file.as_raw_fd());
        let out = run_ok(
            NetNamespace::at(path)
                .command("nft")
                .args(["list", "tables"]),
            Duration::from_secs(10),
        )?;
        Ok(out
            .stdout
            .lines()
            .filter(|line| line.contains(" mxc_"))
            .map(str::to_string)
            .collect())
    }
}

/// Lets unprivileged ICMP sockets open in a namespace the test owns, so that the ICMP probes
/// really send (and the rules, not the socket call, stop them). A kubelet does the same with
/// the pod sysctl `net.ipv4.ping_group_range`.
fn allow_ping_sockets(ns: &NetNamespace) -> Result<()> {
    run_ok(
        ns.command("sh").args([
            "-c",
            "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range",
        ]),
        Duration::from_secs(10),
    )?;
    Ok(())
}

fn ctr_with_ns_gets_the_rules_in_the_given_namespace(release: ContainerdRelease) -> Result<()> {
    let containerd = Containerd::start_release(release)?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(containerd.dir());
    let node = Node::with(TEST_NETWORK_CEILING)?;

    // The container's namespace (left) and the test host (right), linked.
    let subnet = Subnet::claim()?;
    let container_ns = NetNamespace::create()?;
    let host = NetNamespace::create()?;
    let veth = Veth::connect(&container_ns, &host, &subnet, 1, 2)?;
    allow_ping_sockets(&container_ns)?;
    let servers = Servers::start(&host, veth.right_v4.into(), veth.right_v6.into())?;

    let id = unique_name("withns");
    leaks.container(&id);
    let config = node.config().display().to_string();
    let held = Held::open(container_ns.path())?;
    let with_ns = format!("network:{}", container_ns.path().display());
    let annotation = policy_annotation(&policy(veth.right_v4.into()));
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
            &annotation,
            BUSYBOX_REF,
            &id,
            "sh",
            "-c",
            "nc -l -p 7070 >/tmp/received 2>&1; sleep 600",
        ])?
        .ok()?;
    wait_status(&containerd, "default", &id, "RUNNING")?;
    ensure!(
        held.mxc_tables()?.len() == 1,
        "one table in the given namespace"
    );
    let exec = |exec_id: &str, script: &str| {
        containerd.ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            exec_id,
            &id,
            "sh",
            "-c",
            script,
        ])
    };

    // Inbound: the listener is up, and a connection from the test host never reaches it.
    poll(Duration::from_secs(20), || {
        let out = exec(&unique_name("ls"), "netstat -ltn")?;
        Ok(out.stdout.contains(":7070").then_some(()))
    })
    .context("the listener inside")?;
    let inbound = tcp_request(
        &host,
        SocketAddr::new(veth.left_v4.into(), 7070),
        "from-outside\n",
        Duration::from_secs(2),
    );
    ensure!(
        inbound.is_err(),
        "inbound reached the listener: {inbound:?}"
    );

    let out = exec(&unique_name("probe"), &servers.probes())?.ok()?;
    servers.check(&out.stdout)?;
    let received = exec(&unique_name("got"), "cat /tmp/received")?.ok()?;
    ensure!(received.stdout.is_empty(), "{received}");

    check_denials(&node, veth.right_v4.into(), veth.right_v6.into(), &[&id])?;
    node.denial("inbound", |r| {
        r["rule"] == "network.ingress.default" && r["container"] == id.as_str() && r["port"] == 7070
    })?;

    containerd
        .ctr(&["tasks", "kill", "-s", "SIGKILL", &id])?
        .ok()?;
    wait_status(&containerd, "default", &id, "STOPPED")?;
    containerd.ctr(&["tasks", "delete", &id])?.ok()?;
    containerd.ctr(&["containers", "delete", &id])?.ok()?;
    ensure!(
        held.mxc_tables()?.is_empty(),
        "the container's rules outlived it: {:?}",
        held.mxc_tables()
    );
    assert_clean(&leaks, &containerd, "default", &[])?;
    Ok(())
}

fn a_cri_pod_on_a_cni_network_gets_its_policy_in_the_pod_namespace(
    release: ContainerdRelease,
) -> Result<()> {
    let node = Node::with(TEST_NETWORK_CEILING)?;
    let containerd = Containerd::start_with(ContainerdOptions {
        release,
        pod_network: PodNetwork::Ptp,
        node_config: Some(node.config().to_path_buf()),
        ..ContainerdOptions::default()
    })?;
    let mut cri = Cri::connect(&containerd)?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(containerd.dir());

    // The test host exists before the pod; the link to it comes once the pod's namespace does.
    let subnet = Subnet::claim()?;
    let host = NetNamespace::create()?;

    let mut pod_config = cri.pod_config(&unique_name("netpod"), false)?;
    // The safe sysctl a pod sets to let its containers ping without privileges.
    pod_config
        .linux
        .get_or_insert_with(Default::default)
        .sysctls
        .insert("net.ipv4.ping_group_range".into(), "0 2147483647".into());
    pod_config.annotations.insert(
        "io.mxc.config".into(),
        policy(subnet.v4(2).into()).to_string(),
    );
    let pod = cri.run_pod_sandbox(&pod_config, MXC_HANDLER)?;
    leaks.container(&pod);
    let pod_ns = cri
        .pod_netns_path(&pod)?
        .context("the pod has a network namespace")?;
    // A second link into the pod's namespace, to the test host: the CNI's own link leads only
    // to the root namespace.
    let held = Held::open(&pod_ns)?;
    let _veth = Veth::connect(&NetNamespace::at(&pod_ns), &host, &subnet, 1, 2)?;
    let servers = Servers::start(&host, subnet.v4(2).into(), subnet.v6(2).into())?;

    let config = Cri::container_config(&pod_config, "agent", BUSYBOX_REF, &["sleep", "600"]);
    let agent = cri.create_container(&pod, &config, &pod_config)?;
    leaks.container(&agent);
    cri.start_container(&agent)?;
    let tables_with_agent = held.mxc_tables()?;

    let out = cri.exec_sync(&agent, &["sh", "-c", &servers.probes()], 60)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    servers.check(&stdout)?;
    check_denials(
        &node,
        subnet.v4(2).into(),
        subnet.v6(2).into(),
        &[&pod, &agent],
    )?;

    cri.stop_container(&agent, 0)?;
    cri.remove_container(&agent)?;
    let tables = held.mxc_tables()?;
    ensure!(
        tables.len() + 1 == tables_with_agent.len(),
        "the agent's table outlived it: {tables_with_agent:?} then {tables:?}"
    );
    cri.stop_pod_sandbox(&pod)?;
    cri.remove_pod_sandbox(&pod)?;
    assert_clean(&leaks, &containerd, CRI_NAMESPACE, &[&pod])?;
    Ok(())
}

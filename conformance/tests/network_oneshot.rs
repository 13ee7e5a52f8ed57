//! Network enforcement of `mxc run`, against test hosts in network namespaces this test
//! creates (198.18.0.0/15 and 2001:2::/48 only). The sandbox reaches them through its
//! userspace stack; every attempt the policy denies must fail and appear in the audit log.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use mxc_conformance::bins;
use mxc_conformance::command::run;
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::netns::{tcp_client, NetNamespace, TcpServer, TestHost};
use mxc_conformance::unique_name;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);
const SERVER_LIMIT: Duration = Duration::from_secs(30);

struct Outcome {
    stdout: String,
    stderr: String,
    code: Option<i32>,
    audit: Vec<Value>,
}

impl Outcome {
    fn denials(&self) -> Vec<&Value> {
        self.audit
            .iter()
            .filter(|r| r["event"] == "network.denied")
            .collect()
    }

    fn denied(&self, destination: IpAddr, port: Option<u16>, rule: &str) -> bool {
        self.denials().iter().any(|r| {
            r["destination"] == destination.to_string()
                && (port.is_none() || r["port"] == json!(port))
                && r["rule"] == rule
        })
    }
}

/// Perl is in every Debian host baseline; these one-liners are the sandbox's clients (the TCP
/// one is `netns::tcp_client`).
fn udp_client(addr: SocketAddr, tag: &str) -> String {
    format!(
        "perl -MIO::Socket::IP -e '$s = IO::Socket::IP->new(PeerHost => \"{}\", PeerPort => {}, Proto => \"udp\") or do {{ print \"{tag}=blocked\\n\"; exit }}; send($s, \"hi\", 0) or do {{ print \"{tag}=blocked\\n\"; exit }}; $r = \"\"; $v = \"\"; vec($v, fileno($s), 1) = 1; if (select($v, undef, undef, 2)) {{ recv($s, $r, 100, 0) }} print \"{tag}=\" . ($r ne \"\" ? $r : \"none\") . \"\\n\"'; ",
        addr.ip(),
        addr.port()
    )
}

/// One ICMP echo request through an unprivileged ping socket (the sandbox has no raw socket):
/// `TAG=reply`, `TAG=none`, `TAG=blocked` (the send was refused) or `TAG=nosocket`.
fn icmp_client(ip: IpAddr, tag: &str) -> String {
    let (family, protocol, echo, address) = match ip {
        IpAddr::V4(v4) => (
            "AF_INET",
            1,
            8,
            format!("pack_sockaddr_in(0, inet_aton(\"{v4}\"))"),
        ),
        IpAddr::V6(v6) => (
            "AF_INET6",
            58,
            128,
            format!("pack_sockaddr_in6(0, inet_pton(AF_INET6, \"{v6}\"))"),
        ),
    };
    format!(
        "perl -MSocket=:all -e 'socket($s, {family}, SOCK_DGRAM, {protocol}) or do {{ print \"{tag}=nosocket\\n\"; exit }}; send($s, pack(\"CCnnn\", {echo}, 0, 0, 0, 1), 0, {address}) or do {{ print \"{tag}=blocked\\n\"; exit }}; $v = \"\"; vec($v, fileno($s), 1) = 1; print \"{tag}=\" . (select($v, undef, undef, 2) ? \"reply\" : \"none\") . \"\\n\"'; "
    )
}

fn mxc_run(command: &str, network: Value) -> Result<Outcome> {
    let id = unique_name("net");
    let config = json!({
        "version": "0.8.0-alpha",
        "containerId": id,
        "process": {"commandLine": command, "timeout": 30000},
        "network": network,
    });
    let dir = mxc_conformance::scratch_dir("mxc-net-")?;
    let file = dir.path().join("config.json");
    let audit = dir.path().join("audit.jsonl");
    std::fs::write(&file, config.to_string())?;
    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id).watch_dir("/run/mxc");
    let mut cmd = Command::new(bins::mxc()?);
    cmd.arg("run").arg("--audit-log").arg(&audit).arg(&file);
    let output = run(&mut cmd, LIMIT)?;
    leaks.assert_clean()?;
    assert!(
        !Path::new("/run/mxc/ns")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "namespace files left behind"
    );
    let audit: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let code = output.code();
    Ok(Outcome {
        stdout: output.stdout,
        stderr: output.stderr,
        code,
        audit,
    })
}

fn allow(to: Value, ports: Value) -> Value {
    json!({"egress": {"default": "deny", "allow": [{"to": to, "ports": ports}]}})
}

#[test]
fn allowed_destination_is_reachable_and_everything_else_is_denied_and_logged() -> Result<()> {
    let host = TestHost::new()?;
    let other = host.other_v4()?;
    let allowed = host.tcp(host.v4(), "allowed")?;
    let other_port = host.tcp(host.v4(), "other-port")?;
    let other_host = host.tcp(other, "other-host")?;
    let v6 = host.tcp(host.v6(), "v6")?;
    let udp = host.udp(host.v4(), "udp")?;
    let command = [
        tcp_client(allowed.addr(), "allowed"),
        tcp_client(other_port.addr(), "other_port"),
        tcp_client(other_host.addr(), "other_host"),
        tcp_client(v6.addr(), "v6"),
        udp_client(udp.addr(), "udp"),
        icmp_client(host.v4(), "icmp"),
        icmp_client(host.v6(), "icmpv6"),
    ]
    .concat();
    let network = allow(
        json!([{"cidr": format!("{}/32", host.v4())}]),
        json!([{"protocol": "tcp", "port": allowed.addr().port()}]),
    );
    let blocked_port = other_port.addr().port();
    let out = mxc_run(&command, network)?;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("allowed=allowed"), "{}", out.stdout);
    for tag in ["other_port", "other_host", "v6", "udp", "icmp", "icmpv6"] {
        assert!(
            out.stdout.contains(&format!("{tag}=blocked"))
                || out.stdout.contains(&format!("{tag}=none")),
            "{tag}: {}",
            out.stdout
        );
    }
    assert_eq!(allowed.finish().len(), 1);
    assert!(
        other_port.finish().is_empty()
            && other_host.finish().is_empty()
            && v6.finish().is_empty()
            && udp.finish().is_empty()
    );
    let default = "network.egress.default";
    assert!(
        out.denied(host.v4(), Some(blocked_port), default),
        "{:#?}",
        out.audit
    );
    assert!(out.denied(other, None, default), "{:#?}", out.audit);
    assert!(
        out.denied(host.v6(), None, default),
        "v6 denial not logged: {:#?}",
        out.audit
    );
    assert!(
        out.denials()
            .iter()
            .any(|r| r["protocol"] == "udp" && r["destination"] == host.v4().to_string()),
        "udp denial not logged: {:#?}",
        out.audit
    );
    for (protocol, destination) in [("icmp", host.v4()), ("icmpv6", host.v6())] {
        assert!(
            out.denied(destination, None, default)
                && out
                    .denials()
                    .iter()
                    .any(|r| r["protocol"] == protocol
                        && r["destination"] == destination.to_string()),
            "{protocol} denial not logged: {:#?}",
            out.audit
        );
    }
    for record in out.denials() {
        assert_eq!(record["policy_sha256"].as_str().map(str::len), Some(64));
        assert!(record["time"].is_string() && record["container"].is_string());
    }
    Ok(())
}

#[test]
fn deny_rules_beat_allow_rules_and_except_is_honoured() -> Result<()> {
    let host = TestHost::new()?;
    let server = host.tcp(host.v4(), "reply")?;
    let addr = server.addr();
    let net = host.subnet.v4_net();
    let single = format!("{}/32", host.v4());

    let denied = json!({"egress": {"default": "deny",
        "allow": [{"to": [{"cidr": net}]}],
        "deny": [{"to": [{"cidr": single}]}]}});
    let out = mxc_run(&tcp_client(addr, "c"), denied)?;
    assert!(out.stdout.contains("c=blocked"), "{}", out.stdout);
    assert!(
        out.denied(host.v4(), Some(addr.port()), "network.egress.deny[0]"),
        "{:#?}",
        out.audit
    );

    let excepted = json!({"egress": {"default": "deny",
        "allow": [{"to": [{"cidr": net, "except": [single]}]}]}});
    let out = mxc_run(&tcp_client(addr, "c"), excepted)?;
    assert!(out.stdout.contains("c=blocked"), "{}", out.stdout);
    assert!(
        out.denied(host.v4(), Some(addr.port()), "network.egress.default"),
        "{:#?}",
        out.audit
    );
    assert!(
        server.finish().is_empty(),
        "a denied connection reached the server"
    );
    Ok(())
}

#[test]
fn legacy_host_lists_are_enforced_on_both_families() -> Result<()> {
    let host = TestHost::new()?;
    let v4 = host.tcp(host.v4(), "v4")?;
    let v6 = host.tcp(host.v6(), "v6")?;
    let network = json!({"defaultPolicy": "block", "enforcementMode": "firewall",
        "allowedHosts": [host.subnet.v4_net()]});
    let config_command = [tcp_client(v4.addr(), "v4"), tcp_client(v6.addr(), "v6")].concat();
    let id = unique_name("legacy");
    let config = json!({"version": "0.7.0-alpha", "containerId": id, "process": {"commandLine": config_command}, "network": network});
    let dir = mxc_conformance::scratch_dir("mxc-net-")?;
    let file = dir.path().join("c.json");
    std::fs::write(&file, config.to_string())?;
    let output = run(Command::new(bins::mxc()?).arg("run").arg(&file), LIMIT)?;
    assert!(
        output.stdout.contains("v4=v4"),
        "{}{}",
        output.stdout,
        output.stderr
    );
    assert!(
        output.stdout.contains("v6=blocked"),
        "a v4-only allow opened v6: {}",
        output.stdout
    );
    assert!(v6.finish().is_empty());
    Ok(())
}

#[test]
fn bypass_attempts_from_inside_fail() -> Result<()> {
    let host = TestHost::new()?;
    let server = host.tcp(host.v4(), "reply")?;
    let other = host.tcp(host.v4(), "other")?;
    // A service on the host's loopback: the sandbox must not reach it through the gateway.
    let loopback = TcpListener::bind("127.0.0.1:0")?;
    let loopback_port = loopback.local_addr()?.port();
    loopback.set_nonblocking(true)?;
    let command = format!(
        "ip route add 198.18.0.0/15 dev tap0 2>/dev/null; echo route=$?; \
         ip addr add 198.18.99.9/32 dev tap0 2>/dev/null; echo addr=$?; \
         nft flush ruleset 2>/dev/null; echo nft=$?; \
         perl -e 'use Socket; socket(my $s, PF_INET, SOCK_RAW, 6) ? print \"raw=0\\n\" : print \"raw=1\\n\"'; \
         {} {} {} {}",
        tcp_client(SocketAddr::new("10.0.2.2".parse()?, loopback_port), "gateway"),
        tcp_client(SocketAddr::new(host.subnet.v4(1).into(), loopback_port), "hostaddr"),
        tcp_client(other.addr(), "other"),
        udp_client(SocketAddr::new(host.v4(), 53), "dns"),
    );
    let network = allow(
        json!([{"cidr": format!("{}/32", host.v4())}]),
        json!([{"protocol": "tcp", "port": server.addr().port()}]),
    );
    let out = mxc_run(&command, network)?;
    for op in ["route", "addr", "nft", "raw"] {
        assert!(
            out.stdout.contains(&format!("{op}=")) && !out.stdout.contains(&format!("{op}=0")),
            "{op}: {}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("dns=blocked"), "{}", out.stdout);
    for tag in ["gateway", "hostaddr", "other"] {
        assert!(
            out.stdout.contains(&format!("{tag}=blocked")),
            "{tag}: {}",
            out.stdout
        );
    }
    assert!(loopback.accept().is_err(), "host loopback was reached");
    assert!(other.finish().is_empty());
    assert!(
        out.denials()
            .iter()
            .any(|r| r["rule"] == "network.ingress.hostLoopback"),
        "{:#?}",
        out.audit
    );
    assert!(
        out.denials()
            .iter()
            .any(|r| r["protocol"] == "udp" && r["port"] == 53),
        "DNS to an unlisted resolver was not denied: {:#?}",
        out.audit
    );
    server.finish();
    Ok(())
}

#[test]
fn a_listener_inside_is_not_reachable_from_outside() -> Result<()> {
    let host = TestHost::new()?;
    // The sandbox listens on every address; the test host tries the sandbox's address.
    let command = "perl -MIO::Socket::IP -e '$l = IO::Socket::IP->new(LocalPort => 7777, Listen => 5, ReuseAddr => 1) or die; print \"listening\\n\"; $v = \"\"; vec($v, fileno($l), 1) = 1; print select($v, undef, undef, 3) ? \"accepted\\n\" : \"nobody\\n\"' & sleep 1; wait";
    let network = json!({"egress": {"default": "allow"}});
    let probe = std::thread::spawn({
        let ns = NetNamespace::at(host.ns.path());
        move || {
            std::thread::sleep(Duration::from_millis(1500));
            for target in ["10.0.2.100:7777", "198.18.0.1:7777"] {
                let _ = ns.enter(move || {
                    std::net::TcpStream::connect_timeout(
                        &target.parse().unwrap(),
                        Duration::from_millis(500),
                    )
                });
            }
        }
    });
    let out = mxc_run(command, network)?;
    probe.join().ok();
    assert!(
        out.stdout.contains("listening") && out.stdout.contains("nobody"),
        "{}",
        out.stdout
    );
    Ok(())
}

#[test]
fn proxy_only_reaches_the_proxy_and_nothing_else() -> Result<()> {
    let host = TestHost::new()?;
    let direct = host.tcp(host.v4(), "direct")?;
    // The proxy: a server on the host's loopback, reached through the relay inside the sandbox.
    let proxy = TcpServer::start(
        &NetNamespace::at("/proc/self/ns/net"),
        "127.0.0.1:0".parse()?,
        "proxy",
        4,
        SERVER_LIMIT,
    )?;
    let port = proxy.addr().port();
    let command = format!(
        "env | grep -i _proxy | sort; {} {}",
        tcp_client(SocketAddr::new("127.0.0.1".parse()?, port), "via_proxy"),
        tcp_client(direct.addr(), "direct")
    );
    let network = json!({"egress": {"default": "deny"}});
    let id = unique_name("proxy");
    let config = json!({"version": "0.8.0-alpha", "containerId": id,
        "process": {"commandLine": command, "env": ["HTTP_PROXY=http://evil:1", "no_proxy=*"]},
        "runtimeConfig": {"networkProxy": format!("http://127.0.0.1:{port}")},
        "network": network});
    let dir = mxc_conformance::scratch_dir("mxc-net-")?;
    let file = dir.path().join("c.json");
    std::fs::write(&file, config.to_string())?;
    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id).watch_dir("/run/mxc");
    let output = run(Command::new(bins::mxc()?).arg("run").arg(&file), LIMIT)?;
    leaks.assert_clean()?;
    let url = format!("http://127.0.0.1:{port}");
    for key in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "FTP_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "ftp_proxy",
    ] {
        assert!(
            output.stdout.contains(&format!("{key}={url}\n")),
            "{key}: {}",
            output.stdout
        );
    }
    assert!(
        !output.stdout.contains("evil") && !output.stdout.contains("no_proxy"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("via_proxy=proxy"),
        "{}{}",
        output.stdout,
        output.stderr
    );
    assert!(
        output.stdout.contains("direct=blocked"),
        "{}",
        output.stdout
    );
    assert_eq!(proxy.finish().len(), 1);
    assert!(direct.finish().is_empty());
    Ok(())
}

#[test]
fn nothing_of_the_network_set_up_outlives_the_run() -> Result<()> {
    let host = TestHost::new()?;
    let server = host.tcp(host.v4(), "x")?;
    let network = allow(
        json!([{"cidr": host.subnet.v4_net()}]),
        json!([{"protocol": "tcp"}]),
    );
    let out = mxc_run(
        &format!("{} sleep 1", tcp_client(server.addr(), "c")),
        network,
    )?;
    assert!(out.stdout.contains("c=x"), "{}", out.stdout);
    server.finish();
    Ok(())
}

#[test]
fn the_userspace_stack_leaves_the_hosts_mounts_alone() -> Result<()> {
    // The host's shared mounts (here the bind mount behind an `ip netns` name, as CNI and
    // Docker keep them) must survive a sandbox whose userspace stack sandboxes itself.
    // (Other tests' mounts come and go meanwhile; only this test's own one is checked.)
    let ns = NetNamespace::create()?;
    let mounted = || mxc_conformance::leaks::mount_points().contains(&ns.path().to_path_buf());
    assert!(mounted());
    let out = mxc_run("true", json!({"egress": {"default": "allow"}}))?;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(mounted(), "{} was detached", ns.path().display());
    ns.ip(&["link", "show", "lo"])?;
    Ok(())
}

//! The egress test world: a network namespace on 198.18.0.0/15, linked to the host's own, with
//! an authoritative DNS server of its own (dnsmasq, no service, every query logged), HTTP and
//! TLS servers with a self-signed certificate for several names on one address (as a CDN has),
//! a server-first plain TCP service and a UDP listener (`egress_world.py`). Records can change
//! while it runs. Everything stops and is removed on drop.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::command::run_ok;
use crate::netns::{NetNamespace, Subnet, Veth};

/// A link from a namespace the test does not own (a container's, a pod's) straight to the
/// world, with routes to the world's addresses over it: what an engine's network would give a
/// container. Removed on drop (the link first, then its subnet claim).
pub struct WorldLink {
    _veth: Veth,
    _subnet: Subnet,
}

pub const HTTP_PORT: u16 = 8080;
pub const HTTPS_PORT: u16 = 8443;
/// The server-first service (an ssh-like banner, then an echo).
pub const BANNER_PORT: u16 = 2222;
/// Where the UDP listener waits (QUIC's port).
pub const UDP_PORT: u16 = 443;

/// Names served from the world's main address.
pub const NAMES: &[&str] = &[
    "api.allowed.test",
    "www.allowed.test",
    "git.allowed.test",
    "moving.allowed.test",
    "other.test",
    "wild.test",
    "a.b.wild.test",
    "apex.test",
    "x.apex.test",
];

const SERVER: &str = include_str!("egress_world.py");
/// How long the world's servers live at most.
const LIMIT: Duration = Duration::from_secs(240);

pub struct EgressWorld {
    // Drop order: servers, then the link and namespace, then the subnet claim.
    servers: Child,
    dns: Child,
    dir: TempDir,
    _veth: Veth,
    pub ns: NetNamespace,
    pub subnet: Subnet,
}

impl EgressWorld {
    pub fn start() -> Result<EgressWorld> {
        let (subnet, ns, veth) = crate::netns::linked_to_root()?;
        // A second address for records that move.
        ns.ip(&["addr", "add", &format!("{}/32", subnet.v4(3)), "dev", "lo"])?;
        let dir = crate::scratch_dir("mxc-egress-world")?;
        std::fs::create_dir(dir.path().join("hosts"))?;
        let world = WorldFiles { dir: dir.path() };
        let mut records = format!("{} {}\n", subnet.v4(2), NAMES.join(" "));
        records.push_str(&format!("{} api.allowed.test\n", subnet.v6(2)));
        // The host's own end of the link: a name pointing there leads to the host.
        records.push_str(&format!("{} hostlocal.allowed.test\n", subnet.v4(1)));
        std::fs::write(world.hosts().join("world"), records)?;
        run_ok(
            Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=allowed.test",
                    "-addext",
                    "subjectAltName=DNS:api.allowed.test,DNS:other.test,DNS:*.wild.test",
                ])
                .arg("-keyout")
                .arg(world.key())
                .arg("-out")
                .arg(world.cert()),
            Duration::from_secs(30),
        )?;
        let listen = subnet.v4(2).to_string();
        let dns = ns
            .command("dnsmasq")
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--local=/test/",
                "--bind-interfaces",
                "--user=root",
                "--log-queries",
            ])
            .arg(format!("--listen-address={listen}"))
            .arg(format!("--hostsdir={}", world.hosts().display()))
            .arg(format!("--log-facility={}", world.dns_log().display()))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("dnsmasq.pid").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting dnsmasq (package dnsmasq-base)")?;
        let script = dir.path().join("world.py");
        std::fs::write(&script, SERVER)?;
        let mut servers = ns
            .command("python3")
            .arg(&script)
            .args([
                "--http",
                &HTTP_PORT.to_string(),
                "--https",
                &HTTPS_PORT.to_string(),
            ])
            .args([
                "--banner",
                &BANNER_PORT.to_string(),
                "--udp",
                &UDP_PORT.to_string(),
            ])
            .arg("--udp-log")
            .arg(world.udp_log())
            .arg("--cert")
            .arg(world.cert())
            .arg("--key")
            .arg(world.key())
            .args(["--limit", &LIMIT.as_secs().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the world's servers")?;
        let mut line = String::new();
        if let Some(stdout) = servers.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let world = EgressWorld {
            servers,
            dns,
            dir,
            _veth: veth,
            ns,
            subnet,
        };
        if line.trim() != "ready" {
            bail!("the world's servers did not start");
        }
        world.wait_for(|log| log.contains("read ") && log.contains("world"))?;
        Ok(world)
    }

    fn files(&self) -> WorldFiles<'_> {
        WorldFiles {
            dir: self.dir.path(),
        }
    }

    /// The address every name in [`NAMES`] is served from.
    pub fn address(&self) -> Ipv4Addr {
        self.subnet.v4(2)
    }

    pub fn address_v6(&self) -> Ipv6Addr {
        self.subnet.v6(2)
    }

    /// The world's second address (same servers).
    pub fn second_address(&self) -> Ipv4Addr {
        self.subnet.v4(3)
    }

    /// The DNS server, for `--resolver`.
    pub fn resolver(&self) -> String {
        format!("{}:53", self.address())
    }

    /// Links the namespace `ns` to the world by a veth pair of its own, with routes from `ns`
    /// to the world's addresses over it (IPv4, and IPv6 unless `ns` has it switched off).
    pub fn link(&self, ns: &NetNamespace) -> Result<WorldLink> {
        let subnet = Subnet::claim()?;
        let veth = Veth::connect(ns, &self.ns, &subnet, 1, 2)?;
        ns.ip(&[
            "route",
            "add",
            &self.subnet.v4_net(),
            "via",
            &subnet.v4(2).to_string(),
        ])?;
        if ns.has_ipv6() {
            ns.ip(&[
                "-6",
                "route",
                "add",
                &self.subnet.v6_net(),
                "via",
                &subnet.v6(2).to_string(),
            ])?;
        }
        Ok(WorldLink {
            _veth: veth,
            _subnet: subnet,
        })
    }

    /// Points `name` at `address` (dnsmasq rereads its hosts directory on change) and waits
    /// until the server has read it.
    pub fn set_record(&self, name: &str, address: Ipv4Addr) -> Result<()> {
        let file = format!("moved-{}", name.replace('.', "-"));
        let before = self.dns_log().matches(&file).count();
        std::fs::write(
            self.files().hosts().join(&file),
            format!("{address} {name}\n"),
        )?;
        self.wait_for(|log| log.matches(&file).count() > before)
    }

    /// What dnsmasq logged: every query that reached it.
    pub fn dns_log(&self) -> String {
        std::fs::read_to_string(self.files().dns_log()).unwrap_or_default()
    }

    /// The datagrams that reached the world's UDP listener.
    pub fn udp_log(&self) -> String {
        std::fs::read_to_string(self.files().udp_log()).unwrap_or_default()
    }

    fn wait_for(&self, ready: impl Fn(&str) -> bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ready(&self.dns_log()) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("dnsmasq did not pick up its records:\n{}", self.dns_log())
    }
}

impl Drop for EgressWorld {
    fn drop(&mut self) {
        for child in [&mut self.servers, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct WorldFiles<'a> {
    dir: &'a Path,
}

impl WorldFiles<'_> {
    fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    fn dns_log(&self) -> PathBuf {
        self.dir.join("dns.log")
    }
    fn udp_log(&self) -> PathBuf {
        self.dir.join("udp.log")
    }
    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

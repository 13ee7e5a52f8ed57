//! The filtering proxy: connections captured transparently (their original destination is a
//! pool address, standing for a name, or a bare address), and connections from tools that
//! honour the proxy variables (HTTP CONNECT, plain HTTP forwarding, SOCKS5, told apart by their
//! first byte). Each is decided, dialled from the proxy's side, and relayed; on connections tied
//! to a name, the TLS ClientHello and every HTTP/1 request head are checked on the way.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use mxc_translate::hosts::normalize_name;

use super::inspect::{self, Body, ChunkedBody, Head, Opening};
use super::upstream::{self, LookupError};
use super::{Denial, Egress};

/// How long a client has to say what it wants (proxy requests, the bytes that tell a refused
/// connection's protocol).
const CLIENT_PATIENCE: Duration = Duration::from_secs(10);
/// How long to wait for a refused transparent client's first bytes, to answer in its protocol.
const REFUSAL_PEEK: Duration = Duration::from_millis(1500);
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
const BUFFER: usize = 128 * 1024;

/// What a connection asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Name(String, u16),
    Address(SocketAddr),
}

/// A refused or failed connection, with what to tell the client.
#[derive(Debug)]
struct Refusal {
    /// `None`: not a policy decision (the name does not resolve, the server is down).
    denial: Option<Box<Denial>>,
    message: String,
    status: u16,
    socks: u8,
}

impl Refusal {
    fn denied(denial: Denial) -> Refusal {
        Refusal {
            message: denial.reason.clone(),
            denial: Some(Box::new(denial)),
            status: 403,
            socks: 0x02,
        }
    }

    fn failed(message: String, socks: u8) -> Refusal {
        Refusal {
            denial: None,
            message,
            status: 502,
            socks,
        }
    }
}

/// Accepts captured connections until the listener is shut down.
pub fn serve_transparent(egress: Arc<Egress>, listener: TcpListener) {
    accept_loop(egress, listener, transparent);
}

/// Accepts proxy-protocol connections (HTTP CONNECT, HTTP forwarding, SOCKS5).
pub fn serve_proxy(egress: Arc<Egress>, listener: TcpListener) {
    accept_loop(egress, listener, proxied);
}

fn accept_loop(egress: Arc<Egress>, listener: TcpListener, handle: fn(&Egress, TcpStream)) {
    for stream in listener.incoming() {
        if egress.stopping() {
            return;
        }
        let Ok(stream) = stream else {
            continue;
        };
        // Replies are relayed in the pieces they arrive in: without this, each piece after
        // the first waits for the client's (delayed) acknowledgement of the one before.
        let _ = stream.set_nodelay(true);
        let egress = Arc::clone(&egress);
        std::thread::spawn(move || handle(&egress, stream));
    }
}

/// The destination a redirected connection was addressed to (`SO_ORIGINAL_DST`).
pub fn original_destination(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    let fd = stream.as_raw_fd();
    let local = stream.local_addr()?;
    // SAFETY: getsockopt into a correctly sized, zeroed sockaddr_storage.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut length = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let (level, option) = if local.is_ipv4() {
            (libc::SOL_IP, libc::SO_ORIGINAL_DST)
        } else {
            (libc::SOL_IPV6, libc::IP6T_SO_ORIGINAL_DST)
        };
        if libc::getsockopt(
            fd,
            level,
            option,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut length,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        match i32::from(storage.ss_family) {
            libc::AF_INET => {
                let sin = &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                Ok(SocketAddr::new(
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))),
                    u16::from_be(sin.sin_port),
                ))
            }
            libc::AF_INET6 => {
                let sin6 =
                    &*(&storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                Ok(SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)),
                    u16::from_be(sin6.sin6_port),
                ))
            }
            _ => Err(std::io::Error::other("no original destination")),
        }
    }
}

fn transparent(egress: &Egress, mut client: TcpStream) {
    let Ok(destination) = original_destination(&client) else {
        return;
    };
    let target = if super::AddressBook::in_pool(destination.ip()) {
        match egress.book.name(destination.ip()) {
            Some(name) => Target::Name(name, destination.port()),
            None => {
                let refusal = Refusal::denied(Denial {
                    via: "transparent",
                    address: Some(destination.ip()),
                    port: Some(destination.port()),
                    reason: "an address the sandbox's resolver never handed out".into(),
                    rule: String::new(),
                    ..Denial::default()
                });
                refuse_transparent(egress, &mut client, refusal);
                return;
            }
        }
    } else {
        Target::Address(destination)
    };
    match open(egress, &target, "transparent") {
        Ok(upstream) => relay(egress, client, upstream, &target, "transparent", Vec::new()),
        Err(refusal) => refuse_transparent(egress, &mut client, refusal),
    }
}

/// Answers a refused transparent client in its own protocol, if it speaks first in time.
fn refuse_transparent(egress: &Egress, client: &mut TcpStream, refusal: Refusal) {
    if let Some(denial) = refusal.denial.clone() {
        egress.deny(*denial);
    }
    let _ = client.set_read_timeout(Some(REFUSAL_PEEK));
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        match client.read(&mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        match inspect::opening(&buf[..len]) {
            Opening::Incomplete if len < buf.len() => continue,
            Opening::Http => {
                let _ = client.write_all(&http_refusal(refusal.status, &refusal.message));
                break;
            }
            Opening::Tls { .. } | Opening::BadTls => {
                let _ = client.write_all(&inspect::tls_alert(inspect::ALERT_ACCESS_DENIED));
                break;
            }
            _ => break,
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// A complete HTTP response refusing a request, with the reason in a header and the body.
pub fn http_refusal(status: u16, reason: &str) -> Vec<u8> {
    let phrase = if status == 403 {
        "Forbidden"
    } else {
        "Bad Gateway"
    };
    let clean: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let body = format!("mxc egress: {clean}\n");
    format!(
        "HTTP/1.1 {status} {phrase}\r\nX-Mxc-Denied: {clean}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Decides `target` and dials it.
fn open(egress: &Egress, target: &Target, via: &'static str) -> Result<TcpStream, Refusal> {
    let (candidates, port) = match target {
        Target::Name(name, port) => {
            let verdict = egress.decide_name(name, Some(*port));
            if !verdict.allowed() {
                return Err(Refusal::denied(Denial {
                    via,
                    name: Some(name.clone()),
                    port: Some(*port),
                    reason: "name not allowed".into(),
                    rule: verdict.rule().to_string(),
                    ..Denial::default()
                }));
            }
            let real =
                upstream::lookup(&egress.resolver, &egress.outbound, name).map_err(|error| {
                    let socks = match error {
                        LookupError::NoSuchName => 0x04,
                        LookupError::Failed(_) => 0x01,
                    };
                    Refusal::failed(format!("{name}: {error}"), socks)
                })?;
            let dialable = egress.dialable(&real, *port).map_err(|(reason, rule)| {
                Refusal::denied(Denial {
                    via,
                    name: Some(name.clone()),
                    port: Some(*port),
                    reason,
                    rule,
                    ..Denial::default()
                })
            })?;
            (dialable, *port)
        }
        Target::Address(address) => {
            let verdict = egress.decide_address(address.ip(), address.port());
            let local = egress.is_local(address.ip()) && !(verdict.explicit && verdict.allow);
            if !verdict.allow || local {
                let reason = if local && verdict.allow {
                    "a host-local or private address that no CIDR rule allows"
                } else {
                    "a bare address that no CIDR rule allows"
                };
                return Err(Refusal::denied(Denial {
                    via,
                    address: Some(address.ip()),
                    port: Some(address.port()),
                    reason: reason.into(),
                    rule: if local && verdict.allow {
                        "network.egress (names never lead to local addresses)".into()
                    } else {
                        verdict.rule
                    },
                    ..Denial::default()
                }));
            }
            (vec![address.ip()], address.port())
        }
    };
    let mut last = String::new();
    for address in candidates {
        match dial(
            SocketAddr::new(address, port),
            egress.outbound.mark(),
            DIAL_TIMEOUT,
        ) {
            Ok(stream) => return Ok(stream),
            Err(error) => last = format!("{address}:{port}: {error}"),
        }
    }
    Err(Refusal::failed(format!("connecting failed: {last}"), 0x05))
}

/// Connects to `address` within `timeout`, marking the socket first when asked.
pub fn dial(
    address: SocketAddr,
    mark: Option<u32>,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let Some(mark) = mark else {
        let stream = TcpStream::connect_timeout(&address, timeout)?;
        let _ = stream.set_nodelay(true);
        return Ok(stream);
    };
    let family = if address.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: a fresh socket whose ownership passes to OwnedFd.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is ours.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    upstream::set_mark(&owned, Some(mark))?;
    let stream = TcpStream::from(owned);
    // std has no connect on an existing socket: connect by hand, bounded by a poll.
    stream.set_nonblocking(true)?;
    let (storage, length) = sockaddr(address);
    // SAFETY: connecting our socket to a correctly sized address.
    let rc = unsafe {
        libc::connect(
            fd,
            (&storage as *const libc::sockaddr_storage).cast(),
            length,
        )
    };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(error);
        }
        let mut fds = [libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        }];
        // SAFETY: polling one descriptor we own.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as i32) };
        if ready <= 0 {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "connection timed out",
            ));
        }
        if let Some(error) = stream.take_error()? {
            return Err(error);
        }
    }
    stream.set_nonblocking(false)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn sockaddr(address: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; the casts write within it.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        match address {
            SocketAddr::V4(v4) => {
                let sin =
                    &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                sin.sin_family = libc::AF_INET as u16;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
                (storage, std::mem::size_of::<libc::sockaddr_in>() as u32)
            }
            SocketAddr::V6(v6) => {
                let sin6 = &mut *(&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>();
                sin6.sin6_family = libc::AF_INET6 as u16;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                (storage, std::mem::size_of::<libc::sockaddr_in6>() as u32)
            }
        }
    }
}

/// A CONNECT target, SOCKS name or URL authority as a [`Target`].
fn target_of(host: &str, port: u16) -> Result<Target, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Target::Address(SocketAddr::new(ip, port)));
    }
    normalize_name(host).map(|name| Target::Name(name, port))
}

fn proxied(egress: &Egress, mut client: TcpStream) {
    let _ = client.set_read_timeout(Some(CLIENT_PATIENCE));
    let mut first = [0u8; 1];
    if client.peek(&mut first).unwrap_or(0) == 0 {
        return;
    }
    if first[0] == 5 {
        socks(egress, client);
        return;
    }
    let mut buf = Vec::new();
    let head = loop {
        match inspect::request_head(&buf) {
            Head::Complete(head) => break head,
            Head::Invalid(why) => {
                let _ = client.write_all(&http_refusal(400, why));
                return;
            }
            Head::Incomplete => {
                if !read_more(&mut client, &mut buf) {
                    return;
                }
            }
        }
    };
    let connect = head.method.eq_ignore_ascii_case("CONNECT");
    let (host, port) = if connect {
        let (host, port) = inspect::authority_host(&head.target);
        (host, port)
    } else if let Some(rest) = head.target.strip_prefix("http://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) = inspect::authority_host(authority);
        (host, Some(port.unwrap_or(80)))
    } else {
        let _ = client.write_all(&http_refusal(
            400,
            "send CONNECT host:port, or an absolute http:// URL",
        ));
        return;
    };
    let via = if connect { "connect" } else { "http" };
    let Some(port) = port else {
        let _ = client.write_all(&http_refusal(400, "the CONNECT target needs a port"));
        return;
    };
    let target = match target_of(&host, port) {
        Ok(target) => target,
        Err(reason) => {
            let _ = client.write_all(&http_refusal(400, &reason));
            return;
        }
    };
    let _ = client.set_read_timeout(None);
    match open(egress, &target, via) {
        Ok(upstream) => {
            if connect {
                let rest = buf.split_off(head.length);
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                relay(egress, client, upstream, &target, via, rest);
            } else {
                // The request itself goes through the same checks as every later one.
                relay(egress, client, upstream, &target, via, buf);
            }
        }
        Err(refusal) => {
            if let Some(denial) = refusal.denial.clone() {
                egress.deny(*denial);
            }
            let _ = client.write_all(&http_refusal(refusal.status, &refusal.message));
        }
    }
}

fn socks(egress: &Egress, mut client: TcpStream) {
    let mut greeting = [0u8; 2];
    if client.read_exact(&mut greeting).is_err() {
        return;
    }
    let mut methods = vec![0u8; greeting[1] as usize];
    if client.read_exact(&mut methods).is_err() {
        return;
    }
    if !methods.contains(&0) {
        let _ = client.write_all(&[5, 0xff]);
        return;
    }
    if client.write_all(&[5, 0]).is_err() {
        return;
    }
    let mut request = [0u8; 4];
    if client.read_exact(&mut request).is_err() || request[0] != 5 {
        return;
    }
    let reply = |client: &mut TcpStream, code: u8| {
        let _ = client.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]);
    };
    let host = match request[3] {
        1 => {
            let mut a = [0u8; 4];
            if client.read_exact(&mut a).is_err() {
                return;
            }
            Ipv4Addr::from(a).to_string()
        }
        4 => {
            let mut a = [0u8; 16];
            if client.read_exact(&mut a).is_err() {
                return;
            }
            Ipv6Addr::from(a).to_string()
        }
        3 => {
            let mut length = [0u8; 1];
            if client.read_exact(&mut length).is_err() {
                return;
            }
            let mut name = vec![0u8; length[0] as usize];
            if client.read_exact(&mut name).is_err() {
                return;
            }
            String::from_utf8_lossy(&name).into_owned()
        }
        _ => {
            reply(&mut client, 0x08);
            return;
        }
    };
    let mut port = [0u8; 2];
    if client.read_exact(&mut port).is_err() {
        return;
    }
    if request[1] != 1 {
        // Only CONNECT: UDP ASSOCIATE would carry UDP, which does not leave the sandbox.
        reply(&mut client, 0x07);
        return;
    }
    let target = match target_of(&host, u16::from_be_bytes(port)) {
        Ok(target) => target,
        Err(_) => {
            reply(&mut client, 0x04);
            return;
        }
    };
    let _ = client.set_read_timeout(None);
    match open(egress, &target, "socks") {
        Ok(upstream) => {
            reply(&mut client, 0);
            relay(egress, client, upstream, &target, "socks", Vec::new());
        }
        Err(refusal) => {
            if let Some(denial) = refusal.denial {
                egress.deny(*denial);
            }
            reply(&mut client, refusal.socks);
        }
    }
}

/// Reads once more into `buf`; false at end of stream, on error, or past the head limit.
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    if buf.len() > inspect::MAX_HEAD + inspect::MAX_HELLO {
        return false;
    }
    let mut chunk = [0u8; 16384];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Relays `client` <-> `upstream`; `pending` holds bytes already read from the client. On a
/// connection tied to a name, the client's side is checked as it goes.
fn relay(
    egress: &Egress,
    client: TcpStream,
    upstream: TcpStream,
    target: &Target,
    via: &'static str,
    pending: Vec<u8>,
) {
    let (Ok(client_back), Ok(upstream_back)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || copy(upstream_back, client_back));
    let name = match target {
        Target::Name(name, port) => Some((name.as_str(), *port)),
        Target::Address(_) => None,
    };
    let outcome = forward(egress, &client, &upstream, name, target, via, pending);
    match outcome {
        Forwarded::Done => {
            let _ = upstream.shutdown(Shutdown::Write);
        }
        Forwarded::Refused => {
            let _ = upstream.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
        }
    }
    let _ = back.join();
}

enum Forwarded {
    Done,
    Refused,
}

/// Copies everything from `from` to `to`, then half-closes `to`.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    copy_rest(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// The client-to-server direction: checks on a named connection, then a plain copy.
fn forward(
    egress: &Egress,
    client: &TcpStream,
    upstream: &TcpStream,
    name: Option<(&str, u16)>,
    target: &Target,
    via: &'static str,
    mut buf: Vec<u8>,
) -> Forwarded {
    let (Ok(mut reader), Ok(mut writer)) = (client.try_clone(), upstream.try_clone()) else {
        return Forwarded::Refused;
    };
    let denial = |reason: &str, sni: Option<String>, host: Option<String>| Denial {
        via,
        name: name.map(|(n, _)| n.to_string()),
        sni,
        host,
        address: match target {
            Target::Address(a) => Some(a.ip()),
            Target::Name(..) => None,
        },
        port: Some(match target {
            Target::Address(a) => a.port(),
            Target::Name(_, p) => *p,
        }),
        reason: reason.into(),
        rule: "network.egress (names must match the connection's name)".into(),
    };
    loop {
        let opening = inspect::opening(&buf);
        match opening {
            Opening::Incomplete => {
                if !read_more(&mut reader, &mut buf) {
                    let _ = writer.write_all(&buf);
                    return Forwarded::Done;
                }
            }
            Opening::Tls { sni, ech } => {
                let mut alert = |reason: &str, sni: Option<String>, code| {
                    egress.deny(denial(reason, sni, None));
                    let _ = reader.write_all(&inspect::tls_alert(code));
                    Forwarded::Refused
                };
                if ech {
                    return alert(
                        "Encrypted Client Hello refused (its inner server name cannot be checked)",
                        sni,
                        inspect::ALERT_ACCESS_DENIED,
                    );
                }
                if let Some((expected, _)) = name {
                    match sni.as_deref().map(normalize_name) {
                        None => {
                            return alert(
                                "TLS without a server name",
                                None,
                                inspect::ALERT_UNRECOGNIZED_NAME,
                            )
                        }
                        Some(Ok(asked)) if asked == expected => {}
                        Some(_) => {
                            return alert(
                                "TLS server name differs from the name connected to",
                                sni,
                                inspect::ALERT_UNRECOGNIZED_NAME,
                            )
                        }
                    }
                }
                if writer.write_all(&buf).is_err() {
                    return Forwarded::Refused;
                }
                copy_rest(&mut reader, &mut writer);
                return Forwarded::Done;
            }
            Opening::Http if name.is_some() => {
                let (expected, _) = name.unwrap_or_default();
                return http_requests(egress, reader, writer, expected, via, buf, &denial);
            }
            Opening::Http2Cleartext | Opening::BadTls if name.is_some() => {
                egress.deny(denial(
                    if matches!(opening, Opening::BadTls) {
                        "a malformed TLS ClientHello"
                    } else {
                        "cleartext HTTP/2, whose authorities cannot be checked"
                    },
                    None,
                    None,
                ));
                return Forwarded::Refused;
            }
            _ => {
                if writer.write_all(&buf).is_err() {
                    return Forwarded::Refused;
                }
                copy_rest(&mut reader, &mut writer);
                return Forwarded::Done;
            }
        }
    }
}

/// Copies everything from `from` to `to` until either side ends.
fn copy_rest(from: &mut TcpStream, to: &mut TcpStream) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// Builds the audit record of a refusal on a connection: reason, SNI, Host.
type DenialOf<'a> = dyn Fn(&str, Option<String>, Option<String>) -> Denial + 'a;

/// Forwards HTTP/1 requests one by one, each head checked: exactly one `Host`, naming the
/// connection's name (and so the absolute URL of a forwarded request).
fn http_requests(
    egress: &Egress,
    mut reader: TcpStream,
    mut writer: TcpStream,
    expected: &str,
    via: &'static str,
    mut buf: Vec<u8>,
    denial: &DenialOf<'_>,
) -> Forwarded {
    let refuse = |reader: &mut TcpStream, reason: &str, host: Option<String>| {
        egress.deny(denial(reason, None, host));
        let _ = reader.write_all(&http_refusal(403, reason));
        Forwarded::Refused
    };
    loop {
        let head = match inspect::request_head(&buf) {
            Head::Incomplete => {
                if !read_more(&mut reader, &mut buf) {
                    let _ = writer.write_all(&buf);
                    return Forwarded::Done;
                }
                continue;
            }
            Head::Invalid(why) => return refuse(&mut reader, why, None),
            Head::Complete(head) => head,
        };
        let [host] = head.hosts.as_slice() else {
            return refuse(&mut reader, "a request needs exactly one Host header", None);
        };
        let (host_name, _) = inspect::authority_host(host);
        if normalize_name(&host_name).ok().as_deref() != Some(expected) {
            return refuse(
                &mut reader,
                "HTTP Host differs from the name connected to",
                Some(host.clone()),
            );
        }
        if let Some(rest) = head.target.strip_prefix("http://") {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let (url_host, _) = inspect::authority_host(authority);
            if normalize_name(&url_host).ok().as_deref() != Some(expected) {
                if via == "http" {
                    // A forwarding client reusing its proxy connection for another origin:
                    // close, and it connects again (that connection is decided on its own).
                    return Forwarded::Refused;
                }
                return refuse(
                    &mut reader,
                    "the request URL names another host than the one connected to",
                    Some(host.clone()),
                );
            }
        }
        let rest = buf.split_off(head.length);
        if writer.write_all(&buf).is_err() {
            return Forwarded::Refused;
        }
        buf = rest;
        if head.upgrade {
            // The stream stops being HTTP/1 (WebSocket, a tunnel) once the server agrees.
            if writer.write_all(&buf).is_err() {
                return Forwarded::Refused;
            }
            copy_rest(&mut reader, &mut writer);
            return Forwarded::Done;
        }
        match head.body {
            Body::None => {}
            Body::Length(mut left) => loop {
                let n = (left.min(buf.len() as u64)) as usize;
                if writer.write_all(&buf[..n]).is_err() {
                    return Forwarded::Refused;
                }
                buf.drain(..n);
                left -= n as u64;
                if left == 0 {
                    break;
                }
                if !read_body(&mut reader, &mut buf) {
                    return Forwarded::Done;
                }
            },
            Body::Chunked => {
                let mut walker = ChunkedBody::default();
                loop {
                    let (used, done) = match walker.feed(&buf) {
                        Ok(fed) => fed,
                        Err(why) => return refuse(&mut reader, why, None),
                    };
                    if writer.write_all(&buf[..used]).is_err() {
                        return Forwarded::Refused;
                    }
                    buf.drain(..used);
                    if done {
                        break;
                    }
                    if !read_body(&mut reader, &mut buf) {
                        return Forwarded::Done;
                    }
                }
            }
        }
    }
}

fn read_body(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = vec![0u8; BUFFER];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::inspect::tests::{hello, sni};
    use crate::egress::tests::egress;
    use std::net::TcpListener;

    /// An upstream server on loopback that records what it received and answers `reply`.
    fn server(reply: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_millis(500)))
                            .unwrap();
                        let mut got = Vec::new();
                        let mut buf = [0u8; 65536];
                        while let Ok(n) = stream.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            got.extend_from_slice(&buf[..n]);
                        }
                        let _ = stream.write_all(reply);
                        return got;
                    }
                    Err(_) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => return Vec::new(),
                }
            }
        });
        (addr, handle)
    }

    /// Runs `client` against a proxy port serving `egress`, returning what it read back.
    fn through_proxy(egress: Egress, send: Vec<u8>) -> (Vec<u8>, Arc<Egress>) {
        let egress = Arc::new(egress);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = Arc::clone(&egress);
        std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                proxied(&serving, stream);
            }
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.write_all(&send).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let _ = client.read_to_end(&mut got);
        (got, egress)
    }

    fn allow_loopback(egress: &mut Egress) {
        egress.allow.push(mxc_translate::network::Rule {
            path: "network.egress.allow[0]".into(),
            to: vec![mxc_translate::network::Peer {
                cidr: "127.0.0.0/8".parse().unwrap(),
                except: Vec::new(),
            }],
            ports: Vec::new(),
        });
    }

    #[test]
    fn connect_to_an_allowed_name_checks_the_server_name() {
        let (upstream, received) = server(b"pong");
        let (mut egress, audit) = egress(&["api.example.test"], &[], false);
        allow_loopback(&mut egress);
        let mut request = format!(
            "CONNECT api.example.test:{} HTTP/1.1\r\nHost: x\r\n\r\n",
            upstream.port()
        )
        .into_bytes();
        request.extend(hello(&[sni("api.example.test")]));
        let (reply, _) = through_proxy(egress, request);
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("pong"), "{reply}");
        let got = received.join().unwrap();
        assert_eq!(got[0], 0x16, "the ClientHello reached the server");
        assert!(audit.records().is_empty());
    }

    #[test]
    fn a_different_server_name_gets_an_alert_and_an_audit_line() {
        let (upstream, received) = server(b"pong");
        let (mut egress, audit) = egress(&["api.example.test"], &[], false);
        allow_loopback(&mut egress);
        let mut request = format!(
            "CONNECT api.example.test:{} HTTP/1.1\r\n\r\n",
            upstream.port()
        )
        .into_bytes();
        request.extend(hello(&[sni("evil.example")]));
        let (reply, _) = through_proxy(egress, request);
        assert!(
            reply.ends_with(&inspect::tls_alert(inspect::ALERT_UNRECOGNIZED_NAME)),
            "{reply:?}"
        );
        assert!(
            received.join().unwrap().is_empty(),
            "nothing reached the server"
        );
        let records = audit.records();
        assert_eq!(records[0]["sni"], "evil.example", "{records:?}");
        assert_eq!(records[0]["name"], "api.example.test");
        assert_eq!(records[0]["via"], "connect");
    }

    #[test]
    fn ech_is_refused() {
        let (upstream, _received) = server(b"");
        let (mut egress, audit) = egress(&["api.example.test"], &[], false);
        allow_loopback(&mut egress);
        let mut request = format!(
            "CONNECT api.example.test:{} HTTP/1.1\r\n\r\n",
            upstream.port()
        )
        .into_bytes();
        request.extend(hello(&[sni("api.example.test"), (0xfe0d, vec![0; 8])]));
        let (reply, _) = through_proxy(egress, request);
        assert!(reply.ends_with(&inspect::tls_alert(inspect::ALERT_ACCESS_DENIED)));
        assert!(audit.records()[0]["reason"]
            .as_str()
            .unwrap()
            .contains("Encrypted Client Hello"));
    }

    #[test]
    fn denied_names_get_403_with_a_reason_header() {
        let (egress, audit) = egress(&["allowed.example"], &[], false);
        let (reply, _) = through_proxy(
            egress,
            b"CONNECT other.example:443 HTTP/1.1\r\n\r\n".to_vec(),
        );
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
        assert!(reply.contains("X-Mxc-Denied: name not allowed"), "{reply}");
        assert_eq!(audit.records()[0]["rule"], "network.egress.default");
    }

    #[test]
    fn names_leading_to_loopback_are_refused_without_a_cidr_rule() {
        let (egress, audit) = egress(&["api.example.test"], &[], false);
        let (reply, _) = through_proxy(
            egress,
            b"CONNECT api.example.test:9 HTTP/1.1\r\n\r\n".to_vec(),
        );
        assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 403"));
        assert!(audit.records()[0]["reason"]
            .as_str()
            .unwrap()
            .contains("local"));
    }

    #[test]
    fn every_host_on_a_forwarded_connection_is_checked() {
        let (upstream, received) = server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        let (mut egress, audit) = egress(&["api.example.test"], &[], false);
        allow_loopback(&mut egress);
        let port = upstream.port();
        let request = format!(
            "GET http://api.example.test:{port}/a HTTP/1.1\r\nHost: api.example.test:{port}\r\nContent-Length: 3\r\n\r\nabc\
             GET http://api.example.test:{port}/b HTTP/1.1\r\nHost: evil.example\r\n\r\n"
        );
        let (reply, _) = through_proxy(egress, request.into_bytes());
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.contains("X-Mxc-Denied: HTTP Host differs"), "{reply}");
        let got = String::from_utf8(received.join().unwrap()).unwrap();
        assert!(got.contains("/a HTTP/1.1") && got.ends_with("abc"), "{got}");
        assert!(!got.contains("evil"), "{got}");
        assert_eq!(audit.records()[0]["host"], "evil.example");
    }

    #[test]
    fn socks5_names_are_decided_like_connect() {
        let (egress, audit) = egress(&["allowed.example"], &[], false);
        let mut request = vec![5, 1, 0, 5, 1, 0, 3, 13];
        request.extend(b"other.example");
        request.extend(443u16.to_be_bytes());
        let (reply, _) = through_proxy(egress, request);
        assert_eq!(reply, [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(audit.records()[0]["via"], "socks");
    }

    #[test]
    fn bare_addresses_follow_the_cidr_rules() {
        let (upstream, received) = server(b"ok");
        let (mut egress, audit) = egress(&[], &[], false);
        let request = format!(
            "CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\nhello",
            upstream.port()
        );
        let (denied, _) = through_proxy(
            super::super::tests::egress(&[], &[], false).0,
            request.clone().into_bytes(),
        );
        assert!(String::from_utf8_lossy(&denied).starts_with("HTTP/1.1 403"));
        allow_loopback(&mut egress);
        let (reply, _) = through_proxy(egress, request.into_bytes());
        assert!(String::from_utf8_lossy(&reply).ends_with("ok"));
        assert_eq!(received.join().unwrap(), b"hello");
        assert!(audit.records().is_empty());
    }
}

//! The audit log: one JSON line per decision. Denied packets reach it through NFLOG: the
//! ruleset logs every drop to group [`AUDIT_GROUP`] with the deciding rule as its prefix, and a
//! listener bound inside the sandbox's network namespace turns each into a record with the
//! time, container id, policy sha256, protocol, destination, port and rule.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{json, Value};

use super::{netns, NetworkError};

/// An append-only JSON-lines file shared by everything that records decisions.
#[derive(Clone, Debug)]
pub struct AuditLog {
    file: Arc<Mutex<File>>,
}

impl AuditLog {
    pub fn open(path: &Path) -> Result<AuditLog, NetworkError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| NetworkError::io(format!("creating {}", parent.display()), e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                NetworkError::io(format!("opening the audit log {}", path.display()), e)
            })?;
        Ok(AuditLog {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Appends one record; `time` is added.
    pub fn record(&self, mut record: Value) {
        if let Value::Object(map) = &mut record {
            map.insert(
                "time".into(),
                Value::String(
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                ),
            );
        }
        let mut line = record.to_string();
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = file.write_all(line.as_bytes());
    }
}

/// Who the denials belong to.
#[derive(Clone, Debug)]
pub struct AuditContext {
    pub container_id: String,
    pub policy_sha256: String,
    pub log: AuditLog,
    /// The NFLOG group the ruleset logs to.
    pub group: u16,
}

#[derive(Debug)]
pub struct AuditListener {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULA_CFG_QTHRESH: u16 = 5;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;

impl AuditListener {
    /// Binds the listener inside the network namespace of `pid`, before the workload starts.
    pub fn start(pid: i32, context: AuditContext) -> Result<AuditListener, NetworkError> {
        let group = context.group;
        let socket = netns::in_netns(pid, move || bind_nflog(group))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || listen(socket, flag, context));
        Ok(AuditListener {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for AuditListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bind_nflog(group: u16) -> std::io::Result<OwnedFd> {
    // SAFETY: creating a socket; ownership passes to OwnedFd.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh descriptor we own.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_nl is plain data.
    let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    address.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: binding our socket to a correctly sized address.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    send_config(&socket, group, &attr(NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND]))?;
    let mut mode = 256u32.to_be_bytes().to_vec();
    mode.extend([NFULNL_COPY_PACKET, 0]);
    send_config(&socket, group, &attr(NFULA_CFG_MODE, &mode))?;
    // Deliver each packet at once instead of batching for up to a second: the record of the
    // last denial before the workload exits must not be lost.
    send_config(
        &socket,
        group,
        &attr(NFULA_CFG_QTHRESH, &1u32.to_be_bytes()),
    )?;
    // A receive timeout lets the listener notice when it should stop.
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: setting a socket option with a correctly sized value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    Ok(socket)
}

fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut out = Vec::with_capacity((len + 3) & !3);
    out.extend((len as u16).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(payload);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

fn send_config(socket: &OwnedFd, group: u16, attrs: &[u8]) -> std::io::Result<()> {
    let mut message = Vec::new();
    let length = 16 + 4 + attrs.len();
    message.extend((length as u32).to_ne_bytes());
    message.extend(((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    message.extend((libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes());
    message.extend(0u32.to_ne_bytes()); // sequence
    message.extend(0u32.to_ne_bytes()); // port id
    message.push(libc::AF_UNSPEC as u8);
    message.push(0); // NFNETLINK_V0
    message.extend(group.to_be_bytes());
    message.extend(attrs);
    // SAFETY: sending a buffer we own.
    let rc = unsafe {
        libc::send(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The acknowledgement: an NLMSG_ERROR whose error is 0 on success.
    let mut buf = [0u8; 256];
    // SAFETY: receiving into a buffer we own.
    let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == libc::NLMSG_ERROR as u16 {
        let error = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if error != 0 {
            return Err(std::io::Error::from_raw_os_error(-error));
        }
    }
    Ok(())
}

fn listen(socket: OwnedFd, stop: Arc<AtomicBool>, context: AuditContext) {
    let mut buf = vec![0u8; 65536];
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        // Once asked to stop, drain what is queued without waiting, then leave.
        let flags = if stopping { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: receiving into a buffer we own.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
            )
        };
        if n <= 0 {
            if stopping {
                break;
            }
            continue;
        }
        let mut offset = 0usize;
        let data = &buf[..n as usize];
        while offset + 16 <= data.len() {
            let length = u32::from_ne_bytes(data[offset..offset + 4].try_into().unwrap_or_default())
                as usize;
            let kind = u16::from_ne_bytes([data[offset + 4], data[offset + 5]]);
            if length < 16 || offset + length > data.len() {
                break;
            }
            if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET {
                if let Some(record) = denial(&data[offset + 16..offset + length], &context) {
                    context.log.record(record);
                }
            }
            offset += (length + 3) & !3;
        }
    }
}

/// One NFLOG packet message (after the netlink header) as an audit record.
fn denial(message: &[u8], context: &AuditContext) -> Option<Value> {
    let family = *message.first()?;
    let mut prefix = String::new();
    let mut payload: &[u8] = &[];
    let mut offset = 4; // nfgenmsg
    while offset + 4 <= message.len() {
        let length = u16::from_ne_bytes([message[offset], message[offset + 1]]) as usize;
        let kind = u16::from_ne_bytes([message[offset + 2], message[offset + 3]]) & 0x7fff;
        if length < 4 || offset + length > message.len() {
            break;
        }
        let value = &message[offset + 4..offset + length];
        match kind {
            NFULA_PREFIX => {
                prefix = String::from_utf8_lossy(value)
                    .trim_end_matches('\0')
                    .to_string()
            }
            NFULA_PAYLOAD => payload = value,
            _ => {}
        }
        offset += (length + 3) & !3;
    }
    let (protocol, destination, port) = packet(family, payload)?;
    let (verdict, rule) = prefix.split_once(' ').unwrap_or(("deny", prefix.as_str()));
    let direction = if rule.starts_with("network.ingress.default") {
        "inbound"
    } else {
        "outbound"
    };
    Some(json!({
        "event": "network.denied",
        "container": context.container_id,
        "policy_sha256": context.policy_sha256,
        "direction": direction,
        "protocol": protocol,
        "destination": destination.to_string(),
        "port": port,
        "verdict": verdict,
        "rule": rule,
    }))
}

/// Protocol name, destination and destination port (none for ICMP) of an IP packet.
fn packet(family: u8, payload: &[u8]) -> Option<(&'static str, IpAddr, Option<u16>)> {
    let (proto, destination, l4) = match family as i32 {
        libc::AF_INET => {
            let ihl = ((*payload.first()? & 0x0f) as usize) * 4;
            let dst: [u8; 4] = payload.get(16..20)?.try_into().ok()?;
            (
                *payload.get(9)?,
                IpAddr::V4(Ipv4Addr::from(dst)),
                payload.get(ihl..)?,
            )
        }
        libc::AF_INET6 => {
            let dst: [u8; 16] = payload.get(24..40)?.try_into().ok()?;
            (
                *payload.get(6)?,
                IpAddr::V6(Ipv6Addr::from(dst)),
                payload.get(40..)?,
            )
        }
        _ => return None,
    };
    let port = || l4.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]]));
    Some(match proto {
        6 => ("tcp", destination, port()),
        17 => ("udp", destination, port()),
        1 => ("icmp", destination, None),
        58 => ("icmpv6", destination, None),
        _ => ("other", destination, None),
    })
}

/// Starts the denial listener as a detached helper process: it binds the listener in the
/// container's namespace, says so on stdout, and records denials until the container's init
/// exits.
pub fn spawn_detached_listener(
    pid: i32,
    target: &super::AuditTarget,
) -> Result<crate::process::InitProcess, NetworkError> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut command = crate::helper::Helper::AuditListen {
        pid,
        container_id: target.container_id.clone(),
        policy_sha256: target.policy_sha256.clone(),
        log: target.log.clone(),
        group: target.group,
    }
    .command();
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setsid only, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| NetworkError::io("starting the denial listener", e))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    }
    let process = crate::process::InitProcess::capture(child.id() as i32);
    match (line.trim() == "ready", process) {
        (true, Some(process)) => Ok(process),
        _ => {
            let _ = child.kill();
            let mut why = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut stderr, &mut why);
            }
            let _ = child.wait();
            Err(NetworkError::io(
                "starting the denial listener",
                std::io::Error::other(format!("it did not start: {} {}", line.trim(), why.trim())),
            ))
        }
    }
}

/// The body of the denial listener's helper process: listen until the init process `pid` exits.
pub fn run_detached_listener(pid: i32, context: AuditContext) -> Result<(), NetworkError> {
    // SAFETY: pidfd_open on a pid we were given; ownership passes to OwnedFd.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if raw < 0 {
        return Err(NetworkError::io(
            "watching the container",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh descriptor.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SIGTERM from delete must not cut the final drain short: the listener leaves by itself
    // once the container's init is gone.
    // SAFETY: setting a signal disposition.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    let listener = AuditListener::start(pid, context)?;
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut fds = [libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        // SAFETY: polling one descriptor we own.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 1, -1) };
        if rc > 0
            || (rc < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted)
        {
            break;
        }
    }
    drop(listener);
    Ok(())
}

//! Denied packets, from the kernel to the audit log. The ruleset logs every drop to an NFLOG
//! group with the deciding rule as its prefix; a listener bound inside the sandbox's network
//! namespace (its own thread beside `mxc run`, or a helper process that outlives
//! `mxc-runtime create`) turns each into [`Event::NetworkDenied`] with the protocol,
//! destination, port and rule.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    config_request, ConfigCmd, ConfigMode, ConfigNla, PacketNla, ULogMessage,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{constants::NETLINK_NETFILTER, Socket};

use super::{ContainerAudit, Event, NetworkDenial};
use crate::network::{netns, AuditTarget, NetworkError};

/// Bytes of each denied packet the kernel copies: enough for the IP and transport headers.
const COPY_RANGE: u32 = 256;

/// A listener recording the denials of one network namespace until it is dropped.
#[derive(Debug)]
pub struct DenialListener {
    /// Closed to stop the listener: its thread wakes at once, drains what is queued and leaves.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl DenialListener {
    /// Binds the listener to NFLOG `group` inside the network namespace of `pid`, before the
    /// workload starts.
    pub fn start(
        pid: i32,
        audit: ContainerAudit,
        group: u16,
    ) -> Result<DenialListener, NetworkError> {
        let socket = netns::in_netns(pid, move || bind(group))?;
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(NetworkError::io(
                "creating the denial listener's stop pipe",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (stop_read, stop) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let thread = std::thread::spawn(move || listen(socket, stop_read, audit));
        Ok(DenialListener {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for DenialListener {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A netlink socket bound to NFLOG `group`.
fn bind(group: u16) -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    configure(&socket, group, ConfigCmd::Bind.into())?;
    configure(&socket, group, ConfigMode::new_packet(COPY_RANGE).into())?;
    // Deliver each packet at once instead of batching for up to a second: the record of the
    // last denial before the workload exits must not be lost.
    configure(&socket, group, ConfigNla::QThresh(1))?;
    Ok(socket)
}

/// Sends one NFLOG configuration attribute and waits for the kernel's acknowledgement.
fn configure(socket: &Socket, group: u16, attribute: ConfigNla) -> std::io::Result<()> {
    let request = config_request(NetfilterProtoFamily::Unspec, group, vec![attribute]);
    let mut buf = vec![0; request.header.length as usize];
    request.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut reply = vec![0u8; 4096];
    let n = socket.recv(&mut &mut reply[..], 0)?;
    match NetlinkMessage::<NetfilterMessage>::deserialize(&reply[..n]) {
        Ok(NetlinkMessage {
            payload: NetlinkPayload::Error(error),
            ..
        }) => match error.code {
            Some(code) => Err(std::io::Error::from_raw_os_error(-code.get())),
            None => Ok(()),
        },
        Ok(_) => Ok(()),
        Err(error) => Err(std::io::Error::other(format!(
            "an unreadable NFLOG acknowledgement: {error}"
        ))),
    }
}

/// Records denials until `stop` reports its other end closed; then drains what is queued,
/// without waiting, and returns.
fn listen(socket: Socket, stop: OwnedFd, audit: ContainerAudit) {
    let mut buf = vec![0u8; 65536];
    let mut stopping = false;
    loop {
        if !stopping {
            let mut fds = [
                libc::pollfd {
                    fd: socket.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: stop.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfds.
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                stopping = true;
            }
            stopping |= fds[1].revents != 0;
        }
        let n = match socket.recv(&mut &mut buf[..], libc::MSG_DONTWAIT) {
            Ok(n) if n > 0 => n,
            _ if stopping => break,
            _ => continue,
        };
        for denial in denials(&buf[..n]) {
            audit.write(&Event::NetworkDenied(denial));
        }
    }
}

/// The denials in one datagram of NFLOG messages.
fn denials(mut data: &[u8]) -> Vec<NetworkDenial> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let Ok(message) = NetlinkMessage::<NetfilterMessage>::deserialize(data) else {
            break;
        };
        let length = (message.header.length as usize + 3) & !3;
        if let NetlinkPayload::InnerMessage(NetfilterMessage {
            header,
            inner: NetfilterMessageInner::ULog(ULogMessage::Packet(attributes)),
            ..
        }) = &message.payload
        {
            out.extend(denial(header.family, attributes));
        }
        if length == 0 || length >= data.len() {
            break;
        }
        data = &data[length..];
    }
    out
}

/// One logged packet as a denial: the rule from its prefix, the rest from its headers.
fn denial(family: NetfilterProtoFamily, attributes: &[PacketNla]) -> Option<NetworkDenial> {
    let mut prefix = String::new();
    let mut payload: &[u8] = &[];
    for attribute in attributes {
        match attribute {
            PacketNla::Prefix(text) => prefix = text.to_string_lossy().into_owned(),
            PacketNla::Payload(bytes) => payload = bytes,
            _ => {}
        }
    }
    let (protocol, destination, port) = packet(family, payload)?;
    // The ruleset's prefixes are `deny <rule>`.
    let rule = prefix.strip_prefix("deny ").unwrap_or(&prefix);
    let direction = if rule.starts_with("network.ingress.default") {
        "inbound"
    } else {
        "outbound"
    };
    Some(NetworkDenial {
        direction,
        protocol,
        destination: Some(destination.to_string()),
        port,
        verdict: "deny",
        rule: rule.to_string(),
        via: None,
        reason: None,
    })
}

/// Protocol name, destination and destination port (none for ICMP) of an IP packet.
fn packet(
    family: NetfilterProtoFamily,
    payload: &[u8],
) -> Option<(&'static str, IpAddr, Option<u16>)> {
    let (proto, destination, l4) = match family {
        NetfilterProtoFamily::IPv4 => {
            let ihl = ((*payload.first()? & 0x0f) as usize) * 4;
            let dst: [u8; 4] = payload.get(16..20)?.try_into().ok()?;
            (
                *payload.get(9)?,
                IpAddr::V4(Ipv4Addr::from(dst)),
                payload.get(ihl..)?,
            )
        }
        NetfilterProtoFamily::IPv6 => {
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
/// exits. [`Starting::ready`](crate::helper::Starting::ready) waits until it is bound.
pub(crate) fn spawn_detached(
    pid: i32,
    target: &AuditTarget,
) -> Result<crate::helper::Starting, NetworkError> {
    crate::helper::Helper::AuditListen {
        pid,
        container_id: target.audit.container_id.clone(),
        policy_sha256: target.audit.policy_sha256.clone(),
        log: target.audit.log.path().to_path_buf(),
        group: target.group,
        report: target.failure_report.clone(),
    }
    .start()
    .map_err(|e| NetworkError::io("starting the denial listener", e))
}

/// The body of the denial listener's helper process: listen until the init process `pid`
/// exits. Records that could not be written are reported in `report` (which the engine reads
/// at delete), since nobody reads this process's output.
pub fn run_detached(
    pid: i32,
    audit: ContainerAudit,
    group: u16,
    report: Option<&Path>,
) -> Result<(), NetworkError> {
    let watch = crate::helper::InitWatch::open(pid)?;
    let log = audit.log.clone();
    let listener = DenialListener::start(pid, audit, group)?;
    watch.ready();
    watch.wait();
    drop(listener);
    if let (Some(failures), Some(report)) = (log.failures(), report) {
        let _ = std::fs::write(report, failures.to_string());
    }
    Ok(())
}

/// Where a detached listener reports lost records, in the container's engine directory.
pub fn failure_report(engine_dir: &Path) -> PathBuf {
    engine_dir.join("audit-failures")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An NFLOG packet message as the kernel sends it: netlink header, nfgenmsg, attributes.
    fn nflog_message(family: u8, prefix: &str, payload: &[u8]) -> Vec<u8> {
        fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
            let mut out = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
            out.extend(kind.to_ne_bytes());
            out.extend(value);
            while !out.len().is_multiple_of(4) {
                out.push(0);
            }
            out
        }
        let mut body = vec![family, 0, 0, 17];
        let mut text = prefix.as_bytes().to_vec();
        text.push(0);
        body.extend(attribute(10, &text)); // NFULA_PREFIX
        body.extend(attribute(9, payload)); // NFULA_PAYLOAD
        let mut message = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        // NFNL_SUBSYS_ULOG in the high byte, NFULNL_MSG_PACKET (0) in the low one.
        message.extend((4u16 << 8).to_ne_bytes());
        message.extend(0u16.to_ne_bytes());
        message.extend(0u32.to_ne_bytes());
        message.extend(0u32.to_ne_bytes());
        message.extend(body);
        message
    }

    fn ipv4_tcp(destination: [u8; 4], port: u16) -> Vec<u8> {
        let mut packet = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 2, 100];
        packet.extend(destination);
        packet.extend(40000u16.to_be_bytes());
        packet.extend(port.to_be_bytes());
        packet.extend([0; 16]);
        packet
    }

    #[test]
    fn packets_become_denials_with_their_rule() {
        let mut data = nflog_message(
            2,
            "deny network.egress.deny[1]",
            &ipv4_tcp([198, 18, 0, 7], 443),
        );
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 58, 64];
        v6.extend([0; 16]);
        v6.extend(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9).octets());
        v6.extend([128, 0, 0, 0, 0, 0, 0, 0]);
        data.extend(nflog_message(10, "deny network.ingress.default", &v6));
        let denials = denials(&data);
        assert_eq!(denials.len(), 2, "{denials:?}");
        assert_eq!(denials[0].protocol, "tcp");
        assert_eq!(denials[0].destination.as_deref(), Some("198.18.0.7"));
        assert_eq!(denials[0].port, Some(443));
        assert_eq!(denials[0].rule, "network.egress.deny[1]");
        assert_eq!(denials[0].direction, "outbound");
        assert_eq!(denials[1].protocol, "icmpv6");
        assert_eq!(denials[1].destination.as_deref(), Some("fd00::9"));
        assert_eq!(denials[1].port, None);
        assert_eq!(denials[1].direction, "inbound");
    }

    #[test]
    fn malformed_messages_are_skipped() {
        assert!(denials(&[1, 2, 3]).is_empty());
        assert!(denials(&nflog_message(2, "deny x", &[0x45])).is_empty());
    }
}

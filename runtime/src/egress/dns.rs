//! The sandbox's resolver: the only DNS the sandbox has. It answers A and AAAA questions for
//! names the policy allows with addresses from the name pools (after checking upstream that
//! the name exists), PTR questions for those addresses with their names, and nothing else:
//! other record types get an empty answer (no TXT, no HTTPS records carrying ECH keys), and a
//! name the policy does not allow gets NXDOMAIN and an audit line, and never leaves.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use mxc_translate::hosts::normalize_name;

use super::upstream::{self, LookupError};
use super::{Denial, Egress};

/// How long the sandbox may cache an answer; the addresses never change for its life.
const TTL: u32 = 60;

/// Answers one DNS message from the sandbox.
pub fn answer(egress: &Egress, request: &[u8]) -> Option<Vec<u8>> {
    let message = Message::from_vec(request).ok()?;
    if message.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(message.metadata.id, message.metadata.op_code);
    response.metadata.recursion_desired = message.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_queries(message.queries.clone());
    let respond = |mut response: Message, code: ResponseCode| {
        response.metadata.response_code = code;
        response.to_vec().ok()
    };
    if message.metadata.op_code != OpCode::Query {
        return respond(response, ResponseCode::NotImp);
    }
    let [query] = message.queries.as_slice() else {
        return respond(response, ResponseCode::FormErr);
    };
    if query.query_class() != DNSClass::IN {
        return respond(response, ResponseCode::Refused);
    }
    let asked = query.name().to_ascii();
    if query.query_type() == RecordType::PTR {
        if let Some(name) = reverse(&asked).and_then(|ip| egress.book.name(ip)) {
            if let Ok(target) = Name::from_ascii(format!("{name}.")) {
                response.add_answer(Record::from_rdata(
                    query.name().clone(),
                    TTL,
                    RData::PTR(PTR(target)),
                ));
                return respond(response, ResponseCode::NoError);
            }
        }
        return respond(response, ResponseCode::NXDomain);
    }
    let Ok(name) = normalize_name(&asked) else {
        egress.deny(Denial {
            via: "dns",
            name: Some(asked.trim_end_matches('.').to_string()),
            reason: "not a host name".into(),
            rule: String::new(),
            ..Denial::default()
        });
        return respond(response, ResponseCode::NXDomain);
    };
    let verdict = egress.decide_name(&name, None);
    if !verdict.allowed() {
        egress.deny(Denial {
            via: "dns",
            name: Some(name),
            port: Some(53),
            reason: "name not allowed".into(),
            rule: verdict.rule().to_string(),
            ..Denial::default()
        });
        return respond(response, ResponseCode::NXDomain);
    }
    if !matches!(query.query_type(), RecordType::A | RecordType::AAAA) {
        // The name exists as far as the sandbox knows, with nothing of this type.
        return respond(response, ResponseCode::NoError);
    }
    let real = match upstream::lookup(&egress.resolver, &egress.outbound, &name) {
        Ok(real) => real,
        Err(LookupError::NoSuchName) => return respond(response, ResponseCode::NXDomain),
        Err(LookupError::Failed(why)) => {
            tracing::debug!(name, why, "upstream lookup failed");
            return respond(response, ResponseCode::ServFail);
        }
    };
    let Some((v4, v6)) = egress.book.addresses(&name) else {
        return respond(response, ResponseCode::ServFail);
    };
    let record = match query.query_type() {
        RecordType::A if real.iter().any(IpAddr::is_ipv4) => Some(RData::A(A(v4))),
        RecordType::AAAA if egress.ipv6 && real.iter().any(IpAddr::is_ipv6) => {
            Some(RData::AAAA(AAAA(v6)))
        }
        _ => None,
    };
    if let Some(data) = record {
        response.add_answer(Record::from_rdata(query.name().clone(), TTL, data));
    }
    respond(response, ResponseCode::NoError)
}

/// The address of a reverse name (`4.3.2.1.in-addr.arpa.`, nibbles under `ip6.arpa.`).
fn reverse(name: &str) -> Option<IpAddr> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = rest
            .split('.')
            .map(|o| o.parse().ok())
            .collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(IpAddr::V4(Ipv4Addr::new(
            octets[0], octets[1], octets[2], octets[3],
        )));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|n| u8::from_str_radix(n, 16).ok().filter(|_| n.len() == 1))
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut value: u128 = 0;
    for nibble in nibbles.iter().rev() {
        value = (value << 4) | u128::from(*nibble);
    }
    Some(IpAddr::V6(Ipv6Addr::from(value)))
}

/// Serves DNS over UDP on `socket` until it is shut down.
pub fn serve_udp(egress: Arc<Egress>, socket: UdpSocket) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if egress.stopping() {
            return;
        }
        let request = buf[..n].to_vec();
        let Ok(reply) = socket.try_clone() else {
            continue;
        };
        let egress = Arc::clone(&egress);
        // Upstream lookups block: one thread per question keeps slow names from holding up
        // the rest.
        std::thread::spawn(move || {
            if let Some(response) = answer(&egress, &request) {
                let _ = reply.send_to(&response, peer);
            }
        });
    }
}

/// Serves DNS over TCP on `listener` until it is shut down.
pub fn serve_tcp(egress: Arc<Egress>, listener: TcpListener) {
    for stream in listener.incoming() {
        if egress.stopping() {
            return;
        }
        let Ok(stream) = stream else { continue };
        let egress = Arc::clone(&egress);
        std::thread::spawn(move || tcp_client(&egress, stream));
    }
}

fn tcp_client(egress: &Egress, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    loop {
        let mut length = [0u8; 2];
        if stream.read_exact(&mut length).is_err() {
            return;
        }
        let mut request = vec![0u8; u16::from_be_bytes(length) as usize];
        if stream.read_exact(&mut request).is_err() {
            return;
        }
        let Some(response) = answer(egress, &request) else {
            return;
        };
        let mut framed = (response.len() as u16).to_be_bytes().to_vec();
        framed.extend(response);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::tests::egress;
    use hickory_proto::op::Query;

    fn ask(egress: &Egress, name: &str, kind: RecordType) -> Message {
        let mut message = Message::new(7, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        let bytes = answer(egress, &message.to_vec().unwrap()).unwrap();
        Message::from_vec(&bytes).unwrap()
    }

    #[test]
    fn allowed_names_get_pool_addresses_and_others_nxdomain() {
        let (egress, audit) = egress(&["api.example.test"], &[], false);
        let a = ask(&egress, "API.Example.TEST.", RecordType::A);
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        let RData::A(A(address)) = a.answers[0].data else {
            panic!("{a:?}")
        };
        assert_eq!(
            egress.book.name(address.into()).as_deref(),
            Some("api.example.test")
        );
        let denied = ask(&egress, "exfil-1234.evil.example.", RecordType::A);
        assert_eq!(denied.metadata.response_code, ResponseCode::NXDomain);
        let records = audit.records();
        assert!(
            records
                .iter()
                .any(|r| r["name"] == "exfil-1234.evil.example"
                    && r["reason"] == "name not allowed"
                    && r["rule"] == "network.egress.default"),
            "{records:?}"
        );
        let txt = ask(&egress, "api.example.test.", RecordType::TXT);
        assert_eq!(txt.metadata.response_code, ResponseCode::NoError);
        assert!(txt.answers.is_empty());
        let https = ask(&egress, "api.example.test.", RecordType::HTTPS);
        assert!(https.answers.is_empty());
    }

    #[test]
    fn reverse_lookups_name_pool_addresses() {
        let (egress, _) = egress(&["api.example.test"], &[], false);
        let (v4, v6) = egress.book.addresses("api.example.test").unwrap();
        let o = v4.octets();
        let ptr = ask(
            &egress,
            &format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0]),
            RecordType::PTR,
        );
        assert_eq!(ptr.answers.len(), 1, "{ptr:?}");
        assert_eq!(
            reverse(&format!(
                "{}.ip6.arpa.",
                format!("{:032x}", u128::from(v6))
                    .chars()
                    .rev()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(".")
            )),
            Some(IpAddr::V6(v6))
        );
    }

    #[test]
    fn no_ipv6_answers_where_the_namespace_has_no_ipv6() {
        let (mut egress, _) = egress(&["api.example.test"], &[], false);
        if let crate::egress::Resolver::Fixed(table) = &mut egress.resolver {
            table[0].1.push("2001:db8::1".parse().unwrap());
        }
        assert_eq!(
            ask(&egress, "api.example.test.", RecordType::AAAA)
                .answers
                .len(),
            1
        );
        egress.ipv6 = false;
        let aaaa = ask(&egress, "api.example.test.", RecordType::AAAA);
        assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
        assert!(aaaa.answers.is_empty(), "{aaaa:?}");
        assert_eq!(
            ask(&egress, "api.example.test.", RecordType::A)
                .answers
                .len(),
            1
        );
    }
}

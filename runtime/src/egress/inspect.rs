//! What the egress proxy reads of a client's first bytes, without terminating anything: the
//! TLS ClientHello's server name and whether it offers Encrypted Client Hello, and the heads of
//! cleartext HTTP/1 requests (method, target, `Host`, body length), so that every request on a
//! connection can be checked against the name the connection was allowed for.

/// What the first bytes of a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// More bytes are needed to tell.
    Incomplete,
    /// A TLS handshake: the ClientHello's SNI (if any) and whether it carries ECH.
    Tls { sni: Option<String>, ech: bool },
    /// A TLS record that is not a well-formed ClientHello.
    BadTls,
    /// A cleartext HTTP/1 request line.
    Http,
    /// The HTTP/2 cleartext preface (`PRI * HTTP/2.0`), whose authorities are not visible here.
    Http2Cleartext,
    /// Anything else (ssh, a database protocol, ...).
    Other,
}

/// The TLS extension types the parser looks for.
const EXT_SERVER_NAME: u16 = 0;
/// `encrypted_client_hello` (RFC 9460 / draft-ietf-tls-esni); the outer ClientHello carries it.
const EXT_ECH: u16 = 0xfe0d;
/// Bytes of ClientHello the proxy is prepared to buffer (records may split it).
pub const MAX_HELLO: usize = 64 * 1024;

const METHODS: &[&str] = &[
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "MKACTIVITY",
    "CHECKOUT",
    "MERGE",
    "SEARCH",
    "PURGE",
];

/// Classifies the first bytes a client sent.
pub fn opening(data: &[u8]) -> Opening {
    let Some(&first) = data.first() else {
        return Opening::Incomplete;
    };
    if first == 0x16 {
        return client_hello(data);
    }
    if data.starts_with(b"PRI * HTTP/2.0") || b"PRI * HTTP/2.0".starts_with(data) {
        return if data.len() >= 14 {
            Opening::Http2Cleartext
        } else {
            Opening::Incomplete
        };
    }
    let token_end = data.iter().position(|b| *b == b' ');
    match token_end {
        Some(end) => {
            if METHODS.iter().any(|m| m.as_bytes() == &data[..end]) {
                Opening::Http
            } else {
                Opening::Other
            }
        }
        None if data.len() < 12 && METHODS.iter().any(|m| m.as_bytes().starts_with(data)) => {
            Opening::Incomplete
        }
        None => Opening::Other,
    }
}

/// Parses a ClientHello spread over one or more handshake records.
fn client_hello(data: &[u8]) -> Opening {
    // Reassemble the handshake bytes of consecutive handshake records.
    let mut handshake = Vec::new();
    let mut at = 0;
    loop {
        if data.len() < at + 5 {
            return Opening::Incomplete;
        }
        if data[at] != 0x16 || data[at + 1] != 0x03 {
            return Opening::BadTls;
        }
        let length = u16::from_be_bytes([data[at + 3], data[at + 4]]) as usize;
        if length == 0 || length > 16384 + 2048 {
            return Opening::BadTls;
        }
        if data.len() < at + 5 + length {
            return Opening::Incomplete;
        }
        handshake.extend_from_slice(&data[at + 5..at + 5 + length]);
        at += 5 + length;
        if handshake.len() >= 4 {
            if handshake[0] != 1 {
                return Opening::BadTls;
            }
            let body = u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]) as usize;
            if body + 4 > MAX_HELLO {
                return Opening::BadTls;
            }
            if handshake.len() >= body + 4 {
                return parse_hello(&handshake[4..4 + body]).unwrap_or(Opening::BadTls);
            }
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn parse_hello(body: &[u8]) -> Option<Opening> {
    let mut r = Reader { data: body };
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.data.is_empty() {
        return Some(Opening::Tls {
            sni: None,
            ech: false,
        });
    }
    let mut extensions = Reader { data: r.vec16()? };
    let mut sni = None;
    let mut ech = false;
    let mut seen = Vec::new();
    while !extensions.data.is_empty() {
        let kind = extensions.u16()? as u16;
        let data = extensions.vec16()?;
        // A repeated extension is malformed (RFC 8446 4.2) and could hide a second name.
        if seen.contains(&kind) {
            return None;
        }
        seen.push(kind);
        match kind {
            EXT_SERVER_NAME => sni = server_name(data)?,
            EXT_ECH => ech = true,
            _ => {}
        }
    }
    Some(Opening::Tls { sni, ech })
}

/// The host_name of a server_name extension; a list with more than one name is malformed.
fn server_name(data: &[u8]) -> Option<Option<String>> {
    let mut outer = Reader { data };
    let mut list = Reader {
        data: outer.vec16()?,
    };
    let mut name = None;
    while !list.data.is_empty() {
        let kind = list.u8()?;
        let value = list.vec16()?;
        if kind == 0 {
            if name.is_some() {
                return None;
            }
            name = Some(String::from_utf8(value.to_vec()).ok()?);
        }
    }
    Some(name)
}

/// A TLS alert record (fatal) with `description`, for a client whose handshake is refused.
pub fn tls_alert(description: u8) -> [u8; 7] {
    [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, description]
}

/// `access_denied`.
pub const ALERT_ACCESS_DENIED: u8 = 49;
/// `unrecognized_name`: the SNI is not the name the connection was allowed for.
pub const ALERT_UNRECOGNIZED_NAME: u8 = 112;

/// The head of one HTTP/1 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, request line to the empty line included.
    pub length: usize,
    pub method: String,
    pub target: String,
    /// Every `Host` header value (more than one is an attack or a mistake).
    pub hosts: Vec<String>,
    pub body: Body,
    /// `Upgrade` or `CONNECT`: after this request the stream is no longer HTTP/1.
    pub upgrade: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
}

/// Result of looking for a request head at the start of `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    Incomplete,
    Complete(RequestHead),
    Invalid(&'static str),
}

/// Largest request head the proxy buffers.
pub const MAX_HEAD: usize = 64 * 1024;

pub fn request_head(data: &[u8]) -> Head {
    let Some(end) = find(data, b"\r\n\r\n") else {
        return if data.len() > MAX_HEAD {
            Head::Invalid("request head too large")
        } else {
            Head::Incomplete
        };
    };
    let Ok(text) = std::str::from_utf8(&data[..end]) else {
        return Head::Invalid("request head is not text");
    };
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Head::Invalid("malformed request line");
    };
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return Head::Invalid("malformed request line");
    }
    let mut hosts = Vec::new();
    let mut length = None;
    let mut chunked = false;
    let mut upgrade = method.eq_ignore_ascii_case("CONNECT");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Head::Invalid("malformed header line");
        };
        if name.is_empty() || name.ends_with(' ') || name.starts_with([' ', '\t']) {
            // Obsolete line folding and whitespace before the colon are how requests are
            // smuggled past a proxy (RFC 9112 5.1, 5.2).
            return Head::Invalid("malformed header line");
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("host") {
            hosts.push(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<u64>() {
                Ok(n) if length.is_none_or(|l| l == n) => length = Some(n),
                _ => return Head::Invalid("bad or conflicting Content-Length"),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Head::Invalid("a request body must be chunked or have a Content-Length");
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if chunked && length.is_some() {
        return Head::Invalid("both Content-Length and Transfer-Encoding");
    }
    let body = if chunked {
        Body::Chunked
    } else {
        match length {
            Some(0) | None => Body::None,
            Some(n) => Body::Length(n),
        }
    };
    Head::Complete(RequestHead {
        length: end + 4,
        method: method.to_string(),
        target: target.to_string(),
        hosts,
        body,
        upgrade,
    })
}

fn find(data: &[u8], needle: &[u8]) -> Option<usize> {
    data.windows(needle.len()).position(|w| w == needle)
}

/// The host part of an authority (`Host` value or CONNECT target): lowercase, without the
/// port or IPv6 brackets.
pub fn authority_host(authority: &str) -> (String, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host.to_ascii_lowercase(), port);
        }
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_ascii_lowercase(), port.parse().ok()),
        _ => (authority.to_ascii_lowercase(), None),
    }
}

/// Walks a chunked body: how many of `data`'s bytes belong to it, and whether it ended.
#[derive(Debug, Default, Clone)]
pub struct ChunkedBody {
    state: ChunkState,
}

#[derive(Debug, Default, Clone)]
enum ChunkState {
    /// Reading a chunk-size line (bytes seen so far).
    #[default]
    Size,
    SizeLine(Vec<u8>),
    Data(u64),
    /// The CRLF after a chunk's data: this many bytes of it remain.
    DataEnd(u8),
    /// Trailer lines after the last chunk; `at_line_start` tells an empty line.
    Trailer {
        line: Vec<u8>,
    },
    Done,
}

impl ChunkedBody {
    /// Consumes body bytes from `data`; returns how many belonged to the body and whether it
    /// is complete, or an error for a malformed body.
    pub fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), &'static str> {
        let mut used = 0;
        while used < data.len() {
            match &mut self.state {
                ChunkState::Size => self.state = ChunkState::SizeLine(Vec::new()),
                ChunkState::SizeLine(line) => {
                    let b = data[used];
                    used += 1;
                    line.push(b);
                    if line.len() > 1024 {
                        return Err("chunk-size line too long");
                    }
                    if line.ends_with(b"\r\n") {
                        let text = std::str::from_utf8(&line[..line.len() - 2])
                            .map_err(|_| "bad chunk size")?;
                        let size_text = text.split(';').next().unwrap_or_default().trim();
                        let size =
                            u64::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
                        self.state = if size == 0 {
                            ChunkState::Trailer { line: Vec::new() }
                        } else {
                            ChunkState::Data(size)
                        };
                    }
                }
                ChunkState::Data(left) => {
                    let n = (*left).min((data.len() - used) as u64);
                    used += n as usize;
                    *left -= n;
                    if *left == 0 {
                        self.state = ChunkState::DataEnd(2);
                    }
                }
                ChunkState::DataEnd(left) => {
                    let expected = if *left == 2 { b'\r' } else { b'\n' };
                    if data[used] != expected {
                        return Err("chunk data not followed by CRLF");
                    }
                    used += 1;
                    *left -= 1;
                    if *left == 0 {
                        self.state = ChunkState::Size;
                    }
                }
                ChunkState::Trailer { line } => {
                    line.push(data[used]);
                    used += 1;
                    if line.len() > 8192 {
                        return Err("trailer too long");
                    }
                    if line.ends_with(b"\r\n") {
                        if line.len() == 2 {
                            self.state = ChunkState::Done;
                            return Ok((used, true));
                        }
                        line.clear();
                    }
                }
                ChunkState::Done => return Ok((used, true)),
            }
        }
        Ok((used, matches!(self.state, ChunkState::Done)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello as a TLS record, with the given extensions (type, data).
    pub(crate) fn hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one cipher suite
        body.extend([1, 0]); // null compression
        let mut ext = Vec::new();
        for (kind, data) in extensions {
            ext.extend(kind.to_be_bytes());
            ext.extend((data.len() as u16).to_be_bytes());
            ext.extend(data);
        }
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut handshake = vec![1];
        handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend(body);
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend((handshake.len() as u16).to_be_bytes());
        record.extend(handshake);
        record
    }

    pub(crate) fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend((name.len() as u16).to_be_bytes());
        entry.extend(name.as_bytes());
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend(entry);
        (EXT_SERVER_NAME, data)
    }

    #[test]
    fn client_hello_sni_and_ech() {
        let plain = hello(&[sni("api.example.com"), (10, vec![0, 2, 0, 29])]);
        assert_eq!(
            opening(&plain),
            Opening::Tls {
                sni: Some("api.example.com".into()),
                ech: false
            }
        );
        let ech = hello(&[sni("public.example.com"), (EXT_ECH, vec![0; 40])]);
        assert_eq!(
            opening(&ech),
            Opening::Tls {
                sni: Some("public.example.com".into()),
                ech: true
            }
        );
        assert_eq!(
            opening(&hello(&[])),
            Opening::Tls {
                sni: None,
                ech: false
            }
        );
        // Every prefix is incomplete, never a verdict.
        for cut in 1..plain.len() {
            assert_eq!(opening(&plain[..cut]), Opening::Incomplete, "{cut}");
        }
    }

    #[test]
    fn client_hello_split_over_records() {
        let whole = hello(&[sni("split.example.com")]);
        let handshake = &whole[5..];
        let (a, b) = handshake.split_at(20);
        let mut data = Vec::new();
        for part in [a, b] {
            data.extend([0x16, 0x03, 0x01]);
            data.extend((part.len() as u16).to_be_bytes());
            data.extend(part);
        }
        assert_eq!(
            opening(&data),
            Opening::Tls {
                sni: Some("split.example.com".into()),
                ech: false
            }
        );
    }

    #[test]
    fn malformed_hellos_are_refused() {
        let twice = hello(&[sni("a.example.com"), sni("b.example.com")]);
        assert_eq!(opening(&twice), Opening::BadTls);
        let mut two_names = sni("a.example.com").1;
        let extra = [
            0u8, 0, 13, b'b', b'.', b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o',
            b'm',
        ];
        two_names.extend(extra);
        let len = (two_names.len() - 2) as u16;
        two_names[..2].copy_from_slice(&len.to_be_bytes());
        assert_eq!(opening(&hello(&[(0, two_names)])), Opening::BadTls);
        assert_eq!(
            opening(&[0x16, 0x03, 0x01, 0x00, 0x05, 2, 0, 0, 1, 0]),
            Opening::BadTls
        );
        assert_eq!(opening(&[0x16, 0x02, 0, 0, 0]), Opening::BadTls);
    }

    #[test]
    fn other_openings() {
        assert_eq!(opening(b"GET / HTTP/1.1\r\n"), Opening::Http);
        assert_eq!(opening(b"GE"), Opening::Incomplete);
        assert_eq!(opening(b"SSH-2.0-OpenSSH_9.2\r\n"), Opening::Other);
        assert_eq!(
            opening(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Opening::Http2Cleartext
        );
        assert_eq!(opening(b"PRI * H"), Opening::Incomplete);
        assert_eq!(opening(b""), Opening::Incomplete);
    }

    #[test]
    fn request_heads() {
        let Head::Complete(head) = request_head(
            b"POST /x HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\n\r\nhello",
        ) else {
            panic!()
        };
        assert_eq!(head.hosts, ["api.example.com"]);
        assert_eq!(head.body, Body::Length(5));
        assert_eq!(head.length, 62);
        assert_eq!(request_head(b"GET / HTTP/1.1\r\nHost: a"), Head::Incomplete);
        for bad in [
            &b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET /\r\n\r\n",
        ] {
            assert!(
                matches!(request_head(bad), Head::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let Head::Complete(two) =
            request_head(b"GET / HTTP/1.1\r\nHost: a.example\r\nhost: b.example\r\n\r\n")
        else {
            panic!()
        };
        assert_eq!(two.hosts.len(), 2);
        let Head::Complete(ws) =
            request_head(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
        else {
            panic!()
        };
        assert!(ws.upgrade);
    }

    #[test]
    fn chunked_bodies() {
        let body = b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n";
        let mut walker = ChunkedBody::default();
        let (used, done) = walker.feed(body).unwrap();
        assert!(done);
        assert_eq!(&body[used..], b"GET / HTTP/1.1\r\n");
        // Byte by byte gives the same answer.
        let mut walker = ChunkedBody::default();
        let mut total = 0;
        for byte in body.iter() {
            let (used, done) = walker.feed(std::slice::from_ref(byte)).unwrap();
            total += used;
            if done {
                break;
            }
        }
        assert_eq!(total, used);
        assert!(ChunkedBody::default().feed(b"zz\r\n").is_err());
        assert!(ChunkedBody::default().feed(b"1\r\naXX").is_err());
    }

    #[test]
    fn authorities() {
        assert_eq!(
            authority_host("Api.Example.com:8443"),
            ("api.example.com".into(), Some(8443))
        );
        assert_eq!(authority_host("example.com"), ("example.com".into(), None));
        assert_eq!(
            authority_host("[2001:db8::1]:443"),
            ("2001:db8::1".into(), Some(443))
        );
    }
}

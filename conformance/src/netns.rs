//! Test hosts in network namespaces that the test creates: named namespaces, veth pairs
//! between them, addresses from the benchmarking ranges 198.18.0.0/15 and 2001:2::/48 only,
//! and small TCP and UDP servers and clients that stop by themselves. Everything is removed on
//! drop. The clients refuse any address outside those ranges and loopback.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use nix::sched::{setns, CloneFlags};

use crate::command::{run_ok, Output};
use crate::leaks::NETNS_DIR;

const IP_LIMIT: Duration = Duration::from_secs(30);

/// Where subnet claims live; `/run` is emptied at boot, so no claim outlives the machine.
const CLAIMS_DIR: &str = "/run/mxc-conformance/subnets";
/// 198.18.0.0/15 holds 512 /24 blocks.
const BLOCKS: u32 = 512;

fn ip(args: &[&str]) -> Result<Output> {
    run_ok(Command::new("ip").args(args), IP_LIMIT)
}

/// A /24 of 198.18.0.0/15 and a /64 of 2001:2::/48, claimed by this test process (so that
/// concurrent tests never use the same addresses where they could meet, such as a pod network
/// whose host side lives in the root namespace). Released on drop.
#[derive(Debug)]
pub struct Subnet {
    index: u32,
    claim: PathBuf,
}

impl Subnet {
    /// Claims the first block no live process holds.
    pub fn claim() -> Result<Subnet> {
        fs::create_dir_all(CLAIMS_DIR).with_context(|| format!("creating {CLAIMS_DIR}"))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Path::new(CLAIMS_DIR).join(".lock"))?;
        let _lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, errno)| anyhow!("locking {CLAIMS_DIR}: {errno}"))?;
        let me = std::process::id();
        // Start at a block that depends on the pid, so that claims rarely need to be skipped.
        let start = me % BLOCKS;
        for offset in 0..BLOCKS {
            let index = (start + offset) % BLOCKS;
            let claim = Path::new(CLAIMS_DIR).join(index.to_string());
            if let Ok(owner) = fs::read_to_string(&claim) {
                let alive = owner
                    .trim()
                    .parse::<u32>()
                    .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                if alive {
                    continue;
                }
                let _ = fs::remove_file(&claim);
            }
            let mut file = match OpenOptions::new().write(true).create_new(true).open(&claim) {
                Ok(file) => file,
                Err(error) if error.kind() == ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error.into()),
            };
            writeln!(file, "{me}")?;
            return Ok(Subnet { index, claim });
        }
        bail!("all {BLOCKS} test subnets of 198.18.0.0/15 are claimed by live processes")
    }

    /// `198.18.0.0/15` is `198.18.x.y` and `198.19.x.y`.
    fn octets(&self) -> (u8, u8) {
        (18 + (self.index / 256) as u8, (self.index % 256) as u8)
    }

    /// Host `host` (1..=254) of the IPv4 block.
    pub fn v4(&self, host: u8) -> Ipv4Addr {
        let (b, c) = self.octets();
        Ipv4Addr::new(198, b, c, host)
    }

    /// The IPv4 block, `198.18.C.0/24`.
    pub fn v4_net(&self) -> String {
        format!("{}/24", self.v4(0))
    }

    /// Host `host` of the IPv6 block.
    pub fn v6(&self, host: u16) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0x2, 0, self.index as u16, 0, 0, 0, host)
    }

    /// The IPv6 block, `2001:2:0:N::/64`.
    pub fn v6_net(&self) -> String {
        format!("{}/64", self.v6(0))
    }
}

impl Drop for Subnet {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.claim);
    }
}

/// True for the addresses tests may send packets to: the benchmarking ranges, ULAs and
/// loopback.
pub fn is_test_address(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback() || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || (s[0] == 0x2001 && s[1] == 0x2 && s[2] == 0)
                || (s[0] & 0xfe00) == 0xfc00
        }
    }
}

fn check_target(addr: SocketAddr) -> Result<()> {
    if !is_test_address(addr.ip()) {
        bail!("{addr} is outside the test ranges (198.18.0.0/15, 2001:2::/48, fc00::/7, loopback)");
    }
    Ok(())
}

/// A network namespace: one the test created (named, deleted on drop) or one it was handed (a
/// container's, by path; left alone on drop).
#[derive(Debug)]
pub struct NetNamespace {
    name: Option<String>,
    path: PathBuf,
}

impl NetNamespace {
    /// `ip netns add` with a fresh name, loopback up.
    pub fn create() -> Result<NetNamespace> {
        let name = crate::unique_name("mxct");
        ip(&["netns", "add", &name])?;
        let ns = NetNamespace {
            path: Path::new(NETNS_DIR).join(&name),
            name: Some(name),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The network namespace at `path` (for example `/proc/PID/ns/net` of a container).
    pub fn at(path: impl Into<PathBuf>) -> NetNamespace {
        NetNamespace {
            name: None,
            path: path.into(),
        }
    }

    /// The `ip netns` name, for a namespace this test created.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `PROGRAM` to be run inside the namespace (`nsenter --net=PATH -- PROGRAM`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path.display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Whether IPv6 is on in the namespace (an engine may switch it off).
    pub fn has_ipv6(&self) -> bool {
        run_ok(
            self.command("cat")
                .arg("/proc/sys/net/ipv6/conf/all/disable_ipv6"),
            IP_LIMIT,
        )
        .is_ok_and(|out| out.stdout.trim() == "0")
    }

    /// `ip ARGS...` inside the namespace; an error if it fails.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        run_ok(self.command("ip").args(args), IP_LIMIT)
    }

    /// Runs `f` on a thread that has joined this namespace. Sockets it opens belong to the
    /// namespace and may be used from any thread afterwards.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        self.spawn(f)?
            .join()
            .map_err(|_| anyhow!("a thread inside {} panicked", self.path.display()))
    }

    /// Like [`NetNamespace::enter`], without waiting for `f` to finish.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<JoinHandle<T>> {
        let file = File::open(&self.path)
            .with_context(|| format!("opening network namespace {}", self.path.display()))?;
        let (joined_tx, joined) = mpsc::channel();
        let handle = thread::spawn(move || {
            if let Err(errno) = setns(&file, CloneFlags::CLONE_NEWNET) {
                let _ = joined_tx.send(Err(errno));
                // The closure must not run in the wrong namespace, and there is no `T` to
                // return without it: end the thread; the caller already has the error.
                panic!("setns failed: {errno}");
            }
            drop(file);
            let _ = joined_tx.send(Ok(()));
            f()
        });
        match joined.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(errno)) => Err(anyhow!("joining {}: {errno}", self.path.display())),
            Err(_) => Err(anyhow!("joining {}: thread ended", self.path.display())),
        }
    }
}

impl Drop for NetNamespace {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = run_ok(Command::new("ip").args(["netns", "delete", name]), IP_LIMIT);
        }
    }
}

/// A veth pair between two namespaces, with addresses on both ends. The kernel removes it with
/// either namespace; drop removes it at once.
#[derive(Debug)]
pub struct Veth {
    left_name: String,
    left_ns: PathBuf,
    pub left_v4: Ipv4Addr,
    pub right_v4: Ipv4Addr,
    pub left_v6: Ipv6Addr,
    pub right_v6: Ipv6Addr,
}

impl Veth {
    /// Links `left` and `right` (which must be a namespace this test created, since `ip`
    /// moves links by name) with hosts `left_host` and `right_host` of `subnet`.
    pub fn connect(
        left: &NetNamespace,
        right: &NetNamespace,
        subnet: &Subnet,
        left_host: u8,
        right_host: u8,
    ) -> Result<Veth> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let right_target = right.name().ok_or_else(|| {
            anyhow!("the right end of a veth must be a namespace this test created")
        })?;
        // Names are unique per process too: one end may live in the root namespace, which
        // concurrent tests share (at most 15 characters: "mxl" + pid + "x" + n).
        let pid = std::process::id();
        let left_name = format!("mxl{pid}x{n}");
        let right_name = format!("mxr{pid}x{n}");
        left.ip(&[
            "link",
            "add",
            &left_name,
            "type",
            "veth",
            "peer",
            "name",
            &right_name,
        ])?;
        let veth = Veth {
            left_name: left_name.clone(),
            left_ns: left.path().to_path_buf(),
            left_v4: subnet.v4(left_host),
            right_v4: subnet.v4(right_host),
            left_v6: subnet.v6(left_host.into()),
            right_v6: subnet.v6(right_host.into()),
        };
        left.ip(&["link", "set", &right_name, "netns", right_target])?;
        // An engine may have switched IPv6 off in its namespace (Docker does): IPv4 only then.
        let ipv6 = left.has_ipv6() && right.has_ipv6();
        for (ns, link, v4, v6) in [
            (left, &left_name, veth.left_v4, veth.left_v6),
            (right, &right_name, veth.right_v4, veth.right_v6),
        ] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", link])?;
            if ipv6 {
                ns.ip(&[
                    "-6",
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    link,
                    "nodad",
                ])?;
            }
            ns.ip(&["link", "set", link, "up"])?;
        }
        Ok(veth)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let ns = NetNamespace::at(&self.left_ns);
        let _ = run_ok(
            ns.command("ip").args(["link", "delete", &self.left_name]),
            IP_LIMIT,
        );
    }
}

/// Two test hosts joined by a veth pair: the usual shape of a network test.
#[derive(Debug)]
pub struct TestLink {
    // Field order is drop order: the link before the namespaces, the claim last.
    pub veth: Veth,
    pub left: NetNamespace,
    pub right: NetNamespace,
    pub subnet: Subnet,
}

impl TestLink {
    /// Namespaces `left` (host .1) and `right` (host .2), linked.
    pub fn new() -> Result<TestLink> {
        let subnet = Subnet::claim()?;
        let left = NetNamespace::create()?;
        let right = NetNamespace::create()?;
        let veth = Veth::connect(&left, &right, &subnet, 1, 2)?;
        Ok(TestLink {
            veth,
            left,
            right,
            subnet,
        })
    }
}

/// A TCP server inside a namespace that answers each connection with a fixed reply, records
/// what it received, and stops after `max_connections` or `limit`, whichever comes first.
pub struct TcpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<String>>>,
}

impl TcpServer {
    pub fn start(
        ns: &NetNamespace,
        bind: SocketAddr,
        reply: &str,
        max_connections: usize,
        limit: Duration,
    ) -> Result<TcpServer> {
        let listener = ns.enter(move || TcpListener::bind(bind))??;
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let reply = reply.to_string();
        let handle = thread::spawn(move || {
            let deadline = Instant::now() + limit;
            let mut received = Vec::new();
            while received.len() < max_connections
                && Instant::now() < deadline
                && !stopped.load(Ordering::Relaxed)
            {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                        let request = read_some(&mut stream);
                        let _ = stream.write_all(reply.as_bytes());
                        received.push(request);
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
            received
        });
        Ok(TcpServer {
            addr,
            stop,
            handle: Some(handle),
        })
    }

    /// The address it listens on (the port is filled in when the caller asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and returns what each connection sent, in order.
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Reads what the peer sends until it pauses, closes, or 4 KiB have arrived.
fn read_some(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    while len < buf.len() {
        match stream.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if buf[..len].ends_with(b"\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// Connects from inside `ns` to `addr`, sends `payload` (end it with a newline), and returns
/// the reply. Fails on refusal, timeout, or a target outside the test ranges.
pub fn tcp_request(
    ns: &NetNamespace,
    addr: SocketAddr,
    payload: &str,
    limit: Duration,
) -> Result<String> {
    check_target(addr)?;
    let payload = payload.to_string();
    ns.enter(move || -> Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, limit)
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(limit))?;
        stream.set_write_timeout(Some(limit))?;
        stream.write_all(payload.as_bytes())?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .with_context(|| format!("reading the reply of {addr}"))?;
        Ok(reply)
    })?
}

/// A UDP server inside a namespace that answers each datagram with `reply` followed by what
/// it received, for at most `max_datagrams` datagrams or `limit`.
pub struct UdpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<String>>>,
}

impl UdpServer {
    pub fn start(
        ns: &NetNamespace,
        bind: SocketAddr,
        reply: &str,
        max_datagrams: usize,
        limit: Duration,
    ) -> Result<UdpServer> {
        let socket = ns.enter(move || UdpSocket::bind(bind))??;
        let addr = socket.local_addr()?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let reply = reply.to_string();
        let handle = thread::spawn(move || {
            let deadline = Instant::now() + limit;
            let mut received = Vec::new();
            let mut buf = [0u8; 2048];
            while received.len() < max_datagrams
                && Instant::now() < deadline
                && !stopped.load(Ordering::Relaxed)
            {
                match socket.recv_from(&mut buf) {
                    Ok((n, peer)) => {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        let _ = socket.send_to(format!("{reply}{text}").as_bytes(), peer);
                        received.push(text);
                    }
                    Err(error)
                        if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            received
        });
        Ok(UdpServer {
            addr,
            stop,
            handle: Some(handle),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the server and returns the datagrams it received, in order.
    pub fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Sends one datagram from inside `ns` to `addr` and waits up to `limit` for the answer.
pub fn udp_request(
    ns: &NetNamespace,
    addr: SocketAddr,
    payload: &str,
    limit: Duration,
) -> Result<String> {
    check_target(addr)?;
    let payload = payload.to_string();
    ns.enter(move || -> Result<String> {
        let any: IpAddr = if addr.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = UdpSocket::bind(SocketAddr::new(any, 0))?;
        socket.set_read_timeout(Some(limit))?;
        socket.send_to(payload.as_bytes(), addr)?;
        let mut buf = [0u8; 2048];
        let (n, _) = socket
            .recv_from(&mut buf)
            .with_context(|| format!("waiting for the answer of {addr}"))?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })?
}

/// A new namespace linked to the root namespace by a veth pair on a subnet of its own: the
/// host's end is `.1`, the namespace's `.2`, its default routes (IPv4 and IPv6) via the host.
pub fn linked_to_root() -> Result<(Subnet, NetNamespace, Veth)> {
    let subnet = Subnet::claim()?;
    let ns = NetNamespace::create()?;
    let root = NetNamespace::at("/proc/self/ns/net");
    let veth = Veth::connect(&root, &ns, &subnet, 1, 2)?;
    ns.ip(&["route", "add", "default", "via", &subnet.v4(1).to_string()])?;
    ns.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        &subnet.v6(1).to_string(),
    ])?;
    Ok((subnet, ns, veth))
}

/// How long a test host's servers accept connections.
const SERVER_LIMIT: Duration = Duration::from_secs(30);

/// A test host reachable from the host's own namespace (where the userspace stack opens its
/// sockets): a namespace linked to the root namespace by a veth pair.
pub struct TestHost {
    _veth: Veth,
    pub ns: NetNamespace,
    pub subnet: Subnet,
}

impl TestHost {
    pub fn new() -> Result<TestHost> {
        let (subnet, ns, veth) = linked_to_root()?;
        Ok(TestHost {
            _veth: veth,
            ns,
            subnet,
        })
    }

    pub fn v4(&self) -> IpAddr {
        IpAddr::V4(self.subnet.v4(2))
    }

    pub fn v6(&self) -> IpAddr {
        IpAddr::V6(self.subnet.v6(2))
    }

    /// A second test host behind the same link: another address of the namespace.
    pub fn other_v4(&self) -> Result<IpAddr> {
        let other = self.subnet.v4(3);
        self.ns
            .ip(&["addr", "add", &format!("{other}/32"), "dev", "lo"])?;
        Ok(IpAddr::V4(other))
    }

    pub fn tcp(&self, ip: IpAddr, reply: &str) -> Result<TcpServer> {
        TcpServer::start(&self.ns, SocketAddr::new(ip, 0), reply, 8, SERVER_LIMIT)
    }

    pub fn udp(&self, ip: IpAddr, reply: &str) -> Result<UdpServer> {
        UdpServer::start(&self.ns, SocketAddr::new(ip, 0), reply, 8, SERVER_LIMIT)
    }
}

/// A TCP client for inside a sandbox (Perl is in every Debian host baseline): prints
/// `TAG=<reply>` or `TAG=blocked`.
pub fn tcp_client(addr: SocketAddr, tag: &str) -> String {
    let host = match addr.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6.to_string(),
    };
    format!(
        "perl -MIO::Socket::IP -e '$s = IO::Socket::IP->new(PeerHost => \"{host}\", PeerPort => {port}, Timeout => 2) or do {{ print \"{tag}=blocked\\n\"; exit }}; print $s \"hi\\n\"; $r = <$s>; print \"{tag}=\" . ($r // \"eof\\n\")'; ",
        port = addr.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_ranges_are_targets() {
        for ok in [
            "198.18.0.1",
            "198.19.255.254",
            "127.0.0.1",
            "2001:2::1",
            "fd00::1",
            "::1",
        ] {
            assert!(is_test_address(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "198.20.0.1",
            "10.0.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "2001:db8::1",
            "2001:2:1::1",
        ] {
            assert!(!is_test_address(bad.parse().unwrap()), "{bad}");
        }
        let refused = check_target("8.8.8.8:53".parse().unwrap());
        assert!(refused.is_err());
    }
}

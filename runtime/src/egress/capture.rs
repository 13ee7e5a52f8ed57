//! Puts the egress proxy in front of a network namespace: its listeners bound on the
//! namespace's loopback (sockets the proxy holds; the proxy's threads run outside), the routes
//! that make every destination reach them, and the rules that redirect TCP and DNS there and
//! drop the rest. Torn down on drop; the namespace's rules go with the namespace (or with the
//! container's delete, in an engine's namespace), the routes into the name pools with the
//! proxy.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use mxc_translate::compile::capture::{self, CaptureFacts, Listeners, Namespace, PROXY_PORT};

use super::{dns, proxy, Egress};
use crate::network::{netns, which, NetworkError};

/// The listeners, inside the namespace.
struct Sockets {
    transparent: Vec<TcpListener>,
    proxy: Vec<TcpListener>,
    dns_udp: Vec<UdpSocket>,
    dns_tcp: Vec<TcpListener>,
}

/// Binds every listener on loopback, IPv4 and IPv6 alike; IPv6 only where the namespace has
/// it (an engine may switch it off, as Docker does): then nothing can use it there either.
fn bind_all() -> std::io::Result<Sockets> {
    let v4 = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = |port| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let ipv6 = TcpListener::bind(v6(0)).is_ok();
    fn both<T>(
        bind: impl Fn(SocketAddr) -> std::io::Result<T>,
        v4: SocketAddr,
        v6: Option<SocketAddr>,
    ) -> std::io::Result<Vec<T>> {
        let mut out = vec![bind(v4)?];
        if let Some(v6) = v6 {
            out.push(bind(v6)?);
        }
        Ok(out)
    }
    let first = TcpListener::bind(v4(0))?;
    let port = first.local_addr()?.port();
    let mut transparent = vec![first];
    if ipv6 {
        transparent.push(TcpListener::bind(v6(port))?);
    }
    let proxy = both(
        TcpListener::bind,
        v4(PROXY_PORT),
        ipv6.then(|| v6(PROXY_PORT)),
    )?;
    let udp = UdpSocket::bind(v4(0))?;
    let dns_port = udp.local_addr()?.port();
    let mut dns_udp = vec![udp];
    if ipv6 {
        dns_udp.push(UdpSocket::bind(v6(dns_port))?);
    }
    let dns_tcp = both(TcpListener::bind, v4(dns_port), ipv6.then(|| v6(dns_port)))?;
    Ok(Sockets {
        transparent,
        proxy,
        dns_udp,
        dns_tcp,
    })
}

/// The running proxy of one namespace.
pub struct Capture {
    egress: Arc<Egress>,
    fds: Vec<i32>,
    threads: Vec<JoinHandle<()>>,
    /// An engine's namespace, whose routes into the name pools go with the proxy.
    engine_netns: Option<File>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").field("fds", &self.fds).finish()
    }
}

impl Capture {
    /// Binds the listeners in the network namespace of `pid`, routes and redirects its traffic
    /// to them (the table `table`, with `comment`), and starts serving.
    pub fn start(
        pid: i32,
        egress: Egress,
        namespace: Namespace,
        table: &str,
        log_group: u16,
        comment: Option<String>,
    ) -> Result<Capture, NetworkError> {
        let listeners = netns::in_netns(pid, bind_all).map_err(|e| {
            NetworkError::Relay(format!(
                "binding the egress proxy's listeners in the sandbox: {e}"
            ))
        })?;
        let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).unwrap_or_default();
        let ports = Listeners {
            transparent_port: port(&listeners.transparent[0]),
            dns_port: listeners.dns_udp[0]
                .local_addr()
                .map(|a| a.port())
                .unwrap_or_default(),
        };
        let facts = CaptureFacts {
            namespace,
            table: table.to_string(),
            listeners: Some(ports),
            log_group,
            comment,
        };
        let ipv6 = listeners.dns_udp.len() > 1;
        let routes = match namespace {
            Namespace::Own => capture::own_namespace_routes(ipv6),
            Namespace::Engine => capture::engine_namespace_routes(ipv6),
        };
        let ip = which("ip").ok_or(NetworkError::MissingTool("ip", "iproute2"))?;
        let output = netns::run_in_netns(pid, &ip, &["-batch", "-"], routes.as_bytes())?;
        if !output.status.success() {
            return Err(NetworkError::Rules(format!(
                "routing the sandbox's traffic to the egress proxy: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let engine_netns = match namespace {
            Namespace::Own => None,
            Namespace::Engine => Some(open_netns(pid)?),
        };
        crate::network::install_rules(pid, &capture::ruleset(&facts))?;

        let mut egress = egress;
        egress.ipv6 = ipv6;
        let egress = Arc::new(egress);
        let mut fds = Vec::new();
        let mut threads = Vec::new();
        // Each serving thread (and every thread it starts) lives where upstream connections
        // leave from.
        let mut serve = |fd: i32, work: Box<dyn FnOnce(Arc<Egress>) + Send>| {
            fds.push(fd);
            let egress = Arc::clone(&egress);
            threads.push(std::thread::spawn(move || match egress.outbound.enter() {
                Ok(()) => work(egress),
                Err(error) => tracing::warn!(%error, "the egress proxy cannot serve"),
            }));
        };
        for listener in listeners.transparent {
            serve(
                listener.as_raw_fd(),
                Box::new(move |egress| proxy::serve_transparent(egress, listener)),
            );
        }
        for listener in listeners.proxy {
            serve(
                listener.as_raw_fd(),
                Box::new(move |egress| proxy::serve_proxy(egress, listener)),
            );
        }
        for socket in listeners.dns_udp {
            serve(
                socket.as_raw_fd(),
                Box::new(move |egress| dns::serve_udp(egress, socket)),
            );
        }
        for listener in listeners.dns_tcp {
            serve(
                listener.as_raw_fd(),
                Box::new(move |egress| dns::serve_tcp(egress, listener)),
            );
        }
        Ok(Capture {
            egress,
            fds,
            threads,
            engine_netns,
        })
    }
}

fn open_netns(pid: i32) -> Result<File, NetworkError> {
    let path = format!("/proc/{pid}/ns/net");
    File::open(&path).map_err(|e| NetworkError::io(format!("opening {path}"), e))
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.egress.request_stop();
        for fd in &self.fds {
            // SAFETY: shutting down sockets the serving threads own; it wakes their blocking
            // accept or receive, and the threads then return and close them.
            unsafe { libc::shutdown(*fd, libc::SHUT_RDWR) };
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let (Some(netns), Some(ip)) = (&self.engine_netns, which("ip")) {
            let removal = capture::engine_namespace_routes_removal();
            let _ = netns::run_in_netns_file(
                netns,
                &ip,
                &["-force", "-batch", "-"],
                removal.as_bytes(),
            );
        }
    }
}

//! Puts the egress proxy in front of a network namespace: its listeners bound on the
//! namespace's loopback (sockets the proxy holds; the proxy's threads run outside), the routes
//! that make every destination reach them, and the rules that redirect TCP and DNS there and
//! drop the rest. Torn down on drop; the namespace's rules go with the namespace.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use mxc_translate::compile::capture::{self, CaptureFacts, Namespace, PROXY_PORT};

use super::{dns, proxy, Egress};
use crate::network::{netns, which, NetworkError};

/// The listeners, inside the namespace.
struct Listeners {
    transparent: Vec<TcpListener>,
    proxy: Vec<TcpListener>,
    dns_udp: Vec<UdpSocket>,
    dns_tcp: Vec<TcpListener>,
}

fn bind_all() -> std::io::Result<Listeners> {
    let v4 = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = |port| SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let first = TcpListener::bind(v4(0))?;
    let port = first.local_addr()?.port();
    let transparent = vec![first, TcpListener::bind(v6(port))?];
    let proxy = vec![
        TcpListener::bind(v4(PROXY_PORT))?,
        TcpListener::bind(v6(PROXY_PORT))?,
    ];
    let udp = UdpSocket::bind(v4(0))?;
    let dns_port = udp.local_addr()?.port();
    let dns_udp = vec![udp, UdpSocket::bind(v6(dns_port))?];
    let dns_tcp = vec![
        TcpListener::bind(v4(dns_port))?,
        TcpListener::bind(v6(dns_port))?,
    ];
    Ok(Listeners {
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
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").field("fds", &self.fds).finish()
    }
}

impl Capture {
    /// Binds the listeners in the network namespace of `pid`, routes and redirects its traffic
    /// to them, and starts serving.
    pub fn start(
        pid: i32,
        egress: Egress,
        namespace: Namespace,
        table: &str,
        log_group: u16,
    ) -> Result<Capture, NetworkError> {
        let listeners = netns::in_netns(pid, bind_all).map_err(|e| {
            NetworkError::Relay(format!(
                "binding the egress proxy's listeners in the sandbox: {e}"
            ))
        })?;
        let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).unwrap_or_default();
        let facts = CaptureFacts {
            namespace,
            table: table.to_string(),
            transparent_port: port(&listeners.transparent[0]),
            dns_port: listeners.dns_udp[0]
                .local_addr()
                .map(|a| a.port())
                .unwrap_or_default(),
            log_group,
        };
        let routes = match namespace {
            Namespace::Own => capture::own_namespace_routes(),
            Namespace::Engine => capture::engine_namespace_routes(),
        };
        let ip = which("ip").ok_or(NetworkError::MissingTool("ip", "iproute2"))?;
        let output = netns::run_in_netns(pid, &ip, &["-batch", "-"], routes.as_bytes())?;
        if !output.status.success() {
            return Err(NetworkError::Rules(format!(
                "routing the sandbox's traffic to the egress proxy: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        crate::network::install_rules(pid, &capture::ruleset(&facts))?;

        let egress = Arc::new(egress);
        let mut fds = Vec::new();
        let mut threads = Vec::new();
        for listener in listeners.transparent {
            fds.push(listener.as_raw_fd());
            let egress = Arc::clone(&egress);
            threads.push(std::thread::spawn(move || {
                proxy::serve_transparent(egress, listener)
            }));
        }
        for listener in listeners.proxy {
            fds.push(listener.as_raw_fd());
            let egress = Arc::clone(&egress);
            threads.push(std::thread::spawn(move || {
                proxy::serve_proxy(egress, listener)
            }));
        }
        for socket in listeners.dns_udp {
            fds.push(socket.as_raw_fd());
            let egress = Arc::clone(&egress);
            threads.push(std::thread::spawn(move || dns::serve_udp(egress, socket)));
        }
        for listener in listeners.dns_tcp {
            fds.push(listener.as_raw_fd());
            let egress = Arc::clone(&egress);
            threads.push(std::thread::spawn(move || dns::serve_tcp(egress, listener)));
        }
        Ok(Capture {
            egress,
            fds,
            threads,
        })
    }
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
    }
}

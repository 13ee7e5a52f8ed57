//! A loopback proxy on the host, reachable from the sandbox: a listener inside the sandbox's
//! network namespace on the proxy's own loopback address and port, each connection forwarded to
//! the host's loopback. The sandbox's URL stays literally valid and host loopback stays closed
//! otherwise.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{netns, NetworkError};

#[derive(Debug)]
pub struct Relay {
    stop: Arc<AtomicBool>,
    listener_fd: i32,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start(pid: i32, listen: SocketAddr, target: SocketAddr) -> Result<Relay, NetworkError> {
        let listener = netns::in_netns(pid, move || TcpListener::bind(listen)).map_err(|e| {
            NetworkError::Relay(format!("listening on {listen} in the sandbox: {e}"))
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let listener_fd = listener.as_raw_fd();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(inside) = stream else { continue };
                std::thread::spawn(move || {
                    if let Ok(outside) = TcpStream::connect(target) {
                        pump(inside, outside);
                    }
                });
            }
        });
        Ok(Relay {
            stop,
            listener_fd,
            thread: Some(thread),
        })
    }
}

fn pump(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let forward = std::thread::spawn(move || copy(a, b2));
    copy(b, a2);
    let _ = forward.join();
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // SAFETY: shutting down our own listening socket wakes the blocked accept.
        unsafe { libc::shutdown(self.listener_fd, libc::SHUT_RDWR) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

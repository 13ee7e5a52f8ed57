//! A process's stdin, stdout and stderr, as containerd describes them in Create and Exec:
//! paths of FIFOs that containerd reads and writes (the default, also written `fifo://`), a
//! `file://` log file, or a `binary://` logging program (`ctr run --log-uri`).
//!
//! As in containerd's own shims the container never holds those: it gets anonymous pipes (or
//! a terminal), and the shim copies between them and containerd's ends in one thread per
//! process ([`Pump`]). A `binary://` logger reads the container's pipes itself.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::console::ConsoleSocket;
use crate::zygote::Passed;

/// The streams of a process as containerd gave them (kept for State, which must return them
/// as they were so that containerd can reattach after a restart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("stdio URI {uri:?}: {reason}")]
    Uri { uri: String, reason: String },
    #[error("{context}: {source}")]
    Os {
        context: String,
        source: std::io::Error,
    },
}

fn os(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> IoError {
    let context = context.into();
    move |source| IoError::Os { context, source }
}

/// Where stdout and stderr go, from the scheme of the stdout URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// FIFOs at the stdout and stderr paths (either may be empty: that stream is dropped).
    Fifo,
    /// Both streams appended to one file.
    File(PathBuf),
    /// A program reading both streams: its path and arguments (from the URI's query).
    Binary { path: PathBuf, args: Vec<String> },
}

pub fn destination(stdout: &str) -> Result<Destination, IoError> {
    if !stdout.contains("://") {
        return Ok(Destination::Fifo);
    }
    let bad = |reason: &str| IoError::Uri {
        uri: stdout.to_string(),
        reason: reason.to_string(),
    };
    let url = url::Url::parse(stdout).map_err(|e| bad(&e.to_string()))?;
    let path = PathBuf::from(url.path());
    match url.scheme() {
        "fifo" => Ok(Destination::Fifo),
        "file" => {
            if !path.is_absolute() || url.path().len() <= 1 {
                return Err(bad("a file:// URI needs an absolute path"));
            }
            Ok(Destination::File(path))
        }
        "binary" => {
            if !path.is_absolute() || url.path().len() <= 1 {
                return Err(bad("a binary:// URI needs an absolute path"));
            }
            let mut args = Vec::new();
            for (key, value) in url.query_pairs() {
                args.push(key.into_owned());
                if !value.is_empty() {
                    args.push(value.into_owned());
                }
            }
            Ok(Destination::Binary { path, args })
        }
        other => Err(bad(&format!(
            "unknown scheme {other:?} (use a FIFO path, file:// or binary://)"
        ))),
    }
}

/// The path of a FIFO given as a plain path or `fifo://PATH`.
fn fifo_path(raw: &str) -> &str {
    raw.strip_prefix("fifo://").unwrap_or(raw)
}

/// A `binary://` logger to start once the container's pipes exist: the caller runs it
/// through the zygote ([`crate::zygote::Op::SpawnLogger`]).
pub struct LoggerLaunch {
    pub path: PathBuf,
    pub args: Vec<String>,
    /// Its fds 3, 4 and 5: the read ends of stdout and stderr, and the readiness pipe.
    pub fds: Passed,
    /// Closed (or written to) by the logger when it is ready.
    pub ready: OwnedFd,
}

/// What the shim holds for one process's streams.
#[derive(Default)]
pub struct ProcessIo {
    pump: Option<Pump>,
    /// Set once the process's output has all been copied out.
    output_done: Option<OutputDone>,
    /// The terminal: until the container sends it, the socket it arrives on.
    console: Option<ConsoleSocket>,
    master: Option<Arc<OwnedFd>>,
    /// Where the terminal's output and input go once it arrives.
    terminal_streams: Vec<Stream>,
    terminal_stdin: Option<String>,
}

/// The descriptors the container gets, what the shim keeps, and a logger to start.
pub struct Prepared {
    pub io: ProcessIo,
    pub fds: Passed,
    pub logger: Option<LoggerLaunch>,
}

/// Sets up the streams of a process that is about to be created.
pub fn prepare(paths: &StdioPaths) -> Result<Prepared, IoError> {
    let target = destination(&paths.stdout)?;
    if paths.terminal {
        return prepare_terminal(paths, target);
    }
    let mut fds = Passed::default();
    let mut streams = Vec::new();
    let mut logger = None;

    if !paths.stdin.is_empty() {
        let (read, write) = pipe()?;
        let fifo = open_fifo_reader(fifo_path(&paths.stdin))?;
        set_nonblocking(&write)?;
        streams.push(Stream::new(fifo, Arc::new(write), None, Kind::Stdin));
        fds.stdin = Some(read);
    }
    match target {
        Destination::Fifo => {
            for (path, slot) in [
                (&paths.stdout, &mut fds.stdout),
                (&paths.stderr, &mut fds.stderr),
            ] {
                if path.is_empty() {
                    continue;
                }
                let (keepalive, writer) = open_fifo_writer(fifo_path(path))?;
                let (read, write) = pipe()?;
                set_nonblocking(&read)?;
                streams.push(Stream::new(
                    Arc::new(read),
                    Arc::new(writer),
                    Some(keepalive),
                    Kind::Output,
                ));
                *slot = Some(write);
            }
        }
        Destination::File(path) => {
            let file = Arc::new(open_log_file(&path)?);
            for slot in [&mut fds.stdout, &mut fds.stderr] {
                let (read, write) = pipe()?;
                set_nonblocking(&read)?;
                streams.push(Stream::new(
                    Arc::new(read),
                    file.clone(),
                    None,
                    Kind::Output,
                ));
                *slot = Some(write);
            }
        }
        Destination::Binary { path, args } => {
            let (out_read, out_write) = pipe()?;
            let (err_read, err_write) = pipe()?;
            let (ready_read, ready_write) = pipe()?;
            fds.stdout = Some(out_write);
            fds.stderr = Some(err_write);
            logger = Some(LoggerLaunch {
                path,
                args,
                fds: Passed {
                    stdout: Some(out_read),
                    stderr: Some(err_read),
                    ready: Some(ready_write),
                    ..Passed::default()
                },
                ready: ready_read,
            });
        }
    }
    let pump = if streams.is_empty() {
        None
    } else {
        Some(Pump::start(streams).map_err(os("starting the stdio thread"))?)
    };
    Ok(Prepared {
        io: ProcessIo {
            output_done: pump.as_ref().map(|p| p.output_done.clone()),
            pump,
            ..ProcessIo::default()
        },
        fds,
        logger,
    })
}

fn prepare_terminal(paths: &StdioPaths, target: Destination) -> Result<Prepared, IoError> {
    let mut streams = Vec::new();
    match target {
        Destination::Fifo if !paths.stdout.is_empty() => {
            let (keepalive, writer) = open_fifo_writer(fifo_path(&paths.stdout))?;
            // The source (the terminal's master) is filled in when it arrives.
            streams.push(Stream::pending(Arc::new(writer), Some(keepalive)));
        }
        Destination::Fifo => {}
        Destination::File(path) => {
            streams.push(Stream::pending(Arc::new(open_log_file(&path)?), None));
        }
        Destination::Binary { .. } => {
            return Err(IoError::Uri {
                uri: paths.stdout.clone(),
                reason: "a terminal's output goes to a FIFO or a file:// log, not to a \
                         logging binary"
                    .into(),
            })
        }
    }
    let console = ConsoleSocket::new().map_err(os("creating the console socket"))?;
    Ok(Prepared {
        io: ProcessIo {
            console: Some(console),
            terminal_streams: streams,
            terminal_stdin: (!paths.stdin.is_empty()).then(|| paths.stdin.clone()),
            ..ProcessIo::default()
        },
        fds: Passed::default(),
        logger: None,
    })
}

impl ProcessIo {
    /// The console socket to create the process with, when it has a terminal.
    pub fn console_socket(&self) -> Option<PathBuf> {
        self.console.as_ref().map(|c| c.path().to_path_buf())
    }

    /// Takes the terminal the process sent over the console socket and starts copying.
    pub fn attach_console(&mut self) -> Result<(), IoError> {
        let Some(console) = self.console.take() else {
            return Ok(());
        };
        let master = console
            .receive_master()
            .map_err(os("receiving the terminal from the container"))?;
        set_nonblocking(&master)?;
        let master = Arc::new(master);
        let mut streams = std::mem::take(&mut self.terminal_streams);
        for stream in &mut streams {
            stream.src = Some(master.clone());
        }
        if let Some(stdin) = self.terminal_stdin.take() {
            let fifo = open_fifo_reader(fifo_path(&stdin))?;
            streams.push(Stream::new(fifo, master.clone(), None, Kind::Stdin));
        }
        if !streams.is_empty() {
            let pump = Pump::start(streams).map_err(os("starting the terminal thread"))?;
            self.output_done = Some(pump.output_done.clone());
            self.pump = Some(pump);
        }
        self.master = Some(master);
        Ok(())
    }

    /// Sets the terminal's size.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), IoError> {
        let Some(master) = &self.master else {
            return Err(IoError::Os {
                context: "resizing the terminal".into(),
                source: std::io::Error::other("the process has no terminal"),
            });
        };
        crate::console::resize(master, width, height).map_err(os("resizing the terminal"))
    }

    /// What tells when the process's output has all been copied out (none when nothing
    /// copies it: no output, or a logging binary reading the pipes itself).
    pub fn output_done(&self) -> Option<OutputDone> {
        self.output_done.clone()
    }

    /// Closes the process's stdin (containerd's CloseIO): the process reads end-of-file.
    pub fn close_stdin(&self) {
        if let Some(pump) = &self.pump {
            pump.close_stdin();
        }
    }

    /// Stops copying (the process is gone and deleted).
    pub fn stop(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.stop();
        }
        self.master = None;
        self.console = None;
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), IoError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| IoError::Os {
        context: "creating a pipe".into(),
        source: e.into(),
    })
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), IoError> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(IoError::Os {
                context: "making a descriptor non-blocking".into(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

/// containerd's stdin FIFO, read end. Non-blocking: the open never waits for a writer, and
/// poll(2) reports it only once a writer has come and written or gone.
fn open_fifo_reader(path: &str) -> Result<Arc<OwnedFd>, IoError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(os(format!("opening stdin {path}")))?;
    Ok(Arc::new(file.into()))
}

/// containerd's stdout or stderr FIFO: a read end that keeps it open while containerd is away
/// (restarting), so that writes never fail, and the write end.
fn open_fifo_writer(path: &str) -> Result<(OwnedFd, OwnedFd), IoError> {
    let keepalive = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(os(format!("opening {path}")))?;
    let writer = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(os(format!("opening {path}")))?;
    Ok((keepalive.into(), writer.into()))
}

/// A `file://` log: appended to, created with its directory if missing (as containerd does).
fn open_log_file(path: &Path) -> Result<OwnedFd, IoError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(os(format!("creating {}", dir.display())))?;
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(os(format!("opening log file {}", path.display())))?;
    Ok(file.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stdin,
    Output,
}

/// One direction of copying, with a buffer for what the destination has not taken yet.
struct Stream {
    src: Option<Arc<OwnedFd>>,
    dst: Arc<OwnedFd>,
    /// Held (and dropped with the stream) to keep a FIFO open for writing.
    _keepalive: Option<OwnedFd>,
    kind: Kind,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    src_done: bool,
}

const BUFFER: usize = 32 * 1024;

impl Stream {
    fn new(src: Arc<OwnedFd>, dst: Arc<OwnedFd>, keepalive: Option<OwnedFd>, kind: Kind) -> Self {
        Stream {
            src: Some(src),
            dst,
            _keepalive: keepalive,
            kind,
            buf: Vec::new(),
            start: 0,
            end: 0,
            src_done: false,
        }
    }

    fn pending(dst: Arc<OwnedFd>, keepalive: Option<OwnedFd>) -> Self {
        Stream {
            src: None,
            dst,
            _keepalive: keepalive,
            kind: Kind::Output,
            buf: Vec::new(),
            start: 0,
            end: 0,
            src_done: false,
        }
    }

    fn has_data(&self) -> bool {
        self.start < self.end
    }

    fn finished(&self) -> bool {
        self.src_done && !self.has_data()
    }

    fn fill(&mut self) {
        let Some(src) = &self.src else {
            self.src_done = true;
            return;
        };
        if self.buf.is_empty() {
            self.buf = vec![0; BUFFER];
        }
        // SAFETY: reading into our own buffer from a descriptor we hold.
        let n = unsafe {
            libc::read(
                src.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
            )
        };
        if n > 0 {
            self.start = 0;
            self.end = n as usize;
            return;
        }
        let err = std::io::Error::last_os_error();
        if n < 0 && matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
            return;
        }
        // End of file, or EIO from a terminal whose other side is closed.
        self.src_done = true;
    }

    fn drain(&mut self) {
        // SAFETY: writing from our own buffer to a descriptor we hold.
        let n = unsafe {
            libc::write(
                self.dst.as_raw_fd(),
                self.buf[self.start..self.end].as_ptr().cast(),
                self.end - self.start,
            )
        };
        if n >= 0 {
            self.start += n as usize;
            return;
        }
        let err = std::io::Error::last_os_error();
        if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
            return;
        }
        // The reader went away for good: drop what is left of this stream.
        self.start = self.end;
        self.src_done = true;
    }
}

/// The thread that copies a process's streams, polling all of them: what one side does not
/// take yet never holds up the others (a process blocked writing stdout while the shim feeds
/// it stdin cannot deadlock). It ends when every source is at end-of-file and drained.
struct Pump {
    control: OwnedFd,
    output_done: OutputDone,
}

/// Set when every output stream of a process has reached end-of-file and been written out
/// (or the copying stopped). containerd stops reading a process's output once it learns of
/// its exit, so the exit is published only after this (or a bound).
#[derive(Debug, Clone, Default)]
pub struct OutputDone(Arc<(Mutex<bool>, Condvar)>);

impl OutputDone {
    fn set(&self) {
        let (done, changed) = &*self.0;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        changed.notify_all();
    }

    /// Waits until the output is out or `limit` has passed; true if it is out.
    pub fn wait(&self, limit: Duration) -> bool {
        let (done, changed) = &*self.0;
        let guard = done.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = changed
            .wait_timeout_while(guard, limit, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

/// Sets its flag however the copying thread ends.
struct SetOnDrop(OutputDone);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

const CLOSE_STDIN: u8 = b'c';
const STOP: u8 = b's';

impl Pump {
    fn start(streams: Vec<Stream>) -> std::io::Result<Pump> {
        let (control_read, control_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let output_done = OutputDone::default();
        let done = output_done.clone();
        std::thread::Builder::new()
            .name("stdio".into())
            .stack_size(64 * 1024)
            .spawn(move || run_pump(streams, control_read, done))?;
        Ok(Pump {
            control: control_write,
            output_done,
        })
    }

    fn send(&self, byte: u8) {
        // SAFETY: writing one byte from a local to our pipe; a gone thread gives EPIPE.
        unsafe { libc::write(self.control.as_raw_fd(), [byte].as_ptr().cast(), 1) };
    }

    fn close_stdin(&self) {
        self.send(CLOSE_STDIN);
    }

    fn stop(self) {
        self.send(STOP);
    }
}

fn run_pump(mut streams: Vec<Stream>, control: OwnedFd, output_done: OutputDone) {
    let output_done = SetOnDrop(output_done);
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        streams.retain(|s| !s.finished());
        if !streams.iter().any(|s| s.kind == Kind::Output) {
            // Only stdin is left (containerd keeps its FIFO open): the output is out.
            output_done.0.set();
        }
        if streams.is_empty() {
            return;
        }
        fds.clear();
        fds.push(poll_entry(control.as_raw_fd(), libc::POLLIN));
        for stream in &streams {
            let entry = if stream.has_data() {
                poll_entry(stream.dst.as_raw_fd(), libc::POLLOUT)
            } else {
                let src = stream.src.as_ref().map_or(-1, |s| s.as_raw_fd());
                poll_entry(src, libc::POLLIN)
            };
            fds.push(entry);
        }
        // SAFETY: a valid array of pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if rc < 0 {
            continue; // EINTR
        }
        if fds[0].revents != 0 {
            let mut byte = [0u8; 16];
            // SAFETY: reading into a local buffer from our pipe.
            let n = unsafe { libc::read(control.as_raw_fd(), byte.as_mut_ptr().cast(), 16) };
            if n <= 0 || byte[..n as usize].contains(&STOP) {
                return;
            }
            streams.retain(|s| s.kind != Kind::Stdin);
            continue;
        }
        for (stream, entry) in streams.iter_mut().zip(&fds[1..]) {
            if entry.revents == 0 {
                continue;
            }
            if stream.has_data() {
                stream.drain();
            } else {
                stream.fill();
            }
        }
    }
}

fn poll_entry(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn destinations_from_uris() {
        assert_eq!(destination("").unwrap(), Destination::Fifo);
        assert_eq!(
            destination("/run/containerd/fifo/1/x-stdout").unwrap(),
            Destination::Fifo
        );
        assert_eq!(
            destination("file:///var/log/c.log").unwrap(),
            Destination::File("/var/log/c.log".into())
        );
        assert_eq!(
            destination("binary:///usr/bin/logger?tag=agent&verbose").unwrap(),
            Destination::Binary {
                path: "/usr/bin/logger".into(),
                args: vec!["tag".into(), "agent".into(), "verbose".into()],
            }
        );
        assert!(destination("http://example.invalid/x").is_err());
        assert!(destination("file://").is_err());
    }

    #[test]
    fn pump_copies_every_stream_and_ends_at_eof() {
        let (out_read, out_write) = pipe().unwrap();
        let (dst_read, dst_write) = pipe().unwrap();
        set_nonblocking(&out_read).unwrap();
        let stream = Stream::new(Arc::new(out_read), Arc::new(dst_write), None, Kind::Output);
        let _pump = Pump::start(vec![stream]).unwrap();
        let mut writer = std::fs::File::from(out_write);
        writer.write_all(b"hello ").unwrap();
        writer.write_all(b"world").unwrap();
        drop(writer);
        let mut got = String::new();
        std::fs::File::from(dst_read)
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(
            got, "hello world",
            "copied, then EOF once the source closed"
        );
    }

    #[test]
    fn output_is_done_only_when_every_output_stream_is_out_whatever_stdin_does() {
        let (out_read, out_write) = pipe().unwrap();
        let (dst_read, dst_write) = pipe().unwrap();
        let (in_read, _in_write) = pipe().unwrap();
        let (_in_dst_read, in_dst_write) = pipe().unwrap();
        for fd in [&out_read, &in_read] {
            set_nonblocking(fd).unwrap();
        }
        let output = Stream::new(Arc::new(out_read), Arc::new(dst_write), None, Kind::Output);
        // containerd's stdin FIFO stays open for as long as the task lives.
        let input = Stream::new(Arc::new(in_read), Arc::new(in_dst_write), None, Kind::Stdin);
        let pump = Pump::start(vec![output, input]).unwrap();
        let mut writer = std::fs::File::from(out_write);
        writer.write_all(b"last words").unwrap();
        assert!(
            !pump.output_done.wait(Duration::from_millis(100)),
            "the source is still open"
        );
        drop(writer);
        assert!(pump.output_done.wait(Duration::from_secs(10)));
        let mut got = vec![0u8; 64];
        let n = std::fs::File::from(dst_read).read(&mut got).unwrap();
        assert_eq!(&got[..n], b"last words", "written out before done");
    }
}

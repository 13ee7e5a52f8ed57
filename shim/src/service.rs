//! The shim binary's lifecycle as containerd drives it (runtime v2):
//!
//! - `start`, in the bundle directory: work out the container's group (its pod: the CRI's
//!   `io.kubernetes.cri.sandbox-id` annotation, else the container itself), reuse the shim
//!   already serving that group or spawn a new one, write `address` into the bundle and print
//!   the ttrpc address;
//! - no action: the shim itself. The zygote is forked first, before any thread exists; then
//!   the reaper, the event publisher and the ttrpc server start, and `start` is released by
//!   closing the pipe it waits on;
//! - `delete`, after a shim died: kill what is left of the container, unmount its root
//!   filesystem, remove its state and the dead shim's socket, and report exit status 137.

use std::io::Read;
use std::os::fd::IntoRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use containerd_shim::Flags;
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc::Server;
use mxc_runtime::{Engine, EngineError};

use crate::container::ShimContext;
use crate::engine::MxcEngine;
use crate::events::Publisher;
use crate::reaper::{self, Reaper};
use crate::task::{ExitSignal, TaskService};
use crate::zygote::Zygote;

/// Annotations that put containers in one shim: the CRI's pod sandbox id.
const GROUP_ANNOTATIONS: [&str; 1] = ["io.kubernetes.cri.sandbox-id"];
/// The file in each bundle where containerd finds the shim's address after a restart.
const ADDRESS_FILE: &str = "address";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServiceError {
    let context = context.into();
    move |source| ServiceError::Io { context, source }
}

/// The bundle: `-bundle` if given, else the working directory containerd started us in.
fn bundle_dir(flags: &Flags) -> Result<PathBuf, ServiceError> {
    if !flags.bundle.is_empty() {
        return Ok(PathBuf::from(&flags.bundle));
    }
    std::env::current_dir().map_err(io_error("reading the working directory"))
}

/// The shim group of the container in `bundle`.
fn group(bundle: &Path, id: &str) -> String {
    let spec = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    spec.as_ref()
        .and_then(|spec| {
            GROUP_ANNOTATIONS.iter().find_map(|key| {
                spec.pointer("/annotations")
                    .and_then(|a| a.get(key))
                    .and_then(|v| v.as_str())
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
            })
        })
        .unwrap_or_else(|| id.to_string())
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

fn serving(path: &str) -> bool {
    UnixStream::connect(path).is_ok()
}

/// `start`: prints the address of the shim that serves this container.
pub fn start(flags: &Flags) -> Result<(), ServiceError> {
    if flags.namespace.is_empty() || flags.id.is_empty() {
        return Err(ServiceError::Usage("start needs -namespace and -id".into()));
    }
    let bundle = bundle_dir(flags)?;
    let grouping = group(&bundle, &flags.id);
    let address = containerd_shim::socket_address(&flags.address, &flags.namespace, &grouping);
    let path = socket_path(&address).to_string();

    if !serving(&path) {
        remove_stale_socket(&path);
        spawn_daemon(flags, &bundle, &address)?;
        if !serving(&path) {
            return Err(ServiceError::Failed(format!(
                "the shim did not start serving on {address}; see containerd's log"
            )));
        }
    }
    let address_file = bundle.join(ADDRESS_FILE);
    std::fs::write(&address_file, &address)
        .map_err(io_error(format!("writing {}", address_file.display())))?;
    print!("{address}");
    Ok(())
}

/// Starts the shim daemon in its own session (signals to containerd's process group must not
/// reach it: containers outlive a containerd restart) and waits until it serves: it closes
/// its stdout then.
fn spawn_daemon(flags: &Flags, bundle: &Path, address: &str) -> Result<(), ServiceError> {
    let exe = std::env::current_exe().map_err(io_error("finding the shim binary"))?;
    // The daemon runs from a read-only view of the binary (see seal.rs); the descriptor stays
    // open until the exec.
    let (program, _view) = mxc_runtime::helper::exec_path(&exe);
    let mut command = Command::new(program);
    command
        .arg0(&exe)
        .current_dir(bundle)
        .args(["-namespace", &flags.namespace, "-id", &flags.id])
        .args(["-address", &flags.address, "-socket", address])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if !flags.publish_binary.is_empty() {
        command.args(["-publish-binary", &flags.publish_binary]);
    }
    if flags.debug {
        command.arg("-debug");
    }
    // SAFETY: setsid is async-signal-safe; `start` is single-threaded.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(io_error("starting the shim"))?;
    if let Some(mut ready) = child.stdout.take() {
        let mut sink = Vec::new();
        let _ = ready.read_to_end(&mut sink);
    }
    if let Ok(Some(status)) = child.try_wait() {
        if !status.success() {
            return Err(ServiceError::Failed(format!(
                "the shim exited during start-up ({status}); see containerd's log"
            )));
        }
    }
    Ok(())
}

fn remove_stale_socket(path: &str) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// The shim itself.
pub fn serve(flags: &Flags) -> Result<(), ServiceError> {
    if flags.socket.is_empty() || flags.namespace.is_empty() {
        return Err(ServiceError::Usage(
            "the shim needs -namespace and -socket (containerd starts it through `start`)".into(),
        ));
    }
    // Started through /proc/self/fd/N (seal.rs), the kernel named this process "N": take the
    // binary's name back, as ps and process lists expect.
    name_process_after_binary();
    // First, before any thread exists: every container is cloned from here.
    let zygote = Zygote::fork(&flags.id, flags.debug).map_err(io_error("forking the zygote"))?;
    reaper::block_sigchld();
    crate::logging::init(&flags.id, flags.debug);

    let reaper = Reaper::start().map_err(io_error("becoming a subreaper"))?;
    if reaper
        .watch(zygote.pid(), 0, |exit| {
            tracing::error!(
                status = exit.status,
                "the zygote exited: this shim cannot create containers any more"
            )
        })
        .is_some()
    {
        return Err(ServiceError::Failed("the zygote died at start-up".into()));
    }
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").map_err(|_| {
        ServiceError::Usage("TTRPC_ADDRESS is not set (containerd sets it for its shims)".into())
    })?;
    let publisher = Publisher::start(ttrpc_address, flags.namespace.clone())
        .map_err(io_error("starting the event publisher"))?;
    let events = publisher.clone();
    let context = Arc::new(ShimContext {
        namespace: flags.namespace.clone(),
        engine: Arc::new(MxcEngine::new(zygote)),
        reaper,
        publisher,
        oom: OnceLock::new(),
    });
    let exit = Arc::new(ExitSignal::default());
    let service = TaskService::new(context, exit.clone());

    let path = socket_path(&flags.socket).to_string();
    let Some(listener) = listen(&path)? else {
        // Another shim of this group won the race and serves it.
        release_start();
        return Ok(());
    };
    let task_service = containerd_shim_protos::create_task(Arc::new(service));
    let mut server = Server::new()
        .add_listener(listener.into_raw_fd())
        .map_err(|e| ServiceError::Failed(format!("ttrpc: {e}")))?
        .register_service(task_service);
    server
        .start()
        .map_err(|e| ServiceError::Failed(format!("ttrpc: {e}")))?;
    release_start();
    tracing::info!(socket = %path, "shim serving");
    if !mxc_runtime::helper::running_sealed() {
        tracing::warn!(
            "running from the writable shim binary: no read-only view was possible (see seal.rs)"
        );
    }

    // The main thread has nothing else to do: it trims the shim when it goes idle.
    let mut idle = crate::footprint::Idle::default();
    while !exit.is_set() {
        idle.wait_and_trim();
    }
    let _ = std::fs::remove_file(&path);
    // The last container's events (its /tasks/delete) may still be on their way.
    if !events.flush(EVENTS_FLUSH_LIMIT) {
        tracing::warn!("exiting with events not yet delivered to containerd");
    }
    tracing::info!("shim exiting");
    // Open connections close with the process; containerd waits for that.
    std::process::exit(0);
}

/// How long an exiting shim waits for its queued events to reach containerd.
const EVENTS_FLUSH_LIMIT: Duration = Duration::from_secs(2);

fn name_process_after_binary() {
    let Some(argv0) = std::env::args_os().next() else {
        return;
    };
    let name = Path::new(&argv0)
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    // The kernel keeps 15 bytes and a NUL.
    let mut comm: Vec<u8> = name.into_iter().filter(|b| *b != 0).take(15).collect();
    comm.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr(), 0, 0, 0) };
}

/// Binds the shim's socket; `None` when a live shim already serves it.
fn listen(path: &str) -> Result<Option<UnixListener>, ServiceError> {
    if let Some(dir) = Path::new(path).parent() {
        std::fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
    }
    match UnixListener::bind(path) {
        Ok(listener) => Ok(Some(listener)),
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            if serving(path) {
                return Ok(None);
            }
            remove_stale_socket(path);
            UnixListener::bind(path)
                .map(Some)
                .map_err(io_error(format!("listening on {path}")))
        }
        Err(err) => Err(io_error(format!("listening on {path}"))(err)),
    }
}

/// `start` reads our stdout until it closes: point it at stderr (/dev/null) instead.
fn release_start() {
    // SAFETY: dup2 of our own standard descriptors.
    unsafe { libc::dup2(2, 1) };
}

/// The type URL containerd decodes runtime features (runtime-spec's features.json) by.
const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// `-info`: the runtime's name, version and OCI features as a `RuntimeInfo` message (options
/// arrive on stdin and change nothing here).
pub fn info() -> Result<(), ServiceError> {
    use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let features = serde_json::to_vec(&mxc_runtime::features())
        .map_err(|e| ServiceError::Failed(e.to_string()))?;
    let mut version = RuntimeVersion::new();
    version.version = env!("CARGO_PKG_VERSION").to_string();
    let mut info = RuntimeInfo::new();
    info.name = crate::RUNTIME_NAME.to_string();
    info.version = Some(version).into();
    info.features = Some(crate::events::pack(FEATURES_TYPE_URL, features)).into();
    let bytes = info
        .write_to_bytes()
        .map_err(|e| ServiceError::Failed(e.to_string()))?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(io_error("writing the runtime info"))
}

/// `delete`: cleans up after a shim that is gone.
pub fn delete(flags: &Flags) -> Result<(), ServiceError> {
    if flags.namespace.is_empty() || flags.id.is_empty() {
        return Err(ServiceError::Usage(
            "delete needs -namespace and -id".into(),
        ));
    }
    let bundle = bundle_dir(flags)?;
    let root = crate::options::engine_root(&bundle, &flags.namespace);
    let engine = Engine::new(&root);
    let pid = engine.state(&flags.id).map(|s| s.pid).unwrap_or(0);
    match engine.delete(&flags.id, true) {
        Ok(()) | Err(EngineError::NotFound { .. }) => {}
        Err(err) => eprintln!(
            "{}: deleting container {}: {err}",
            crate::RUNTIME_NAME,
            flags.id
        ),
    }
    crate::mount::unmount_all(&bundle.join("rootfs"));
    if let Ok(address) = std::fs::read_to_string(bundle.join(ADDRESS_FILE)) {
        let path = socket_path(address.trim());
        if !serving(path) {
            remove_stale_socket(path);
        }
    }
    let mut response = DeleteResponse::new();
    response.pid = pid.max(0) as u32;
    response.exit_status = 128 + libc::SIGKILL as u32;
    response.exited_at = Some(crate::events::timestamp(std::time::SystemTime::now())).into();
    let bytes = response
        .write_to_bytes()
        .map_err(|e| ServiceError::Failed(e.to_string()))?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(io_error("writing the delete response"))?;
    Ok(())
}

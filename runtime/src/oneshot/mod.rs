//! One MXC config, one sandbox, no daemon (`mxc run`, `lxc-exec`): the config is read, resolved
//! for this host and compiled, the sandbox runs to completion with MXC's Linux semantics, and
//! everything it set up is removed. [`run`] says how it ended ([`Outcome`]); how an entry point
//! tells its caller (MXC's exit statuses and messages, a [`progress`] event for
//! a supervisor) is the entry point's business.

pub mod progress;

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, DirBuilderExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use mxc_translate::compile::nftables;
use mxc_translate::compile::staging::StagingPlan;
use mxc_translate::hosts::HostRule;
use mxc_translate::{
    one_shot, parse, resolve, Class, ConfigError, ConfigErrors, Expect, Identity, Limits,
    OneShotOptions, ParseOptions, RealHost, ResolveOptions, Sandbox, SkeletonEntry, Source, Target,
};

use crate::audit::{AuditLog, ContainerAudit, Event};
use crate::container::{Cancel, Engine, RunOptions, RunOutcome};
use crate::egress::Resolver;
use crate::error::EngineError;
use crate::network::{self, AuditTarget, Connectivity, HostNetwork, Lifetime, PlanOptions};
use crate::policy::NodeContext;
use crate::staging::FreshRoot;

/// Where `mxc run` keeps its engine state and per-run bundles.
pub const STATE_ROOT: &str = "/run/mxc";

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum ConfigInput {
    /// A file (`mxc run FILE`, `lxc-exec --config FILE`, `/dev/fd/N`).
    File(PathBuf),
    /// Text already in memory (`lxc-exec --config-base64`), named for messages.
    Text { source: Source, text: String },
}

/// A terminal for the command: its size, and later sizes as they come. The caller's stdin
/// and stdout carry its input and output.
pub struct TerminalRequest {
    pub rows: u16,
    pub columns: u16,
    pub resizes: Receiver<(u16, u16)>,
}

/// What `mxc run` or `lxc-exec` was asked to do.
pub struct RunRequest {
    pub config: ConfigInput,
    /// `--rootfs DIR`.
    pub rootfs: Option<PathBuf>,
    /// The host uid/gid the sandbox runs as.
    pub identity: Identity,
    /// Memory, `/tmp` and process-count bounds.
    pub limits: Limits,
    /// Engine state and bundles live below this directory.
    pub state_root: PathBuf,
    /// `--audit-log FILE`: one JSON line per decision (policy applied, denials, exit, timeout,
    /// OOM, failed start). The caller opened it, and reads its write failures afterwards.
    pub audit_log: Option<AuditLog>,
    /// `--allow-host` / `--deny-host`: host rules from the caller, validated.
    pub hosts: Vec<HostRule>,
    /// `--resolver ADDR`: where the egress proxy looks names up (the host's resolver if not).
    pub resolver: Resolver,
    /// Accept MXC's development contract, 1.1.0-alpha.
    pub experimental: bool,
    /// Check the config for this host (parse, resolve, compile) and run nothing.
    pub dry_run: bool,
    /// Run the command on a terminal instead of the caller's stdio.
    pub terminal: Option<TerminalRequest>,
}

/// How a one-shot run ended.
#[derive(Debug)]
pub enum Outcome {
    /// The config was refused; each error carries MXC's failure class.
    Refused(ConfigErrors),
    /// The sandbox could not be set up; nothing ran.
    SetupFailed(String),
    /// A dry run found nothing to refuse.
    Validated,
    /// The command ended with `status` (128 + n for signal n); on the way the kernel's OOM
    /// killer stopped `oom_kills` processes of the sandbox.
    Exited { status: i32, oom_kills: u64 },
    /// `process.timeout` (milliseconds) passed; the whole sandbox was killed.
    TimedOut(u32),
    /// A stop signal reached the runner; the sandbox was removed.
    Stopped(i32),
    /// The sandbox failed after its command started.
    Failed(String),
}

impl Outcome {
    /// The final progress event for a supervisor.
    pub fn event(&self) -> progress::Event {
        match self {
            Outcome::Refused(errors) => progress::Event::Refused {
                class: errors.class(),
                message: messages(errors),
            },
            Outcome::SetupFailed(message) => progress::Event::Refused {
                class: Class::Backend,
                message: message.clone(),
            },
            Outcome::Validated => progress::Event::Exited { code: 0 },
            Outcome::Exited { status, .. } => progress::Event::Exited { code: *status },
            Outcome::TimedOut(ms) => progress::Event::TimedOut { ms: *ms },
            Outcome::Stopped(signal) => progress::Event::Stopped { signal: *signal },
            Outcome::Failed(message) => progress::Event::Failed {
                message: message.clone(),
            },
        }
    }
}

/// The identity a sandbox runs as when nobody names one: the `sudo` caller, else `nobody`.
pub fn caller_identity() -> Identity {
    let sudo = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    match (sudo("SUDO_UID"), sudo("SUDO_GID")) {
        (Some(uid), Some(gid)) if uid != 0 => Identity { uid, gid },
        _ => Identity::NOBODY,
    }
}

fn unreadable(source: Source, reason: String) -> ConfigErrors {
    ConfigError {
        source,
        path: String::new(),
        value: None,
        reason,
        class: Class::Request,
    }
    .into()
}

/// Runs the request to its end; `cancel` stops it early. `on_start` hears the sandbox's pid
/// just before its command starts. With an audit log, every decision of a run is recorded,
/// a refused config included; a dry run runs nothing and records nothing.
pub fn run(mut request: RunRequest, cancel: &Cancel, on_start: &mut dyn FnMut(i32)) -> Outcome {
    let _span = tracing::info_span!("oneshot").entered();
    let terminal = request.terminal.take();
    let (source, policy) = match admit(&request) {
        Ok(admitted) => admitted,
        Err(refused) => {
            if let (Some(log), false) = (&request.audit_log, request.dry_run) {
                log.write(None, None, &refusal(&refused));
            }
            return Outcome::Refused(refused);
        }
    };
    let id = policy.container_id.clone().unwrap_or_else(generated_id);
    if request.dry_run {
        let bundle = request.state_root.join("bundles").join(&id);
        let compiled = one_shot(
            &policy,
            &OneShotOptions {
                container_id: &id,
                empty_root: &bundle.join("rootfs"),
                host: &RealHost,
                staging_dir: &bundle.join("stage"),
            },
        );
        return match compiled {
            Ok(_) => Outcome::Validated,
            Err(message) => Outcome::SetupFailed(message),
        };
    }
    let audit = request.audit_log.as_ref().map(|log| ContainerAudit {
        log: log.clone(),
        container_id: id.clone(),
        policy_sha256: Some(policy.sha256.clone()),
    });
    let outcome = (|| {
        tracing::info_span!("sweep_stale").in_scope(|| sweep_stale(&request.state_root));
        let bundle = tracing::info_span!("create_bundle")
            .in_scope(|| BundleDir::create(&request.state_root.join("bundles").join(&id)))
            .map_err(|e| Outcome::SetupFailed(format!("container {id}: {e}")))?;
        if let Some(audit) = &audit {
            audit.write(&Event::PolicyApplied {
                source: source.to_string(),
                network: policy.network.mode().to_string(),
            });
        }
        let caller = Caller {
            terminal,
            cancel,
            on_start,
        };
        run_in(&request, caller, &policy, &id, &bundle, audit.as_ref())
    })();
    let outcome = match outcome {
        Ok(outcome) | Err(outcome) => outcome,
    };
    if let (Some(audit), Some(ending)) = (&audit, ending(&outcome)) {
        audit.write(&ending);
    }
    outcome
}

/// Reads, parses and resolves the config: its source and the policy, or why it was refused.
fn admit(request: &RunRequest) -> Result<(Source, mxc_translate::Policy), ConfigErrors> {
    let read = tracing::info_span!("read_config").entered();
    let (source, text) = match &request.config {
        ConfigInput::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => (Source::File(path.clone()), text),
            Err(e) => {
                let reason = if e.kind() == std::io::ErrorKind::NotFound {
                    format!("Configuration file not found: {}", path.display())
                } else {
                    format!("cannot read the configuration file: {e}")
                };
                return Err(unreadable(Source::File(path.clone()), reason));
            }
        },
        ConfigInput::Text { source, text } => (source.clone(), text.clone()),
    };
    drop(read);
    let options = ParseOptions {
        expect: Expect::OneShot,
        experimental: request.experimental,
        ..ParseOptions::default()
    };
    let config = tracing::info_span!("parse").in_scope(|| parse(source, &text, options))?;
    let resolve_options = ResolveOptions {
        target: Target::OneShot {
            rootfs: request.rootfs.clone(),
        },
        identity: request.identity,
        hosts: request.hosts.clone(),
        limits: request.limits,
    };
    let policy = tracing::info_span!("resolve")
        .in_scope(|| resolve(&config, &RealHost, &resolve_options))?;
    Ok((config.source, policy))
}

/// The audit record of a refused config: a start that failed before any container existed.
fn refusal(errors: &ConfigErrors) -> Event {
    Event::FailedStart {
        reason: messages(errors),
    }
}

/// Every error of a refusal, one a line.
fn messages(errors: &ConfigErrors) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The audit record of how a run that got as far as its sandbox ended.
fn ending(outcome: &Outcome) -> Option<Event> {
    Some(match outcome {
        Outcome::Exited { status, .. } => Event::Exit {
            status: Some(*status),
        },
        Outcome::Stopped(signal) => Event::Exit {
            status: Some(128 + signal),
        },
        Outcome::TimedOut(ms) => Event::Timeout {
            timeout_ms: u64::from(*ms),
        },
        Outcome::SetupFailed(reason) => Event::FailedStart {
            reason: reason.clone(),
        },
        Outcome::Failed(reason) => Event::Failed {
            reason: reason.clone(),
        },
        // Recorded as a refusal before any sandbox existed, or nothing ran.
        Outcome::Refused(_) | Outcome::Validated => return None,
    })
}

/// What the caller of [`run`] brings besides the request: a terminal, a way to stop the run,
/// and an ear for its start.
struct Caller<'a> {
    terminal: Option<TerminalRequest>,
    cancel: &'a Cancel,
    on_start: &'a mut dyn FnMut(i32),
}

fn run_in(
    request: &RunRequest,
    caller: Caller<'_>,
    policy: &mxc_translate::Policy,
    id: &str,
    bundle: &BundleDir,
    audit: Option<&ContainerAudit>,
) -> Result<Outcome, Outcome> {
    let Caller {
        terminal,
        cancel,
        on_start,
    } = caller;
    let setup = |message: String| Outcome::SetupFailed(message);
    let empty_root = bundle.path.join("rootfs");

    let mut sandbox = tracing::info_span!("compile")
        .in_scope(|| {
            one_shot(
                policy,
                &OneShotOptions {
                    container_id: id,
                    empty_root: &empty_root,
                    host: &RealHost,
                    staging_dir: &bundle.path.join("stage"),
                },
            )
        })
        .map_err(setup)?;
    let console =
        match &terminal {
            Some(_) => {
                if let Some(process) = sandbox.spec.process_mut() {
                    process.set_terminal(Some(true));
                }
                Some(crate::console::ConsoleSocket::new().map_err(|e| {
                    setup(format!("container {id}: creating a console socket: {e}"))
                })?)
            }
            None => None,
        };
    // The host baseline's root is empty but for a few symlinks: it is made fresh for the run,
    // in memory, so that none of its mount points touch the host's disk.
    let fresh_root =
        (sandbox.spec.root().as_ref().map(|r| r.path()) == Some(&empty_root)).then(|| FreshRoot {
            owner: (policy.identity.uid, policy.identity.gid),
            symlinks: sandbox
                .skeleton
                .drain(..)
                .map(|entry| match entry {
                    SkeletonEntry::Symlink { path, target } => (path, target),
                })
                .collect(),
        });
    tracing::info_span!("write_bundle")
        .in_scope(|| bundle.populate(&sandbox, policy.identity))
        .map_err(|e| setup(format!("container {id}: writing the bundle: {e}")))?;

    let engine = Engine::new(request.state_root.join("state"))
        .with_node_context(NodeContext {
            precompiled: true,
            ..NodeContext::default()
        })
        .bound_to_caller();
    let options = RunOptions {
        timeout: policy
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
        console_socket: console.as_ref().map(|c| c.path()),
        fresh_root: fresh_root.as_ref(),
    };
    let network_error = |source| EngineError::Network {
        id: id.to_string(),
        source,
    };
    let plan_options = PlanOptions {
        connectivity: Connectivity::Userspace,
        lifetime: Lifetime::Caller,
        table: nftables::TABLE.to_string(),
        log_group: nftables::AUDIT_GROUP,
        audit: audit.map(|audit| AuditTarget {
            audit: audit.clone(),
            group: nftables::AUDIT_GROUP,
            failure_report: None,
        }),
        resolver: request.resolver.clone(),
    };
    // Host names are the egress proxy's business here: nothing is resolved in advance.
    let network_setup = tracing::info_span!("network_plan")
        .in_scope(|| {
            HostNetwork::gather(&policy.network)
                .and_then(|host| network::plan(&policy.network, plan_options, &host))
        })
        .map_err(|e| setup(network_error(e).to_string()))?;
    let started = Cell::new(false);
    let report = engine.run_to_completion_with(id, &bundle.path, options, cancel, |container| {
        let pid = container.pid();
        let network = tracing::info_span!("network_apply")
            .in_scope(|| network::apply(pid, &network_setup))
            .map_err(network_error)?;
        let relay = match (&console, terminal) {
            (Some(console), Some(terminal)) => {
                let master = console
                    .receive_master()
                    .map_err(|e| EngineError::io(format!("container {id}: its terminal"), e))?;
                Some(TerminalRelay::start(master, terminal))
            }
            _ => None,
        };
        on_start(pid);
        started.set(true);
        Ok((network, relay))
    });
    let report = match report {
        Ok(report) => report,
        Err(EngineError::Interrupted { signal, .. }) => return Ok(Outcome::Stopped(signal)),
        Err(error) if started.get() => return Ok(Outcome::Failed(error.to_string())),
        Err(error) => return Ok(Outcome::SetupFailed(error.to_string())),
    };
    if let (true, Some(audit)) = (report.oom_kills > 0, audit) {
        audit.write(&Event::Oom {
            kills: report.oom_kills,
        });
    }
    Ok(match report.outcome {
        RunOutcome::TimedOut => Outcome::TimedOut(policy.timeout_ms.unwrap_or_default()),
        outcome => Outcome::Exited {
            status: outcome.code(),
            oom_kills: report.oom_kills,
        },
    })
}

/// A sandbox's terminal, relayed to this process's stdin and stdout: output until the
/// terminal closes, input until stdin ends (then the terminal's end-of-file character), and
/// every size that arrives.
struct TerminalRelay {
    output: Option<std::thread::JoinHandle<()>>,
}

impl TerminalRelay {
    fn start(master: OwnedFd, terminal: TerminalRequest) -> TerminalRelay {
        let master = Arc::new(std::fs::File::from(master));
        set_size(&master, terminal.rows, terminal.columns);
        let from = master.clone();
        let output = std::thread::spawn(move || {
            let mut stdout = std::io::stdout();
            let mut buf = [0u8; 8192];
            while let Ok(n) = (&*from).read(&mut buf) {
                if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
        });
        let to = master.clone();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        // End of input: what a user's Ctrl-D sends (VEOF in canonical mode).
                        let _ = (&*to).write_all(&[0x04]);
                        break;
                    }
                    Ok(n) => {
                        if (&*to).write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        // Sizes come for as long as their sender (the supervisor's control reader) lives.
        let sizes = terminal.resizes;
        let target = master.clone();
        std::thread::spawn(move || {
            while let Ok((rows, columns)) = sizes.recv() {
                set_size(&target, rows, columns);
            }
        });
        TerminalRelay {
            output: Some(output),
        }
    }
}

impl Drop for TerminalRelay {
    fn drop(&mut self) {
        // The sandbox is gone by now: the terminal reports end of file once drained.
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
    }
}

fn set_size(master: &std::fs::File, rows: u16, columns: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize on a pty master we own.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
}

/// Removes what remains of sandbox `id` below `state_root`: its container (processes,
/// cgroups, state) and its bundle. `Ok(false)` when there is nothing by that id.
pub fn remove(state_root: &Path, id: &str) -> Result<bool, EngineError> {
    crate::container::validate_id(id)?;
    let engine = Engine::new(state_root.join("state"));
    let bundle = state_root.join("bundles").join(id);
    let mut found = bundle.exists();
    match engine.delete(id, true) {
        Ok(()) => found = true,
        Err(EngineError::NotFound { .. }) => {}
        Err(error) => return Err(error),
    }
    if bundle.exists() {
        std::fs::remove_dir_all(&bundle)
            .map_err(|e| EngineError::io(format!("removing {}", bundle.display()), e))?;
    }
    Ok(found)
}

/// What a bundle records of the `mxc run` that owns it (pid and start time).
const OWNER_FILE: &str = "owner.json";

/// How long a bundle without a readable owner may be one being set up right now.
const OWNERLESS_GRACE: Duration = Duration::from_secs(60);

/// Removes what remains of sandboxes whose `mxc run` is gone: SIGKILL leaves it no chance to
/// clean up. Their workloads died with it (the parent-death signal); their state, cgroups and
/// bundles are removed here, by the next run.
fn sweep_stale(state_root: &Path) {
    let Ok(entries) = std::fs::read_dir(state_root.join("bundles")) else {
        return;
    };
    let engine = Engine::new(state_root.join("state"));
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(id) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_stale(&engine, &id, &dir) {
            continue;
        }
        tracing::info!(id, "removing a sandbox whose mxc run is gone");
        match engine.delete(&id, true) {
            Ok(()) | Err(EngineError::NotFound { .. }) => {
                let _ = std::fs::remove_dir_all(&dir);
            }
            Err(error) => tracing::warn!(id, %error, "removing a stale sandbox"),
        }
    }
    // A container whose bundle is gone but whose state remains: its run died between the two
    // (a run writes its bundle before it creates the container, so no live run is in this
    // state). Left alone, it would also keep its id from being used again.
    for state in engine.list().unwrap_or_default() {
        let live = matches!(
            state.status,
            crate::record::Status::Running | crate::record::Status::Paused
        );
        if live || state_root.join("bundles").join(&state.id).exists() {
            continue;
        }
        tracing::info!(id = state.id, "removing a sandbox whose bundle is gone");
        if let Err(error) = engine.delete(&state.id, true) {
            tracing::warn!(id = state.id, %error, "removing a stale sandbox");
        }
    }
}

fn is_stale(engine: &Engine, id: &str, bundle: &Path) -> bool {
    use crate::process::{InitProcess, Liveness};
    let owner = std::fs::read(bundle.join(OWNER_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<InitProcess>(&bytes).ok());
    match owner {
        // A zombie runner is gone too: its sandbox died when it exited.
        Some(owner) => owner.liveness() != Liveness::Alive,
        // A run still setting up, or one that wrote no owner: only once it is old and its
        // container no longer runs.
        None => {
            let old = std::fs::metadata(bundle)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > OWNERLESS_GRACE);
            old && match engine.state(id) {
                Ok(state) => state.status == crate::record::Status::Stopped,
                Err(EngineError::NotFound { .. }) => true,
                Err(_) => false,
            }
        }
    }
}

fn generated_id() -> String {
    let mut bytes = [0u8; 4];
    let _ = getrandom(&mut bytes);
    format!(
        "mxc-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    // SAFETY: writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == buf.len() as isize {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The per-run bundle directory: config.json and an empty root. Removed on drop.
struct BundleDir {
    path: PathBuf,
}

impl BundleDir {
    fn create(path: &Path) -> std::io::Result<BundleDir> {
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(parent)?;
        }
        match std::fs::DirBuilder::new().mode(0o711).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(std::io::Error::new(
                    e.kind(),
                    "a sandbox with this id is already running (containerId must be unique)",
                ))
            }
            Err(e) => return Err(e),
        }
        let bundle = BundleDir {
            path: path.to_path_buf(),
        };
        let owner = crate::process::InitProcess::capture(std::process::id() as i32)
            .ok_or_else(|| std::io::Error::other("reading this process's start time"))?;
        let owner = serde_json::to_vec(&owner).map_err(std::io::Error::other)?;
        std::fs::write(path.join(OWNER_FILE), owner)?;
        Ok(bundle)
    }

    fn populate(&self, sandbox: &Sandbox, owner: Identity) -> std::io::Result<()> {
        let root = self.path.join("rootfs");
        std::fs::DirBuilder::new().mode(0o755).create(&root)?;
        // The runtime sets the root up as the sandbox's own (namespaced) root user, which is the
        // sandbox identity on the host: it must own the directory to create mountpoints in it.
        // The root is read-only once set up.
        std::os::unix::fs::chown(&root, Some(owner.uid), Some(owner.gid))?;
        for entry in &sandbox.skeleton {
            match entry {
                SkeletonEntry::Symlink { path, target } => {
                    let at = root.join(path);
                    if let Some(parent) = at.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    symlink(target, at)?;
                }
            }
        }
        if !sandbox.staging.is_empty() {
            let plan = serde_json::to_vec(&sandbox.staging).map_err(std::io::Error::other)?;
            std::fs::write(self.path.join(StagingPlan::FILE), plan)?;
        }
        let json = serde_json::to_vec_pretty(&sandbox.spec).map_err(std::io::Error::other)?;
        std::fs::write(self.path.join("config.json"), json)
    }
}

impl Drop for BundleDir {
    fn drop(&mut self) {
        let _span = tracing::info_span!("remove_bundle").entered();
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

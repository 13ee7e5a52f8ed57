//! `mxc run`: one MXC config, one sandbox, no daemon. MXC's result contract on Linux: the
//! command's exit status; a config rejection exits 1 with `Request error` /
//! `Configuration parse error: ...`; a set-up failure exits 255 with the message and MXC's JSON
//! envelope; a timeout exits 255 with `script timed out after <N>ms`.

use std::io::Write;
use std::os::unix::fs::{symlink, DirBuilderExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mxc_translate::hosts::HostRule;
use mxc_translate::{
    one_shot, parse, resolve, ConfigErrors, Expect, Identity, OneShotOptions, ParseOptions,
    RealHost, ResolveOptions, SkeletonEntry, Source, Target,
};

use crate::container::{Engine, RunOutcome};
use crate::egress::Resolver;
use crate::error::EngineError;
use crate::network::{self, AuditContext, AuditLog};
use crate::policy::NodeContext;

/// Where `mxc run` keeps its engine state and per-run bundles.
pub const STATE_ROOT: &str = "/run/mxc";

/// What `mxc run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub config: PathBuf,
    /// `--rootfs DIR`.
    pub rootfs: Option<PathBuf>,
    /// The host uid/gid the sandbox runs as.
    pub identity: Identity,
    /// cgroup pids limit.
    pub pids_limit: i64,
    /// Engine state and bundles live below this directory.
    pub state_root: PathBuf,
    /// `--audit-log FILE`: one JSON line per decision (policy applied, denial, exit, timeout).
    pub audit_log: Option<PathBuf>,
    /// `--allow-host` / `--deny-host`: host rules from the caller, validated.
    pub hosts: Vec<HostRule>,
    /// `--resolver ADDR`: where the egress proxy looks names up (the host's resolver if not).
    pub resolver: Resolver,
}

/// The process exit status of `mxc run`, after anything it had to say went to stderr.
pub fn run(request: &RunRequest) -> i32 {
    match run_inner(request) {
        Ok(code) => code,
        Err(Failure::Rejected(errors)) => {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "Request error");
            for error in errors.iter() {
                let _ = writeln!(stderr, "Configuration parse error: {error}");
            }
            1
        }
        Err(Failure::Runner(message)) => runner_failure(&message),
    }
}

enum Failure {
    /// The config was refused: MXC's parse/policy-shape class (exit 1).
    Rejected(ConfigErrors),
    /// Validation or set-up failed in the runner: MXC's runner class (exit 255 + envelope).
    Runner(String),
}

fn runner_failure(message: &str) -> i32 {
    let envelope = serde_json::json!({"error": {"code": "backend_error", "message": message}});
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{message}");
    let _ = writeln!(stderr, "{envelope}");
    255
}

fn run_inner(request: &RunRequest) -> Result<i32, Failure> {
    let text = std::fs::read_to_string(&request.config).map_err(|e| {
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            "configuration file not found".to_string()
        } else {
            format!("cannot read the configuration file: {e}")
        };
        Failure::Rejected(
            mxc_translate::ConfigError {
                source: Source::File(request.config.clone()),
                path: String::new(),
                value: None,
                reason,
                class: mxc_translate::Class::Request,
            }
            .into(),
        )
    })?;
    let options = ParseOptions {
        strict: false,
        expect: Expect::OneShot,
        ..ParseOptions::default()
    };
    let config =
        parse(Source::File(request.config.clone()), &text, options).map_err(Failure::Rejected)?;
    let resolve_options = ResolveOptions {
        target: Target::OneShot {
            rootfs: request.rootfs.clone(),
        },
        identity: request.identity,
        hosts: request.hosts.clone(),
    };
    let policy = resolve(&config, &RealHost, &resolve_options).map_err(Failure::Rejected)?;
    let id = policy.container_id.clone().unwrap_or_else(generated_id);
    sweep_stale(&request.state_root);
    let bundle = BundleDir::create(&request.state_root.join("bundles").join(&id))
        .map_err(|e| Failure::Runner(format!("container {id}: {e}")))?;
    let empty_root = bundle.path.join("rootfs");

    let sandbox = one_shot(
        &policy,
        &OneShotOptions {
            container_id: &id,
            empty_root: &empty_root,
            pids_limit: request.pids_limit,
            host: &RealHost,
        },
    )
    .map_err(Failure::Runner)?;
    let audit = match &request.audit_log {
        Some(path) => Some(AuditContext {
            container_id: id.clone(),
            policy_sha256: policy.sha256.clone(),
            log: AuditLog::open(path).map_err(|e| Failure::Runner(e.to_string()))?,
            group: mxc_translate::compile::nftables::AUDIT_GROUP,
        }),
        None => None,
    };
    if let Some(audit) = &audit {
        audit.log.record(serde_json::json!({
            "event": "policy.applied",
            "container": id,
            "policy_sha256": policy.sha256,
            "source": config.source.to_string(),
            "network": policy.network.mode(),
        }));
    }
    bundle
        .populate(&sandbox.spec, &sandbox.skeleton, policy.identity)
        .map_err(|e| Failure::Runner(format!("container {id}: writing the bundle: {e}")))?;

    let engine = Engine::new(request.state_root.join("state"))
        .with_node_context(NodeContext {
            precompiled: true,
            ..NodeContext::default()
        })
        .bound_to_caller();
    let timeout = policy
        .timeout_ms
        .map(|ms| Duration::from_millis(u64::from(ms)));
    let plan = policy.network.clone();
    let resolver = request.resolver.clone();
    let audit_for_network = audit.clone();
    let outcome = engine.run_to_completion_with(&id, &bundle.path, timeout, |container| {
        let pid = container.pid();
        let network_error = |source| EngineError::Network {
            id: id.clone(),
            source,
        };
        network::bring_up_loopback(pid).map_err(network_error)?;
        network::attach(pid, &plan, &resolver, audit_for_network).map_err(network_error)
    });
    if let Some(audit) = &audit {
        let (event, detail) = match &outcome {
            Ok(RunOutcome::TimedOut) => ("timeout", serde_json::json!(policy.timeout_ms)),
            Ok(outcome) => ("exit", serde_json::json!(outcome.code())),
            Err(error) => ("failed", serde_json::json!(error.to_string())),
        };
        audit.log.record(serde_json::json!({"event": event, "container": id, "policy_sha256": policy.sha256, "detail": detail}));
    }
    match outcome {
        Ok(RunOutcome::TimedOut) => {
            let ms = policy.timeout_ms.unwrap_or_default();
            Ok(runner_failure(&format!("script timed out after {ms}ms")))
        }
        Ok(outcome) => Ok(outcome.code()),
        Err(EngineError::Interrupted { signal, .. }) => Ok(128 + signal),
        Err(error) => Err(Failure::Runner(error.to_string())),
    }
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

    fn populate(
        &self,
        spec: &oci_spec::runtime::Spec,
        skeleton: &[SkeletonEntry],
        owner: Identity,
    ) -> std::io::Result<()> {
        let root = self.path.join("rootfs");
        std::fs::DirBuilder::new().mode(0o755).create(&root)?;
        // The runtime sets the root up as the sandbox's own (namespaced) root user, which is the
        // sandbox identity on the host: it must own the directory to create mountpoints in it.
        // The root is read-only once set up.
        std::os::unix::fs::chown(&root, Some(owner.uid), Some(owner.gid))?;
        for entry in skeleton {
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
        let json = serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?;
        std::fs::write(self.path.join("config.json"), json)
    }
}

impl Drop for BundleDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

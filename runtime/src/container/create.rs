//! `create`: set a container up with its init process blocked before the workload.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use tracing::instrument;

use super::bundle_view::BundleView;
use super::{cgroup, dev, init_errors, validate_id, Container, Engine};
use crate::audit::{nflog, Event};
use crate::error::{error_chain, EngineError};
use crate::executor::WorkloadExecutor;
use crate::network::{AuditTarget, Connectivity, HostNetwork, Lifetime, PlanOptions};
use crate::process::InitProcess;
use crate::record::{write_atomic, ContainerRecord, Phase, PolicyRecord, CONFIG_FILE};
use crate::spec;
use crate::staging::FreshRoot;
use crate::userns::{IdRange, OwnedUserNamespace};

/// Where the container's stdin, stdout and stderr come from.
#[derive(Debug, Default)]
pub enum Stdio {
    /// The caller's own descriptors 0, 1 and 2.
    #[default]
    Inherit,
    /// Given descriptors; `None` keeps the caller's.
    Fds {
        stdin: Option<OwnedFd>,
        stdout: Option<OwnedFd>,
        stderr: Option<OwnedFd>,
    },
}

impl Stdio {
    /// Gives the process libcontainer starts these streams (none for [`Stdio::Inherit`]).
    pub(super) fn apply(self, mut builder: ContainerBuilder) -> ContainerBuilder {
        if let Stdio::Fds {
            stdin,
            stdout,
            stderr,
        } = self
        {
            if let Some(fd) = stdin {
                builder = builder.with_stdin(fd);
            }
            if let Some(fd) = stdout {
                builder = builder.with_stdout(fd);
            }
            if let Some(fd) = stderr {
                builder = builder.with_stderr(fd);
            }
        }
        builder
    }
}

/// How to create a container (runc's `create` flags).
#[derive(Debug, Default)]
pub struct CreateOptions {
    pub stdio: Stdio,
    /// A unix socket that receives the pty master when `process.terminal` is true.
    pub console_socket: Option<PathBuf>,
    /// A file that receives the init process's pid.
    pub pid_file: Option<PathBuf>,
    /// Use `MS_MOVE` + chroot instead of `pivot_root` (for ramfs roots).
    pub no_pivot: bool,
    /// Accepted for runc compatibility; libcontainer never creates a session keyring.
    pub no_new_keyring: bool,
    /// Extra descriptors (3 ..= 2 + n) that the init process keeps.
    pub preserve_fds: i32,
    /// The workload is SIGKILLed when the creating process dies (`mxc run`).
    pub die_with_caller: bool,
    /// Mount a root made for this container over the bundle's (empty) root (`mxc run`).
    pub fresh_root: Option<FreshRoot>,
}

impl Engine {
    /// Creates container `id` from the bundle at `bundle`: the policy is applied, namespaces,
    /// mounts and cgroups are set up, and the init process waits for [`Engine::start`].
    /// On any error, nothing is left behind.
    #[instrument(skip_all, fields(id = %id))]
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        options: CreateOptions,
    ) -> Result<Container, EngineError> {
        validate_id(id)?;
        let root = self.layout.root();
        std::fs::create_dir_all(self.layout.engine_root())
            .map_err(|e| EngineError::io(format!("creating runtime root {}", root.display()), e))?;
        if self.layout.container_dir(id).exists() {
            return Err(EngineError::AlreadyExists { id: id.to_string() });
        }
        let engine_dir = self.layout.engine_dir(id);
        let mut made = std::fs::create_dir(&engine_dir);
        if matches!(&made, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
            // A concurrent delete removed the emptied engine root in between.
            let _ = std::fs::create_dir_all(self.layout.engine_root());
            made = std::fs::create_dir(&engine_dir);
        }
        match made {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(EngineError::AlreadyExists { id: id.to_string() })
            }
            Err(err) => {
                return Err(EngineError::io(
                    format!("creating {}", engine_dir.display()),
                    err,
                ))
            }
        }
        let pid_file_existed = options.pid_file.as_ref().is_some_and(|p| p.exists());
        let pid_file = options.pid_file.clone();

        let result = self.create_in(id, bundle, options);
        if let Err(err) = &result {
            tracing::debug!(error = %err, "create failed, removing everything it set up");
            self.audit_failed_create(id, err);
            self.discard_failed_create(id);
            if let Some(pid_file) = pid_file.filter(|_| !pid_file_existed) {
                let _ = std::fs::remove_file(pid_file);
            }
        }
        result
    }

    fn create_in(
        &self,
        id: &str,
        bundle: &Path,
        options: CreateOptions,
    ) -> Result<Container, EngineError> {
        let bundle = std::path::absolute(bundle)
            .map_err(|e| EngineError::io(format!("resolving bundle {}", bundle.display()), e))?;
        let engine_dir = self.layout.engine_dir(id);
        let mut effective = tracing::info_span!("spec_prepare")
            .in_scope(|| spec::prepare(&bundle, id, &self.node, &engine_dir.join("stage")))?;
        // libcontainer loads seccomp before dropping capabilities only when noNewPrivileges is
        // absent; an explicit `false` makes it load after, without CAP_SYS_ADMIN, and fail.
        // Absent means false (runtime-spec), so say it that way.
        if let Some(process) = effective.json["process"].as_object_mut() {
            if process.get("noNewPrivileges") == Some(&serde_json::Value::Bool(false)) {
                process.remove("noNewPrivileges");
            }
        }
        // A new user namespace is created here, owned by the identity it maps to, and joined by
        // libcontainer; the child holding it goes once the container's processes are in it.
        let owned_user_namespace = tracing::info_span!("user_namespace")
            .in_scope(|| own_user_namespace(&mut effective.json))
            .map_err(|e| EngineError::Io {
                context: format!("container {id}: creating its user namespace"),
                source: e,
            })?;
        let terminal = effective.json["process"]["terminal"].as_bool() == Some(true);
        if terminal && options.console_socket.is_none() {
            return Err(EngineError::InvalidArgument(format!(
                "container {id}: process.terminal is true but no console socket was given \
                 (pass --console-socket, or set terminal to false)"
            )));
        }

        dev::clear_leftovers(&effective.rootfs, &effective.json);

        let config = effective
            .config_text()
            .map_err(|e| EngineError::InvalidArgument(format!("writing the spec: {e}")))?;
        write_atomic(&engine_dir.join(CONFIG_FILE), config.as_bytes(), 0o600).map_err(|e| {
            EngineError::io(
                format!("writing {}", engine_dir.join(CONFIG_FILE).display()),
                e,
            )
        })?;

        let policy = &effective.policy;
        let mut record = ContainerRecord {
            id: id.to_string(),
            oci_version: effective.oci_version.clone(),
            bundle: bundle.clone(),
            rootfs: effective.rootfs.clone(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            phase: Phase::Creating,
            init: None,
            cgroup_path: effective.cgroup_path.clone(),
            annotations: effective.annotations.clone(),
            policy: (!policy.source.is_empty()).then(|| PolicyRecord {
                source: policy.source.clone(),
                sha256: policy.sha256.clone(),
                timeout_ms: policy.timeout_ms,
            }),
            user_namespace: effective.user_namespace,
            helpers: Vec::new(),
            stacks: Vec::new(),
            network_table: None,
            audit_log: policy.audit_log.clone(),
        };
        self.save_record(&record)?;
        if let Some(p) = &record.policy {
            tracing::info!(source = %p.source, sha256 = %p.sha256, "policy applied");
        }

        let lc = |e: &dyn std::error::Error| EngineError::libcontainer(id, "create", e);
        let builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(WorkloadExecutor::new().dying_with_parent(options.die_with_caller))
            .with_root_path(self.layout.root())
            .map_err(|e| lc(&e))?
            .with_pid_file(options.pid_file.as_ref())
            .map_err(|e| lc(&e))?
            .with_console_socket(options.console_socket.as_ref())
            .with_preserved_fds(options.preserve_fds);
        let builder = options
            .stdio
            .apply(builder)
            .validate_id()
            .map_err(|e| lc(&e))?;
        // Grants are staged, and the caller's bundle shows the engine's spec, in a private
        // mount namespace of this thread that the container's own is copied from; the thread
        // leaves it as soon as the container exists. Hooks and libcontainer's state name the
        // caller's bundle; without a mount namespace of its own the container would live in
        // that private one, so it gets the engine's directory. A root made for the container
        // (`mxc run`) is mounted there too.
        let bundle_for_libcontainer = if effective.private_mount_namespace {
            bundle.as_path()
        } else {
            engine_dir.as_path()
        };
        let staging_span = tracing::info_span!("staging").entered();
        let view = BundleView::enter(
            bundle_for_libcontainer,
            &engine_dir,
            Some(&effective.staging),
            options
                .fresh_root
                .as_ref()
                .map(|root| (root, effective.rootfs.as_path())),
        )
        .map_err(|source| EngineError::Staging {
            id: id.to_string(),
            source,
        })?;
        drop(staging_span);
        let build = tracing::info_span!("libcontainer_build").entered();
        let (built, logged) = init_errors::recording(|| {
            builder
                .as_init(view.bundle())
                .with_systemd(false)
                .with_detach(options.console_socket.is_some())
                .with_no_pivot(options.no_pivot)
                .build()
        });
        drop(view);
        drop(owned_user_namespace);
        drop(build);
        let container = built.map_err(|e| EngineError::Libcontainer {
            id: id.to_string(),
            operation: "create",
            message: init_errors::with_cause(error_chain(&e), logged.into_iter().next()),
        })?;

        let pid = container
            .pid()
            .ok_or_else(|| EngineError::Libcontainer {
                id: id.to_string(),
                operation: "create",
                message: "libcontainer reported no init pid".into(),
            })?
            .as_raw();
        let init = InitProcess::capture(pid).ok_or_else(|| EngineError::Libcontainer {
            id: id.to_string(),
            operation: "create",
            message: format!("the init process {pid} exited during set-up"),
        })?;
        let pidfd = init.open_pidfd();
        record.init = Some(init);
        self.save_record(&record)?;
        // The network is enforced before the process can start: rules in its namespace,
        // connectivity for a namespace of our own, the denial listener. The caller exits after
        // create: what must outlive it runs detached, recorded so that delete stops it, and
        // rules in an engine's namespace are recorded so that delete removes them.
        if let Some(plan) = &effective.policy.network {
            let _span = tracing::info_span!("network").entered();
            let connectivity = if crate::network::engine_provides_network(&effective.json) {
                Connectivity::EngineProvided
            } else {
                Connectivity::Userspace
            };
            let audit = self.container_audit(&record)?.map(|audit| AuditTarget {
                audit,
                group: mxc_translate::compile::nftables::log_group_for(id),
                failure_report: Some(nflog::failure_report(&engine_dir)),
            });
            let network_error = |source| EngineError::Network {
                id: id.to_string(),
                source,
            };
            let table = mxc_translate::compile::nftables::table_for(id);
            if let Some(path) = crate::network::engine_netns_path(&effective.json) {
                record.network_table = Some((path, table.clone()));
                self.save_record(&record)?;
            }
            let options = PlanOptions {
                connectivity,
                lifetime: Lifetime::Container,
                table,
                log_group: audit.as_ref().map_or(0, |a| a.group),
                audit,
                resolver: effective.policy.resolver.clone(),
            };
            let setup = HostNetwork::gather(plan)
                .and_then(|host| crate::network::plan(plan, options, &host))
                .map_err(network_error)?;
            let detached = crate::network::apply(pid, &setup)
                .map_err(network_error)?
                .detach();
            record.helpers = detached.helpers;
            record.stacks = detached.stacks;
        }
        record.phase = Phase::Created;
        self.save_record(&record)?;
        if let Some(network) = &effective.policy.network {
            self.audit_record(
                &record,
                &Event::PolicyApplied {
                    source: effective.policy.source.clone(),
                    network: network.mode().to_string(),
                },
            );
        }
        tracing::debug!(pid, "container created");
        Ok(Container {
            id: id.to_string(),
            init,
            pidfd,
        })
    }

    /// Undoes a failed create: kills whatever runs in the container's cgroups, removes them,
    /// libcontainer's directory and the engine's.
    fn discard_failed_create(&self, id: &str) {
        if let Ok(record) = self.load_record(id) {
            if let Some(init) = record.init.and_then(|i| i.open_pidfd()) {
                let _ = init.send_signal(libc::SIGKILL);
            }
            let _ = self.kill_cgroup_processes(&record, std::time::Duration::from_secs(5), true);
            let left = cgroup::remove_dirs(&record.cgroup_path, std::time::Duration::from_secs(2));
            for dir in left {
                tracing::warn!(dir = %dir.display(), "cgroup directory could not be removed");
            }
        }
        let _ = std::fs::remove_dir_all(self.layout.container_dir(id));
        let _ = std::fs::remove_dir_all(self.layout.engine_dir(id));
        let _ = std::fs::remove_dir(self.layout.engine_root());
    }
}

/// Creates the user namespace a spec asks for (no path) as the host identity its root maps to,
/// and points the spec at it. `None` when the spec has none, joins one, or maps root to root.
fn own_user_namespace(json: &mut serde_json::Value) -> std::io::Result<Option<OwnedUserNamespace>> {
    let ranges = |key: &str| -> Vec<IdRange> {
        json["linux"][key]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|m| {
                        let field =
                            |name: &str| m[name].as_u64().and_then(|v| u32::try_from(v).ok());
                        Some(IdRange {
                            container: field("containerID")?,
                            host: field("hostID")?,
                            size: field("size")?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let Some(namespaces) = json["linux"]["namespaces"].as_array() else {
        return Ok(None);
    };
    let Some(index) = namespaces
        .iter()
        .position(|ns| ns["type"] == "user" && ns["path"].as_str().is_none_or(str::is_empty))
    else {
        return Ok(None);
    };
    let (uids, gids) = (ranges("uidMappings"), ranges("gidMappings"));
    let root_of = |list: &[IdRange]| {
        list.iter()
            .find(|r| r.container == 0 && r.size > 0)
            .map(|r| r.host)
    };
    let (Some(uid), Some(gid)) = (root_of(&uids), root_of(&gids)) else {
        return Ok(None);
    };
    if uid == 0 {
        return Ok(None);
    }
    let owned = OwnedUserNamespace::create((uid, gid), &uids, &gids)?;
    json["linux"]["namespaces"][index]["path"] =
        serde_json::Value::String(owned.path().to_string_lossy().into_owned());
    Ok(Some(owned))
}

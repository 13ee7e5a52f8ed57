//! `exec`: run another process in a running container.
//!
//! libcontainer's tenant builder (0.7) builds the new process's spec itself and, doing so,
//! drops the container's seccomp profile, does not join the container's user namespace, and
//! ignores the container's user, rlimits and terminal. The engine therefore always hands it a
//! complete `process.json` built here from the container's effective spec, and:
//! - installs the container's seccomp profile in the executor, just before exec;
//! - in a container with a user namespace, runs the process as the *host* ids that the
//!   container's ids map to, with no capabilities, so that it is never host root;
//! - never grants capabilities outside the container's bounding set.

use std::collections::HashSet;
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxIdMapping, Process, Spec,
};
use libcontainer::syscall::syscall::SyscallType;
use tracing::instrument;

use super::bundle_view::BundleView;
use super::wait::wait_pidfd;
use super::{Engine, Stdio};
use crate::error::EngineError;
use crate::executor::WorkloadExecutor;
use crate::process::{ExitStatus, InitProcess, PidFd};
use crate::record::{Status, CONFIG_FILE};

/// What to run (runc's `exec` flags). With `process`, the process JSON is taken as it is and
/// `args`, `env`, `cwd`, `user` and `tty` are ignored, as in runc.
#[derive(Debug, Default)]
pub struct ExecOptions {
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    /// `KEY=VALUE` entries added to (or replacing those of) the container's environment.
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// uid and optional gid, as seen inside the container.
    pub user: Option<(u32, Option<u32>)>,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    pub stdio: Stdio,
    pub no_new_privs: bool,
    /// Capabilities to add (`CAP_NET_RAW`), within the container's bounding set.
    pub capabilities: Vec<String>,
    pub ignore_paused: bool,
    /// A sub-cgroup of the container's to run in.
    pub cgroup: Option<String>,
}

/// A process started by [`Engine::exec`].
#[derive(Debug)]
pub struct ExecProcess {
    pub pid: i32,
    pidfd: Option<PidFd>,
    id: String,
}

impl ExecProcess {
    /// Waits for the process to exit; `Ok(None)` if another process reaped it.
    pub fn wait(&self) -> Result<Option<ExitStatus>, EngineError> {
        match &self.pidfd {
            Some(fd) => Ok(wait_pidfd(&self.id, fd, None)?.flatten()),
            None => Ok(None),
        }
    }

    /// A pidfd on the process, opened while it was known to be this one.
    pub fn pidfd(&self) -> Option<&PidFd> {
        self.pidfd.as_ref()
    }
}

impl Engine {
    #[instrument(skip_all, fields(id = %id))]
    pub fn exec(&self, id: &str, options: ExecOptions) -> Result<ExecProcess, EngineError> {
        let record = self.load_record(id)?;
        let status = record.status();
        let allowed =
            status == Status::Running || (status == Status::Paused && options.ignore_paused);
        if !allowed {
            let hint = if status == Status::Paused {
                " (resume it, or use --ignore-paused)"
            } else {
                ""
            };
            return Err(EngineError::WrongStatus {
                id: id.to_string(),
                action: "exec in",
                status,
                hint,
            });
        }
        let engine_dir = self.layout.engine_dir(id);
        let spec = Spec::load(engine_dir.join(CONFIG_FILE))
            .map_err(|e| EngineError::libcontainer(id, "loading the effective spec", &e))?;

        let mut process = match &options.process {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| EngineError::io(format!("reading {}", path.display()), e))?;
                serde_json::from_slice::<Process>(&bytes).map_err(|e| {
                    EngineError::InvalidArgument(format!(
                        "{}: invalid process JSON: {e}",
                        path.display()
                    ))
                })?
            }
            None => process_from_flags(&spec, &options)?,
        };
        confine_process(&spec, &mut process, record.user_namespace)
            .map_err(EngineError::InvalidArgument)?;
        let terminal = process.terminal() == Some(true);
        if terminal && options.console_socket.is_none() {
            return Err(EngineError::InvalidArgument(format!(
                "container {id}: a terminal needs a console socket (--console-socket)"
            )));
        }

        let process_file = engine_dir.join(format!(
            "exec-{}-{}.json",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let bytes = serde_json::to_vec(&process)
            .map_err(|e| EngineError::InvalidArgument(format!("serialising the process: {e}")))?;
        crate::record::write_atomic(&process_file, &bytes, 0o600)
            .map_err(|e| EngineError::io(format!("writing {}", process_file.display()), e))?;

        let seccomp = spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().clone())
            .filter(|s| s.listener_path().is_none());
        let result = (|| {
            let lc = |e: &dyn std::error::Error| EngineError::libcontainer(id, "exec", e);
            let builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
                .with_executor(WorkloadExecutor::with_seccomp(seccomp))
                .with_root_path(self.layout.root())
                .map_err(|e| lc(&e))?
                .with_console_socket(options.console_socket.as_ref())
                .with_pid_file(options.pid_file.as_ref())
                .map_err(|e| lc(&e))?
                .with_preserved_fds(options.preserve_fds);
            let builder = options
                .stdio
                .apply(builder)
                .validate_id()
                .map_err(|e| lc(&e))?;
            // libcontainer reads the container's spec from the bundle it was created with.
            let bundle = self.libcontainer(id)?.bundle().clone();
            let view = BundleView::enter(&bundle, &engine_dir, None, None).map_err(|source| {
                EngineError::Staging {
                    id: id.to_string(),
                    source,
                }
            })?;
            let built = builder
                .as_tenant()
                .with_detach(options.console_socket.is_some())
                .with_process(Some(&process_file))
                .with_ignore_paused(options.ignore_paused)
                .with_sub_cgroup(options.cgroup.clone())
                .build();
            drop(view);
            built.map_err(|e| lc(&e))
        })();
        let _ = std::fs::remove_file(&process_file);
        let pid = result?.as_raw();
        let pidfd = InitProcess::capture(pid).and_then(|p| p.open_pidfd());
        tracing::debug!(pid, "exec process started");
        Ok(ExecProcess {
            pid,
            pidfd,
            id: id.to_string(),
        })
    }
}

/// The process for `exec ID ARGS...`: the container's process with the flags applied.
fn process_from_flags(spec: &Spec, options: &ExecOptions) -> Result<Process, EngineError> {
    if options.args.is_empty() {
        return Err(EngineError::InvalidArgument(
            "exec needs a command (or --process FILE)".into(),
        ));
    }
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(options.args.clone()));
    process.set_command_line(None);
    let mut env = process.env().clone().unwrap_or_default();
    for entry in &options.env {
        let key = entry.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(entry.clone());
    }
    process.set_env(Some(env));
    if let Some(cwd) = &options.cwd {
        if !cwd.is_absolute() {
            return Err(EngineError::InvalidArgument(format!(
                "--cwd {} must be an absolute path",
                cwd.display()
            )));
        }
        process.set_cwd(cwd.clone());
    }
    let user = process.user_mut();
    if let Some((uid, gid)) = options.user {
        user.set_uid(uid);
        if let Some(gid) = gid {
            user.set_gid(gid);
        }
    }
    if !options.additional_gids.is_empty() {
        user.set_additional_gids(Some(options.additional_gids.clone()));
    }
    process.set_terminal(Some(options.tty));
    process.set_console_size(None);
    if options.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if !options.capabilities.is_empty() {
        let mut caps = process.capabilities().clone().unwrap_or_default();
        let extra: Capabilities = options
            .capabilities
            .iter()
            .map(|c| parse_capability(c))
            .collect::<Result<_, _>>()
            .map_err(EngineError::InvalidArgument)?;
        let add = |set: &Option<Capabilities>| -> Option<Capabilities> {
            Some(
                set.clone()
                    .unwrap_or_default()
                    .union(&extra)
                    .copied()
                    .collect(),
            )
        };
        caps.set_bounding(add(caps.bounding()));
        caps.set_effective(add(caps.effective()));
        caps.set_permitted(add(caps.permitted()));
        process.set_capabilities(Some(caps));
    }
    Ok(process)
}

fn parse_capability(name: &str) -> Result<Capability, String> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| format!("unknown capability {name:?}"))
}

/// Keeps an exec process within what the container's init may do (see the module docs).
pub(crate) fn confine_process(
    spec: &Spec,
    process: &mut Process,
    user_namespace: bool,
) -> Result<(), String> {
    let linux = spec.linux().as_ref();
    let init_caps = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().clone());
    let bounding: HashSet<Capability> = init_caps
        .as_ref()
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();

    let caps = if user_namespace {
        // Outside the user namespace any capability would be a host capability.
        empty_capabilities()
    } else {
        let mut caps = process
            .capabilities()
            .clone()
            .unwrap_or_else(empty_capabilities);
        let clamp = |set: &Option<Capabilities>| -> Option<Capabilities> {
            Some(
                set.clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| bounding.contains(c))
                    .collect(),
            )
        };
        caps.set_bounding(clamp(caps.bounding()));
        caps.set_effective(clamp(caps.effective()));
        caps.set_permitted(clamp(caps.permitted()));
        caps.set_inheritable(clamp(caps.inheritable()));
        caps.set_ambient(clamp(caps.ambient()));
        caps
    };
    process.set_capabilities(Some(caps));

    if linux.and_then(|l| l.seccomp().as_ref()).is_some()
        || spec.process().as_ref().and_then(|p| p.no_new_privileges()) == Some(true)
    {
        process.set_no_new_privileges(Some(true));
    }
    if process.rlimits().is_none() {
        process.set_rlimits(spec.process().as_ref().and_then(|p| p.rlimits().clone()));
    }

    if user_namespace {
        let uid_map = linux
            .and_then(|l| l.uid_mappings().clone())
            .unwrap_or_default();
        let gid_map = linux
            .and_then(|l| l.gid_mappings().clone())
            .unwrap_or_default();
        let user = process.user_mut();
        let uid = user.uid();
        let gid = user.gid();
        let host_uid = map_id(&uid_map, uid)
            .ok_or_else(|| format!("uid {uid} is not mapped in the container's user namespace"))?;
        let host_gid = map_id(&gid_map, gid)
            .ok_or_else(|| format!("gid {gid} is not mapped in the container's user namespace"))?;
        user.set_uid(host_uid);
        user.set_gid(host_gid);
        if let Some(gids) = user.additional_gids().clone() {
            let mapped: Vec<u32> = gids.iter().filter_map(|g| map_id(&gid_map, *g)).collect();
            user.set_additional_gids(Some(mapped));
        }
    }
    Ok(())
}

fn empty_capabilities() -> LinuxCapabilities {
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(Capabilities::new()));
    caps.set_effective(Some(Capabilities::new()));
    caps.set_permitted(Some(Capabilities::new()));
    caps.set_inheritable(Some(Capabilities::new()));
    caps.set_ambient(Some(Capabilities::new()));
    caps
}

/// The host id that container id `id` maps to.
pub(crate) fn map_id(mappings: &[LinuxIdMapping], id: u32) -> Option<u32> {
    mappings.iter().find_map(|m| {
        let offset = id.checked_sub(m.container_id())?;
        (offset < m.size()).then(|| m.host_id() + offset)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const USERNS: &str = r#"{"ociVersion":"1.0.2","root":{"path":"/"},
        "process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0},"env":["PATH=/bin","A=1"],
          "capabilities":{"bounding":["CAP_KILL"],"effective":["CAP_KILL"],"permitted":["CAP_KILL"]}},
        "linux":{"namespaces":[{"type":"user"}],
          "uidMappings":[{"containerID":0,"hostID":100000,"size":65536}],
          "gidMappings":[{"containerID":0,"hostID":200000,"size":10}],
          "seccomp":{"defaultAction":"SCMP_ACT_ALLOW"}}}"#;

    #[test]
    fn ids_map_through_ranges() {
        let maps = spec(USERNS)
            .linux()
            .clone()
            .unwrap()
            .uid_mappings()
            .clone()
            .unwrap();
        assert_eq!(map_id(&maps, 0), Some(100000));
        assert_eq!(map_id(&maps, 1000), Some(101000));
        assert_eq!(map_id(&maps, 65536), None);
    }

    #[test]
    fn exec_in_a_user_namespace_is_never_host_root() {
        let spec = spec(USERNS);
        let options = ExecOptions {
            args: vec!["id".into()],
            env: vec!["A=2".into()],
            capabilities: vec!["CAP_SYS_ADMIN".into()],
            ..Default::default()
        };
        let mut process = process_from_flags(&spec, &options).unwrap();
        confine_process(&spec, &mut process, true).unwrap();
        assert_eq!(process.user().uid(), 100000);
        assert_eq!(process.user().gid(), 200000);
        let caps = process.capabilities().clone().unwrap();
        assert!(caps.effective().clone().unwrap().is_empty());
        assert!(caps.bounding().clone().unwrap().is_empty());
        assert_eq!(
            process.no_new_privileges(),
            Some(true),
            "seccomp implies NNP"
        );
        assert_eq!(
            process.env().clone().unwrap(),
            vec!["PATH=/bin".to_string(), "A=2".to_string()]
        );

        let mut unmapped = process_from_flags(
            &spec,
            &ExecOptions {
                args: vec!["id".into()],
                user: Some((0, Some(50))),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(confine_process(&spec, &mut unmapped, true)
            .unwrap_err()
            .contains("gid 50"));
    }

    #[test]
    fn exec_capabilities_stay_within_the_bounding_set() {
        let spec = spec(USERNS);
        let mut process = process_from_flags(
            &spec,
            &ExecOptions {
                args: vec!["id".into()],
                capabilities: vec!["NET_RAW".into()],
                ..Default::default()
            },
        )
        .unwrap();
        confine_process(&spec, &mut process, false).unwrap();
        let effective = process
            .capabilities()
            .clone()
            .unwrap()
            .effective()
            .clone()
            .unwrap();
        assert!(effective.contains(&Capability::Kill));
        assert!(!effective.contains(&Capability::NetRaw));
        assert!(process_from_flags(&spec, &ExecOptions::default()).is_err());
        assert!(parse_capability("CAP_BOGUS").is_err());
    }
}

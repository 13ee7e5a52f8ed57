//! Step two: a validated [`Config`] to a [`Policy`] for Linux. Backend selection and the
//! single-backend-section rule with Linux resolution, MXC's Linux-backend network rules, the
//! filesystem conflict layers (same string, same object, delegation), symlink resolution,
//! most-specific-path-wins ordering, cwd and env defaults.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{index, join, ConfigErrors, Report};
use crate::host::{self, FileInfo, FileKind, HostFacts};
use crate::model::{self, Containment, RequestKind};
use crate::network::{self, Action, NetworkSpec, Peer, ProxyEndpoint, Rule};
use crate::parse::Config;
use crate::paths;
use crate::policy::{
    EgressFilter, HostnameRule, Identity, MountAction, MountStep, NetworkPlan, Policy, Profile,
};

/// Host system directories visible read-only in the host-baseline profile (MXC's Bubblewrap
/// baseline). Missing ones are skipped.
pub const BASELINE: &[&str] = &[
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/share",
    "/etc",
    "/run/systemd/resolve",
    "/run/NetworkManager",
    "/run/resolvconf",
    "/mnt/wsl/resolv.conf",
];

/// Kernel filesystems the runtime provides itself; a grant must not replace or cover them.
const RUNTIME_OWNED: &[&str] = &["/proc", "/sys", "/dev"];

/// Where the policy will be used.
#[derive(Debug, Clone)]
pub enum Target {
    /// `mxc run`: the whole sandbox comes from the policy.
    OneShot {
        /// `--rootfs DIR`: use that root filesystem instead of the host baseline.
        rootfs: Option<PathBuf>,
    },
    /// `mxc-runtime` and the shim: the policy is applied on top of an engine-written spec.
    Bundle {
        /// Host paths a grant may name; `None` allows any (a policy the node's administrator
        /// wrote), `Some(list)` limits annotation-supplied policies.
        allowed_host_paths: Option<Vec<PathBuf>>,
    },
}

#[derive(Debug, Clone)]
pub struct ResolveOptions {
    pub target: Target,
    /// The host uid/gid the workload runs as (one-shot); grants are checked against it.
    pub identity: Identity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    ReadWrite,
    ReadOnly,
    Denied,
}

impl Access {
    fn list(self) -> &'static str {
        match self {
            Access::ReadWrite => "filesystem.readwritePaths",
            Access::ReadOnly => "filesystem.readonlyPaths",
            Access::Denied => "filesystem.deniedPaths",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    origin: String,
    written: String,
    path: PathBuf,
    access: Access,
}

pub fn resolve(
    config: &Config,
    host: &dyn HostFacts,
    options: &ResolveOptions,
) -> Result<Policy, ConfigErrors> {
    let mut report = Report::new(&config.source);
    let mut notes = Vec::new();
    let model = &config.model;

    if let RequestKind::StateAware(phase) = config.kind {
        report.reject(
            "phase",
            phase.as_str(),
            "state-aware lifecycle requests are not supported on Linux; send a one-shot request",
        );
        return Err(report.into_errors());
    }

    let bundle = matches!(options.target, Target::Bundle { .. });
    let containment = model.containment.unwrap_or(Containment::Process);
    let profile = self::profile(&mut report, model, containment, &options.target);
    backend_sections(&mut report, model, containment);
    unsupported_sections(&mut report, model);

    // Process.
    let process = model.process.clone().unwrap_or_default();
    let mut command_line = None;
    if bundle {
        if process.command_line.is_some() {
            report.reject_path(
                "process.commandLine",
                "in bundle mode the engine (Docker, containerd, Kubernetes) chooses the command; \
                 remove process.commandLine from the policy",
            );
        }
        if process.cwd.is_some() {
            report.reject_path(
                "process.cwd",
                "in bundle mode the engine chooses the working directory; remove process.cwd",
            );
        }
    } else {
        command_line = process.command_line.clone();
    }
    let env = process
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<Vec<_>>();
    let timeout_ms = process.timeout.filter(|ms| *ms > 0);

    if let Some(id) = &model.container_id {
        if !valid_container_id(id) {
            report.reject(
                "containerId",
                id,
                "must be 1-128 characters of letters, digits, '_', '.', '+' and '-', not starting \
                 with '.' or '-' (the OCI runtime's id rules)",
            );
        }
    }

    // Filesystem.
    let mounts = filesystem(&mut report, &mut notes, config, host, options, &profile);

    let cwd = if bundle {
        None
    } else {
        Some(self::cwd(
            &mut report,
            process.cwd.as_deref(),
            &mounts,
            &profile,
            host,
        ))
    };

    let network = network_plan(&mut report, &mut notes, config);

    let Some(network) = network else {
        return Err(report.into_errors());
    };
    report.finish(Policy {
        source: config.source.clone(),
        sha256: config.sha256.clone(),
        version: config.version,
        containment: containment.as_str().to_string(),
        profile,
        container_id: model.container_id.clone(),
        command_line,
        cwd,
        env,
        timeout_ms,
        identity: options.identity,
        mounts,
        network,
        notes,
    })
}

fn valid_container_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with(['.', '-'])
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-'))
}

fn profile(
    report: &mut Report,
    model: &model::MxcConfig,
    containment: Containment,
    target: &Target,
) -> Profile {
    let rootfs = match target {
        Target::OneShot { rootfs } => rootfs.clone(),
        Target::Bundle { .. } => return Profile::Bundle,
    };
    match containment {
        Containment::Process | Containment::Bubblewrap => match rootfs {
            Some(path) => Profile::Rootfs {
                path,
                distribution: None,
            },
            None => Profile::HostBaseline,
        },
        Containment::Lxc => {
            let lxc = model.lxc.clone().unwrap_or_default();
            let distribution = match (lxc.distribution, lxc.release) {
                (Some(d), Some(r)) if !d.is_empty() && !r.is_empty() => Some((d, r)),
                _ => {
                    report.reject_path("lxc", "LXC distribution and release are required");
                    None
                }
            };
            match rootfs {
                Some(path) => Profile::Rootfs { path, distribution },
                None => {
                    let image = distribution
                        .map(|(d, r)| format!("{d}:{r}"))
                        .unwrap_or_else(|| "the distribution".into());
                    report.reject(
                        "containment",
                        "lxc",
                        format!(
                            "'lxc' runs an image root filesystem: pass --rootfs DIR with an \
                             unpacked {image} root filesystem"
                        ),
                    );
                    Profile::HostBaseline
                }
            }
        }
        other => {
            report.reject(
                "containment",
                other.as_str(),
                "is not a Linux containment; use 'process', 'bubblewrap' or 'lxc' (MXC would \
                 silently fall back to LXC here; mxc-oci refuses instead)",
            );
            Profile::HostBaseline
        }
    }
}

/// MXC's single-backend-section rule with Linux resolution: `process`/omitted/`bubblewrap`
/// allow no backend section, `lxc` allows `lxc`.
fn backend_sections(report: &mut Report, model: &model::MxcConfig, containment: Containment) {
    let allowed = match containment {
        Containment::Lxc => Some("lxc"),
        Containment::ProcessContainer => Some("processContainer"),
        Containment::Seatbelt => Some("seatbelt"),
        _ => None,
    };
    let experimental = model.experimental.clone().unwrap_or_default();
    let present = [
        ("processContainer", model.process_container.is_some()),
        ("lxc", model.lxc.is_some()),
        ("seatbelt", model.seatbelt.is_some()),
        (
            "experimental.windows_sandbox",
            experimental.windows_sandbox.is_some(),
        ),
        ("experimental.wslc", experimental.wslc.is_some()),
        (
            "experimental.isolation_session",
            experimental.isolation_session.is_some(),
        ),
    ];
    for (section, is_present) in present {
        if is_present && Some(section) != allowed {
            let reason = match allowed {
                Some(name) => format!(
                    "multiple containment backends configured: 'containment' is '{}' (allows the \
                     '{name}' section); only one backend section is allowed, remove this one",
                    containment.as_str()
                ),
                None => format!(
                    "multiple containment backends configured: 'containment' is '{}' (no \
                     per-backend section is defined for it on Linux); remove this section",
                    containment.as_str()
                ),
            };
            report.reject_path(section, reason);
        }
    }
}

/// Fields that are valid MXC but that a Linux sandbox cannot honour: rejected, never ignored.
fn unsupported_sections(report: &mut Report, model: &model::MxcConfig) {
    if let Some(ui) = &model.ui {
        if ui.disable == Some(false) {
            report.reject(
                "ui.disable",
                false,
                "UI access cannot be granted: the sandbox has no display, no audio and no \
                 session bus, and a private network namespace hides abstract sockets",
            );
        }
        if ui
            .clipboard
            .is_some_and(|c| c != model::ClipboardPolicy::None)
        {
            report.reject_path(
                "ui.clipboard",
                "clipboard access cannot be granted on Linux",
            );
        }
        if ui.injection == Some(true) {
            report.reject(
                "ui.injection",
                true,
                "UI input injection cannot be granted on Linux",
            );
        }
    }
    if let Some(lifecycle) = &model.lifecycle {
        if lifecycle.destroy_on_exit == Some(false) {
            report.reject(
                "lifecycle.destroyOnExit",
                false,
                "mxc-oci always destroys a one-shot sandbox when its command exits; keeping it \
                 for reuse is not supported",
            );
        }
        if lifecycle.preserve_policy == Some(true) {
            report.reject(
                "lifecycle.preservePolicy",
                true,
                "mxc-oci keeps no policy state outside the sandbox's own namespaces, so there is \
                 nothing to preserve after exit",
            );
        }
    }
    if let Some(fallback) = &model.fallback {
        if fallback.allow_dacl_mutation == Some(true) {
            report.reject(
                "fallback.allowDaclMutation",
                true,
                "Windows-only: mxc-oci never changes host permissions; set it to false or remove it",
            );
        }
    }
    if let Some(experimental) = &model.experimental {
        let used = experimental.test.is_some()
            || experimental.telemetry.is_some()
            || experimental.windows_sandbox.is_some()
            || experimental.wslc.is_some()
            || experimental.isolation_session.is_some();
        if used {
            report.reject_path(
                "experimental",
                "experimental features are not supported by mxc-oci; remove the section",
            );
        }
    }
}

fn filesystem(
    report: &mut Report,
    notes: &mut Vec<String>,
    config: &Config,
    host: &dyn HostFacts,
    options: &ResolveOptions,
    profile: &Profile,
) -> Vec<MountStep> {
    let filesystem = config.model.filesystem.clone().unwrap_or_default();
    let mut entries = Vec::new();
    for (access, list) in [
        (Access::ReadWrite, &filesystem.readwrite_paths),
        (Access::ReadOnly, &filesystem.readonly_paths),
        (Access::Denied, &filesystem.denied_paths),
    ] {
        for (position, written) in list.as_deref().unwrap_or_default().iter().enumerate() {
            let origin = index(access.list(), position);
            let Some(path) = paths::normalize(written) else {
                report.reject(
                    origin,
                    written,
                    "must be an absolute path (policy paths are host paths, exposed at the same \
                     location inside the sandbox)",
                );
                continue;
            };
            if access != Access::Denied {
                if let Some(owned) = RUNTIME_OWNED.iter().find(|p| {
                    paths::is_within(&path, Path::new(p)) || Path::new(p).starts_with(&path)
                }) {
                    report.reject(
                        origin,
                        written,
                        format!(
                            "a grant must not cover the runtime's own {owned}: it would expose the \
                             host's {owned} to the sandbox"
                        ),
                    );
                    continue;
                }
            }
            entries.push(Entry {
                origin,
                written: written.clone(),
                path,
                access,
            });
        }
    }

    // Layer 1: the same string in several lists keeps only the most restrictive.
    let mut strictest: HashMap<String, Access> = HashMap::new();
    for entry in &entries {
        let slot = strictest
            .entry(entry.written.clone())
            .or_insert(entry.access);
        *slot = (*slot).max(entry.access);
    }
    entries.retain(|entry| {
        let keep = strictest[&entry.written] == entry.access;
        if !keep {
            notes.push(format!(
                "{} '{}' also appears in a stricter list; the stricter intent applies",
                entry.origin, entry.written
            ));
        }
        keep
    });

    // Layer 2: the same object reached by different names is tightened to the strictest intent.
    let any_denied = entries.iter().any(|e| e.access == Access::Denied);
    let mut identities: Vec<Option<(u64, u64)>> = Vec::new();
    for entry in &entries {
        match host.metadata(&entry.path) {
            Ok(info) => identities.push(Some((info.dev, info.ino))),
            Err(error)
                if matches!(error.kind(), io::ErrorKind::NotFound)
                    || error.raw_os_error() == Some(20) =>
            {
                identities.push(None)
            }
            Err(error) => {
                identities.push(None);
                if any_denied {
                    report.reject(
                        &entry.origin,
                        &entry.written,
                        format!(
                            "cannot be examined ({error}); with deniedPaths present every entry \
                             must be checkable, so the config is refused"
                        ),
                    );
                }
            }
        }
    }
    let mut by_object: HashMap<(u64, u64), Access> = HashMap::new();
    for (entry, id) in entries.iter().zip(&identities) {
        if let Some(id) = id {
            let slot = by_object.entry(*id).or_insert(entry.access);
            *slot = (*slot).max(entry.access);
        }
    }
    for (entry, id) in entries.iter_mut().zip(&identities) {
        if let Some(strictest) = id.and_then(|id| by_object.get(&id)) {
            if *strictest > entry.access {
                notes.push(format!(
                    "{} '{}' names the same file system object as a stricter entry; tightened",
                    entry.origin, entry.written
                ));
                entry.access = *strictest;
            }
        }
    }

    // Most-specific-path-wins: shallow first, ties in list order rw, ro, denied.
    entries.sort_by_key(|entry| (paths::depth(&entry.path), entry.access));

    let bundle_allowance = match &options.target {
        Target::Bundle { allowed_host_paths } => Some(allowed_host_paths.clone()),
        Target::OneShot { .. } => None,
    };

    // Grants first (their sources and destinations decide what masks must cover).
    let mut grants: Vec<(PathBuf, PathBuf, Access)> = Vec::new();
    for entry in entries.iter().filter(|e| e.access != Access::Denied) {
        let resolved = match host::resolve_symlinks(host, &entry.path) {
            Ok(resolved) => resolved,
            Err(error) => {
                report.reject(
                    &entry.origin,
                    &entry.written,
                    format!("cannot be resolved: {error}"),
                );
                continue;
            }
        };
        if !resolved.exists {
            report.reject(
                &entry.origin,
                &entry.written,
                "does not exist on the host; create it first or remove the entry",
            );
            continue;
        }
        if let Some(Some(allowed)) = &bundle_allowance {
            if !allowed.iter().any(|a| paths::is_within(&resolved.path, a)) {
                report.reject(
                    &entry.origin,
                    &entry.written,
                    "the node configuration does not allow this policy to grant that host path \
                     (host_paths in /etc/mxc/config.toml)",
                );
                continue;
            }
        }
        let Ok(info) = host.symlink_metadata(&resolved.path) else {
            report.reject(&entry.origin, &entry.written, "cannot be examined");
            continue;
        };
        if bundle_allowance.is_none() {
            delegation(report, entry, &resolved.path, &info, host, options.identity);
        }
        grants.push((entry.path.clone(), resolved.path, entry.access));
    }

    let mut steps = Vec::new();
    for entry in &entries {
        if entry.access != Access::Denied {
            if let Some((dest, source, access)) = grants.iter().find(|(d, _, _)| *d == entry.path) {
                steps.push(MountStep {
                    destination: dest.clone(),
                    origin: entry.origin.clone(),
                    action: MountAction::Bind {
                        source: source.clone(),
                        readonly: *access == Access::ReadOnly,
                    },
                });
            }
            continue;
        }
        for (destination, action) in mask(report, notes, entry, host, &grants, profile) {
            steps.push(MountStep {
                destination,
                origin: entry.origin.clone(),
                action,
            });
        }
    }
    // Re-establish most-specific-path-wins over final destinations (a mask may have moved to its
    // symlink target).
    steps.sort_by_key(|step| paths::depth(&step.destination));
    steps
}

/// The permission bits (rwx) that apply to `identity` on a file (ACLs are not consulted).
fn permission_bits(info: &FileInfo, identity: Identity) -> u32 {
    if info.uid == identity.uid {
        (info.mode >> 6) & 7
    } else if info.gid == identity.gid {
        (info.mode >> 3) & 7
    } else {
        info.mode & 7
    }
}

/// MXC's delegation check (D3), against the identity the workload runs as. The runtime opens
/// grant sources as that identity, so every parent directory must be searchable too.
fn delegation(
    report: &mut Report,
    entry: &Entry,
    real: &Path,
    info: &FileInfo,
    host: &dyn HostFacts,
    identity: Identity,
) {
    for parent in real.ancestors().skip(1) {
        let Ok(parent_info) = host.symlink_metadata(parent) else {
            continue;
        };
        if permission_bits(&parent_info, identity) & 1 == 0 {
            report.reject(
                &entry.origin,
                &entry.written,
                format!(
                    "its parent directory {} is not searchable by the sandbox identity {}:{} \
                     (owner {}:{}, mode {:04o}); allow that identity to traverse it (chmod o+x) \
                     or run as another user (--user)",
                    parent.display(),
                    identity.uid,
                    identity.gid,
                    parent_info.uid,
                    parent_info.gid,
                    parent_info.mode
                ),
            );
            return;
        }
    }
    let dir = info.kind == FileKind::Directory;
    let bits = permission_bits(info, identity);
    let need_write = entry.access == Access::ReadWrite;
    let readable = bits & 4 != 0 && (!dir || bits & 1 != 0);
    let writable = bits & 2 != 0;
    if !readable || (need_write && !writable) {
        let wanted = if need_write {
            "readable and writable"
        } else {
            "readable"
        };
        report.reject(
            &entry.origin,
            &entry.written,
            format!(
                "is not {wanted} by the sandbox identity {}:{} (owner {}:{}, mode {:04o}); grant \
                 that identity access (chown/chmod) or run as another user (--user)",
                identity.uid, identity.gid, info.uid, info.gid, info.mode
            ),
        );
    }
}

/// What masking a denied entry takes (§5.5/§5.6 of the mapping, D5 variant: mode 000 masks).
fn mask(
    report: &mut Report,
    notes: &mut Vec<String>,
    entry: &Entry,
    host: &dyn HostFacts,
    grants: &[(PathBuf, PathBuf, Access)],
    profile: &Profile,
) -> Vec<(PathBuf, MountAction)> {
    let resolved = match host::resolve_symlinks(host, &entry.path) {
        Ok(resolved) => resolved,
        Err(error) => {
            report.reject(
                &entry.origin,
                &entry.written,
                format!("cannot be resolved: {error}"),
            );
            return Vec::new();
        }
    };
    if resolved.dangling {
        report.reject(
            &entry.origin,
            &entry.written,
            format!(
                "is a dangling symlink (to {}) and cannot be safely masked; refusing to start",
                resolved.path.display()
            ),
        );
        return Vec::new();
    }
    let real = resolved.path;

    // Where the real object appears inside the sandbox: under each grant whose source covers
    // it, and at its own path when the profile's root shows it.
    let mut destinations: Vec<(PathBuf, bool)> = Vec::new();
    for (dest, source, access) in grants {
        if let Ok(rest) = real.strip_prefix(source) {
            destinations.push((dest.join(rest), *access == Access::ReadWrite));
        }
    }
    let in_profile_root = match profile {
        Profile::HostBaseline => BASELINE
            .iter()
            .filter_map(|b| host::resolve_symlinks(host, Path::new(b)).ok())
            .any(|b| b.exists && paths::is_within(&real, &b.path)),
        // An image root: mask the path as written, inside the image.
        Profile::Rootfs { .. } | Profile::Bundle => true,
    };
    if in_profile_root && !destinations.iter().any(|(d, _)| *d == real) {
        let at = if matches!(profile, Profile::HostBaseline) {
            real.clone()
        } else {
            entry.path.clone()
        };
        destinations.push((at, false));
    }
    if destinations.is_empty() {
        notes.push(format!(
            "{} '{}' is not visible in the sandbox; nothing to mask",
            entry.origin, entry.written
        ));
        return Vec::new();
    }

    let info = host.symlink_metadata(&real);
    let granted_descendants = |dest: &Path| {
        grants
            .iter()
            .any(|(g, _, _)| g != dest && paths::is_within(g, dest))
    };
    match info {
        Ok(info) if info.kind == FileKind::Directory => destinations
            .into_iter()
            .map(|(dest, _)| {
                let granted = granted_descendants(&dest);
                (
                    dest,
                    MountAction::MaskDirectory {
                        granted_descendants: granted,
                    },
                )
            })
            .collect(),
        Ok(info) => {
            if info.nlink > 1 && destinations.iter().any(|(_, rw)| *rw) {
                report.reject(
                    &entry.origin,
                    &entry.written,
                    format!(
                        "is a file with {} hard links inside a granted tree; another name could \
                         reach it, so it cannot be denied by path (remove the extra links)",
                        info.nlink
                    ),
                );
                return Vec::new();
            }
            destinations
                .into_iter()
                .map(|(dest, _)| (dest, MountAction::MaskFile))
                .collect()
        }
        Err(_)
            if matches!(profile, Profile::Rootfs { .. } | Profile::Bundle)
                && !grants.iter().any(|(_, s, _)| paths::is_within(&real, s)) =>
        {
            // Inside an image: the runtime classifies it at mount time (maskedPaths), unless
            // grants sit below it, which a late mask would hide.
            destinations
                .into_iter()
                .map(|(dest, _)| {
                    let action = if granted_descendants(&dest) {
                        MountAction::MaskDirectory {
                            granted_descendants: true,
                        }
                    } else {
                        MountAction::MaskInImage
                    };
                    (dest, action)
                })
                .collect()
        }
        Err(_) => {
            if let Some((dest, _)) = destinations.iter().find(|(_, rw)| *rw) {
                report.reject(
                    &entry.origin,
                    &entry.written,
                    format!(
                        "does not exist but lies in a writable grant ({}): the sandbox could \
                         create it; create it on the host first (mxc-oci does not create host \
                         directories) or remove the entry",
                        dest.display()
                    ),
                );
            } else {
                notes.push(format!(
                    "{} '{}' does not exist and cannot be created inside the sandbox; nothing to mask",
                    entry.origin, entry.written
                ));
            }
            Vec::new()
        }
    }
}

fn cwd(
    report: &mut Report,
    written: Option<&str>,
    mounts: &[MountStep],
    profile: &Profile,
    host: &dyn HostFacts,
) -> PathBuf {
    let visible = |path: &Path| -> bool {
        // The deepest step covering the path decides.
        let deepest = mounts
            .iter()
            .filter(|m| paths::is_within(path, &m.destination))
            .max_by_key(|m| paths::depth(&m.destination));
        match deepest {
            Some(step) => match &step.action {
                MountAction::Bind { source, .. } => {
                    let rest = path
                        .strip_prefix(&step.destination)
                        .unwrap_or(Path::new(""));
                    host.metadata(&source.join(rest))
                        .is_ok_and(|i| i.kind == FileKind::Directory)
                }
                _ => false,
            },
            None => match profile {
                Profile::HostBaseline => {
                    path == Path::new("/")
                        || paths::is_within(path, Path::new("/tmp"))
                        || BASELINE
                            .iter()
                            .any(|b| paths::is_within(path, Path::new(b)))
                            && host
                                .metadata(path)
                                .is_ok_and(|i| i.kind == FileKind::Directory)
                }
                Profile::Rootfs { path: root, .. } => {
                    let inside = root.join(path.strip_prefix("/").unwrap_or(path));
                    host.metadata(&inside)
                        .is_ok_and(|i| i.kind == FileKind::Directory)
                }
                Profile::Bundle => true,
            },
        }
    };
    match written.filter(|w| !w.is_empty()) {
        Some(text) => match paths::normalize(text) {
            None => {
                report.reject(
                    "process.cwd",
                    text,
                    "must be an absolute path (MXC would resolve it against the sandbox root; \
                     mxc-oci asks you to write that out)",
                );
                PathBuf::from("/")
            }
            Some(path) if !visible(&path) => {
                report.reject(
                    "process.cwd",
                    text,
                    "is not a directory visible inside the sandbox (grant it, or pick a granted \
                     directory)",
                );
                path
            }
            Some(path) => path,
        },
        None => {
            // MXC's documented cross-backend default: the first existing directory among the
            // read-write grants, then the read-only grants, else the root.
            for readonly in [false, true] {
                for step in mounts {
                    if let MountAction::Bind {
                        source,
                        readonly: ro,
                    } = &step.action
                    {
                        if *ro == readonly
                            && host
                                .metadata(source)
                                .is_ok_and(|i| i.kind == FileKind::Directory)
                        {
                            return step.destination.clone();
                        }
                    }
                }
            }
            PathBuf::from("/")
        }
    }
}

fn network_plan(
    report: &mut Report,
    notes: &mut Vec<String>,
    config: &Config,
) -> Option<NetworkPlan> {
    let directional_version = config.version.supports_directional_network();
    match &config.network {
        NetworkSpec::Legacy(legacy) => {
            let firewall = matches!(
                legacy.enforcement,
                model::NetworkEnforcement::Firewall | model::NetworkEnforcement::Both
            );
            if legacy.allow_local_network {
                report.reject(
                    "network.allowLocalNetwork",
                    true,
                    "inbound connections cannot be granted: the sandbox always has a private \
                     network namespace and no port-mapping contract exists for it",
                );
            }
            let has_lists = !legacy.allowed_hosts.is_empty() || !legacy.blocked_hosts.is_empty();
            if let Some(proxy) = &legacy.proxy {
                proxy_checks(report, "network.proxy", proxy);
                if firewall {
                    report.reject_path(
                        "network.enforcementMode",
                        "network.proxy cannot be combined with enforcementMode 'firewall' or \
                         'both'",
                    );
                }
                if *proxy != ProxyEndpoint::BuiltinTestServer
                    && (has_lists || !legacy.default_allow)
                {
                    report.reject_path(
                        "network.proxy",
                        "an external proxy (url/localhost) cannot be combined with allowedHosts, \
                         blockedHosts, or defaultPolicy 'block' (the default): the proxy enforces \
                         its own host policy; set defaultPolicy 'allow' and remove the host lists",
                    );
                }
                return report.is_clean().then(|| NetworkPlan::ProxyOnly {
                    proxy: proxy.clone(),
                });
            }
            if has_lists && !firewall && directional_version {
                report.reject_path(
                    "network.enforcementMode",
                    "allowedHosts/blockedHosts require an enforcement mechanism: set \
                     enforcementMode 'firewall' or 'both'",
                );
            }
            if has_lists && !firewall && !directional_version {
                notes.push(
                    "host lists under enforcementMode 'capabilities' are enforced anyway \
                     (MXC would not filter them before 0.8)"
                        .to_string(),
                );
            }
            if !legacy.default_allow && !has_lists {
                return Some(NetworkPlan::Isolated);
            }
            let mut filter = EgressFilter {
                default_allow: legacy.default_allow,
                deny: Vec::new(),
                allow: Vec::new(),
                hostnames: Vec::new(),
            };
            for (deny, list, hosts) in [
                (true, "network.blockedHosts", &legacy.blocked_hosts),
                (false, "network.allowedHosts", &legacy.allowed_hosts),
            ] {
                for (position, host) in hosts.iter().enumerate() {
                    let path = index(list, position);
                    match host_entry(host) {
                        Ok(HostEntry::Net(net)) => {
                            let rule = Rule {
                                path,
                                to: vec![Peer {
                                    cidr: net,
                                    except: Vec::new(),
                                }],
                                ports: Vec::new(),
                            };
                            if deny {
                                filter.deny.push(rule)
                            } else {
                                filter.allow.push(rule)
                            }
                        }
                        Ok(HostEntry::Name(name)) => {
                            filter.hostnames.push(HostnameRule { path, name, deny })
                        }
                        Err(reason) => report.reject(path, host, reason),
                    }
                }
            }
            report.is_clean().then_some(NetworkPlan::Filtered(filter))
        }
        NetworkSpec::Directional(directional) => {
            if let Some(peer) = &directional.allowed_proxy_peer {
                report.reject(
                    "processContainer.network.allowedProxyPeer",
                    peer,
                    "proxy peer identities are a Windows ProcessContainer feature; not supported on Linux",
                );
            }
            if directional.ingress_default == Action::Allow {
                report.reject(
                    "network.ingress.default",
                    "allow",
                    "inbound connections cannot be granted: no port-mapping contract exists for \
                     the sandbox's private network namespace",
                );
            }
            if directional.host_loopback == Action::Allow {
                report.reject(
                    "network.ingress.hostLoopback",
                    "allow",
                    "host loopback access is not supported yet; use runtimeConfig.networkProxy \
                     to reach one loopback proxy",
                );
            }
            if let Some(proxy) = &directional.proxy {
                proxy_checks(report, "runtimeConfig.networkProxy", proxy);
                if directional.posture_specified
                    && (directional.egress_default != Action::Deny
                        || !directional.allow.is_empty()
                        || !directional.deny.is_empty())
                {
                    report.reject_path(
                        "runtimeConfig.networkProxy",
                        "requires network.egress.default='deny' with no direct allow or deny rules",
                    );
                }
                return report.is_clean().then(|| NetworkPlan::ProxyOnly {
                    proxy: proxy.clone(),
                });
            }
            if directional.egress_default == Action::Deny
                && directional.allow.is_empty()
                && directional.deny.is_empty()
            {
                return report.is_clean().then_some(NetworkPlan::Isolated);
            }
            report.is_clean().then(|| {
                NetworkPlan::Filtered(EgressFilter {
                    default_allow: directional.egress_default == Action::Allow,
                    deny: directional.deny.clone(),
                    allow: directional.allow.clone(),
                    hostnames: Vec::new(),
                })
            })
        }
    }
}

fn proxy_checks(report: &mut Report, path: &str, proxy: &ProxyEndpoint) {
    match proxy {
        ProxyEndpoint::BuiltinTestServer => report.reject(
            join(path, "builtinTestServer"),
            true,
            "MXC's built-in test proxy is a testing feature and is not supported by mxc-oci; \
             run a proxy and name it with url or localhost",
        ),
        ProxyEndpoint::Url { url, .. } if proxy.has_credentials() => report.reject(
            path,
            network::redact_url(url),
            "must not carry credentials: configure them in the proxy itself",
        ),
        _ => {}
    }
}

enum HostEntry {
    Net(ipnet::IpNet),
    Name(String),
}

/// A legacy host-list entry: IP, CIDR (host bits are tolerated, as LXC does) or hostname.
fn host_entry(text: &str) -> Result<HostEntry, String> {
    if let Ok(address) = text.parse::<std::net::IpAddr>() {
        return Ok(HostEntry::Net(address.into()));
    }
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(HostEntry::Net(net.trunc()));
    }
    let name = text.trim_end_matches('.');
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(HostEntry::Name(name.to_ascii_lowercase()))
    } else {
        Err("must be an IP address, a CIDR block or a hostname".to_string())
    }
}

//! The filesystem section: the conflict layers (same string, same object, delegation),
//! symlink resolution, most-specific-path-wins ordering, and what masking a denied entry takes.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::{ResolveOptions, Target, BASELINE};
use crate::error::{index, Report};
use crate::host::{self, FileInfo, FileKind, HostFacts};
use crate::parse::Config;
use crate::paths;
use crate::policy::{Identity, MountAction, MountStep, ObjectId, Profile};

/// Kernel filesystems the runtime provides itself; a grant must not replace or cover them.
const RUNTIME_OWNED: &[&str] = &["/proc", "/sys", "/dev"];

/// How many entries below a denied directory are examined for hard links before the policy is
/// refused as too large to verify.
pub const HARD_LINK_SCAN_LIMIT: usize = 20_000;

/// A grant as resolution checked it.
struct Grant {
    /// Where the sandbox sees it (the path as written, normalised).
    destination: PathBuf,
    /// The resolved host path.
    source: PathBuf,
    access: Access,
    object: ObjectId,
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

pub(super) fn mounts(
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

    let bundle = matches!(options.target, Target::Bundle);

    // Grants first (their sources and destinations decide what masks must cover).
    let mut grants: Vec<Grant> = Vec::new();
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
        if let Some(reason) = untrusted_symlink(host, &resolved.symlinks, options.identity) {
            report.reject(&entry.origin, &entry.written, reason);
            continue;
        }
        if let Some(owned) = runtime_owned(&resolved.path) {
            report.reject(
                &entry.origin,
                &entry.written,
                format!(
                    "resolves to {}: a grant must not cover the runtime's own {owned}, which \
                     would expose the host's {owned} to the sandbox",
                    resolved.path.display()
                ),
            );
            continue;
        }
        let Ok(info) = host.symlink_metadata(&resolved.path) else {
            report.reject(&entry.origin, &entry.written, "cannot be examined");
            continue;
        };
        if !bundle {
            // Bundle mode runs as the engine's user, which it chose; one-shot as ours.
            delegation(report, entry, &resolved.path, &info, host, options.identity);
        }
        grants.push(Grant {
            destination: entry.path.clone(),
            source: resolved.path,
            access: entry.access,
            object: ObjectId {
                dev: info.dev,
                ino: info.ino,
            },
        });
    }
    // The file systems the sandbox can reach: a hard link to a denied file on one of them could
    // be another name for it.
    let mut visible_devices: Vec<u64> = grants.iter().map(|g| g.object.dev).collect();
    if matches!(profile, Profile::HostBaseline) {
        visible_devices.extend(
            BASELINE
                .iter()
                .filter_map(|b| host.metadata(Path::new(b)).ok())
                .map(|info| info.dev),
        );
    }

    let mut steps = Vec::new();
    for entry in &entries {
        if entry.access != Access::Denied {
            if let Some(grant) = grants.iter().find(|g| g.destination == entry.path) {
                steps.push(MountStep {
                    destination: grant.destination.clone(),
                    origin: entry.origin.clone(),
                    action: MountAction::Bind {
                        source: grant.source.clone(),
                        readonly: grant.access == Access::ReadOnly,
                        object: Some(grant.object),
                    },
                });
            }
            continue;
        }
        let context = MaskContext {
            host,
            grants: &grants,
            profile,
            identity: options.identity,
            visible_devices: &visible_devices,
        };
        for (destination, action) in mask(report, notes, entry, &context) {
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

/// Which of the runtime's own kernel file systems `path` is, lies in, or covers.
fn runtime_owned(path: &Path) -> Option<&'static str> {
    RUNTIME_OWNED
        .iter()
        .find(|owned| {
            paths::is_within(path, Path::new(owned)) || Path::new(owned).starts_with(path)
        })
        .copied()
}

/// Why a symlink on the way to a policy path cannot be trusted, if one cannot: the sandbox
/// identity owns it or could have replaced it (its directory is writable by that identity and
/// not sticky), so a sandbox of an earlier run may have planted it to point a grant or a denial
/// somewhere else. Symlinks only others could have made (`/lib -> usr/lib`, a link an
/// administrator placed) are followed, as MXC does.
fn untrusted_symlink(
    host: &dyn HostFacts,
    links: &[PathBuf],
    identity: Identity,
) -> Option<String> {
    for link in links {
        let Ok(info) = host.symlink_metadata(link) else {
            continue;
        };
        let parent = link.parent().unwrap_or(Path::new("/"));
        let replaceable = host.symlink_metadata(parent).is_ok_and(|dir| {
            let sticky = dir.mode & 0o1000 != 0;
            permission_bits(&dir, identity) & 3 == 3 && !sticky
        });
        if info.uid == identity.uid || replaceable {
            let target = host
                .read_link(link)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            return Some(format!(
                "passes through the symlink {} (-> {target}), which the sandbox identity {}:{} \
                 owns or could have replaced, so a sandbox could have planted it; name the real \
                 path instead",
                link.display(),
                identity.uid,
                identity.gid
            ));
        }
    }
    None
}

/// What masking needs to know besides the entry.
struct MaskContext<'a> {
    host: &'a dyn HostFacts,
    grants: &'a [Grant],
    profile: &'a Profile,
    identity: Identity,
    visible_devices: &'a [u64],
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
    context: &MaskContext,
) -> Vec<(PathBuf, MountAction)> {
    let MaskContext {
        host,
        grants,
        profile,
        ..
    } = *context;
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
    if let Some(reason) = untrusted_symlink(host, &resolved.symlinks, context.identity) {
        report.reject(&entry.origin, &entry.written, reason);
        return Vec::new();
    }
    let real = resolved.path;

    // Where the real object appears inside the sandbox: under each grant whose source covers
    // it, and at its own path when the profile's root shows it.
    let mut destinations: Vec<(PathBuf, bool)> = Vec::new();
    for grant in grants {
        if let Ok(rest) = real.strip_prefix(&grant.source) {
            destinations.push((
                grant.destination.join(rest),
                grant.access == Access::ReadWrite,
            ));
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
            .any(|g| g.destination != dest && paths::is_within(&g.destination, dest))
    };
    match info {
        Ok(info) if info.kind == FileKind::Directory => {
            if let Err(reason) = hard_links_below(host, &real, context.visible_devices) {
                report.reject(&entry.origin, &entry.written, reason);
                return Vec::new();
            }
            destinations
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
                .collect()
        }
        Ok(info) => {
            if info.nlink > 1 && context.visible_devices.contains(&info.dev) {
                report.reject(
                    &entry.origin,
                    &entry.written,
                    format!(
                        "is a file with {} hard links on a file system the sandbox can reach; \
                         another name could reach it, so it cannot be denied by path (remove the \
                         extra links)",
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
                && !grants.iter().any(|g| paths::is_within(&real, &g.source)) =>
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

/// Refuses a denied directory with a regular file below it that has another name (a hard link)
/// on a file system the sandbox can reach, or with more entries than can be verified.
fn hard_links_below(host: &dyn HostFacts, dir: &Path, devices: &[u64]) -> Result<(), String> {
    if devices.is_empty() {
        return Ok(());
    }
    let mut pending = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    while let Some(current) = pending.pop() {
        let Ok(children) = host.children(&current) else {
            // Unreadable: nothing below it can be listed, by the sandbox either.
            continue;
        };
        for child in children {
            seen += 1;
            if seen > HARD_LINK_SCAN_LIMIT {
                return Err(format!(
                    "holds more than {HARD_LINK_SCAN_LIMIT} entries, too many to verify that none \
                     of its files has a second name (hard link) the sandbox could reach; deny a \
                     smaller directory or the files themselves"
                ));
            }
            let Ok(info) = host.symlink_metadata(&child) else {
                continue;
            };
            match info.kind {
                FileKind::Directory => pending.push(child),
                FileKind::File if info.nlink > 1 && devices.contains(&info.dev) => {
                    return Err(format!(
                        "holds {}, a file with {} hard links on a file system the sandbox can \
                         reach; another name could reach it, so it cannot be denied by path \
                         (remove the extra links)",
                        child.display(),
                        info.nlink
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

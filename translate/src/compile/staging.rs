//! Host-path grants are not bound by path at container set-up time: a path is a name, and a
//! sandbox that can write below a grant can change what a name means between the check and the
//! mount (a directory swapped for a symlink to `/`), or between one run and the next (a denied
//! file's directory renamed, a decoy left at the old name).
//!
//! So the runtime *stages* every grant before the container exists: it opens the checked object
//! with symlinks refused at every component, verifies it is the object resolution examined,
//! clones it as a detached mount tree, and builds, inside that tree and with symlinks refused
//! again, everything the policy places below it: nested grants, masks over denied paths, and
//! "pins" (each directory between a writable grant and a denied path becomes a mount point of
//! itself, which the kernel refuses to rename or remove from inside the sandbox, so the
//! policy's names keep meaning the same objects run after run). The spec then binds each staged
//! tree at its destination. This module decides what is staged; the runtime's `staging` module
//! does it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::paths;
use crate::policy::{MountAction, MountStep, ObjectId};

/// What the runtime stages before it creates the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagingPlan {
    /// The directory the trees are attached in: only the runtime can write it.
    pub dir: PathBuf,
    pub trees: Vec<StagedTree>,
}

impl StagingPlan {
    pub fn is_empty(&self) -> bool {
        self.trees.is_empty()
    }

    /// The file `mxc run` writes its plan to, in its own bundle directory.
    pub const FILE: &'static str = "staging.json";
}

/// One grant that no other grant contains, with everything the policy places inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedTree {
    /// Its mount point's name in the staging directory.
    pub name: String,
    /// Where the sandbox sees it.
    pub destination: PathBuf,
    pub grant: StagedGrant,
    /// In order, shallow first; paths relative to the tree's root.
    pub steps: Vec<StagedStep>,
}

/// A host object to bind, as resolution checked it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StagedGrant {
    /// The resolved host path: no symlink in any component.
    pub source: PathBuf,
    /// The object resolution examined; the runtime refuses anything else at that path.
    pub object: Option<ObjectId>,
    pub readonly: bool,
    /// The policy entry (`filesystem.readonlyPaths[0]`), for errors.
    pub origin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum StagedStep {
    /// A grant nested in the tree.
    Grant { path: PathBuf, grant: StagedGrant },
    /// A directory made a mount point of itself, so that it cannot be renamed or removed.
    Pin { path: PathBuf },
    /// A denied file: `/dev/null`, read-only, `nodev`.
    MaskFile { path: PathBuf, origin: String },
    /// A denied directory: an empty read-only tmpfs of mode 000, or 0111 (traversable, read-only
    /// once the grants below it are in place) when grants lie below it.
    MaskDirectory {
        path: PathBuf,
        granted_descendants: bool,
        origin: String,
    },
}

impl StagedStep {
    pub fn path(&self) -> &Path {
        match self {
            StagedStep::Grant { path, .. }
            | StagedStep::Pin { path }
            | StagedStep::MaskFile { path, .. }
            | StagedStep::MaskDirectory { path, .. } => path,
        }
    }
}

/// Splits the policy's mount steps into staged trees and the steps that stay spec mounts
/// (masks outside every grant: in the host baseline or an image). `steps` are in
/// most-specific-path-wins order (shallow first), as resolution leaves them.
pub fn plan(steps: &[MountStep], dir: &Path) -> (StagingPlan, Vec<MountStep>) {
    let mut trees: Vec<StagedTree> = Vec::new();
    let mut rest = Vec::new();
    // (destination, readonly) of every grant, to decide which directories need pins.
    let grants: Vec<(&Path, bool)> = steps
        .iter()
        .filter_map(|s| match &s.action {
            MountAction::Bind { readonly, .. } => Some((s.destination.as_path(), *readonly)),
            _ => None,
        })
        .collect();
    let mount_points: Vec<&Path> = steps.iter().map(|s| s.destination.as_path()).collect();

    for step in steps {
        let tree = trees
            .iter_mut()
            .find(|t| paths::is_within(&step.destination, &t.destination));
        let Some(tree) = tree else {
            match &step.action {
                MountAction::Bind {
                    source,
                    readonly,
                    object,
                } => trees.push(StagedTree {
                    name: trees.len().to_string(),
                    destination: step.destination.clone(),
                    grant: StagedGrant {
                        source: source.clone(),
                        object: *object,
                        readonly: *readonly,
                        origin: step.origin.clone(),
                    },
                    steps: Vec::new(),
                }),
                _ => rest.push(step.clone()),
            }
            continue;
        };
        let relative = step
            .destination
            .strip_prefix(&tree.destination)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let staged = match &step.action {
            MountAction::Bind {
                source,
                readonly,
                object,
            } => StagedStep::Grant {
                path: relative,
                grant: StagedGrant {
                    source: source.clone(),
                    object: *object,
                    readonly: *readonly,
                    origin: step.origin.clone(),
                },
            },
            MountAction::MaskFile => StagedStep::MaskFile {
                path: relative,
                origin: step.origin.clone(),
            },
            MountAction::MaskDirectory {
                granted_descendants,
            } => StagedStep::MaskDirectory {
                path: relative,
                granted_descendants: *granted_descendants,
                origin: step.origin.clone(),
            },
            // Inside a host grant the object is known: resolution never leaves this kind there.
            MountAction::MaskInImage => StagedStep::MaskDirectory {
                path: relative,
                granted_descendants: false,
                origin: step.origin.clone(),
            },
        };
        let is_mask = !matches!(staged, StagedStep::Grant { .. });
        if is_mask {
            for pin in pins(&step.destination, &tree.destination, &grants, &mount_points) {
                let path = pin
                    .strip_prefix(&tree.destination)
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                if !tree.steps.iter().any(|s| s.path() == path) {
                    tree.steps.push(StagedStep::Pin { path });
                }
            }
        }
        tree.steps.push(staged);
    }
    for tree in &mut trees {
        // Shallow first; a pin goes before a mount at the same depth below it. Stable, so list
        // order decides among equals.
        tree.steps.sort_by_key(|s| paths::depth(s.path()));
    }
    (
        StagingPlan {
            dir: dir.to_path_buf(),
            trees,
        },
        rest,
    )
}

/// The directories strictly between `root` and `masked` that a sandbox could rename or remove:
/// those whose deepest covering grant is writable and that are not mount points already.
fn pins(masked: &Path, root: &Path, grants: &[(&Path, bool)], mounts: &[&Path]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = masked
        .ancestors()
        .skip(1)
        .take_while(|a| *a != root && paths::is_within(a, root))
        .filter(|a| !mounts.contains(a))
        .filter(|a| {
            grants
                .iter()
                .filter(|(dest, _)| paths::is_within(a, dest))
                .max_by_key(|(dest, _)| paths::depth(dest))
                .is_some_and(|(_, readonly)| !readonly)
        })
        .map(Path::to_path_buf)
        .collect();
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(dest: &str, source: &str, readonly: bool) -> MountStep {
        MountStep {
            destination: dest.into(),
            origin: format!("grant {dest}"),
            action: MountAction::Bind {
                source: source.into(),
                readonly,
                object: None,
            },
        }
    }

    fn mask_file(dest: &str) -> MountStep {
        MountStep {
            destination: dest.into(),
            origin: format!("deny {dest}"),
            action: MountAction::MaskFile,
        }
    }

    #[test]
    fn nested_grants_and_masks_go_into_their_top_level_tree_with_pins() {
        let steps = vec![
            bind("/ws", "/srv/ws", false),
            mask_file("/etc/shadow"),
            bind("/ws/ro", "/srv/ws/ro", true),
            mask_file("/ws/a/b/secret"),
            mask_file("/ws/ro/c/key"),
        ];
        let (plan, rest) = plan(&steps, Path::new("/stage"));
        assert_eq!(rest, vec![mask_file("/etc/shadow")]);
        assert_eq!(plan.trees.len(), 1);
        let tree = &plan.trees[0];
        assert_eq!(tree.destination, Path::new("/ws"));
        assert_eq!(tree.grant.source, Path::new("/srv/ws"));
        let kinds: Vec<(String, &str)> = tree
            .steps
            .iter()
            .map(|s| {
                let kind = match s {
                    StagedStep::Grant { .. } => "grant",
                    StagedStep::Pin { .. } => "pin",
                    StagedStep::MaskFile { .. } => "file",
                    StagedStep::MaskDirectory { .. } => "dir",
                };
                (s.path().display().to_string(), kind)
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("ro".to_string(), "grant"),
                ("a".to_string(), "pin"),
                ("a/b".to_string(), "pin"),
                ("a/b/secret".to_string(), "file"),
                // ro/c lies in a read-only grant: the sandbox cannot rename it; no pin.
                ("ro/c/key".to_string(), "file"),
            ]
        );
    }

    #[test]
    fn separate_grants_make_separate_trees() {
        let (plan, rest) = plan(
            &[bind("/a", "/a", true), bind("/b", "/real/b", false)],
            Path::new("/stage"),
        );
        assert!(rest.is_empty());
        let names: Vec<(&str, &Path)> = plan
            .trees
            .iter()
            .map(|t| (t.name.as_str(), t.destination.as_path()))
            .collect();
        assert_eq!(names, vec![("0", Path::new("/a")), ("1", Path::new("/b"))]);
    }
}

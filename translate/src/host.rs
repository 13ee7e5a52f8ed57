//! What compilation needs to know about the host, behind a small trait so that most of the
//! logic is tested without touching the real filesystem, and symlink resolution as MXC's Linux
//! backends do it (`resolve_through_symlinks`: canonicalise every existing prefix, fold the
//! missing tail lexically).

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    File,
    Symlink,
    /// Devices, sockets, FIFOs.
    Other,
}

/// The part of `stat(2)` the policy cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    pub kind: FileKind,
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
}

pub trait HostFacts {
    /// `lstat(2)`: does not follow a final symlink.
    fn symlink_metadata(&self, path: &Path) -> io::Result<FileInfo>;
    /// `readlink(2)`.
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    /// The entries of a directory (full paths, unsorted; `.` and `..` left out).
    fn children(&self, path: &Path) -> io::Result<Vec<PathBuf>>;

    /// `stat(2)`: follows symlinks.
    fn metadata(&self, path: &Path) -> io::Result<FileInfo> {
        let resolved = resolve_symlinks(self, path)?;
        if !resolved.exists {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        self.symlink_metadata(&resolved.path)
    }
}

/// The real host.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

impl HostFacts for RealHost {
    fn symlink_metadata(&self, path: &Path) -> io::Result<FileInfo> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path)?;
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            FileKind::Directory
        } else if file_type.is_file() {
            FileKind::File
        } else if file_type.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        };
        Ok(FileInfo {
            kind,
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            nlink: meta.nlink(),
        })
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(path)
    }

    fn children(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.path()))
            .collect()
    }
}

#[derive(Debug, Clone)]
enum FakeNode {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        nlink: u64,
    },
    Link {
        target: PathBuf,
        uid: u32,
    },
}

/// An in-memory host tree for tests: directories, files and symlinks with owners and modes.
/// Parent directories are created implicitly (root-owned, 0755).
#[derive(Debug, Clone, Default)]
pub struct FakeHost {
    nodes: BTreeMap<PathBuf, FakeNode>,
}

impl FakeHost {
    pub fn new() -> Self {
        let mut host = FakeHost::default();
        host.nodes.insert(
            PathBuf::from("/"),
            FakeNode::Dir {
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
        );
        host
    }

    fn parents(&mut self, path: &Path) {
        for ancestor in path.ancestors().skip(1) {
            self.nodes
                .entry(ancestor.to_path_buf())
                .or_insert(FakeNode::Dir {
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                });
        }
    }

    pub fn dir(mut self, path: &str) -> Self {
        self = self.dir_owned(path, 0o755, 0, 0);
        self
    }

    pub fn dir_owned(mut self, path: &str, mode: u32, uid: u32, gid: u32) -> Self {
        let path = PathBuf::from(path);
        self.parents(&path);
        self.nodes.insert(path, FakeNode::Dir { mode, uid, gid });
        self
    }

    pub fn file(self, path: &str) -> Self {
        self.file_owned(path, 0o644, 0, 0)
    }

    pub fn file_owned(mut self, path: &str, mode: u32, uid: u32, gid: u32) -> Self {
        let path = PathBuf::from(path);
        self.parents(&path);
        self.nodes.insert(
            path,
            FakeNode::File {
                mode,
                uid,
                gid,
                nlink: 1,
            },
        );
        self
    }

    pub fn hard_linked_file(mut self, path: &str, nlink: u64) -> Self {
        let path = PathBuf::from(path);
        self.parents(&path);
        self.nodes.insert(
            path,
            FakeNode::File {
                mode: 0o644,
                uid: 0,
                gid: 0,
                nlink,
            },
        );
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let path = PathBuf::from(path);
        self.parents(&path);
        self.nodes.insert(
            path,
            FakeNode::Link {
                target: PathBuf::from(target),
                uid: 0,
            },
        );
        self
    }

    /// A symlink owned by `uid` (a sandbox identity that planted it).
    pub fn symlink_owned(mut self, path: &str, target: &str, uid: u32) -> Self {
        let path = PathBuf::from(path);
        self.parents(&path);
        self.nodes.insert(
            path,
            FakeNode::Link {
                target: PathBuf::from(target),
                uid,
            },
        );
        self
    }

    /// Every path in the tree, for property tests.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.nodes.keys().cloned().collect()
    }
}

impl HostFacts for FakeHost {
    fn symlink_metadata(&self, path: &Path) -> io::Result<FileInfo> {
        let node = self
            .nodes
            .get(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        // A stable fake inode per path: distinct paths are distinct objects.
        let ino = self.nodes.keys().position(|p| p == path).unwrap_or(0) as u64 + 1;
        let (kind, mode, uid, gid, nlink) = match node {
            FakeNode::Dir { mode, uid, gid } => (FileKind::Directory, *mode, *uid, *gid, 2),
            FakeNode::File {
                mode,
                uid,
                gid,
                nlink,
            } => (FileKind::File, *mode, *uid, *gid, *nlink),
            FakeNode::Link { uid, .. } => (FileKind::Symlink, 0o777, *uid, *uid, 1),
        };
        Ok(FileInfo {
            kind,
            dev: 1,
            ino,
            mode,
            uid,
            gid,
            nlink,
        })
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        match self.nodes.get(path) {
            Some(FakeNode::Link { target, .. }) => Ok(target.clone()),
            Some(_) => Err(io::Error::from_raw_os_error(22)),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn children(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        match self.nodes.get(path) {
            Some(FakeNode::Dir { .. }) => Ok(self
                .nodes
                .keys()
                .filter(|p| p.parent() == Some(path) && p.as_path() != path)
                .cloned()
                .collect()),
            Some(_) => Err(io::Error::from_raw_os_error(20)),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }
}

/// The outcome of resolving a path through symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The real path: every existing prefix canonicalised, the missing tail folded lexically.
    pub path: PathBuf,
    /// Whether the whole real path exists.
    pub exists: bool,
    /// Whether resolution stopped at a symlink whose target does not exist.
    pub dangling: bool,
    /// Every symlink followed on the way, where it was found, in order.
    pub symlinks: Vec<PathBuf>,
}

const MAX_LINKS: usize = 40;

/// Resolves `path` (absolute, normalised) through symlinks at every level.
pub fn resolve_symlinks<H: HostFacts + ?Sized>(host: &H, path: &Path) -> io::Result<Resolved> {
    let mut pending: Vec<PathBuf> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(PathBuf::from(name)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .rev()
        .collect();
    let mut current = PathBuf::from("/");
    let mut links = 0;
    let mut symlinks = Vec::new();
    let mut missing = false;
    let mut dangling = false;
    while let Some(name) = pending.pop() {
        if name.as_os_str() == ".." {
            current.pop();
            continue;
        }
        let candidate = current.join(&name);
        if missing {
            current = candidate;
            continue;
        }
        match host.symlink_metadata(&candidate) {
            Ok(info) if info.kind == FileKind::Symlink => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(40)); // ELOOP
                }
                let target = host.read_link(&candidate)?;
                symlinks.push(candidate.clone());
                if target.is_absolute() {
                    current = PathBuf::from("/");
                }
                let was_last = pending.is_empty();
                for component in target.components().rev() {
                    match component {
                        Component::Normal(part) => pending.push(PathBuf::from(part)),
                        Component::ParentDir => pending.push(PathBuf::from("..")),
                        _ => {}
                    }
                }
                if was_last {
                    // Remember that the final element was a link, to report dangling targets.
                    dangling = true;
                }
            }
            Ok(_) => {
                current = candidate;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                missing = true;
                current = candidate;
            }
            Err(error) => return Err(error),
        }
    }
    let exists = !missing;
    Ok(Resolved {
        path: current,
        exists,
        dangling: dangling && missing,
        symlinks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_links_at_every_level() {
        let host = FakeHost::new()
            .dir("/data/real")
            .file("/data/real/secret.txt")
            .symlink("/work/link", "/data/real")
            .symlink("/work/rel", "../data/real/secret.txt")
            .symlink("/work/dangling", "/nowhere/x");
        let r = resolve_symlinks(&host, Path::new("/work/link/secret.txt")).unwrap();
        assert_eq!(r.path, PathBuf::from("/data/real/secret.txt"));
        assert!(r.exists);
        let r = resolve_symlinks(&host, Path::new("/work/rel")).unwrap();
        assert_eq!(r.path, PathBuf::from("/data/real/secret.txt"));
        let r = resolve_symlinks(&host, Path::new("/work/dangling")).unwrap();
        assert_eq!(r.path, PathBuf::from("/nowhere/x"));
        assert!(!r.exists && r.dangling);
        let r = resolve_symlinks(&host, Path::new("/work/link/missing/../x")).unwrap();
        assert_eq!(r.path, PathBuf::from("/data/real/x"));
        assert!(!r.exists && !r.dangling);
    }

    #[test]
    fn detects_loops() {
        let host = FakeHost::new().symlink("/a", "/b").symlink("/b", "/a");
        assert!(resolve_symlinks(&host, Path::new("/a/x")).is_err());
    }
}

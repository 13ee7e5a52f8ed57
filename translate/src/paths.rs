//! Path arithmetic: lexical normalisation and symlink resolution as MXC's Linux backends do it
//! (`resolve_through_symlinks`: canonicalise every existing prefix, fold the missing tail
//! lexically).

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::host::{FileKind, HostFacts};

/// Lexically normalises an absolute path: folds `.` and `..`, drops duplicate and trailing
/// slashes. Returns `None` for a relative path.
pub fn normalize(text: &str) -> Option<PathBuf> {
    let path = Path::new(text);
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
        }
    }
    Some(out)
}

/// Number of components below `/`: `/` is 0, `/a/b` is 2.
pub fn depth(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// Whether `path` is `ancestor` or lies below it.
pub fn is_within(path: &Path, ancestor: &Path) -> bool {
    path.starts_with(ancestor)
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;

    #[test]
    fn normalizes() {
        assert_eq!(normalize("/a//b/./c/../d/"), Some(PathBuf::from("/a/b/d")));
        assert_eq!(normalize("/../.."), Some(PathBuf::from("/")));
        assert_eq!(normalize("rel/x"), None);
        assert_eq!(depth(Path::new("/")), 0);
        assert_eq!(depth(Path::new("/a/b")), 2);
    }

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

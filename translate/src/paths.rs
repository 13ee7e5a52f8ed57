//! Path arithmetic, lexical only: normalisation, depth, containment. Resolution through the
//! host's symlinks is [`crate::host::resolve_symlinks`].

use std::path::{Component, Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize("/a//b/./c/../d/"), Some(PathBuf::from("/a/b/d")));
        assert_eq!(normalize("/../.."), Some(PathBuf::from("/")));
        assert_eq!(normalize("rel/x"), None);
        assert_eq!(depth(Path::new("/")), 0);
        assert_eq!(depth(Path::new("/a/b")), 2);
    }
}

//! Where a config came from, so that every error can name it.

use std::fmt;
use std::path::PathBuf;

/// The origin of an MXC config: a file, an OCI annotation, or text handed over in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A config file, named by the path the user gave.
    File(PathBuf),
    /// An OCI annotation on the container, e.g. `io.mxc.config`.
    Annotation(String),
    /// A named in-memory config (the built-in default policy, tests).
    Named(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Annotation(key) => write!(f, "annotation {key}"),
            Source::Named(name) => f.write_str(name),
        }
    }
}

//! The engine releases the suites run against: containerd 1.6 and Docker 20.10 from Debian 12
//! (the host's packages), containerd 1.7 from Debian 13 and containerd 2.x and Docker 28 from
//! Debian sid, which `conformance/engines.sh` unpacks under [`engines_dir`] (`setup.sh` runs
//! it). A test names the release it drives; [`crate::containerd::Containerd`] and
//! [`crate::docker::Dockerd`] start that release's daemons.

use std::path::{Path, PathBuf};

/// A containerd release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContainerdRelease {
    /// Debian 12's containerd 1.6: the host's own package.
    #[default]
    V1_6,
    /// Debian 13's containerd 1.7.
    V1_7,
    /// Debian sid's containerd 2.x.
    V2,
}

impl ContainerdRelease {
    pub const ALL: [ContainerdRelease; 3] = [
        ContainerdRelease::V1_6,
        ContainerdRelease::V1_7,
        ContainerdRelease::V2,
    ];

    /// The directory holding this release's `containerd`, `ctr` and `containerd-shim-runc-v2`.
    pub fn bin_dir(self) -> PathBuf {
        match self {
            ContainerdRelease::V1_6 => PathBuf::from("/usr/bin"),
            ContainerdRelease::V1_7 => engines_dir().join("containerd-1.7/usr/bin"),
            ContainerdRelease::V2 => engines_dir().join("containerd-2/usr/bin"),
        }
    }

    pub fn containerd(self) -> PathBuf {
        self.bin_dir().join("containerd")
    }

    pub fn ctr(self) -> PathBuf {
        self.bin_dir().join("ctr")
    }

    /// The config schema this release writes itself (`version = N`).
    pub fn config_schema(self) -> u32 {
        match self {
            ContainerdRelease::V1_6 | ContainerdRelease::V1_7 => 2,
            ContainerdRelease::V2 => 3,
        }
    }
}

/// A Docker release, and the containerd it runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DockerRelease {
    /// Debian 12's docker.io 20.10 on containerd 1.6.
    #[default]
    V20_10,
    /// Debian sid's docker.io 28 on containerd 2.x.
    V28,
}

impl DockerRelease {
    pub const ALL: [DockerRelease; 2] = [DockerRelease::V20_10, DockerRelease::V28];

    pub fn dockerd(self) -> PathBuf {
        match self {
            DockerRelease::V20_10 => PathBuf::from("/usr/sbin/dockerd"),
            DockerRelease::V28 => engines_dir().join("docker-28/usr/sbin/dockerd"),
        }
    }

    /// The client of the same release (a newer client may not speak to an older daemon).
    pub fn docker_cli(self) -> PathBuf {
        match self {
            DockerRelease::V20_10 => PathBuf::from("/usr/bin/docker"),
            DockerRelease::V28 => engines_dir().join("docker-28/usr/bin/docker"),
        }
    }

    /// Where dockerd's helpers (`docker-init`, `docker-proxy`) are.
    pub fn helper_dirs(self) -> Vec<PathBuf> {
        match self {
            DockerRelease::V20_10 => Vec::new(),
            DockerRelease::V28 => vec![
                engines_dir().join("docker-28/usr/bin"),
                engines_dir().join("docker-28/usr/sbin"),
            ],
        }
    }

    pub fn containerd(self) -> ContainerdRelease {
        match self {
            DockerRelease::V20_10 => ContainerdRelease::V1_6,
            DockerRelease::V28 => ContainerdRelease::V2,
        }
    }
}

/// Where `engines.sh` unpacked the newer releases: `MXC_ENGINES_DIR` if set (test.sh sets
/// it), else `<workspace>/target/engines`.
pub fn engines_dir() -> PathBuf {
    match std::env::var_os("MXC_ENGINES_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => crate::workspace_root().join("target").join("engines"),
    }
}

/// Fails with the command that fetches the releases when `binary` is missing.
pub fn require(binary: &Path) -> anyhow::Result<()> {
    if binary.is_file() {
        return Ok(());
    }
    anyhow::bail!(
        "{} is missing: run `conformance/engines.sh {}` (conformance/setup.sh does)",
        binary.display(),
        engines_dir().display()
    )
}

/// One test per containerd release for a function `NAME(ContainerdRelease) -> Result<()>`:
/// `NAME::containerd_1_6`, `NAME::containerd_1_7` and `NAME::containerd_2`, which nextest
/// runs (and filters) as separate tests.
#[macro_export]
macro_rules! each_containerd {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn containerd_1_6() -> ::anyhow::Result<()> {
                super::$name($crate::engines::ContainerdRelease::V1_6)
            }
            #[test]
            fn containerd_1_7() -> ::anyhow::Result<()> {
                super::$name($crate::engines::ContainerdRelease::V1_7)
            }
            #[test]
            fn containerd_2() -> ::anyhow::Result<()> {
                super::$name($crate::engines::ContainerdRelease::V2)
            }
        }
    )+};
}

/// One test per Docker release for a function `NAME(DockerRelease) -> Result<()>`:
/// `NAME::docker_20_10` and `NAME::docker_28`.
#[macro_export]
macro_rules! each_docker {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn docker_20_10() -> ::anyhow::Result<()> {
                super::$name($crate::engines::DockerRelease::V20_10)
            }
            #[test]
            fn docker_28() -> ::anyhow::Result<()> {
                super::$name($crate::engines::DockerRelease::V28)
            }
        }
    )+};
}

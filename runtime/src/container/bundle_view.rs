//! The bundle as libcontainer sees it.
//!
//! libcontainer reads the spec from `<bundle>/config.json` and reports that same bundle to the
//! container's hooks and in its state. The spec that runs is the engine's (the policy applied,
//! the cgroup path settled), kept in the engine's directory, and the caller's bundle is never
//! written. So while libcontainer builds a container or an exec process, the calling thread
//! sees the engine's spec at `<bundle>/config.json`: a bind mount in the thread's private mount
//! namespace ([`PrivateMounts`], where grants are staged too), left again when the view is
//! dropped. Hooks then get the bundle given to `create`, as under runc, and every process
//! libcontainer starts meanwhile reads the spec that is enforced.
//!
//! Where the view cannot be made (no privilege for a mount namespace, the bundle's
//! `config.json` gone), libcontainer is pointed at the engine's directory instead.

use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use mxc_translate::compile::staging::StagingPlan;

use crate::record::CONFIG_FILE;
use crate::staging::{self, FreshRoot, PrivateMounts, StagingError};

/// This thread in a private mount namespace (when one could be made) until dropped, and the
/// directory libcontainer should take as the bundle.
pub(crate) struct BundleView {
    bundle: PathBuf,
    _mounts: Option<PrivateMounts>,
}

impl BundleView {
    /// Shows the spec in `engine_dir` at `<bundle>/config.json`, mounts `fresh_root` (a root
    /// made for the container, and the rootfs it goes over) and stages `staging`'s grants
    /// beside it. Both need the private mount namespace: without one this fails; with
    /// nothing to mount, its absence only falls back to `engine_dir`.
    pub(crate) fn enter(
        bundle: &Path,
        engine_dir: &Path,
        staging: Option<&StagingPlan>,
        fresh_root: Option<(&FreshRoot, &Path)>,
    ) -> Result<BundleView, StagingError> {
        let staging = staging.filter(|plan| !plan.is_empty());
        let require_private = staging.is_some() || fresh_root.is_some();
        let view = BundleView::show(bundle, engine_dir, require_private)?;
        if let Some((root, rootfs)) = fresh_root {
            root.mount_over(rootfs)?;
        }
        if let Some(plan) = staging {
            staging::stage(plan)?;
        }
        Ok(view)
    }

    fn show(
        bundle: &Path,
        engine_dir: &Path,
        require_private: bool,
    ) -> Result<BundleView, StagingError> {
        let fallback = |mounts| BundleView {
            bundle: engine_dir.to_path_buf(),
            _mounts: mounts,
        };
        if bundle == engine_dir && !require_private {
            return Ok(fallback(None));
        }
        let mounts = match PrivateMounts::enter() {
            Ok(mounts) => mounts,
            Err(err) if require_private => return Err(err),
            Err(reason) => {
                tracing::debug!(%reason, bundle = %bundle.display(), "no view of the bundle; libcontainer reads the engine's directory");
                return Ok(fallback(None));
            }
        };
        if bundle == engine_dir {
            return Ok(fallback(Some(mounts)));
        }
        let target = bundle.join(CONFIG_FILE);
        let shown = if target.is_file() {
            mount(
                Some(&engine_dir.join(CONFIG_FILE)),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|err| format!("bind-mounting the spec over {}: {err}", target.display()))
        } else {
            Err(format!("{} is not a file", target.display()))
        };
        match shown {
            Ok(()) => Ok(BundleView {
                bundle: bundle.to_path_buf(),
                _mounts: Some(mounts),
            }),
            Err(reason) => {
                tracing::debug!(%reason, "no view of the bundle; libcontainer reads the engine's directory");
                Ok(fallback(Some(mounts)))
            }
        }
    }

    /// The directory to give libcontainer as the bundle.
    pub(crate) fn bundle(&self) -> &Path {
        &self.bundle
    }
}

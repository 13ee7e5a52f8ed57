//! The test images, made without a registry: a busybox root filesystem from `busybox-static`
//! (plus `icmp-echo`, a static ICMP probe built from `conformance/images/icmp-echo.c`), packed into an OCI image layout with `umoci`, and turned into Docker archives with `skopeo`
//! (for `ctr images import` and `docker load`).
//!
//! They are built once and cached under `<workspace>/target/mxc-conformance/` (or
//! `MXC_CONFORMANCE_CACHE`), keyed by the busybox binary and the recipe below; a file lock
//! keeps the test processes that start in parallel from building them twice.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use crate::bins;
use crate::command::run_ok;

/// The busybox image: `sh` by default, every busybox applet on `PATH`.
pub const BUSYBOX_REF: &str = "docker.io/library/busybox:latest";
/// The CRI sandbox image: its entrypoint sleeps for ever.
pub const PAUSE_REF: &str = "docker.io/library/mxc-pause:latest";

/// The `PATH` of both images.
pub const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Changing how the images are made changes this, and with it the cache key.
const RECIPE: &str = "busybox-rootfs-v2";

/// The ICMP probe's source: busybox's `ping` needs a raw socket, which no sandbox has.
const ICMP_ECHO_SOURCE: &str = include_str!("../images/icmp-echo.c");

const TOOL_LIMIT: Duration = Duration::from_secs(120);

/// The built images, on disk.
#[derive(Debug)]
pub struct Images {
    dir: PathBuf,
}

impl Images {
    /// The images of this test run, built on first use.
    pub fn get() -> Result<&'static Images> {
        static IMAGES: OnceLock<std::result::Result<Images, String>> = OnceLock::new();
        IMAGES
            .get_or_init(|| Images::build_cached().map_err(|error| format!("{error:#}")))
            .as_ref()
            .map_err(|error| anyhow!("building the test images: {error}"))
    }

    /// The busybox root filesystem. Shared by every test: copy it (see [`copy_rootfs`]),
    /// never run a container on it directly.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// The OCI image layout, with tags `busybox` and `pause`.
    pub fn oci_layout(&self) -> PathBuf {
        self.dir.join("oci")
    }

    /// The busybox image as a Docker archive, named [`BUSYBOX_REF`].
    pub fn busybox_archive(&self) -> PathBuf {
        self.dir.join("busybox.docker.tar")
    }

    /// The pause image as a Docker archive, named [`PAUSE_REF`].
    pub fn pause_archive(&self) -> PathBuf {
        self.dir.join("pause.docker.tar")
    }

    fn build_cached() -> Result<Images> {
        let cache = cache_dir();
        fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
        let key = cache_key()?;
        let dir = cache.join(format!("images-{key}"));
        let complete = dir.join("complete");

        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(cache.join("images.lock"))
            .context("opening the image cache lock")?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| anyhow!("locking the image cache: {errno}"))?;

        if !complete.exists() {
            let work = cache.join(format!("images-{key}.building-{}", std::process::id()));
            let _ = fs::remove_dir_all(&work);
            fs::create_dir_all(&work)?;
            build(&work)
                .with_context(|| format!("building the test images in {}", work.display()))?;
            File::create(work.join("complete"))?;
            let _ = fs::remove_dir_all(&dir);
            fs::rename(&work, &dir)?;
        }
        Ok(Images { dir })
    }
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("MXC_CONFORMANCE_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => crate::workspace_root()
            .join("target")
            .join("mxc-conformance"),
    }
}

fn cache_key() -> Result<String> {
    let busybox = bins::busybox();
    let bytes = fs::read(&busybox).with_context(|| {
        format!(
            "reading {} (install busybox-static: conformance/setup.sh)",
            busybox.display()
        )
    })?;
    let mut hash = Sha256::new();
    hash.update(RECIPE.as_bytes());
    hash.update(ICMP_ECHO_SOURCE.as_bytes());
    hash.update(&bytes);
    let digest = hash.finalize();
    Ok(digest.iter().take(8).map(|b| format!("{b:02x}")).collect())
}

fn build(work: &Path) -> Result<()> {
    let rootfs = work.join("rootfs");
    build_rootfs(&rootfs)?;

    let layout = work.join("oci");
    let busybox = format!("{}:busybox", layout.display());
    let pause = format!("{}:pause", layout.display());
    let umoci = |args: &[&str]| run_ok(Command::new("umoci").args(args), TOOL_LIMIT);

    umoci(&["init", "--layout", &layout.to_string_lossy()])?;
    umoci(&["new", "--image", &busybox])?;
    umoci(&[
        "insert",
        "--image",
        &busybox,
        &rootfs.to_string_lossy(),
        "/",
    ])?;
    umoci(&[
        "config",
        "--image",
        &busybox,
        "--config.env",
        IMAGE_PATH,
        "--config.workingdir",
        "/",
        "--config.cmd",
        "sh",
    ])?;
    umoci(&["tag", "--image", &busybox, "pause"])?;
    umoci(&[
        "config",
        "--image",
        &pause,
        "--clear=config.cmd",
        "--config.entrypoint",
        "/bin/sleep",
        "--config.cmd",
        "2147483647",
    ])?;

    for (tag, archive, name) in [
        ("busybox", "busybox.docker.tar", BUSYBOX_REF),
        ("pause", "pause.docker.tar", PAUSE_REF),
    ] {
        let source = format!("oci:{}:{tag}", layout.display());
        let target = format!("docker-archive:{}:{name}", work.join(archive).display());
        run_ok(
            Command::new("skopeo").args(["--insecure-policy", "copy", "--quiet", &source, &target]),
            TOOL_LIMIT,
        )?;
    }
    Ok(())
}

/// A root filesystem with `/bin/busybox`, a symbolic link for each of its applets at the place
/// busybox names for it, and the few files a container expects.
fn build_rootfs(rootfs: &Path) -> Result<()> {
    let busybox = bins::busybox();
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "etc", "root", "tmp",
        "var/tmp", "run", "home",
    ] {
        fs::create_dir_all(rootfs.join(dir))?;
    }
    for dir in ["tmp", "var/tmp"] {
        fs::set_permissions(rootfs.join(dir), fs::Permissions::from_mode(0o1777))?;
    }
    fs::set_permissions(rootfs.join("root"), fs::Permissions::from_mode(0o700))?;
    fs::copy(&busybox, rootfs.join("bin/busybox"))
        .with_context(|| format!("copying {}", busybox.display()))?;
    fs::set_permissions(
        rootfs.join("bin/busybox"),
        fs::Permissions::from_mode(0o755),
    )?;

    let listing = run_ok(Command::new(&busybox).arg("--list-full"), TOOL_LIMIT)?;
    let mut applets = 0;
    for applet in listing
        .stdout
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        if applet == "bin/busybox" || applet.contains("..") || applet.starts_with('/') {
            continue;
        }
        let link = rootfs.join(applet);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        if link.symlink_metadata().is_err() {
            symlink("/bin/busybox", &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
        applets += 1;
    }
    if applets < 50 || rootfs.join("bin/sh").symlink_metadata().is_err() {
        bail!(
            "{} --list-full named {applets} applets and no bin/sh",
            busybox.display()
        );
    }

    build_icmp_echo(&rootfs.join("usr/local/bin/icmp-echo"))?;

    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    fs::write(
        rootfs.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
    )?;
    fs::write(rootfs.join("etc/hostname"), "busybox\n")?;
    fs::write(rootfs.join("etc/resolv.conf"), "")?;
    Ok(())
}

/// Compiles the ICMP probe, statically: the image has no C library.
fn build_icmp_echo(target: &Path) -> Result<()> {
    let dir = target.parent().context("the probe's directory")?;
    fs::create_dir_all(dir)?;
    let source = dir.join("icmp-echo.c");
    fs::write(&source, ICMP_ECHO_SOURCE)?;
    let built = run_ok(
        Command::new("gcc")
            .args(["-static", "-Os", "-Wall", "-o"])
            .arg(target)
            .arg(&source),
        TOOL_LIMIT,
    );
    fs::remove_file(&source)?;
    built.context("compiling icmp-echo (gcc and libc6-dev: conformance/setup.sh)")?;
    Ok(())
}

/// Copies the busybox root filesystem to `dest` (created if missing), keeping links and modes.
pub fn copy_rootfs(dest: &Path) -> Result<()> {
    let images = Images::get()?;
    fs::create_dir_all(dest)?;
    let source = images.rootfs().join(".");
    run_ok(
        Command::new("cp").arg("-a").arg(&source).arg(dest),
        TOOL_LIMIT,
    )
    .map(drop)
}

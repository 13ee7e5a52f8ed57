//! Stages host-path grants before the container exists (see `mxc_translate::compile::staging`
//! for why): each grant is opened with symlinks refused at every component, checked to be the
//! object that policy resolution examined and not a kernel file system, cloned as a detached
//! mount tree with its flags set, and attached in a staging directory; nested grants, masks and
//! pins are built inside it, again with symlinks refused and nothing outside the tree reachable.
//! The spec binds the staged trees; libcontainer clones them into the container's namespace.
//!
//! All of it happens in a private mount namespace of the creating thread ([`PrivateMounts`]),
//! entered before the sources are opened and left once the container is created, so the host's
//! mount table never sees a staged mount and nothing is left to unmount.

use std::ffi::CString;
use std::fs::{DirBuilder, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use libc::{
    mount_attr, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
    MOVE_MOUNT_F_EMPTY_PATH, MOVE_MOUNT_T_EMPTY_PATH, OPEN_TREE_CLONE,
};
use mxc_translate::compile::staging::{StagedGrant, StagedStep, StagingPlan};
use mxc_translate::ObjectId;

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("{origin} ({path}): {reason}")]
    Refused {
        origin: String,
        path: PathBuf,
        reason: String,
    },
    #[error("staging {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> StagingError {
    let what = what.into();
    move |source| StagingError::Io { what, source }
}

/// The calling thread in a private copy of its mount namespace (host mounts still propagate in;
/// nothing propagates out) until this is dropped, when it returns to the namespace, root and
/// working directory it had.
pub struct PrivateMounts {
    original: OwnedFd,
    cwd: OwnedFd,
}

impl PrivateMounts {
    pub fn enter() -> Result<PrivateMounts, StagingError> {
        let open = |path: &str| {
            File::options()
                .read(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map(OwnedFd::from)
                .map_err(io_error(format!("opening {path}")))
        };
        let original = open("/proc/thread-self/ns/mnt")?;
        let cwd = File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(".")
            .map(OwnedFd::from)
            .map_err(io_error("opening the working directory"))?;
        // SAFETY: unshare on the calling thread; CLONE_FS keeps the other threads' root and
        // working directory where they are.
        if unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_FS) } != 0 {
            return Err(io_error("creating a private mount namespace")(
                io::Error::last_os_error(),
            ));
        }
        let entered = PrivateMounts { original, cwd };
        // SAFETY: a propagation change on "/" with no data.
        let rc = unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io_error("making the private mount namespace a slave")(
                io::Error::last_os_error(),
            ));
        }
        Ok(entered)
    }
}

impl Drop for PrivateMounts {
    fn drop(&mut self) {
        // SAFETY: setns to a namespace fd we hold, then fchdir to a directory fd we hold.
        unsafe {
            if libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNS) != 0 {
                tracing::error!(
                    error = %io::Error::last_os_error(),
                    "returning to the original mount namespace"
                );
            }
            libc::fchdir(self.cwd.as_raw_fd());
        }
    }
}

/// A root filesystem made for one container: a tmpfs owned by the identity the container's
/// root maps to, holding a few symlinks (`bin -> usr/bin`). The container's mount points are
/// made in it instead of on the host's disk, and it goes with the last mount namespace that
/// holds it: there is nothing to remove afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreshRoot {
    /// The host uid and gid that own the root directory.
    pub owner: (u32, u32),
    /// (path relative to the root, target), parents created as needed.
    pub symlinks: Vec<(PathBuf, PathBuf)>,
}

impl FreshRoot {
    /// Mounts it over `root`, which must be a directory. Must run inside [`PrivateMounts`]:
    /// the host's mount table never sees it.
    pub fn mount_over(&self, root: &Path) -> Result<(), StagingError> {
        let what = || format!("a fresh root at {}", root.display());
        let (uid, gid) = self.owner;
        let options = CString::new(format!("mode=0755,uid={uid},gid={gid}"))
            .map_err(|e| io_error(what())(io::Error::other(e)))?;
        let target = CString::new(root.as_os_str().as_encoded_bytes())
            .map_err(|e| io_error(what())(io::Error::other(e)))?;
        // SAFETY: mount(2) with valid NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(io_error(what())(io::Error::last_os_error()));
        }
        for (path, link_target) in &self.symlinks {
            let at = root.join(path);
            if let Some(parent) = at.parent() {
                std::fs::create_dir_all(parent).map_err(io_error(what()))?;
            }
            std::os::unix::fs::symlink(link_target, &at).map_err(io_error(what()))?;
        }
        Ok(())
    }
}

/// Stages `plan` in `plan.dir` (created, root-only but searchable). Must run inside
/// [`PrivateMounts`].
pub fn stage(plan: &StagingPlan) -> Result<(), StagingError> {
    if plan.trees.is_empty() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&plan.dir)
        .map_err(io_error(format!("creating {}", plan.dir.display())))?;
    let facts = HostRoots::read()?;
    for tree in &plan.trees {
        let source = open_grant(&tree.grant, &facts)?;
        let is_dir = fstat(source.as_fd())?.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let point = plan.dir.join(&tree.name);
        if is_dir {
            DirBuilder::new()
                .mode(0o711)
                .create(&point)
                .map_err(io_error(format!("creating {}", point.display())))?;
        } else {
            File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&point)
                .map_err(io_error(format!("creating {}", point.display())))?;
        }
        let clone = clone_tree(source.as_fd(), tree.grant.readonly)?;
        attach_at_path(clone.as_fd(), &point)?;
        if tree.steps.is_empty() {
            continue;
        }
        let root = open_path(&point, libc::O_DIRECTORY)?;
        let mut tmpfs_roots: Vec<(PathBuf, OwnedFd)> = Vec::new();
        for step in &tree.steps {
            let relative = step.path();
            let target = beneath(root.as_fd(), relative, step, &tmpfs_roots)?;
            match step {
                StagedStep::Grant { grant, .. } => {
                    let source = open_grant(grant, &facts)?;
                    same_kind(source.as_fd(), target.as_fd(), &grant.origin, &grant.source)?;
                    let clone = clone_tree(source.as_fd(), grant.readonly)?;
                    attach(clone.as_fd(), target.as_fd())?;
                }
                StagedStep::Pin { .. } => {
                    let clone = open_tree(target.as_fd(), libc::AT_RECURSIVE as u32)?;
                    attach(clone.as_fd(), target.as_fd())?;
                }
                StagedStep::MaskFile { origin, .. } => {
                    if fstat(target.as_fd())?.st_mode & libc::S_IFMT == libc::S_IFDIR {
                        return Err(changed(origin, &tree.destination.join(relative)));
                    }
                    let null = open_path(Path::new("/dev/null"), 0)?;
                    let clone = open_tree(null.as_fd(), 0)?;
                    set_attributes(
                        clone.as_fd(),
                        MOUNT_ATTR_RDONLY
                            | MOUNT_ATTR_NOSUID
                            | MOUNT_ATTR_NODEV
                            | MOUNT_ATTR_NOEXEC,
                        false,
                    )?;
                    attach(clone.as_fd(), target.as_fd())?;
                }
                StagedStep::MaskDirectory {
                    granted_descendants,
                    origin,
                    ..
                } => {
                    if fstat(target.as_fd())?.st_mode & libc::S_IFMT != libc::S_IFDIR {
                        return Err(changed(origin, &tree.destination.join(relative)));
                    }
                    let mask = empty_tmpfs(*granted_descendants)?;
                    attach(mask.as_fd(), target.as_fd())?;
                    if *granted_descendants {
                        let opened = beneath(root.as_fd(), relative, step, &[])?;
                        tmpfs_roots.push((relative.to_path_buf(), opened));
                    }
                }
            }
        }
        // Masks with grants below them become read-only once those grants are in place.
        for (_, mask) in &tmpfs_roots {
            set_attributes(mask.as_fd(), MOUNT_ATTR_RDONLY, false)?;
        }
    }
    Ok(())
}

/// What the host's own kernel file systems are, to refuse a grant of one.
struct HostRoots {
    root: (u64, u64),
    dev_device: u64,
}

impl HostRoots {
    fn read() -> Result<HostRoots, StagingError> {
        let root = std::fs::metadata("/").map_err(io_error("examining /"))?;
        let dev = std::fs::metadata("/dev").map_err(io_error("examining /dev"))?;
        Ok(HostRoots {
            root: (root.dev(), root.ino()),
            dev_device: dev.dev(),
        })
    }
}

/// File systems a grant must never expose (the runtime mounts its own where they belong).
const KERNEL_FILE_SYSTEMS: &[(i64, &str)] = &[
    (0x9fa0, "procfs"),
    (0x6265_6572, "sysfs"),
    (0x1cd1, "devpts"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0xcafe_4a11, "bpf"),
    (0x6e73_6673, "nsfs"),
    (0x6165_676c, "pstore"),
    (0xde5e_81e4, "efivarfs"),
    (0x6265_6570, "configfs"),
    (0x6573_5543, "fusectl"),
    (0x4249_4e4d, "binfmt_misc"),
];

/// Opens a grant's source with no symlink followed anywhere on the way, and checks that it is
/// the object resolution examined and nothing the runtime owns.
fn open_grant(grant: &StagedGrant, facts: &HostRoots) -> Result<OwnedFd, StagingError> {
    let refuse = |reason: String| StagingError::Refused {
        origin: grant.origin.clone(),
        path: grant.source.clone(),
        reason,
    };
    let fd = openat2(
        None,
        &grant.source,
        libc::O_PATH | libc::O_NOFOLLOW,
        RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => refuse(
            "a symlink now stands where the policy was checked; refusing to follow it".into(),
        ),
        _ => refuse(format!("cannot be opened: {e}")),
    })?;
    let stat = fstat(fd.as_fd())?;
    let found = ObjectId {
        dev: stat.st_dev,
        ino: stat.st_ino,
    };
    if grant.object.is_some_and(|expected| expected != found) {
        return Err(refuse(
            "is no longer the object the policy was checked against (it was replaced since); \
             refusing"
                .into(),
        ));
    }
    if (found.dev, found.ino) == facts.root {
        return Err(refuse("is the host's root directory".into()));
    }
    if found.dev == facts.dev_device {
        return Err(refuse("lies on the host's /dev".into()));
    }
    let fs = fstatfs(fd.as_fd())?;
    if let Some((_, name)) = KERNEL_FILE_SYSTEMS
        .iter()
        .find(|(magic, _)| *magic == fs.f_type as i64)
    {
        return Err(refuse(format!(
            "lies on a kernel file system ({name}) that the runtime provides itself"
        )));
    }
    Ok(fd)
}

fn changed(origin: &str, path: &Path) -> StagingError {
    StagingError::Refused {
        origin: origin.to_string(),
        path: path.to_path_buf(),
        reason: "changed kind (file or directory) since the policy was checked; refusing".into(),
    }
}

fn same_kind(
    source: BorrowedFd,
    target: BorrowedFd,
    origin: &str,
    path: &Path,
) -> Result<(), StagingError> {
    let dir = |fd| fstat(fd).map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
    if dir(source)? != dir(target)? {
        return Err(changed(origin, path));
    }
    Ok(())
}

/// Opens `relative` below `root` with no symlink, no `..` escape and no magic link: the path
/// inside the staged tree must be exactly the one policy resolution checked. Missing components
/// inside a mask's tmpfs (mount points for grants below a denied directory) are created.
fn beneath(
    root: BorrowedFd,
    relative: &Path,
    step: &StagedStep,
    tmpfs_roots: &[(PathBuf, OwnedFd)],
) -> Result<OwnedFd, StagingError> {
    let flags = libc::O_PATH | libc::O_NOFOLLOW;
    let resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    let origin = match step {
        StagedStep::Grant { grant, .. } => grant.origin.clone(),
        StagedStep::MaskFile { origin, .. } | StagedStep::MaskDirectory { origin, .. } => {
            origin.clone()
        }
        StagedStep::Pin { path } => {
            format!("the directory above a denied path ({})", path.display())
        }
    };
    match openat2(Some(root), relative, flags, resolve) {
        Ok(fd) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            let Some((mask, mask_fd)) = tmpfs_roots
                .iter()
                .find(|(mask, _)| relative.starts_with(mask))
            else {
                return Err(StagingError::Refused {
                    origin,
                    path: relative.to_path_buf(),
                    reason: "no longer exists inside its grant; refusing".into(),
                });
            };
            let rest = relative.strip_prefix(mask).unwrap_or(relative);
            let mut dir = openat2(
                Some(mask_fd.as_fd()),
                Path::new("."),
                libc::O_DIRECTORY,
                resolve,
            )
            .map_err(io_error("opening a mask"))?;
            let parts: Vec<&std::ffi::OsStr> = rest
                .components()
                .filter_map(|c| match c {
                    Component::Normal(part) => Some(part),
                    _ => None,
                })
                .collect();
            let wants_file = match step {
                StagedStep::Grant { grant, .. } => !grant.source.is_dir(),
                StagedStep::MaskFile { .. } => true,
                _ => false,
            };
            for (i, part) in parts.iter().enumerate() {
                let name = CString::new(part.as_encoded_bytes())
                    .map_err(|e| io_error("naming a mount point")(io::Error::other(e)))?;
                let last = i + 1 == parts.len();
                // SAFETY: mkdirat/mknodat relative to a directory fd we hold, with a valid name.
                let rc = unsafe {
                    if last && wants_file {
                        libc::mknodat(dir.as_raw_fd(), name.as_ptr(), libc::S_IFREG, 0)
                    // mode 000
                    } else {
                        libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o111)
                    }
                };
                if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                    return Err(io_error("creating a mount point in a mask")(
                        io::Error::last_os_error(),
                    ));
                }
                let next_flags = if last { flags } else { libc::O_DIRECTORY };
                dir = openat2(Some(dir.as_fd()), Path::new(part), next_flags, resolve)
                    .map_err(io_error("opening a mount point in a mask"))?;
            }
            Ok(dir)
        }
        Err(e) => Err(StagingError::Refused {
            origin,
            path: relative.to_path_buf(),
            reason: match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::EXDEV) => {
                    "a symlink stands on its path inside the grant; a grant or denial must \
                     name the real path, refusing"
                        .into()
                }
                _ => format!("cannot be opened inside its grant: {e}"),
            },
        }),
    }
}

fn open_path(path: &Path, extra: libc::c_int) -> Result<OwnedFd, StagingError> {
    File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW | extra)
        .open(path)
        .map(OwnedFd::from)
        .map_err(io_error(format!("opening {}", path.display())))
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;

fn openat2(
    dir: Option<BorrowedFd>,
    path: &Path,
    flags: libc::c_int,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    /// `struct open_how`.
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: openat2 with a valid path, a valid open_how and its size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn fstat(fd: BorrowedFd) -> Result<libc::stat, StagingError> {
    // SAFETY: fstat into a zeroed stat we own.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
            return Err(io_error("examining a grant")(io::Error::last_os_error()));
        }
        Ok(st)
    }
}

fn fstatfs(fd: BorrowedFd) -> Result<libc::statfs, StagingError> {
    // SAFETY: fstatfs into a zeroed statfs we own.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(fd.as_raw_fd(), &mut st) != 0 {
            return Err(io_error("examining a grant's file system")(
                io::Error::last_os_error(),
            ));
        }
        Ok(st)
    }
}

/// A detached copy of the mount at `fd` (with what is mounted below it when `extra` has
/// `AT_RECURSIVE`).
fn open_tree(fd: BorrowedFd, extra: u32) -> Result<OwnedFd, StagingError> {
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as u32 | libc::AT_EMPTY_PATH as u32 | extra;
    // SAFETY: open_tree on a descriptor we hold with an empty path.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    if fd < 0 {
        return Err(io_error("cloning a mount")(io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A grant's detached tree: every mount in it `nosuid`, `nodev`, private, and read-only for a
/// read-only grant.
fn clone_tree(source: BorrowedFd, readonly: bool) -> Result<OwnedFd, StagingError> {
    let tree = open_tree(source, libc::AT_RECURSIVE as u32)?;
    let mut attributes = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if readonly {
        attributes |= MOUNT_ATTR_RDONLY;
    }
    set_attributes(tree.as_fd(), attributes, true)?;
    Ok(tree)
}

fn set_attributes(mount: BorrowedFd, set: u64, recursive: bool) -> Result<(), StagingError> {
    let attr = mount_attr {
        attr_set: set,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: mount_setattr with a valid mount_attr and its size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const mount_attr,
            std::mem::size_of::<mount_attr>(),
        )
    };
    if rc != 0 {
        return Err(io_error("setting mount flags")(io::Error::last_os_error()));
    }
    Ok(())
}

/// Attaches a detached mount onto the object `target` names (never following a symlink there).
fn attach(mount: BorrowedFd, target: BorrowedFd) -> Result<(), StagingError> {
    // SAFETY: move_mount between two descriptors we hold, empty paths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(io_error("attaching a mount")(io::Error::last_os_error()));
    }
    Ok(())
}

fn attach_at_path(mount: BorrowedFd, point: &Path) -> Result<(), StagingError> {
    let target = open_path(point, 0)?;
    attach(mount, target.as_fd())
}

/// An empty tmpfs for a denied directory: mode 000 and read-only, or mode 0111 (traversable,
/// not listable) when grants lie below it (made read-only once they are mounted).
fn empty_tmpfs(granted_descendants: bool) -> Result<OwnedFd, StagingError> {
    let config = |fs: BorrowedFd, key: &std::ffi::CStr, value: &std::ffi::CStr| {
        // SAFETY: fsconfig(FSCONFIG_SET_STRING) with valid strings.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                libc::FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        if rc != 0 {
            return Err(io_error("configuring a mask")(io::Error::last_os_error()));
        }
        Ok(())
    };
    // SAFETY: fsopen with a valid file system name.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 1u32) };
    if fs < 0 {
        return Err(io_error("creating a mask")(io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as i32) };
    if granted_descendants {
        config(fs.as_fd(), c"mode", c"0111")?;
        config(fs.as_fd(), c"size", c"64k")?;
    } else {
        config(fs.as_fd(), c"mode", c"000")?;
        config(fs.as_fd(), c"size", c"4k")?;
        config(fs.as_fd(), c"nr_inodes", c"2")?;
    }
    // SAFETY: fsconfig(FSCONFIG_CMD_CREATE) on our fs context.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc != 0 {
        return Err(io_error("creating a mask")(io::Error::last_os_error()));
    }
    let mut attributes = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    if !granted_descendants {
        attributes |= MOUNT_ATTR_RDONLY;
    }
    // SAFETY: fsmount on our configured fs context.
    let mount = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attributes,
        )
    };
    if mount < 0 {
        return Err(io_error("mounting a mask")(io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(mount as i32) })
}

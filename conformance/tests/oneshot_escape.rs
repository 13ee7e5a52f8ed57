//! The escape battery of `mxc run`, second part: what an agent tries across runs of the same
//! policy on the same workspace (planting symlinks, moving denied files, hard links), against
//! the host's shared resources (per-user counts, memory, disk) and against the host's other
//! users (set-id plants), and what error messages must never repeat. Every attack has a
//! positive control: the same probe succeeding where access is legitimate.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mxc_conformance::command::wait_until;
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::oneshot::{
    config_file, mxc_run, mxc_run_within, shell, shell_with_fs, start_until_up, Run, Scratch,
    LIMIT, NOBODY, STATE_ROOT,
};
use serde_json::json;

/// The config was refused before anything ran (MXC's classes: 1 for a request error, 255 for
/// what this host's backend cannot run).
fn assert_refused(run: &Run) {
    assert!(
        matches!(run.code(), Some(1) | Some(255)) && !run.stdout().contains("ran"),
        "not refused: {:?}\n{}\n{}",
        run.code(),
        run.stdout(),
        run.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// Symlinked grants.

#[test]
fn a_grant_the_sandbox_turned_into_a_symlink_is_refused_on_the_next_run() -> Result<()> {
    let scratch = Scratch::new()?;
    let ws = scratch.owned_dir("ws")?;
    let cache = scratch.owned_dir("ws/cache")?;
    scratch.file("ws/cache/marker", "CACHE", 0o644)?;
    let read_cache = shell_with_fs(
        &format!("cat {}/marker; ls /proc | wc -l", cache.display()),
        json!({"readonlyPaths": [cache]}),
    );
    // Control: the grant shows the directory it names.
    let control = mxc_run(read_cache.clone(), &[])?;
    assert_eq!(control.code(), Some(0), "{}", control.stderr());
    assert!(
        control.stdout().starts_with("CACHE"),
        "{}",
        control.stdout()
    );

    // Run 1: the agent swaps its cache directory for a symlink to the host's root.
    let plant = mxc_run(
        shell_with_fs(
            &format!(
                "rm -rf {c} && ln -s / {c} && echo planted",
                c = cache.display()
            ),
            json!({"readwritePaths": [ws]}),
        ),
        &[],
    )?;
    assert!(plant.stdout().contains("planted"), "{}", plant.stderr());
    ensure!(std::fs::symlink_metadata(&cache)?.file_type().is_symlink());

    // Run 2, the same policy as the control: refused, naming the grant.
    let refused = mxc_run(read_cache, &[])?;
    assert_refused(&refused);
    assert!(
        refused.stderr().contains("filesystem.readonlyPaths[0]")
            && refused.stderr().contains("could have planted"),
        "{}",
        refused.stderr()
    );
    // Nested below a writable grant, too.
    let nested = mxc_run(
        shell_with_fs(
            "echo ran",
            json!({"readwritePaths": [ws], "readonlyPaths": [cache]}),
        ),
        &[],
    )?;
    assert_refused(&nested);
    assert!(!nested.stdout().contains("ran"));
    Ok(())
}

#[test]
fn a_grant_that_resolves_to_proc_sys_dev_or_the_root_is_refused_even_through_a_root_link(
) -> Result<()> {
    let scratch = Scratch::new()?;
    let fixed = scratch.root_dir("fixed")?;
    let data = scratch.root_dir("data")?;
    scratch.file("data/x", "DATA", 0o644)?;
    for (name, target) in [
        ("proc", "/proc"),
        ("sys", "/sys/kernel"),
        ("root", "/"),
        ("dev", "/dev"),
    ] {
        std::os::unix::fs::symlink(target, fixed.join(name))?;
        let run = mxc_run(
            shell_with_fs("echo ran", json!({"readonlyPaths": [fixed.join(name)]})),
            &[],
        )?;
        assert_refused(&run);
        assert!(
            run.stderr().contains("filesystem.readonlyPaths[0]")
                && run.stderr().contains("resolves to"),
            "{name}: {}",
            run.stderr()
        );
    }
    // Control: a root-made link to an ordinary directory is followed, and shows it at the
    // path the policy wrote.
    std::os::unix::fs::symlink(&data, fixed.join("data"))?;
    let run = mxc_run(
        shell_with_fs(
            &format!("cat {}/data/x", fixed.display()),
            json!({"readonlyPaths": [fixed.join("data")]}),
        ),
        &[],
    )?;
    assert_eq!(run.stdout(), "DATA", "{}", run.stderr());
    Ok(())
}

/// While one sandbox flips its directory between itself and a symlink to `/` as fast as it can,
/// runs that grant that directory either are refused or see the directory itself: never the
/// host's root, whichever moment the swap happens at (the grant is opened with no symlink
/// followed and checked to be the object that resolution examined).
#[test]
fn a_grant_swapped_for_a_symlink_during_set_up_never_exposes_the_host() -> Result<()> {
    let scratch = Scratch::new()?;
    let ws = scratch.owned_dir("ws")?;
    let cache = scratch.owned_dir("ws/cache")?;
    scratch.file("ws/cache/inside", "x", 0o644)?;
    // Only the host's root has this name.
    let marker = format!("mxc-escape-marker-{}", std::process::id());
    std::fs::write(format!("/{marker}"), "HOST")?;
    let _remove = RemoveOnDrop(format!("/{marker}"));

    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(STATE_ROOT);
    let flipper = json!({
        "version": "0.8.0-alpha",
        "process": {
            "commandLine": format!(
                "cd {ws}; echo up; while :; do mv cache real && ln -s / cache && rm cache && mv real cache; done",
                ws = ws.display()
            ),
            "timeout": 60000,
        },
        "filesystem": {"readwritePaths": [ws]},
    });
    let (_, file) = config_file(flipper)?;
    let (mut child, _stdout) = start_until_up(file.path())?;

    let probe = shell_with_fs(
        &format!("ls {}", cache.display()),
        json!({"readonlyPaths": [cache]}),
    );
    let (mut shown, mut refused) = (0, 0);
    let started = Instant::now();
    // Refusals are quick, so a fast flipper can refuse many runs in a row: go on until the
    // directory was seen as well (or the time is up).
    while started.elapsed() < Duration::from_secs(20) && (shown == 0 || shown + refused < 40) {
        let run = mxc_run_within(probe.clone(), &[])?;
        assert!(
            !run.stdout().contains(&marker),
            "the host's root was exposed: {}",
            run.stdout()
        );
        match run.code() {
            Some(0) if run.stdout().contains("inside") => shown += 1,
            Some(0) => {} // the directory was empty: moved away between open and list
            _ => refused += 1,
        }
    }
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_until(&mut child, LIMIT)?.context("the flipping sandbox did not stop")?;
    leaks.assert_clean()?;
    // The probe is sound: it did see the directory at least once (and was refused others).
    assert!(shown > 0, "never saw the directory ({refused} refused)");
    Ok(())
}

struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Denied paths keep meaning the same objects from run to run.

#[test]
fn a_denied_file_and_its_directories_cannot_be_moved_replaced_or_removed() -> Result<()> {
    let scratch = Scratch::new()?;
    let ws = scratch.owned_dir("ws")?;
    scratch.owned_dir("ws/a")?;
    scratch.owned_dir("ws/a/b")?;
    scratch.owned_dir("ws/c")?;
    std::fs::write(scratch.path("ws/a/b/secret"), "SECRET")?;
    std::fs::write(scratch.path("ws/c/plain"), "PLAIN")?;
    let policy = |command: &str| {
        shell_with_fs(
            command,
            json!({"readwritePaths": [ws], "deniedPaths": [scratch.path("ws/a/b/secret")]}),
        )
    };
    // Run 1: every way of moving the denied file away and leaving a decoy at its name.
    let attack = format!(
        "cd {ws}; \
         mv a a2; echo mv-a=$?; mv a/b a/b2; echo mv-b=$?; mv a/b/secret a/b/s2; echo mv-secret=$?; \
         rm -f a/b/secret; echo rm-secret=$?; rmdir a/b; echo rmdir-b=$?; \
         ln a/b/secret hard; echo link=$?; \
         mv c c2; echo mv-c=$?; mv c2/plain c2/plain2; echo mv-plain=$?",
        ws = ws.display()
    );
    let run = mxc_run(policy(&attack), &[])?;
    for refused in ["mv-a", "mv-b", "mv-secret", "rm-secret", "rmdir-b", "link"] {
        assert!(
            run.stdout().contains(&format!("{refused}=1")),
            "{refused} was not refused: {}",
            run.stdout()
        );
    }
    // Control: what the policy does not protect moves freely in the same run.
    for allowed in ["mv-c", "mv-plain"] {
        assert!(
            run.stdout().contains(&format!("{allowed}=0")),
            "{allowed}: {}\n{}",
            run.stdout(),
            run.stderr()
        );
    }
    assert_eq!(
        std::fs::read_to_string(scratch.path("ws/a/b/secret"))?,
        "SECRET"
    );
    assert!(scratch.path("ws/c2/plain2").exists());
    // Run 2, same policy: the name still means the denied file, and nothing else reads it.
    let run = mxc_run(
        policy(&format!(
            "cat {ws}/a/b/secret; echo rc=$?; grep -r SECRET {ws}; echo found=$?",
            ws = ws.display()
        )),
        &[],
    )?;
    assert!(!run.stdout().contains("SECRET"), "{}", run.stdout());
    assert!(
        // grep exits 1 (no match) or 2 (the masked name is unreadable), never 0.
        run.stdout().contains("rc=1") && !run.stdout().contains("found=0"),
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    Ok(())
}

#[test]
fn a_denied_symlink_the_sandbox_could_retarget_is_refused() -> Result<()> {
    let scratch = Scratch::new()?;
    let ws = scratch.owned_dir("ws")?;
    std::fs::write(scratch.path("ws/secret"), "SECRET")?;
    std::os::unix::fs::symlink(scratch.path("ws/secret"), scratch.path("ws/link"))?;
    let run = mxc_run(
        shell_with_fs(
            "echo ran",
            json!({"readwritePaths": [ws], "deniedPaths": [scratch.path("ws/link")]}),
        ),
        &[],
    )?;
    assert_refused(&run);
    assert!(
        run.stderr().contains("filesystem.deniedPaths[0]")
            && run.stderr().contains("could have planted"),
        "{}",
        run.stderr()
    );
    // Control: denying the real path runs, and masks it.
    let run = mxc_run(
        shell_with_fs(
            &format!("cat {}/link; echo rc=$?", ws.display()),
            json!({"readwritePaths": [ws], "deniedPaths": [scratch.path("ws/secret")]}),
        ),
        &[],
    )?;
    assert!(run.stdout().contains("rc=1") && !run.stdout().contains("SECRET"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Hard links.

#[test]
fn hard_links_to_denied_files_are_refused_in_any_grant_and_below_denied_directories() -> Result<()>
{
    let scratch = Scratch::new()?;
    let ro = scratch.root_dir("ro")?;
    scratch.file("ro/secret", "SECRET", 0o644)?;
    std::fs::hard_link(scratch.path("ro/secret"), scratch.path("ro/copy"))?;
    scratch.root_dir("ro/private")?;
    scratch.file("ro/private/key", "KEY", 0o644)?;
    std::fs::hard_link(scratch.path("ro/private/key"), scratch.path("ro/key-copy"))?;
    scratch.root_dir("ro/clean")?;
    scratch.file("ro/clean/file", "CLEAN", 0o644)?;

    for denied in ["ro/secret", "ro/private"] {
        let run = mxc_run(
            shell_with_fs(
                "echo ran",
                json!({"readonlyPaths": [ro], "deniedPaths": [scratch.path(denied)]}),
            ),
            &[],
        )?;
        assert_refused(&run);
        assert!(
            run.stderr().contains("filesystem.deniedPaths[0]")
                && run.stderr().contains("hard links"),
            "{denied}: {}",
            run.stderr()
        );
    }
    // Control: a denied directory whose files have one name each runs, and is masked.
    let run = mxc_run(
        shell_with_fs(
            &format!("cat {}/clean/file; echo rc=$?", ro.display()),
            json!({"readonlyPaths": [ro], "deniedPaths": [scratch.path("ro/clean")]}),
        ),
        &[],
    )?;
    assert!(run.stdout().contains("rc=1") && !run.stdout().contains("CLEAN"));
    Ok(())
}

#[test]
fn a_denied_directory_too_large_to_verify_is_refused_with_a_clear_error() -> Result<()> {
    let scratch = Scratch::new()?;
    let ro = scratch.root_dir("ro")?;
    let big = scratch.root_dir("ro/big")?;
    for i in 0..20_001 {
        std::fs::write(big.join(i.to_string()), "")?;
    }
    let run = mxc_run(
        shell_with_fs(
            "echo ran",
            json!({"readonlyPaths": [ro], "deniedPaths": [big]}),
        ),
        &[],
    )?;
    assert_refused(&run);
    assert!(
        run.stderr().contains("filesystem.deniedPaths[0]")
            && run.stderr().contains("too many to verify"),
        "{}",
        run.stderr()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The host's shared resources.

const GRAB_INOTIFY: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
held = []
while len(held) < 1000:
    fd = libc.inotify_init()
    if fd < 0:
        break
    held.append(fd)
print("held", len(held), "errno", ctypes.get_errno(), flush=True)
print(open("/proc/sys/user/max_inotify_instances").read().strip(), flush=True)
sys.stdin.read()
"#;

#[test]
fn a_sandbox_cannot_take_roots_inotify_instances() -> Result<()> {
    let scratch = Scratch::new()?;
    let probe = scratch.root_dir("probe")?;
    std::fs::write(probe.join("grab.py"), GRAB_INOTIFY)?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir(STATE_ROOT);
    let config = json!({
        "version": "0.8.0-alpha",
        "process": {"commandLine": format!("echo up; python3 {}/grab.py", probe.display()), "timeout": 60000},
        "filesystem": {"readonlyPaths": [probe]},
    });
    let (_, file) = config_file(config)?;
    let (mut child, stdout) = start_until_up(file.path())?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let held = lines.next().context("no report from the sandbox")??;
    let limit = lines.next().context("no limit from the sandbox")??;
    // While the sandbox holds all it can, root can still make inotify instances.
    // SAFETY: inotify_init and close on descriptors this test owns.
    let root_ok = unsafe {
        let fd = libc::inotify_init();
        if fd >= 0 {
            libc::close(fd);
        }
        fd >= 0
    };
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_until(&mut child, LIMIT)?.context("mxc run did not stop")?;
    leaks.assert_clean()?;
    assert_eq!(limit, "64", "the sandbox's own user namespace bound");
    let count: usize = held
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .context(held.clone())?;
    // Control: the sandbox could make some; the bound stopped it (EMFILE), not the host's.
    assert!(count > 0 && count <= 64, "{held}");
    assert!(held.ends_with("errno 24"), "{held}");
    assert!(
        root_ok,
        "root's inotify_init failed while the sandbox held {count}"
    );
    Ok(())
}

#[test]
fn memory_and_tmp_are_bounded_by_default_and_hitting_them_is_the_sandboxs_error() -> Result<()> {
    // Control: a modest allocation and a modest file work.
    let run = mxc_run(
        shell("python3 -c 'b = bytearray(100 << 20); print(len(b))'; dd if=/dev/zero of=/tmp/f bs=1M count=16 2>/dev/null; echo dd=$?"),
        &[],
    )?;
    assert!(
        run.stdout().contains("104857600") && run.stdout().contains("dd=0"),
        "{}",
        run.stderr()
    );
    // 3 GiB touched is more than the default 2G: the sandbox's process is killed, not the host.
    let run = mxc_run(
        shell("python3 -c 'b = bytearray(3 << 30); print(len(b))'; echo status=$?"),
        &[],
    )?;
    assert!(
        run.stdout().contains("status=137"),
        "{}\n{}",
        run.stdout(),
        run.stderr()
    );
    assert!(
        run.stderr().contains("memory limit"),
        "mxc run says why: {}",
        run.stderr()
    );
    // /tmp is a bounded tmpfs: past its size, writes fail with ENOSPC.
    let run = mxc_run(
        shell("dd if=/dev/zero of=/tmp/f bs=1M count=100 2>&1; echo dd=$?"),
        &["--tmp-size", "64M"],
    )?;
    assert!(
        run.stdout().contains("No space left on device") && run.stdout().contains("dd=1"),
        "{}",
        run.stdout()
    );
    // `mxc explain` tells a reviewer the bounds.
    let (_, file) = config_file(shell("true"))?;
    let out = mxc_conformance::command::run(
        std::process::Command::new(mxc_conformance::bins::mxc()?)
            .args(["explain", "--memory", "3G"])
            .arg(file.path()),
        LIMIT,
    )?;
    for row in [
        "limits.memory",
        "3G",
        "limits.tmp",
        "limits.pids",
        "max_inotify_instances=64",
    ] {
        assert!(out.stdout.contains(row), "{row}: {out}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Set-id plants.

const SET_ID_PROBE: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
d = sys.argv[1]
def attempt(name, f):
    try:
        f()
        print(name, "ok")
    except OSError as e:
        print(name, "errno", e.errno)
open(d + "/plain", "w").close()
attempt("chmod-setuid", lambda: os.chmod(d + "/plain", 0o4755))
attempt("chmod-setgid", lambda: os.chmod(d + "/plain", 0o2755))
attempt("chmod-plain", lambda: os.chmod(d + "/plain", 0o755))
attempt("open-setuid", lambda: os.close(os.open(d + "/created", os.O_CREAT | os.O_WRONLY, 0o4755)))
attempt("mknod-setuid", lambda: os.mknod(d + "/node", 0o4644 | 0o100000))
def fchmodat2():
    if libc.syscall(452, -100, (d + "/plain").encode(), 0o4755, 0) != 0:
        raise OSError(ctypes.get_errno(), "fchmodat2")
attempt("fchmodat2", fchmodat2)
def openat2():
    if libc.syscall(437, -100, (d + "/x").encode(), 0, 0) < 0:
        raise OSError(ctypes.get_errno(), "openat2")
attempt("openat2", openat2)
"#;

#[test]
fn a_sandbox_cannot_leave_set_id_files_for_the_hosts_users() -> Result<()> {
    let scratch = Scratch::new()?;
    let ws = scratch.owned_dir("ws")?;
    let probe = scratch.root_dir("probe")?;
    std::fs::write(probe.join("setid.py"), SET_ID_PROBE)?;
    let run = mxc_run(
        shell_with_fs(
            &format!("python3 {}/setid.py {}", probe.display(), ws.display()),
            json!({"readwritePaths": [ws], "readonlyPaths": [probe]}),
        ),
        &[],
    )?;
    let out = run.stdout();
    for refused in [
        "chmod-setuid errno 1",
        "chmod-setgid errno 1",
        "open-setuid errno 1",
        "mknod-setuid errno 1",
    ] {
        assert!(out.contains(refused), "{refused}: {out}\n{}", run.stderr());
    }
    for absent in ["fchmodat2 errno 38", "openat2 errno 38"] {
        assert!(out.contains(absent), "{absent}: {out}");
    }
    // Control: plain modes are fine.
    assert!(out.contains("chmod-plain ok"), "{out}");
    for entry in std::fs::read_dir(&ws)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        assert_eq!(meta.uid(), NOBODY);
        assert_eq!(
            meta.permissions().mode() & 0o6000,
            0,
            "{} is set-id on the host",
            entry.path().display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Error messages never repeat a secret.

#[test]
fn rejections_name_the_field_but_never_the_secret() -> Result<()> {
    let config = json!({
        "version": "0.8.0-alpha",
        "process": {"commandLine": "curl -H 'Authorization: Bearer s3cr3t-token' x"},
        "network": {"defaultPolicy": "allow", "proxy": {"url": "http://agent-user:hunter2@proxy.example:3128"}},
    });
    let run = mxc_run(config, &[])?;
    assert_refused(&run);
    assert!(run.stderr().contains("network.proxy"), "{}", run.stderr());
    for secret in ["agent-user", "hunter2", "s3cr3t-token"] {
        assert!(
            !run.stderr().contains(secret),
            "{secret} echoed: {}",
            run.stderr()
        );
    }
    let config = json!({
        "version": "0.8.0-alpha",
        "process": {"commandLine": "echo s3cr3t-token\u{0}"},
    });
    let run = mxc_run(config, &[])?;
    assert_refused(&run);
    assert!(
        run.stderr().contains("process.commandLine") && !run.stderr().contains("s3cr3t-token"),
        "{}",
        run.stderr()
    );
    Ok(())
}

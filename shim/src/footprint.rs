//! Keeping an idle shim small. A node runs one shim per pod, and an idle shim needs almost
//! none of the code it ran while it set its containers up. When it has had nothing to do for a
//! moment, the shim (and its zygote) drops the pages of its executable and libraries that it
//! has not written to (they come back from the page cache on the next use), and returns freed
//! heap to the kernel. glibc also keeps one heap for every thread unless told otherwise.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// One malloc arena for the whole process: the shim's threads mostly sleep, and every extra
/// arena keeps pages of its own.
pub fn single_arena() {
    // SAFETY: mallopt with a valid parameter, before any thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// Requests and exits bump the count and wake [`Idle::wait_and_trim`].
static ACTIVITY: Mutex<u64> = Mutex::new(0);
static CHANGED: Condvar = Condvar::new();

/// How long the shim must have been quiet before it trims.
const QUIET: Duration = Duration::from_secs(1);

fn activity() -> std::sync::MutexGuard<'static, u64> {
    ACTIVITY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records that the shim did something (a request, an exit, an exit request).
pub fn touch() {
    *activity() += 1;
    CHANGED.notify_all();
}

/// Trims once per quiet period, and otherwise sleeps: an idle shim wakes up for nothing.
#[derive(Default)]
pub struct Idle {
    trimmed: Option<u64>,
}

impl Idle {
    /// Returns after the next activity, or after trimming once the shim was quiet.
    pub fn wait_and_trim(&mut self) {
        let guard = activity();
        let seen = *guard;
        if self.trimmed == Some(seen) {
            let _guard = CHANGED
                .wait_while(guard, |now| *now == seen)
                .unwrap_or_else(|e| e.into_inner());
            return;
        }
        let (guard, result) = CHANGED
            .wait_timeout_while(guard, QUIET, |now| *now == seen)
            .unwrap_or_else(|e| e.into_inner());
        drop(guard);
        if result.timed_out() {
            trim();
            self.trimmed = Some(seen);
        }
    }
}

/// Drops clean file-backed pages from this process's page tables and gives free heap back.
pub fn trim() {
    // SAFETY: malloc_trim only releases free memory.
    unsafe { libc::malloc_trim(0) };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for vma in clean_file_mappings(&smaps) {
        // SAFETY: MADV_DONTNEED on a private or read-only file mapping with no anonymous
        // (written) pages only unmaps page-cache pages; the next access faults them back in
        // from the file, unchanged.
        unsafe {
            libc::madvise(
                vma.0 as *mut libc::c_void,
                vma.1 - vma.0,
                libc::MADV_DONTNEED,
            )
        };
    }
}

/// File-backed, non-writable mappings that hold resident pages and no anonymous ones.
fn clean_file_mappings(smaps: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut current: Option<(usize, usize, bool)> = None; // start, end, candidate
    let mut rss = 0u64;
    let mut anonymous = 0u64;
    let mut flush = |current: &Option<(usize, usize, bool)>, rss: u64, anonymous: u64| {
        if let Some((start, end, true)) = current {
            if rss > 0 && anonymous == 0 {
                found.push((*start, *end));
            }
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                flush(&current, rss, anonymous);
                let perms = fields.next().unwrap_or_default();
                let path = fields.nth(3).unwrap_or_default();
                let candidate = path.starts_with('/') && !perms.contains('w');
                current = Some((start, end, candidate));
                rss = 0;
                anonymous = 0;
                continue;
            }
        }
        let value = || fields.clone().next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => rss = value().unwrap_or(0),
            "Anonymous:" => anonymous = value().unwrap_or(0),
            _ => {}
        }
    }
    flush(&current, rss, anonymous);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d000000000-55d000100000 r--p 00000000 fe:00 42 /usr/bin/shim
Rss:                 400 kB
Anonymous:             0 kB
55d000100000-55d000400000 r-xp 00100000 fe:00 42 /usr/bin/shim
Rss:                3000 kB
Anonymous:             0 kB
55d000400000-55d000480000 r--p 00400000 fe:00 42 /usr/bin/shim
Rss:                 500 kB
Anonymous:           500 kB
55d000480000-55d000490000 rw-p 00480000 fe:00 42 /usr/bin/shim
Rss:                  64 kB
Anonymous:            64 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Rss:                 100 kB
Anonymous:           100 kB
7f0000200000-7f0000300000 r-xp 00000000 fe:00 7 /usr/lib/libc.so.6
Rss:                   0 kB
Anonymous:             0 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Rss:                   8 kB
Anonymous:             0 kB
";

    #[test]
    fn only_clean_resident_file_mappings() {
        assert_eq!(
            clean_file_mappings(SMAPS),
            vec![
                (0x55d000000000, 0x55d000100000),
                (0x55d000100000, 0x55d000400000)
            ]
        );
    }

    #[test]
    fn trimming_keeps_the_process_working() {
        trim();
        // Code and read-only data come back on use.
        assert_eq!(clean_file_mappings(SMAPS).len(), 2);
        let own = std::fs::read_to_string("/proc/self/smaps").unwrap();
        assert!(!clean_file_mappings(&own).is_empty() || own.is_empty());
    }
}

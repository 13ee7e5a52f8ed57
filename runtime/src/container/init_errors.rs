//! Why libcontainer refused a container.
//!
//! libcontainer's init process sends its parent only the outermost text of an error ("failed
//! to prepare rootfs"); the cause ("filesystem proc must be mounted on ordinary directory") is
//! only logged, with `tracing`, inside that process. While libcontainer builds, this thread's
//! subscriber is wrapped so that libcontainer's error events are also written to a memfd that
//! the processes libcontainer clones inherit; everything else goes to the subscriber that was
//! there, unchanged. When the build fails, the first (deepest) event is the cause.

use std::cell::Cell;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{span, Dispatch, Event, Level, Metadata, Subscriber};

/// Runs `build` with libcontainer's error events recorded; returns its result and the events,
/// one line each, first first.
pub(crate) fn recording<T>(build: impl FnOnce() -> T) -> (T, Vec<String>) {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let Ok(fd) = memfd_create(c"mxc-init-errors", MemFdCreateFlag::MFD_CLOEXEC) else {
        return (build(), Vec::new());
    };
    let mut file = File::from(fd);
    let inner = tracing::dispatcher::get_default(Clone::clone);
    let tap = Tap {
        inner,
        fd: file.as_raw_fd(),
    };
    let result = tracing::subscriber::with_default(tap, build);
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    (result, lines)
}

/// `message: cause`, unless the message already says it.
pub(crate) fn with_cause(message: String, cause: Option<String>) -> String {
    match cause {
        Some(cause) if !message.contains(&cause) => {
            // "... failed to prepare rootfs" + "failed to prepare rootfs: X": say X once.
            match cause.split_once(": ") {
                Some((head, detail)) if message.ends_with(head) => format!("{message}: {detail}"),
                _ => format!("{message}: {cause}"),
            }
        }
        _ => message,
    }
}

fn tapped(metadata: &Metadata<'_>) -> bool {
    *metadata.level() == Level::ERROR
        && metadata.is_event()
        && metadata.target().starts_with("libcontainer")
}

struct Tap {
    inner: Dispatch,
    fd: i32,
}

thread_local! {
    /// What the inner subscriber said in `enabled` for the event being dispatched.
    static INNER_ENABLED: Cell<Option<bool>> = const { Cell::new(None) };
}

impl Tap {
    fn record(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = fields.message;
        if !fields.rest.is_empty() {
            let _ = write!(line, ": {}", fields.rest.join(", "));
        }
        line.push('\n');
        // A plain write(2): this may run in a freshly cloned process.
        let mut file = std::mem::ManuallyDrop::new(unsafe {
            // SAFETY: the descriptor stays open for as long as the tap exists; ManuallyDrop
            // keeps this borrowed File from closing it.
            <File as std::os::fd::FromRawFd>::from_raw_fd(self.fd)
        });
        let _ = file.write_all(line.as_bytes());
    }
}

impl Subscriber for Tap {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        let inner = self.inner.register_callsite(metadata);
        if tapped(metadata) && !inner.is_always() {
            Interest::sometimes()
        } else {
            inner
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let inner = self.inner.enabled(metadata);
        if tapped(metadata) {
            INNER_ENABLED.with(|c| c.set(Some(inner)));
            return true;
        }
        inner
    }

    fn new_span(&self, span: &span::Attributes<'_>) -> span::Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &span::Id, values: &span::Record<'_>) {
        self.inner.record(span, values)
    }

    fn record_follows_from(&self, span: &span::Id, follows: &span::Id) {
        self.inner.record_follows_from(span, follows)
    }

    fn event(&self, event: &Event<'_>) {
        if tapped(event.metadata()) {
            self.record(event);
            // Forwarded only if the inner subscriber wanted it (its own per-event filter is
            // applied by `Dispatch::event`).
            let inner = INNER_ENABLED.with(|c| c.take()).unwrap_or(true);
            if !inner {
                return;
            }
        }
        self.inner.event(event)
    }

    fn enter(&self, span: &span::Id) {
        self.inner.enter(span)
    }

    fn exit(&self, span: &span::Id) {
        self.inner.exit(span)
    }

    fn clone_span(&self, id: &span::Id) -> span::Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: span::Id) -> bool {
        self.inner.try_close(id)
    }
}

/// An event's message and its other fields, errors shown by what they say.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else if matches!(field.name(), "err" | "error") {
            self.rest.push(readable(&text));
        } else {
            self.rest.push(format!("{} {text}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest.push(format!("{} {value}", field.name()));
        }
    }
}

/// An error's `Debug` text (`Mount(Other("filesystem proc must be ..."))`) by the strings it
/// carries, when it carries any; else as it is (`Nix(ENOTDIR)`).
fn readable(debug: &str) -> String {
    let strings: Vec<String> = debug
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("\\\"", "\""))
        .collect();
    if strings.is_empty() {
        debug.to_string()
    } else {
        strings.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_by_what_they_say() {
        assert_eq!(
            readable(r#"Mount(Other("filesystem proc must be mounted on ordinary directory"))"#),
            "filesystem proc must be mounted on ordinary directory"
        );
        assert_eq!(
            readable("Mount(Syscall(Nix(ENOTDIR)))"),
            "Mount(Syscall(Nix(ENOTDIR)))"
        );
    }

    #[test]
    fn the_cause_is_said_once() {
        let outer = "create failed: error in executing process : failed to prepare rootfs";
        assert_eq!(
            with_cause(
                outer.into(),
                Some("failed to prepare rootfs: proc is a symlink".into())
            ),
            format!("{outer}: proc is a symlink")
        );
        assert_eq!(
            with_cause("a: b".into(), Some("mknod failed: EEXIST".into())),
            "a: b: mknod failed: EEXIST"
        );
        assert_eq!(with_cause("a: b".into(), Some("b".into())), "a: b");
        assert_eq!(with_cause("a".into(), None), "a");
    }

    #[test]
    fn records_libcontainer_errors_in_this_and_cloned_processes() {
        let ((), lines) = recording(|| {
            tracing::error!(target: "libcontainer::rootfs", err = ?"disk on fire", "failed to prepare rootfs");
            tracing::error!(target: "elsewhere", "not ours");
            // SAFETY: the child only logs and exits.
            match unsafe { libc::fork() } {
                0 => {
                    tracing::error!(target: "libcontainer::process", "from the child");
                    unsafe { libc::_exit(0) };
                }
                pid => {
                    let mut status = 0;
                    unsafe { libc::waitpid(pid, &mut status, 0) };
                }
            }
        });
        assert_eq!(
            lines,
            ["failed to prepare rootfs: disk on fire", "from the child"]
        );
    }
}

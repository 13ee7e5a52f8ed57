//! Logs go to containerd's log pipe: the FIFO `log` in the bundle directory, which containerd
//! opens before it starts the shim and copies into its own log. One line per event, logfmt-like
//! as Go shims write them, and every line names a container: the innermost span's `id`, or the
//! shim's own id (the first container of its group) for lines outside any container.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The log pipe's name in the bundle directory (the shim's working directory).
const LOG_PIPE: &str = "log";

/// Sends this process's `tracing` output to containerd's log pipe (or stderr when there is
/// none). `debug` is the shim's `-debug` flag; `RUST_LOG` overrides both.
pub fn init(shim_id: &str, debug: bool) {
    let default = if debug { "debug" } else { "info" };
    // Other crates (ttrpc, containerd-shim) only when something is wrong.
    let directives = format!("warn,containerd_shim_mxc_v1={default},mxc_runtime={default}");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directives));
    let writer = Mutex::new(LogWriter(open_pipe()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .event_format(LineFormat {
            shim_id: shim_id.to_string(),
        })
        .try_init();
}

/// The write end of the log pipe. Non-blocking: when containerd is not reading (it is
/// restarting, or gone), a full pipe drops lines instead of stopping the shim.
fn open_pipe() -> Option<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(LOG_PIPE)
        .ok()
}

struct LogWriter(Option<File>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.0 {
            // Errors (EAGAIN on a full pipe, EPIPE with no reader) drop the line.
            Some(file) => Ok(file.write(buf).unwrap_or(buf.len())),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `time="..." level=info id=<container> span=<operation> <message> key=value ...`
struct LineFormat {
    shim_id: String,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut id = None;
        let mut operation = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope {
                if operation.is_none() {
                    operation = Some(span.name());
                }
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if let Some(value) = field_value(&fields.fields, "id") {
                        id = Some(value.to_string());
                        break;
                    }
                }
            }
        }
        write!(writer, "time=\"")?;
        SystemTime.format_time(&mut writer)?;
        write!(
            writer,
            "\" level={} id={}",
            event.metadata().level().as_str().to_ascii_lowercase(),
            id.as_deref().unwrap_or(&self.shim_id)
        )?;
        if let Some(operation) = operation {
            write!(writer, " span={operation}")?;
        }
        write!(writer, " ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The value of `key=value` in tracing's default field formatting (`a=1 id=x b=2`).
fn field_value<'a>(fields: &'a str, key: &str) -> Option<&'a str> {
    fields
        .split(' ')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        .map(|value| value.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_id_field() {
        assert_eq!(field_value("id=abc exec=x", "id"), Some("abc"));
        assert_eq!(field_value("exec_id=e id=\"c1\"", "id"), Some("c1"));
        assert_eq!(field_value("exec_id=e", "id"), None);
        assert_eq!(field_value("", "id"), None);
    }
}

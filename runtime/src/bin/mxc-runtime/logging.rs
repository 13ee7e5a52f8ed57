//! Log lines as runc writes them, because engines read them: containerd's shim takes the last
//! `"level":"error"` line of the `--log` file as the reason a command failed.
//!
//! - text: `time="2024-05-01T10:00:00Z" level=error msg="container c1 does not exist"`
//! - json: `{"level":"error","msg":"container c1 does not exist","time":"2024-05-01T10:00:00Z"}`
//!
//! Without `--log`, nothing is logged unless `--debug` (then to stderr): a successful command
//! prints nothing on stderr. A failure is always one line on stderr.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use crate::args::{GlobalOptions, LogFormat};

/// Formats one runc-style line (without the newline).
pub fn format_line(
    format: LogFormat,
    level: &str,
    msg: &str,
    fields: &[(String, String)],
) -> String {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match format {
        LogFormat::Json => {
            let mut map = Map::new();
            map.insert("level".into(), Value::String(level.into()));
            map.insert("msg".into(), Value::String(msg.into()));
            map.insert("time".into(), Value::String(time));
            for (k, v) in fields {
                map.entry(k.clone())
                    .or_insert_with(|| Value::String(v.clone()));
            }
            Value::Object(map).to_string()
        }
        LogFormat::Text => {
            let mut line = format!("time={time:?} level={level} msg={}", quote(msg));
            for (k, v) in fields {
                let _ = write!(line, " {k}={}", quote(v));
            }
            line
        }
    }
}

/// logrus quotes values that need it; a JSON string literal is the same escaping.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+:".contains(c))
    {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

/// Where log lines go for this invocation, and how the final error is reported.
pub struct Logging {
    format: LogFormat,
    file: Option<std::sync::Arc<Mutex<File>>>,
}

impl Logging {
    /// Sets up the global subscriber from the command line's global options.
    pub fn init(global: &GlobalOptions) -> Logging {
        let file = global.log.as_ref().and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
                .map(|f| std::sync::Arc::new(Mutex::new(f)))
        });
        let directives = if global.debug {
            "debug".to_string()
        } else {
            // libcontainer and libcgroups log every step of a failure as an error and warn about
            // absent controllers on every call; the engine's own line says what failed.
            std::env::var("MXC_LOG")
                .unwrap_or_else(|_| "info,libcontainer=off,libcgroups=off".to_string())
        };
        let sink = match (&file, global.debug) {
            (Some(f), _) => Some(Sink::File(f.clone())),
            (None, true) => Some(Sink::Stderr),
            (None, false) => None,
        };
        let layer = sink.map(|sink| {
            RuncLayer {
                format: global.log_format,
                sink,
            }
            .with_filter(EnvFilter::new(directives))
        });
        let spans = crate::spans::layer();
        if layer.is_some() || spans.is_some() {
            let subscriber = tracing_subscriber::registry().with(layer).with(spans);
            let _ = tracing::subscriber::set_global_default(subscriber);
        }
        Logging {
            format: global.log_format,
            file,
        }
    }

    /// Reports a failed command: a line in the log file (if any) and one line on stderr.
    pub fn report_error(&self, message: &str) {
        let line = format_line(self.format, "error", message, &[]);
        match &self.file {
            Some(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
                eprintln!("{message}");
            }
            None => eprintln!("{line}"),
        }
    }
}

enum Sink {
    File(std::sync::Arc<Mutex<File>>),
    Stderr,
}

struct RuncLayer {
    format: LogFormat,
    sink: Sink,
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

/// Span fields kept for the events inside the span (the container id).
struct SpanFields(Vec<(String, String)>);

impl<S> Layer<S> for RuncLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.pairs));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(pairs)) = span.extensions().get::<SpanFields>() {
                    for pair in pairs {
                        if !fields.pairs.iter().any(|(k, _)| k == &pair.0) {
                            fields.pairs.push(pair.clone());
                        }
                    }
                }
            }
        }
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let line = format_line(self.format, level, &fields.message, &fields.pairs);
        match &self.sink {
            Sink::File(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
            }
            Sink::Stderr => eprintln!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_what_containerd_reads() {
        let line = format_line(LogFormat::Json, "error", "container c1 does not exist", &[]);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container c1 does not exist");
        let time = v["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["level", "msg", "time"]);
    }

    #[test]
    fn text_lines_look_like_logrus() {
        let line = format_line(
            LogFormat::Text,
            "error",
            "bad \"thing\"",
            &[("id".into(), "c1".into())],
        );
        assert!(line.starts_with("time=\""), "{line}");
        assert!(
            line.contains(" level=error msg=\"bad \\\"thing\\\"\" id=c1"),
            "{line}"
        );
    }
}

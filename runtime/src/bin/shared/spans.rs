//! Wall-clock time of each phase of a start, for profiling: with `MXC_SPANS=FILE` in the
//! environment, every span (this project's and libcontainer's, in each process that has one)
//! appends one JSON line to FILE when it closes:
//! `{"pid":…,"span":"create","path":"oneshot/create","at":1.503,"ms":4.217}` (`at`: when it
//! opened, in milliseconds since the subscriber was set up). Each entry point adds [`layer`]
//! to its subscriber; without the variable it adds nothing and costs nothing.
//! `conformance/bench/phases.sh` turns the lines into a table.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::filter::{filter_fn, Filtered};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable naming the file that receives the lines.
pub const ENV: &str = "MXC_SPANS";

/// Appends a line per closed span to the file `MXC_SPANS` names; `None` when it names none
/// (or the file cannot be opened: profiling never stops a run).
pub fn layer<S>() -> Option<impl Layer<S>>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let path = std::env::var_os(ENV)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ok()?;
    let layer: Filtered<_, _, S> = SpanTimes {
        file: Mutex::new(file),
        origin: Instant::now(),
    }
    .with_filter(filter_fn(|meta| meta.is_span()));
    Some(layer)
}

struct SpanTimes {
    file: Mutex<File>,
    origin: Instant,
}

/// When a span was created.
struct Opened(Instant);

impl<S> Layer<S> for SpanTimes
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Opened(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(opened) = span.extensions().get::<Opened>().map(|o| o.0) else {
            return;
        };
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        let path: Vec<&str> = span.scope().from_root().map(|s| s.name()).collect();
        let line = serde_json::json!({
            "pid": std::process::id(),
            "span": span.name(),
            "path": path.join("/"),
            "at": ms(opened.saturating_duration_since(self.origin)),
            "ms": ms(opened.elapsed()),
        });
        if let Ok(mut file) = self.file.lock() {
            let _ = writeln!(file, "{line}");
        }
    }
}

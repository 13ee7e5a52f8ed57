//! A one-shot run's progress, for a supervisor that started the run as a process of its own (the
//! SDK library starts `lxc-exec` per sandbox). The runner writes one JSON line per event to a
//! descriptor the supervisor gave it; the workload's own output stays on stdout and stderr,
//! untouched, and the supervisor never has to guess a result from them.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;

use mxc_translate::Class;
use serde::{Deserialize, Serialize};

/// What happened to a one-shot run. `Started` or `Refused` comes first; after `Started`, one
/// of the endings follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The sandbox is set up and its process starts now; `pid` is the sandbox's first process
    /// as the host sees it.
    Started { pid: i32 },
    /// Nothing ran: the config was refused, or the sandbox could not be set up.
    Refused { class: Class, message: String },
    /// The workload ended with this status (128 + n for signal n).
    Exited { code: i32 },
    /// `process.timeout` passed and the whole sandbox was killed.
    TimedOut { ms: u32 },
    /// The runner was told to stop (this signal) and removed the sandbox.
    Stopped { signal: i32 },
    /// The sandbox failed after it started.
    Failed { message: String },
}

impl Event {
    /// Whether this event ends the run.
    pub fn is_final(&self) -> bool {
        !matches!(self, Event::Started { .. })
    }
}

/// The runner's side: writes events to the supervisor's descriptor.
pub struct ProgressWriter {
    out: std::fs::File,
}

impl ProgressWriter {
    pub fn new(fd: OwnedFd) -> ProgressWriter {
        ProgressWriter { out: fd.into() }
    }

    /// Sends one event; a supervisor that went away is not an error worth stopping for.
    pub fn send(&mut self, event: &Event) {
        if let Ok(mut line) = serde_json::to_vec(event) {
            line.push(b'\n');
            let _ = self.out.write_all(&line);
        }
    }
}

/// The supervisor's side: reads events as they come.
pub struct ProgressReader<R: Read> {
    lines: BufReader<R>,
}

impl<R: Read> ProgressReader<R> {
    pub fn new(input: R) -> ProgressReader<R> {
        ProgressReader {
            lines: BufReader::new(input),
        }
    }

    /// The next event; `Ok(None)` at the end of the stream (the runner exited).
    pub fn next_event(&mut self) -> std::io::Result<Option<Event>> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.lines.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&line)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_one_line_each() {
        let events = vec![
            Event::Started { pid: 42 },
            Event::Refused {
                class: Class::Backend,
                message: "no".into(),
            },
            Event::Exited { code: 3 },
            Event::TimedOut { ms: 500 },
            Event::Stopped { signal: 15 },
            Event::Failed {
                message: "gone".into(),
            },
        ];
        let mut text = Vec::new();
        for event in &events {
            let mut line = serde_json::to_vec(event).unwrap();
            assert!(!line.contains(&b'\n'));
            line.push(b'\n');
            text.extend(line);
        }
        let mut reader = ProgressReader::new(text.as_slice());
        for event in &events {
            assert_eq!(reader.next_event().unwrap().as_ref(), Some(event));
        }
        assert_eq!(reader.next_event().unwrap(), None);
        assert!(!events[0].is_final() && events[1].is_final());
    }
}

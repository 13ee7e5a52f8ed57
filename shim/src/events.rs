//! Task events to containerd (`/tasks/create`, `/tasks/exit`, ...), in the order the shim
//! produced them, from one thread. containerd may be restarting when an event is due: the
//! publisher reconnects and retries for a while before it gives the event up.
//!
//! Envelopes are built here with each event's type URL spelled out: protobuf's reflection
//! (what a generic `Any` packer asks for the name) costs a resident third of a megabyte per
//! shim, for names that never change.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_sync::{Client, EventsClient};
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc::context;

/// How long one publish may take, and how many times an event is tried.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 20;
/// The connection to containerd is closed when no event came for this long: ttrpc's client
/// polls its socket every 10 ms, which an idle shim should not pay for.
const IDLE_CLOSE: Duration = Duration::from_millis(200);

/// A task event: its topic and the protobuf type URL containerd decodes it by.
pub trait TaskEvent: Message {
    const TOPIC: &'static str;
    const TYPE_URL: &'static str;
}

macro_rules! task_events {
    ($($event:ident => $topic:expr),* $(,)?) => {
        $(impl TaskEvent for $event {
            const TOPIC: &'static str = $topic;
            const TYPE_URL: &'static str = concat!("containerd.events.", stringify!($event));
        })*
    };
}

task_events! {
    TaskCreate => topics::TASK_CREATE_EVENT_TOPIC,
    TaskStart => topics::TASK_START_EVENT_TOPIC,
    TaskExit => topics::TASK_EXIT_EVENT_TOPIC,
    TaskDelete => topics::TASK_DELETE_EVENT_TOPIC,
    TaskOOM => topics::TASK_OOM_EVENT_TOPIC,
    TaskExecAdded => topics::TASK_EXEC_ADDED_EVENT_TOPIC,
    TaskExecStarted => topics::TASK_EXEC_STARTED_EVENT_TOPIC,
    TaskPaused => topics::TASK_PAUSED_EVENT_TOPIC,
    TaskResumed => topics::TASK_RESUMED_EVENT_TOPIC,
}

// TaskIO travels inside TaskCreate only.
const _: fn(TaskIO) = |_| {};

/// An event ready to send: topic, and the packed event.
pub struct Queued {
    pub topic: &'static str,
    event: Any,
    at: SystemTime,
}

/// A handle to the publishing thread; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    queue: Sender<Queued>,
    /// Events queued and not yet delivered or given up.
    pending: Arc<AtomicUsize>,
}

impl Publisher {
    /// Starts the thread that publishes to containerd's ttrpc address `address` as namespace
    /// `namespace`.
    pub fn start(address: String, namespace: String) -> std::io::Result<Publisher> {
        let (queue, events) = channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let done = pending.clone();
        std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || forward(&address, &namespace, events, &done))?;
        Ok(Publisher { queue, pending })
    }

    /// A publisher whose events stay in the returned queue, for tests.
    #[cfg(test)]
    pub fn capture() -> (Publisher, Receiver<Queued>) {
        let (queue, events) = channel();
        let pending = Arc::new(AtomicUsize::new(0));
        (Publisher { queue, pending }, events)
    }

    /// Queues `event`; never blocks.
    pub fn publish<E: TaskEvent>(&self, event: E) {
        tracing::debug!(topic = E::TOPIC, "event");
        let value = match event.write_to_bytes() {
            Ok(value) => value,
            Err(err) => {
                tracing::error!(topic = E::TOPIC, error = %err, "encoding an event");
                return;
            }
        };
        self.pending.fetch_add(1, Ordering::SeqCst);
        let queued = Queued {
            topic: E::TOPIC,
            event: pack(E::TYPE_URL, value),
            at: SystemTime::now(),
        };
        if self.queue.send(queued).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits (at most `limit`) until every event queued so far is delivered or given up: the
    /// shim calls it before it exits, or the last events (`/tasks/delete`) die with it.
    /// `false` when some were still pending.
    pub fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.pending.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

/// A protobuf `Any` of an already encoded message.
pub fn pack(type_url: &str, value: Vec<u8>) -> Any {
    let mut any = Any::new();
    any.type_url = type_url.to_string();
    any.value = value;
    any
}

/// A protobuf timestamp of `at`.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = since.as_secs() as i64;
    ts.nanos = since.subsec_nanos() as i32;
    ts
}

fn connect(address: &str) -> Result<EventsClient, String> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    Client::connect(&format!("unix://{path}"))
        .map(EventsClient::new)
        .map_err(|e| e.to_string())
}

fn forward(address: &str, namespace: &str, events: Receiver<Queued>, pending: &AtomicUsize) {
    let mut client: Option<EventsClient> = None;
    loop {
        let next = if client.is_some() {
            match events.recv_timeout(IDLE_CLOSE) {
                Ok(next) => next,
                Err(RecvTimeoutError::Timeout) => {
                    client = None;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match events.recv() {
                Ok(next) => next,
                Err(_) => return,
            }
        };
        let mut envelope = Envelope::new();
        envelope.timestamp = Some(timestamp(next.at)).into();
        envelope.namespace = namespace.to_string();
        envelope.topic = next.topic.to_string();
        envelope.event = Some(next.event).into();
        let mut request = ForwardRequest::new();
        request.envelope = Some(envelope).into();

        let mut delay = Duration::from_millis(50);
        let mut delivered = false;
        let mut last_error = String::new();
        for _ in 0..ATTEMPTS {
            if client.is_none() {
                match connect(address) {
                    Ok(c) => client = Some(c),
                    Err(err) => last_error = err,
                }
            }
            if let Some(c) = &client {
                let ctx = context::with_timeout(PUBLISH_TIMEOUT.as_nanos() as i64);
                match c.forward(ctx, &request) {
                    Ok(_) => {
                        delivered = true;
                        break;
                    }
                    Err(err) => {
                        last_error = err.to_string();
                        client = None;
                    }
                }
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        if !delivered {
            tracing::warn!(topic = next.topic, error = %last_error, "could not publish an event to containerd; dropped it");
        }
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_waits_for_what_is_queued() {
        let (publisher, events) = Publisher::capture();
        assert!(publisher.flush(Duration::ZERO), "nothing queued");
        publisher.publish(TaskDelete::new());
        assert!(
            !publisher.flush(Duration::from_millis(20)),
            "an undelivered event"
        );
        // What the publishing thread does once it has dealt with an event.
        let _ = events.recv().unwrap();
        publisher.pending.fetch_sub(1, Ordering::SeqCst);
        assert!(publisher.flush(Duration::ZERO));
    }

    #[test]
    fn type_urls_are_the_protobuf_names() {
        assert_eq!(TaskExit::TYPE_URL, "containerd.events.TaskExit");
        assert_eq!(TaskOOM::TYPE_URL, "containerd.events.TaskOOM");
        assert_eq!(TaskExecStarted::TOPIC, "/tasks/exec-started");
        // The names containerd registers match the generated messages' full names.
        use containerd_shim_protos::protobuf::MessageFull;
        assert_eq!(TaskExit::descriptor().full_name(), TaskExit::TYPE_URL);
        assert_eq!(TaskCreate::descriptor().full_name(), TaskCreate::TYPE_URL);
    }
}

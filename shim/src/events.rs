//! Task events to containerd (`/tasks/create`, `/tasks/exit`, ...), in the order the shim
//! produced them, from one thread. containerd may be restarting when an event is due: the
//! publisher reconnects and retries for a while before it gives the event up.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::ttrpc::context;

/// How long one publish may take, and how many times an event is tried.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPTS: u32 = 20;

type Queued = (String, Box<dyn MessageDyn>);

/// A handle to the publishing thread; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    queue: Sender<Queued>,
}

impl Publisher {
    /// Starts the thread that publishes to containerd's ttrpc address `address` as namespace
    /// `namespace`.
    pub fn start(address: String, namespace: String) -> std::io::Result<Publisher> {
        let (queue, events) = channel();
        std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || forward(&address, &namespace, events))?;
        Ok(Publisher { queue })
    }

    /// Queues `event`; never blocks.
    pub fn publish<E: Event + MessageDyn>(&self, event: E) {
        let topic = event.topic();
        tracing::debug!(topic, "event");
        let _ = self.queue.send((topic, Box::new(event)));
    }
}

fn forward(address: &str, namespace: &str, events: Receiver<Queued>) {
    let mut client: Option<RemotePublisher> = None;
    for (topic, event) in events {
        let mut delay = Duration::from_millis(50);
        let mut delivered = false;
        let mut last_error = String::new();
        for _ in 0..ATTEMPTS {
            if client.is_none() {
                match RemotePublisher::new(address) {
                    Ok(c) => client = Some(c),
                    Err(err) => last_error = err.to_string(),
                }
            }
            if let Some(c) = &client {
                let ctx = context::with_timeout(PUBLISH_TIMEOUT.as_nanos() as i64);
                match c.publish(ctx, &topic, namespace, clone_event(event.as_ref())) {
                    Ok(()) => {
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
            tracing::warn!(topic, error = %last_error, "could not publish an event to containerd; dropped it");
        }
    }
}

/// `publish` takes the event by value; a failed attempt needs it again.
fn clone_event(event: &dyn MessageDyn) -> Box<dyn MessageDyn> {
    event.clone_box()
}

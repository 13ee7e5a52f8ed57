//! `containerd-shim-mxc-v1`: containerd's runtime v2 shim (task API v2) for MXC-policed
//! containers, driving the mxc-runtime engine in process.
//!
//! containerd runs this binary three ways (see `service.rs`):
//! - `... start`: find or spawn the shim daemon for the container's group (one per pod) and print
//!   its ttrpc address;
//! - `... delete`: clean up after a shim that died (kill the container, unmount, remove state);
//! - `-info`: describe the runtime and its OCI features (containerd 2.x asks);
//! - no action: the daemon itself, serving the task API on `-socket`.
//!
//! | file | what lands there |
//! |---|---|
//! | `service.rs` | the `start` and `delete` subcommands, the daemon's set-up and shutdown |
//! | `task.rs` | the task API: one method per request, protobuf in and out |
//! | `error.rs` | the task API's errors and their gRPC codes |
//! | `container.rs` | one container: create, start, kill, pause, delete of its init, events |
//! | `exec.rs` | exec processes: added, started and deleted in a running container |
//! | `processes.rs` | one process (init or exec): phase, exit, stdio, terminal |
//! | `phase.rs` | the phases of a process and the transitions between them |
//! | `engine.rs` | what the shim asks of the container engine (a trait), and the engine |
//! | `timeout.rs` | the policy's `process.timeout` |
//! | `logger.rs` | `binary://` logging programs |
//! | `zygote.rs` | the single-threaded helper that clones: one worker per call, killed at its deadline |
//! | `reaper.rs` | the subreaper: every child's exit, routed to whoever waits for it |
//! | `io.rs` | stdio: containerd's FIFOs, `file://` and `binary://` log URIs |
//! | `console.rs` | terminals: the console socket, copying, resizing |
//! | `mount.rs` | the container's root filesystem mounts |
//! | `events.rs` | publishing task events to containerd |
//! | `options.rs` | runtime options (`ConfigPath`), the engine's state root |
//! | `stats.rs` | the engine's statistics as containerd's cgroup metrics |
//! | `oom.rs` | OOM notifications from the memory cgroup |
//! | `logging.rs` | `tracing` to containerd's log pipe |
//! | `footprint.rs` | what an idle shim keeps resident |

mod console;
mod container;
mod engine;
mod error;
mod events;
mod exec;
mod footprint;
mod io;
mod logger;
mod logging;
mod mount;
mod oom;
mod options;
mod phase;
mod processes;
mod reaper;
mod service;
mod stats;
mod task;
mod timeout;
mod zygote;

/// The runtime name containerd knows this shim by.
pub const RUNTIME_NAME: &str = "io.containerd.mxc.v1";

fn main() {
    footprint::single_arena();
    // The engine's helper processes run this binary again (`/proc/self/exe`).
    mxc_runtime::helper::run_if_requested();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let flags = match containerd_shim::parse(&args[1..]) {
        Ok(flags) => flags,
        Err(err) => {
            eprintln!("{RUNTIME_NAME}: {err}");
            std::process::exit(1);
        }
    };
    if flags.version {
        println!("containerd-shim-mxc-v1:");
        println!("  Runtime: {RUNTIME_NAME}");
        println!("  Version: {}", env!("CARGO_PKG_VERSION"));
        std::process::exit(0);
    }
    let result = match flags.action.as_str() {
        _ if flags.info => service::info(),
        "start" => service::start(&flags),
        "delete" => service::delete(&flags),
        "" => service::serve(&flags),
        other => Err(service::ServiceError::Usage(format!(
            "unknown action {other:?} (containerd runs `start`, `delete`, or no action)"
        ))),
    };
    if let Err(err) = result {
        eprintln!("{RUNTIME_NAME}: {err}");
        std::process::exit(1);
    }
}

//! The mxc-oci container engine: OCI bundles run on youki's libcontainer, with the node's MXC
//! policy applied, liveness tracked by the engine itself, and nothing left behind on delete.
//!
//! Its public API is a handful of nouns. [`Engine`] (at the crate root, with the types of its
//! verbs) is what `mxc-runtime` and the containerd shim share; [`oneshot`] runs one MXC config
//! to completion (`mxc run`, `lxc-exec`, the SDK library); [`policy`] is the node's
//! configuration and the policy it applies to a bundle; [`network`] the tools and rules of a
//! sandbox's network; [`audit`] the records of what happened; [`helper`] the engine's own
//! processes. The engine knows none of its entry points: each binary (`src/bin/*/`) reads its
//! own command line, handles its own signals and calls [`helper::run_if_requested`] first.

pub mod audit;
pub mod helper;
pub mod network;
pub mod oneshot;
pub mod policy;

mod console;
mod container;
mod egress;
mod error;
mod executor;
mod features;
mod process;
mod record;
mod seal;
mod seccomp;
mod signal;
mod spec;
mod staging;
mod stats;
mod userns;

pub use console::ConsoleSocket;
pub use container::{
    validate_id, Cancel, Container, ContainerState, CreateOptions, Engine, ExecOptions,
    ExecProcess, RunOptions, RunOutcome, RunReport, Stdio, DEFAULT_ROOT,
};
pub use error::{error_chain, EngineError};
pub use features::features;
pub use process::{ExitStatus, PidFd};
pub use record::Status;
pub use signal::{ParseSignalError, Signal};
pub use spec::default_spec;
pub use staging::FreshRoot;
pub use stats::{BlkioEntry, MemoryEntry, RuncStats};

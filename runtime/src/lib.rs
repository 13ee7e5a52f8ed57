//! The mxc-oci container engine: OCI bundles run on youki's libcontainer, with the node's MXC
//! policy applied, liveness tracked by the engine itself, and nothing left behind on delete.
//!
//! [`container::Engine`] is the API that `mxc run`, `mxc-runtime` and the containerd shim
//! share. [`cli`] is the runc-compatible command line of `mxc-runtime`.

pub mod cli;
pub mod console;
pub mod container;
pub mod egress;
pub mod error;
pub mod executor;
pub mod features;
pub mod helper;
pub mod network;
pub mod oneshot;
pub mod policy;
pub mod process;
pub mod progress;
pub mod record;
pub mod resources;
pub mod seal;
pub mod signal;
pub mod spec;
pub mod stats;

pub use container::{
    Container, ContainerState, CreateOptions, Engine, ExecOptions, ExecProcess, RunOptions,
    RunOutcome, Stdio,
};
pub use error::EngineError;
pub use process::ExitStatus;
pub use record::Status;
pub use signal::Signal;

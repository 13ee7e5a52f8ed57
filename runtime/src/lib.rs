//! The mxc-oci container engine: OCI bundles run on youki's libcontainer, with the node's MXC
//! policy applied, liveness tracked by the engine itself, and nothing left behind on delete.
//!
//! [`container::Engine`] is the API that `mxc run`, `mxc-runtime` and the containerd shim
//! share; [`oneshot`] runs one MXC config to completion. The engine knows none of its entry
//! points: each binary (`src/bin/*/`) reads its own command line, handles its own signals and
//! calls [`helper::run_if_requested`] first.

pub mod audit;
pub mod console;
pub mod container;
pub mod egress;
pub mod error;
mod executor;
pub mod features;
pub mod helper;
pub mod network;
pub mod oneshot;
pub mod policy;
pub mod process;
mod record;
pub mod seal;
mod seccomp;
pub mod signal;
pub mod spec;
mod staging;
pub mod stats;
mod userns;

pub use container::{
    Cancel, Container, ContainerState, CreateOptions, Engine, ExecOptions, ExecProcess, RunOptions,
    RunOutcome, RunReport, Stdio,
};
pub use error::EngineError;
pub use process::ExitStatus;
pub use record::Status;
pub use signal::Signal;
pub use staging::FreshRoot;

//! MXC execution configs, in three steps with three types:
//!
//! 1. [`parse`]: text to a validated [`Config`] (MXC's JSON model, [`model`], one to one);
//! 2. [`resolve`]: a [`Config`] plus host facts to a [`Policy`] for Linux (normalised paths,
//!    one network model, defaults applied);
//! 3. [`compile`]: a [`Policy`] to an OCI runtime spec, either a whole one-shot sandbox or the
//!    policy applied on top of an engine-written spec (bundle mode).
//!
//! Pure: nothing here starts processes or mounts anything, and what it must know about the host
//! comes through the [`HostFacts`] trait.

pub mod ceiling;
pub mod compile;
mod contract;
mod error;
mod exact;
pub mod explain;
pub mod hosts;
mod json;
pub mod model;
pub mod network;
mod parse;
pub mod size;
mod source;
pub mod version;

pub use error::{Class, ConfigError, ConfigErrors};
pub use model::RequestKind;
pub use parse::{parse, parse_value, Config, Expect, ParseOptions};
pub use source::Source;
pub use version::{Exact, SchemaVersion};

pub mod host;
pub mod paths;
mod policy;
mod resolve;

pub use compile::{
    apply_to_bundle, one_shot, BundleError, BundleOptions, OneShotOptions, Sandbox, SkeletonEntry,
};
pub use host::{FakeHost, FileInfo, FileKind, HostFacts, RealHost};
pub use policy::{
    EgressFilter, Identity, Limits, MountAction, MountStep, NetworkPlan, ObjectId, Policy, Profile,
};
pub use resolve::{resolve, ResolveOptions, Target, BASELINE};

//! The mxc-oci container engine.

pub mod policy;

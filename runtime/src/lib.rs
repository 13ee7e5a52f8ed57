//! The mxc-oci container engine.

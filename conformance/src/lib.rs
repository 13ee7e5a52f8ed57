//! Shared set-up for the end-to-end suites: real daemons, images, network test hosts.

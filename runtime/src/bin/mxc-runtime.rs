//! `mxc-runtime`: a runc-compatible OCI runtime that applies MXC policies.

use clap::Parser;
use mxc_runtime::cli::{self, logging::Logging, Cli};
use mxc_runtime::error::error_chain;

fn main() {
    // A container must not be able to overwrite this binary through /proc/self/exe
    // (CVE-2019-5736): re-exec from a sealed in-memory copy before anything else runs.
    if let Err(err) = pentacle::ensure_sealed() {
        eprintln!("sealing the runtime binary: {err}");
        std::process::exit(1);
    }
    let cli = Cli::parse();
    let logging = Logging::init(&cli.global);
    tracing::debug!(args = ?std::env::args().collect::<Vec<_>>(), "mxc-runtime started");
    match cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            logging.report_error(&error_chain(&err));
            std::process::exit(1);
        }
    }
}

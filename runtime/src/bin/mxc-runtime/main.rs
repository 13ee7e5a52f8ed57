//! `mxc-runtime`: a runc-compatible OCI runtime that applies MXC policies.
//!
//! | file | what lands there |
//! |---|---|
//! | `main.rs` | start-up: the engine's helpers, the read-only view of the binary, logging |
//! | `args.rs` | the command line, as runc parses it |
//! | `commands.rs` | one function per subcommand, calling the engine |
//! | `foreground.rs` | `run` and `exec` in the foreground: signals forwarded, the exit status |
//! | `console.rs` | a terminal of its own when the caller gave no console socket |
//! | `resources.rs` | `update`'s flags and JSON |
//! | `logging.rs` | runc-style logging (`--log`, `--log-format`) |
//! | `../shared/spans.rs` | each span's wall-clock time, for profiling (`MXC_SPANS`) |

mod args;
mod commands;
mod console;
mod foreground;
mod logging;
mod resources;
#[path = "../shared/spans.rs"]
mod spans;

use clap::Parser;
use mxc_runtime::error_chain;

use args::Cli;
use logging::Logging;

fn main() {
    mxc_runtime::helper::run_if_requested();
    // A container must not be able to overwrite this binary through /proc/self/exe
    // (CVE-2019-5736): run from a read-only view of it, as runc does since 1.2 (nothing is
    // copied), or, where the kernel cannot make one, from a sealed in-memory copy.
    if let Err(err) = run_from_read_only_image() {
        eprintln!("sealing the runtime binary: {err}");
        std::process::exit(1);
    }
    let cli = Cli::parse();
    let logging = Logging::init(&cli.global);
    tracing::debug!(args = ?std::env::args().collect::<Vec<_>>(), "mxc-runtime started");
    match commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            logging.report_error(&error_chain(&err));
            std::process::exit(1);
        }
    }
}

/// Set only across the one re-execution, so that a view the kernel does not report as
/// read-only can never turn into an exec loop.
const REEXECUTED: &str = "_MXC_RUNTIME_REEXECUTED";

fn run_from_read_only_image() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(REEXECUTED).is_some() {
        std::env::remove_var(REEXECUTED);
        return Ok(());
    }
    if mxc_runtime::helper::running_sealed() {
        return Ok(());
    }
    let binary = std::env::current_exe()?;
    let (path, view) = mxc_runtime::helper::exec_path(&binary);
    if view.is_none() {
        return pentacle::ensure_sealed();
    }
    let mut args = std::env::args_os();
    let argv0 = args
        .next()
        .unwrap_or_else(|| binary.clone().into_os_string());
    // The view's descriptor must stay open until the exec, which replaces this process.
    let err = std::process::Command::new(&path)
        .arg0(argv0)
        .args(args)
        .env(REEXECUTED, "1")
        .exec();
    drop(view);
    Err(err)
}

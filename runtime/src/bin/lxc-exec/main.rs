//! `lxc-exec`: MXC's Linux executor's command line, running configs with this project's
//! engine, so that MXC's SDK and scripts can use mxc-oci where they would use MXC's own
//! executor (`MXC_BIN_DIR`). Exit statuses, stderr lines and the JSON error envelope follow
//! MXC's (`../shared/executor_contract.rs`).
//!
//! `libmxc_ffi.so` starts it once per sandbox with three more descriptors: the request
//! (`--config /dev/fd/3`), a progress descriptor for events instead of stderr lines
//! (`--report-fd`), and a control descriptor (`--control-fd`) that carries terminal sizes and
//! whose end means the library's process is gone, so the sandbox is removed.

#[path = "../shared/executor_contract.rs"]
mod executor_contract;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{channel, Sender};

use base64::Engine as _;
use clap::Parser;
use mxc_runtime::audit::{AuditLog, Event as AuditEvent};
use mxc_runtime::oneshot::progress::{Event, ProgressWriter};
use mxc_runtime::oneshot::{self, ConfigInput, Outcome, RunRequest, TerminalRequest};
use mxc_translate::Source;

#[derive(Parser)]
#[command(name = "lxc-exec", about = "Linux Container Executor (mxc-oci)")]
struct Cli {
    /// Path to config JSON file (positional)
    config_path: Option<PathBuf>,
    /// Path to config JSON file
    #[arg(long)]
    config: Option<PathBuf>,
    /// Base64-encoded JSON config
    #[arg(long)]
    config_base64: Option<String>,
    /// Enable debug/console output
    #[arg(long)]
    debug: bool,
    /// Delete container mode
    #[arg(long)]
    delete: bool,
    /// Container name (required with --delete)
    #[arg(long)]
    containername: Option<String>,
    /// Enable experimental features
    #[arg(long)]
    experimental: bool,
    /// Report host backend availability as JSON and exit
    #[arg(long)]
    available_backends: bool,
    /// Parse and validate config then exit without executing
    #[arg(long)]
    dry_run: bool,
    /// Path to diagnostic log file (appends, creates if missing)
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Append one JSON line per decision (policy applied, each denied connection, exit,
    /// timeout, a refused config) to this file, as `mxc run --audit-log` does.
    #[arg(long, value_name = "FILE", env = "MXC_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Allow testing-only features (MXC's built-in test proxy; refused by mxc-oci anyway)
    #[arg(long)]
    allow_testing_features: bool,
    /// Install MXC's Hyperlight snapshot (not available with mxc-oci)
    #[arg(long, num_args = 0..=1, require_equals = true, value_name = "RUNTIMES")]
    setup_hyperlight: Option<Option<String>>,
    /// Rebuild the Hyperlight snapshot. Requires --setup-hyperlight
    #[arg(long, requires = "setup_hyperlight")]
    force: bool,
    /// Write progress events to this descriptor instead of reporting on stderr.
    #[arg(long, hide = true, value_name = "FD")]
    report_fd: Option<RawFd>,
    /// Read terminal sizes from this descriptor; its end stops the sandbox.
    #[arg(long, hide = true, value_name = "FD")]
    control_fd: Option<RawFd>,
    /// Run the command on a terminal of ROWSxCOLUMNS, relayed to stdin and stdout.
    #[arg(long, hide = true, value_name = "ROWSxCOLUMNS", value_parser = terminal_size)]
    pty: Option<(u16, u16)>,
}

fn terminal_size(text: &str) -> Result<(u16, u16), String> {
    let (rows, columns) = text.split_once('x').ok_or("expected ROWSxCOLUMNS")?;
    let parse = |n: &str| n.parse::<u16>().ok().filter(|n| *n > 0);
    match (parse(rows), parse(columns)) {
        (Some(rows), Some(columns)) => Ok((rows, columns)),
        _ => Err("rows and columns must be between 1 and 65535".into()),
    }
}

fn main() -> ExitCode {
    mxc_runtime::helper::run_if_requested();
    let cli = Cli::parse();
    logging(cli.debug, cli.log_file.as_ref());
    if cli.available_backends {
        println!("{}", available_backends());
        ExitCode::SUCCESS
    } else if cli.setup_hyperlight.is_some() {
        eprintln!("hyperlight setup failed: Hyperlight is not available with mxc-oci");
        ExitCode::from(1)
    } else if cli.delete {
        ExitCode::from(delete(cli.containername.as_deref()))
    } else {
        execute(cli)
    }
}

/// Diagnostics only when asked for: stderr belongs to the workload.
fn logging(debug: bool, log_file: Option<&PathBuf>) {
    let filter = || {
        let level = std::env::var("MXC_LOG").unwrap_or_else(|_| "debug".into());
        tracing_subscriber::EnvFilter::new(level)
    };
    if let Some(path) = log_file {
        if let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
    } else if debug || std::env::var_os("MXC_LOG").is_some() {
        // A reader that stops reading stderr must not end this process halfway through a
        // sandbox's set-up: tracing would report the failed write on stderr and panic there.
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .log_internal_errors(false)
            .init();
    }
}

/// What this host can enforce, in the shape MXC's executor reports it. mxc-oci's sandbox is
/// the one that serves MXC's `process` and `bubblewrap` containment, so it answers under that
/// name; a proxy is enforced when the userspace network stack and nftables are there.
fn available_backends() -> serde_json::Value {
    let missing = mxc_runtime::network::missing_tools();
    let capabilities: Vec<&str> = if missing.is_empty() {
        vec!["proxyEnforcement"]
    } else {
        Vec::new()
    };
    serde_json::json!([{
        "backend": "bubblewrap",
        "capabilities": capabilities,
        "warnings": missing,
    }])
}

/// `--delete --containername NAME`: removes what remains of a sandbox.
fn delete(name: Option<&str>) -> u8 {
    let Some(name) = name else {
        eprintln!("Error: --containername is required with --delete");
        return 1;
    };
    match oneshot::remove(&PathBuf::from(oneshot::STATE_ROOT), name) {
        Ok(true) => 0,
        Ok(false) => {
            // On stdout, as MXC's executor says it.
            println!("Container '{name}' does not exist.");
            1
        }
        Err(error) => {
            eprintln!("error: {error}");
            1
        }
    }
}

/// A descriptor the library handed over, closed on exec so the sandbox never inherits it.
fn inherited(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: fcntl on a descriptor number; fails harmlessly when it is not open.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return None;
    }
    // SAFETY: the descriptor is open (fcntl succeeded) and nothing else in this process owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads the control descriptor: `resize ROWS COLUMNS` lines go to the terminal; its end
/// means the supervisor is gone, and this process stops (SIGTERM cancels the run, which
/// removes the sandbox).
fn control(fd: OwnedFd, sizes: Option<Sender<(u16, u16)>>) {
    std::thread::spawn(move || {
        let lines = BufReader::new(File::from(fd)).lines();
        for line in lines {
            let Ok(line) = line else { break };
            let mut words = line.split_whitespace();
            if let (Some("resize"), Some(rows), Some(columns)) =
                (words.next(), words.next(), words.next())
            {
                if let (Ok(rows), Ok(columns), Some(sizes)) =
                    (rows.parse(), columns.parse(), sizes.as_ref())
                {
                    let _ = sizes.send((rows, columns));
                }
            }
        }
        // SAFETY: signalling this very process.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    });
}

fn execute(cli: Cli) -> ExitCode {
    let mut report = cli.report_fd.and_then(inherited).map(ProgressWriter::new);
    let cancel = match executor_contract::cancel_on_signals() {
        Ok(cancel) => cancel,
        Err(error) => {
            eprintln!("error: handling signals: {error}");
            return ExitCode::from(255);
        }
    };
    let audit = match cli.audit_log.as_deref().map(AuditLog::open).transpose() {
        Ok(audit) => audit,
        Err(error) => {
            let outcome = oneshot::Outcome::SetupFailed(error.to_string());
            return finish(&outcome, report.as_mut(), cli.dry_run);
        }
    };
    let config = match (&cli.config_path, &cli.config, &cli.config_base64) {
        (Some(path), _, _) | (None, Some(path), _) => ConfigInput::File(path.clone()),
        (None, None, Some(encoded)) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            match decoded {
                Some(text) => ConfigInput::Text {
                    source: Source::Named("config".into()),
                    text,
                },
                None => {
                    let reason = "Configuration parse error: Failed to decode base64 configuration";
                    if let (Some(audit), false) = (&audit, cli.dry_run) {
                        audit.write(
                            None,
                            None,
                            &AuditEvent::FailedStart {
                                reason: reason.into(),
                            },
                        );
                    }
                    eprintln!("Request error");
                    eprintln!("{reason}");
                    return ExitCode::from(1);
                }
            }
        }
        (None, None, None) => {
            eprintln!(
                "Error: No config provided. Use a positional path, --config, or --config-base64"
            );
            return ExitCode::from(1);
        }
    };
    // The library's request arrives on a descriptor; messages call it what it is.
    let config = match config {
        ConfigInput::File(path) if report.is_some() => match std::fs::read_to_string(&path) {
            Ok(text) => ConfigInput::Text {
                source: Source::Named("request".into()),
                text,
            },
            Err(_) => ConfigInput::File(path),
        },
        other => other,
    };
    let (sizes, resizes) = match cli.pty {
        Some(_) => {
            let (sender, receiver) = channel();
            (Some(sender), Some(receiver))
        }
        None => (None, None),
    };
    if let Some(fd) = cli.control_fd.and_then(inherited) {
        control(fd, sizes);
    }
    let terminal = cli
        .pty
        .zip(resizes)
        .map(|((rows, columns), resizes)| TerminalRequest {
            rows,
            columns,
            resizes,
        });
    let request = RunRequest {
        config,
        rootfs: None,
        identity: oneshot::caller_identity(),
        limits: mxc_translate::Limits::default(),
        state_root: PathBuf::from(oneshot::STATE_ROOT),
        audit_log: audit.clone(),
        hosts: Vec::new(),
        resolver: mxc_runtime::network::Resolver::System,
        experimental: cli.experimental,
        dry_run: cli.dry_run,
        terminal,
    };
    let outcome = oneshot::run(request, &cancel, &mut |pid| {
        if let Some(report) = report.as_mut() {
            report.send(&Event::Started { pid });
        }
    });
    let status = finish(&outcome, report.as_mut(), cli.dry_run);
    // Lost records are the user's to know about, after whatever the command said.
    if let Some(failures) = audit.and_then(|log| log.failures()) {
        eprintln!("lxc-exec: {failures}");
    }
    status
}

/// Tells the supervisor (a progress event) or the caller (MXC's stderr lines) how the run
/// ended, and exits with MXC's status for it.
fn finish(outcome: &Outcome, report: Option<&mut ProgressWriter>, dry_run: bool) -> ExitCode {
    match report {
        Some(report) => {
            report.send(&outcome.event());
            ExitCode::from(executor_contract::exit_status(outcome).clamp(0, 255) as u8)
        }
        None => executor_contract::report(outcome, dry_run),
    }
}

//! MXC's executor contract on Linux, as MXC's own `lxc-exec` keeps it and its SDK relies on,
//! for the entry points that follow it (`mxc run`, `lxc-exec`): which signals stop a run, and
//! how a one-shot [`Outcome`] becomes lines on stderr and an exit status.
//!
//! | outcome | stderr | exit |
//! |---|---|---|
//! | the command ran | (the command's own; a line if the OOM killer struck) | its status; 128+n for signal n |
//! | config refused | `Request error`, then `Configuration parse error: ...` per error | 1 |
//! | containment unavailable | `error: ...` per error | 1 |
//! | set-up or runner failure | the message, then `{"error":{"code":"backend_error",...}}` | 255 |
//! | `process.timeout` passed | the envelope `script timed out after <N>ms` | 255 |
//! | SIGINT, SIGTERM or SIGHUP n | | 128+n |
//!
//! A dry run states its verdict on stdout.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use mxc_runtime::oneshot::Outcome;
use mxc_runtime::Cancel;
use mxc_translate::Class;

/// A token that SIGINT, SIGTERM and SIGHUP to this process cancel, for the whole life of the
/// process: the run it is given removes its sandbox and ends as [`Outcome::Stopped`].
pub fn cancel_on_signals() -> std::io::Result<Cancel> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let cancel = Cancel::new()?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let token = cancel.clone();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            token.cancel(signal);
        }
    });
    Ok(cancel)
}

/// Tells the caller how the run ended, on stderr (a dry run's verdict on stdout), and returns
/// the exit status that goes with it.
pub fn report(outcome: &Outcome, dry_run: bool) -> ExitCode {
    let rendered = render(outcome, dry_run);
    let _ = std::io::stderr()
        .lock()
        .write_all(rendered.stderr.as_bytes());
    let _ = std::io::stdout()
        .lock()
        .write_all(rendered.stdout.as_bytes());
    ExitCode::from(exit_status(outcome).clamp(0, 255) as u8)
}

/// The exit status MXC's Linux executor ends with in this case.
pub fn exit_status(outcome: &Outcome) -> i32 {
    match outcome {
        Outcome::Refused(errors) if errors.class() != Class::Backend => 1,
        Outcome::Refused(_) | Outcome::SetupFailed(_) | Outcome::Failed(_) => 255,
        Outcome::TimedOut(_) => 255,
        Outcome::Validated => 0,
        Outcome::Exited { status, .. } => *status,
        Outcome::Stopped(signal) => 128 + signal,
    }
}

/// What `outcome` has to say on each stream.
#[derive(Debug, Default, PartialEq, Eq)]
struct Rendered {
    stdout: String,
    stderr: String,
}

fn render(outcome: &Outcome, dry_run: bool) -> Rendered {
    let mut out = Rendered::default();
    let joined = |errors: &mxc_translate::ConfigErrors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    match outcome {
        Outcome::Refused(errors) => match errors.class() {
            Class::Request => {
                let _ = writeln!(out.stderr, "Request error");
                for error in errors.iter() {
                    let _ = writeln!(out.stderr, "Configuration parse error: {error}");
                }
            }
            Class::Containment => {
                for error in errors.iter() {
                    let _ = writeln!(out.stderr, "error: {error}");
                }
            }
            Class::Backend => runner_failure(&mut out, &joined(errors), dry_run),
        },
        Outcome::SetupFailed(message) | Outcome::Failed(message) => {
            runner_failure(&mut out, message, dry_run)
        }
        Outcome::Validated => {
            let _ = writeln!(out.stdout, "Dry run completed. Result: validation passed");
        }
        Outcome::TimedOut(ms) => {
            let _ = writeln!(
                out.stderr,
                "{}",
                envelope(&format!("script timed out after {ms}ms"))
            );
        }
        Outcome::Exited { oom_kills, .. } if *oom_kills > 0 => {
            // The command saw a process die; say why, where the contract leaves room.
            let plural = if *oom_kills == 1 { "" } else { "es" };
            let _ = writeln!(
                out.stderr,
                "mxc: the sandbox reached its memory limit: the kernel stopped {oom_kills} \
                 process{plural}"
            );
        }
        Outcome::Exited { .. } | Outcome::Stopped(_) => {}
    }
    out
}

fn envelope(message: &str) -> serde_json::Value {
    serde_json::json!({"error": {"code": "backend_error", "message": message}})
}

/// MXC's runner class: the message, then the JSON envelope on a line of its own (where a
/// client such as SDK 0.8.0 looks for it); a dry run states the failed validation on stdout.
fn runner_failure(out: &mut Rendered, message: &str, dry_run: bool) {
    if dry_run {
        let _ = writeln!(
            out.stdout,
            "Dry run completed. Result: validation failed: {message}"
        );
    } else {
        let _ = writeln!(out.stderr, "{message}");
        let _ = writeln!(out.stderr, "{}", envelope(message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stderr(outcome: &Outcome) -> String {
        render(outcome, false).stderr
    }

    #[test]
    fn statuses_and_messages() {
        let exited = |status, oom_kills| Outcome::Exited { status, oom_kills };
        assert_eq!(exit_status(&exited(3, 0)), 3);
        assert_eq!(stderr(&exited(137, 0)), "");
        assert_eq!(exit_status(&exited(137, 2)), 137);
        assert_eq!(
            stderr(&exited(137, 2)),
            "mxc: the sandbox reached its memory limit: the kernel stopped 2 processes\n"
        );
        assert_eq!(exit_status(&Outcome::Stopped(15)), 143);
        assert_eq!(stderr(&Outcome::Stopped(15)), "");
        assert_eq!(exit_status(&Outcome::TimedOut(500)), 255);
        assert_eq!(
            stderr(&Outcome::TimedOut(500)),
            "{\"error\":{\"code\":\"backend_error\",\"message\":\"script timed out after 500ms\"}}\n"
        );
        let failed = Outcome::Failed("no slirp4netns".into());
        assert_eq!(exit_status(&failed), 255);
        let text = stderr(&failed);
        assert_eq!(text.lines().next(), Some("no slirp4netns"));
        let envelope: serde_json::Value =
            serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(envelope["error"]["message"], "no slirp4netns");
    }

    #[test]
    fn a_dry_run_answers_on_stdout() {
        assert_eq!(
            render(&Outcome::Validated, true),
            Rendered {
                stdout: "Dry run completed. Result: validation passed\n".into(),
                stderr: String::new(),
            }
        );
        let failed = render(&Outcome::SetupFailed("no /bin/sh".into()), true);
        assert_eq!(
            failed.stdout,
            "Dry run completed. Result: validation failed: no /bin/sh\n"
        );
        assert_eq!(failed.stderr, "");
    }

    #[test]
    fn a_refused_config_says_which_class() {
        let error = |class| mxc_translate::ConfigError {
            source: mxc_translate::Source::Named("test".into()),
            path: "process.cwd".into(),
            value: None,
            reason: "must be absolute".into(),
            class,
        };
        let request = Outcome::Refused(error(Class::Request).into());
        assert_eq!(exit_status(&request), 1);
        let text = stderr(&request);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("Request error"));
        assert!(lines
            .next()
            .unwrap()
            .starts_with("Configuration parse error: "));
        let containment = Outcome::Refused(error(Class::Containment).into());
        assert_eq!(exit_status(&containment), 1);
        assert!(stderr(&containment).starts_with("error: "));
        let backend = Outcome::Refused(error(Class::Backend).into());
        assert_eq!(exit_status(&backend), 255);
        assert!(stderr(&backend).contains("backend_error"));
    }
}

//! Running a command of the host with a time limit and its output captured.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What a finished command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or `None` when a signal ended the command.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// `self` if the command exited 0, otherwise an error that shows everything it printed.
    pub fn ok(self) -> Result<Output> {
        if self.success() {
            Ok(self)
        } else {
            bail!("{self}")
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// A command line as a shell user would read it.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `cmd` with stdin closed, stdout and stderr captured, and kills it if it has not
/// finished after `limit` (a hung daemon fails a test instead of stalling the run).
///
/// Output goes to unnamed temporary files rather than pipes: a process the command leaves
/// running (a created or detached container) keeps its copy of the descriptors without
/// making this wait for it.
pub fn run(cmd: &mut Command, limit: Duration) -> Result<Output> {
    let command = describe(cmd);
    let stdout = tempfile::tempfile().context("creating a file for stdout")?;
    let stderr = tempfile::tempfile().context("creating a file for stderr")?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .spawn()
        .with_context(|| format!("starting `{command}`"))?;
    let status = wait_until(&mut child, limit)?;
    let stdout = read_all(stdout);
    let stderr = read_all(stderr);
    match status {
        Some(status) => Ok(Output {
            command,
            status,
            stdout,
            stderr,
        }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{command}` did not finish within {limit:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
            )
        }
    }
}

/// Like [`run`], but an exit status other than 0 is an error.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> Result<Output> {
    run(cmd, limit)?.ok()
}

fn read_all(mut file: File) -> String {
    let mut text = Vec::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_end(&mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// Waits for `child` at most `limit`; `None` if it is still running then.
pub fn wait_until(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child process")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `probe` until it returns `Ok(Some(_))`, giving up after `limit` with the last error.
pub fn poll<T>(limit: Duration, mut probe: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + limit;
    let mut last = None;
    loop {
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last = Some(error),
        }
        if Instant::now() >= deadline {
            return Err(match last {
                Some(error) => error.context(format!("still failing after {limit:?}")),
                None => anyhow::anyhow!("condition not met within {limit:?}"),
            });
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.code(), Some(3));
        assert!(out.ok().is_err());
    }

    #[test]
    fn does_not_wait_for_what_the_command_left_running() {
        let out = run(
            Command::new("sh").args(["-c", "echo parent; (sleep 3; echo late) & exit 0"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout, "parent\n");
    }

    #[test]
    fn kills_a_command_past_its_limit() {
        let error = run(Command::new("sleep").arg("30"), Duration::from_millis(200)).unwrap_err();
        assert!(error.to_string().contains("did not finish"), "{error}");
    }
}

//! The command line of `mxc-runtime`, as runc parses it. Most subcommands reuse liboci-cli's
//! definitions; `create`, `kill`, `update` and `events` are defined here where runc's behaviour
//! differs from liboci-cli's (a default signal, sizes with units, `--interval 5s`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use mxc_runtime::DEFAULT_ROOT;

#[derive(Parser, Debug)]
#[command(
    name = "mxc-runtime",
    version,
    about = "Runs OCI containers under MXC policies (runc-compatible command line)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalOptions {
    /// Directory for container state
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Write log lines to this file instead of stderr
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug messages
    #[arg(long)]
    pub debug: bool,
    /// Accepted for compatibility: on hybrid and v1 hosts cgroups are managed through
    /// cgroupfs, with systemd-style paths placed where systemd would put them
    #[arg(long = "systemd-cgroup")]
    pub systemd_cgroup: bool,
    /// Node configuration file (TOML)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Default MXC policy for containers that name none
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Accepted for compatibility (checkpointing is not supported)
    #[arg(long, hide = true)]
    pub criu: Option<String>,
    /// Accepted for compatibility (`--rootless=true|false|auto`)
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub rootless: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container
    Create(Create),
    /// Start a created container
    Start(liboci_cli::Start),
    /// Create and start a container
    Run(liboci_cli::Run),
    /// Print the state of a container
    State(liboci_cli::State),
    /// Send a signal to a container's init process (default: SIGTERM)
    Kill(Kill),
    /// Delete a container and everything it holds
    Delete(liboci_cli::Delete),
    /// Run a new process inside a container
    Exec(liboci_cli::Exec),
    /// List the processes of a container
    Ps(liboci_cli::Ps),
    /// Suspend all processes of a container
    Pause(liboci_cli::Pause),
    /// Resume a paused container
    Resume(liboci_cli::Resume),
    /// Print resource statistics and OOM events
    Events(Events),
    /// Update a container's resource limits
    Update(Update),
    /// List containers
    List(liboci_cli::List),
    /// Print the features this runtime supports (JSON)
    Features(liboci_cli::Features),
    /// Write a default config.json
    Spec(liboci_cli::Spec),
}

#[derive(Args, Debug)]
pub struct Create {
    /// Path to the bundle (the directory with config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// File to write the init process's pid to
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root to jail the process in its root filesystem
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N additional file descriptors (3 .. 2+N) to the container
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    /// Accepted for compatibility: create always detaches
    #[arg(short, long, hide = true)]
    pub detach: bool,
    /// Container id
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub container_id: String,
}

#[derive(Args, Debug)]
pub struct Kill {
    /// Send the signal to every process in the container
    #[arg(short, long)]
    pub all: bool,
    /// Container id
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub container_id: String,
    /// Signal name or number (KILL, SIGTERM, 9, RTMIN+1)
    #[arg(default_value = "TERM")]
    pub signal: String,
}

#[derive(Args, Debug)]
pub struct Events {
    /// Print statistics once and exit
    #[arg(long)]
    pub stats: bool,
    /// Interval between statistics (5s, 500ms, or seconds)
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Container id
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub container_id: String,
}

#[derive(Args, Debug)]
pub struct Update {
    /// Read resources (OCI LinuxResources JSON) from FILE, or stdin with -
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Block IO weight (10-1000)
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period (microseconds)
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota (microseconds, -1 for none)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU realtime period (microseconds)
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime (microseconds)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    pub cpu_share: Option<u64>,
    /// CPUs to use (0-3,7)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Memory limit (bytes or 512m, 1g; -1 for none)
    #[arg(long, allow_hyphen_values = true, value_parser = parse_size)]
    pub memory: Option<i64>,
    /// Memory soft limit
    #[arg(long, allow_hyphen_values = true, value_parser = parse_size)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit (-1 for unlimited swap)
    #[arg(long, allow_hyphen_values = true, value_parser = parse_size)]
    pub memory_swap: Option<i64>,
    /// Maximum number of processes (-1 or 0 for none)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Container id
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub container_id: String,
}

fn parse_size(s: &str) -> Result<i64, String> {
    crate::resources::parse_size(s).map_err(|e| e.to_string())
}

/// `5s`, `500ms`, `1m`, `2h`, or plain seconds (`5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use 5s, 500ms, 1m)"))?;
    let seconds = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration {s:?} (use 5s, 500ms, 1m)")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("invalid duration {s:?}: must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut argv = vec!["mxc-runtime"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn global_flags_as_containerd_passes_them() {
        let cli = parse(&[
            "--root",
            "/run/containerd/runc/k8s.io",
            "--log",
            "/run/x/log.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "--rootless=false",
            "delete",
            "c1",
        ]);
        assert_eq!(
            cli.global.root,
            PathBuf::from("/run/containerd/runc/k8s.io")
        );
        assert_eq!(cli.global.log_format, LogFormat::Json);
        assert!(cli.global.systemd_cgroup);
        assert!(
            matches!(cli.command, Command::Delete(ref d) if d.container_id == "c1" && !d.force)
        );
        let cli = parse(&["state", "c1"]);
        assert_eq!(cli.global.root, PathBuf::from(DEFAULT_ROOT));
        assert_eq!(cli.global.log_format, LogFormat::Text);
    }

    #[test]
    fn create_flags_before_or_after_the_id() {
        for args in [
            &["create", "--bundle", "/b", "--pid-file", "/p", "c1"][..],
            &["create", "c1", "--bundle", "/b", "--pid-file", "/p"][..],
            &["create", "-b", "/b", "c1", "--pid-file=/p"][..],
        ] {
            let Command::Create(c) = parse(args).command else {
                panic!("not create")
            };
            assert_eq!(c.container_id, "c1");
            assert_eq!(c.bundle, PathBuf::from("/b"));
            assert_eq!(c.pid_file, Some(PathBuf::from("/p")));
        }
        let Command::Create(c) = parse(&[
            "create",
            "--no-pivot",
            "--no-new-keyring",
            "--preserve-fds",
            "2",
            "--console-socket",
            "/s",
            "c2",
        ])
        .command
        else {
            panic!()
        };
        assert!(c.no_pivot && c.no_new_keyring);
        assert_eq!(c.preserve_fds, 2);
        assert_eq!(c.bundle, PathBuf::from("."));
        assert_eq!(c.console_socket, Some(PathBuf::from("/s")));
    }

    #[test]
    fn kill_defaults_to_term_and_takes_all() {
        let Command::Kill(k) = parse(&["kill", "c1"]).command else {
            panic!()
        };
        assert_eq!(k.signal, "TERM");
        assert!(!k.all);
        let Command::Kill(k) = parse(&["kill", "--all", "c1", "9"]).command else {
            panic!()
        };
        assert_eq!(k.signal, "9");
        assert!(k.all);
        let Command::Kill(k) = parse(&["kill", "c1", "KILL", "-a"]).command else {
            panic!()
        };
        assert!(k.all);
    }

    #[test]
    fn exec_flags_and_trailing_command() {
        let Command::Exec(e) = parse(&[
            "exec",
            "--detach",
            "--pid-file",
            "/p",
            "--process",
            "/proc.json",
            "c1",
        ])
        .command
        else {
            panic!()
        };
        assert!(e.detach);
        assert_eq!(e.process, Some(PathBuf::from("/proc.json")));
        let Command::Exec(e) = parse(&[
            "exec",
            "-t",
            "--cwd",
            "/tmp",
            "-e",
            "A=1",
            "--user",
            "1000:1000",
            "c1",
            "sh",
            "-c",
            "echo hi",
        ])
        .command
        else {
            panic!()
        };
        assert!(e.tty);
        assert_eq!(e.user, Some((1000, Some(1000))));
        assert_eq!(e.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(e.command, vec!["sh", "-c", "echo hi"]);
    }

    #[test]
    fn update_sizes_and_negative_values() {
        let Command::Update(u) = parse(&[
            "update",
            "--memory",
            "64m",
            "--pids-limit",
            "-1",
            "--cpu-quota",
            "-1",
            "--cpu-share",
            "512",
            "c1",
        ])
        .command
        else {
            panic!()
        };
        assert_eq!(u.memory, Some(64 << 20));
        assert_eq!(u.pids_limit, Some(-1));
        assert_eq!(u.cpu_quota, Some(-1));
        assert_eq!(u.cpu_share, Some(512));
        let Command::Update(u) = parse(&["update", "-r", "-", "c1"]).command else {
            panic!()
        };
        assert_eq!(u.resources, Some(PathBuf::from("-")));
    }

    #[test]
    fn events_ps_and_others() {
        let Command::Events(e) = parse(&["events", "--stats", "c1"]).command else {
            panic!()
        };
        assert!(e.stats);
        assert_eq!(e.interval, Duration::from_secs(5));
        let Command::Events(e) = parse(&["events", "--interval=500ms", "c1"]).command else {
            panic!()
        };
        assert_eq!(e.interval, Duration::from_millis(500));
        let Command::Ps(p) = parse(&["ps", "--format", "json", "c1"]).command else {
            panic!()
        };
        assert_eq!(p.format, "json");
        assert!(matches!(parse(&["features"]).command, Command::Features(_)));
        let Command::Spec(s) = parse(&["spec", "--rootless", "--bundle", "/b"]).command else {
            panic!()
        };
        assert!(s.rootless);
        let Command::Run(r) = parse(&["run", "-d", "--bundle", "/b", "c1"]).command else {
            panic!()
        };
        assert!(r.detach);
        assert!(Cli::try_parse_from(["mxc-runtime", "kill"]).is_err());
        assert!(Cli::try_parse_from(["mxc-runtime", "--log-format", "xml", "state", "c"]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fast").is_err());
    }
}

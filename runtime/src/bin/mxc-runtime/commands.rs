//! One function per subcommand: each reads its arguments and calls the engine.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use mxc_runtime::audit;
use mxc_runtime::policy::NodeContext;
use mxc_runtime::{
    CreateOptions, Engine, EngineError, ExecOptions, ExitStatus, RuncStats, Signal, Stdio,
};
use serde::Serialize;

use crate::args::{self, Cli, Command};
use crate::resources::{resources_from_json, ResourceFlags, ResourcesError};
use crate::{console, foreground};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Resources(#[from] ResourcesError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
    let context = context.into();
    move |source| CliError::Io { context, source }
}

/// Runs one command; returns the exit status for the process.
pub fn run(cli: Cli) -> Result<i32, CliError> {
    let node = NodeContext {
        config_path: cli.global.config.clone(),
        default_policy: cli.global.policy.clone(),
        ..NodeContext::default()
    };
    let engine = Engine::new(&cli.global.root).with_node_context(node);
    match cli.command {
        Command::Create(c) => {
            engine.create(
                &c.container_id,
                &c.bundle,
                CreateOptions {
                    stdio: Stdio::Inherit,
                    console_socket: c.console_socket,
                    pid_file: c.pid_file,
                    no_pivot: c.no_pivot,
                    no_new_keyring: c.no_new_keyring,
                    preserve_fds: c.preserve_fds,
                    ..CreateOptions::default()
                },
            )?;
            Ok(0)
        }
        Command::Start(s) => {
            engine.start(&s.container_id)?;
            engine.keep_deadline(&s.container_id)?;
            Ok(0)
        }
        Command::Run(r) => run_container(&engine, r),
        Command::State(s) => {
            let state = engine.state(&s.container_id)?;
            print_json_pretty(&state)?;
            Ok(0)
        }
        Command::Kill(k) => {
            let signal: Signal = k
                .signal
                .parse()
                .map_err(|e: mxc_runtime::ParseSignalError| CliError::Usage(e.to_string()))?;
            engine.kill(&k.container_id, signal, k.all)?;
            Ok(0)
        }
        Command::Delete(d) => match engine.delete(&d.container_id, d.force) {
            Ok(()) => Ok(0),
            // runc: deleting a container that is not there succeeds with --force.
            Err(EngineError::NotFound { .. }) if d.force => Ok(0),
            Err(err) => Err(err.into()),
        },
        Command::Exec(e) => exec(&engine, e),
        Command::Ps(p) => ps(&engine, p),
        Command::Pause(p) => {
            engine.pause(&p.container_id)?;
            Ok(0)
        }
        Command::Resume(r) => {
            engine.resume(&r.container_id)?;
            Ok(0)
        }
        Command::Events(e) => events(&engine, e),
        Command::Update(u) => update(&engine, u),
        Command::List(l) => list(&engine, l),
        Command::Features(_) => {
            print_json_pretty(&mxc_runtime::features())?;
            Ok(0)
        }
        Command::Spec(s) => spec(s),
    }
}

fn print_json_pretty<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Usage(format!("serialising output: {e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").map_err(io("writing to stdout"))
}

fn bundle_wants_terminal(bundle: &Path) -> bool {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["process"]["terminal"].as_bool())
        .unwrap_or(false)
}

fn exit_code(id: &str, status: Option<ExitStatus>) -> Result<i32, CliError> {
    status
        .map(ExitStatus::code)
        .ok_or_else(|| EngineError::ExitStatusLost { id: id.to_string() }.into())
}

fn run_container(engine: &Engine, r: liboci_cli::Run) -> Result<i32, CliError> {
    let id = r.container_id.clone();
    let options = |console_socket| CreateOptions {
        stdio: Stdio::Inherit,
        console_socket,
        pid_file: r.pid_file.clone(),
        no_pivot: r.no_pivot,
        no_new_keyring: r.no_new_keyring,
        preserve_fds: r.preserve_fds,
        ..CreateOptions::default()
    };
    if r.detach {
        engine.create(&id, &r.bundle, options(r.console_socket.clone()))?;
        if let Err(err) = engine.start(&id).and_then(|()| engine.keep_deadline(&id)) {
            let _ = engine.delete(&id, true);
            return Err(err.into());
        }
        return Ok(0);
    }

    let signals = foreground::block_signals().map_err(io("blocking signals"))?;
    let own_console = if r.console_socket.is_none() && bundle_wants_terminal(&r.bundle) {
        Some(console::ConsoleSocket::new().map_err(io("creating a console socket"))?)
    } else {
        None
    };
    let socket = r
        .console_socket
        .clone()
        .or_else(|| own_console.as_ref().map(|c| c.path().to_path_buf()));
    let container = engine.create(&id, &r.bundle, options(socket))?;
    let result = (|| {
        let relay = match &own_console {
            Some(console) => Some(console::Relay::start(
                console
                    .receive_master()
                    .map_err(io("receiving the container's terminal"))?,
            )),
            None => None,
        };
        engine.start(&id)?;
        engine.keep_deadline(&id)?;
        let pidfd = container
            .pidfd()
            .ok_or_else(|| EngineError::ExitStatusLost { id: id.clone() })?;
        let status = foreground::wait_forwarding(pidfd, &signals, relay.as_ref())
            .map_err(io(format!("waiting for container {id}")))?;
        if let Some(status) = status {
            engine.audit(
                &id,
                &audit::Event::Exit {
                    status: Some(status.code()),
                },
            );
        }
        if let Some(relay) = relay {
            relay.finish();
        }
        exit_code(&id, status)
    })();
    if !r.keep {
        let deleted = engine.delete(&id, true);
        if let (Ok(_), Err(err)) = (&result, deleted) {
            return Err(err.into());
        }
    }
    result
}

fn exec(engine: &Engine, e: liboci_cli::Exec) -> Result<i32, CliError> {
    let id = e.container_id.clone();
    let foreground = !e.detach;
    let signals = if foreground {
        Some(foreground::block_signals().map_err(io("blocking signals"))?)
    } else {
        None
    };
    let wants_tty = match &e.process {
        Some(path) => std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["terminal"].as_bool())
            .unwrap_or(false),
        None => e.tty,
    };
    let own_console = if foreground && wants_tty && e.console_socket.is_none() {
        Some(console::ConsoleSocket::new().map_err(io("creating a console socket"))?)
    } else {
        None
    };
    let console_socket = e
        .console_socket
        .clone()
        .or_else(|| own_console.as_ref().map(|c| c.path().to_path_buf()));
    let options = ExecOptions {
        process: e.process.clone(),
        args: e.command.clone(),
        env: e.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: e.cwd.clone(),
        user: e.user,
        additional_gids: e.additional_gids.clone(),
        tty: e.tty,
        console_socket,
        pid_file: e.pid_file.clone(),
        preserve_fds: e.preserve_fds,
        stdio: Stdio::Inherit,
        no_new_privs: e.no_new_privs,
        capabilities: e.cap.clone(),
        ignore_paused: e.ignore_paused,
        cgroup: e.cgroup.clone(),
    };
    let process = engine.exec(&id, options)?;
    let Some(signals) = signals else {
        return Ok(0);
    };
    let relay = match &own_console {
        Some(console) => Some(console::Relay::start(
            console
                .receive_master()
                .map_err(io("receiving the process's terminal"))?,
        )),
        None => None,
    };
    let pidfd = process
        .pidfd()
        .ok_or_else(|| EngineError::ExitStatusLost { id: id.clone() })?;
    let status = foreground::wait_forwarding(pidfd, &signals, relay.as_ref())
        .map_err(io(format!("waiting for the exec process in {id}")))?;
    if let Some(relay) = relay {
        relay.finish();
    }
    exit_code(&id, status)
}

fn ps(engine: &Engine, p: liboci_cli::Ps) -> Result<i32, CliError> {
    let pids = engine.pids(&p.container_id)?;
    match p.format.as_str() {
        "json" => {
            let text = serde_json::to_string(&pids).map_err(|e| CliError::Usage(e.to_string()))?;
            println!("{text}");
        }
        "table" => {
            let options = if p.ps_options.is_empty() {
                vec!["-ef".to_string()]
            } else {
                p.ps_options.clone()
            };
            let output = std::process::Command::new("ps")
                .args(&options)
                .output()
                .map_err(io("running ps"))?;
            if !output.status.success() {
                return Err(CliError::Usage(format!(
                    "ps {}: {}",
                    options.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            let text = String::from_utf8_lossy(&output.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let pid_column = header
                .split_whitespace()
                .position(|c| c == "PID")
                .ok_or_else(|| CliError::Usage("ps printed no PID column".into()))?;
            println!("{header}");
            for line in lines {
                let pid = line
                    .split_whitespace()
                    .nth(pid_column)
                    .and_then(|f| f.parse::<i32>().ok());
                if pid.is_some_and(|pid| pids.contains(&pid)) {
                    println!("{line}");
                }
            }
        }
        other => {
            return Err(CliError::Usage(format!(
                "invalid format {other:?}: use table or json"
            )))
        }
    }
    Ok(0)
}

/// One line of `events` output: `{"type":"stats","id":"...","data":{...}}`.
#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

fn events(engine: &Engine, e: args::Events) -> Result<i32, CliError> {
    let id = e.container_id;
    // Ok(false): whoever read the events went away (a closed pipe); stop quietly.
    let print = |kind: &str, data: Option<&RuncStats>| -> Result<bool, CliError> {
        let line = serde_json::to_string(&Event {
            kind,
            id: &id,
            data,
        })
        .map_err(|e| CliError::Usage(e.to_string()))?;
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{line}").and_then(|_| out.flush()) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(err) => Err(io("writing to stdout")(err)),
        }
    };
    if e.stats {
        let stats = engine.stats(&id)?;
        print("stats", Some(&stats))?;
        return Ok(0);
    }
    let mut ooms = engine.oom_kills(&id)?;
    loop {
        if engine.state(&id)?.status == mxc_runtime::Status::Stopped {
            return Ok(0);
        }
        let now = engine.oom_kills(&id)?;
        if now > ooms {
            if !print("oom", None)? {
                return Ok(0);
            }
            ooms = now;
        }
        match engine.stats(&id) {
            Ok(stats) => {
                if !print("stats", Some(&stats))? {
                    return Ok(0);
                }
            }
            Err(err) => tracing::warn!(error = %err, "reading statistics failed"),
        }
        std::thread::sleep(e.interval);
    }
}

fn update(engine: &Engine, u: args::Update) -> Result<i32, CliError> {
    let resources = match &u.resources {
        Some(path) => {
            let mut bytes = Vec::new();
            if path == Path::new("-") {
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .map_err(io("reading resources from stdin"))?;
            } else {
                bytes = std::fs::read(path).map_err(io(format!("reading {}", path.display())))?;
            }
            resources_from_json(&bytes)?
        }
        None => {
            let flags = ResourceFlags {
                blkio_weight: u.blkio_weight,
                cpu_period: u.cpu_period,
                cpu_quota: u.cpu_quota,
                cpu_rt_period: u.cpu_rt_period,
                cpu_rt_runtime: u.cpu_rt_runtime,
                cpu_shares: u.cpu_share,
                cpuset_cpus: u.cpuset_cpus,
                cpuset_mems: u.cpuset_mems,
                memory: u.memory,
                memory_reservation: u.memory_reservation,
                memory_swap: u.memory_swap,
                pids_limit: u.pids_limit,
            };
            if flags.is_empty() {
                return Err(CliError::Usage(
                    "update: give new limits with -r FILE (or - for stdin) or flags such as --memory"
                        .into(),
                ));
            }
            flags.to_resources()
        }
    };
    engine.update(&u.container_id, &resources)?;
    Ok(0)
}

fn list(engine: &Engine, l: liboci_cli::List) -> Result<i32, CliError> {
    let states = engine.list()?;
    if l.quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match l.format.as_str() {
        "json" => print_json_pretty(&states)?,
        "table" => {
            println!(
                "{:<12} {:<10} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &states {
                println!(
                    "{:<12} {:<10} {:<10} {:<40} {:<32} {}",
                    s.id,
                    s.pid,
                    s.status,
                    s.bundle.display(),
                    s.created,
                    if s.owner.is_empty() { "root" } else { &s.owner }
                );
            }
        }
        other => {
            return Err(CliError::Usage(format!(
                "invalid format {other:?}: use table or json"
            )))
        }
    }
    Ok(0)
}

fn spec(s: liboci_cli::Spec) -> Result<i32, CliError> {
    let dir = s.bundle.unwrap_or_else(|| PathBuf::from("."));
    let path = dir.join("config.json");
    if path.exists() {
        return Err(CliError::Usage(format!(
            "File {} exists. Remove it first",
            path.display()
        )));
    }
    let value = mxc_runtime::default_spec(s.rootless).map_err(CliError::Usage)?;
    let text = serde_json::to_string_pretty(&value).map_err(|e| CliError::Usage(e.to_string()))?;
    std::fs::write(&path, text + "\n").map_err(io(format!("writing {}", path.display())))?;
    Ok(0)
}

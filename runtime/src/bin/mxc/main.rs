//! `mxc`: MXC execution configs on Linux, enforced. `run` runs one in a sandbox (MXC's
//! executor contract: `../shared/executor_contract.rs`), `check` validates a config,
//! `translate` prints the OCI spec it compiles to, `explain` tells a reviewer what enforces each
//! field, `doctor` what this host supports (`doctor.rs`).

#[path = "../shared/executor_contract.rs"]
mod executor_contract;
#[path = "../shared/spans.rs"]
mod spans;

mod doctor;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use mxc_runtime::audit::AuditLog;
use mxc_translate::{
    explain, parse, resolve, Config, ConfigErrors, Expect, Identity, Limits, ParseOptions, Policy,
    RealHost, ResolveOptions, Source, Target,
};

#[derive(Parser)]
#[command(
    name = "mxc",
    version,
    about = "Run MXC execution configs on Linux, enforced"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a config's command in a sandbox that enforces it; exit with the command's status.
    Run(RunArgs),
    /// Validate a config: exit 0 and print nothing when valid, exit 1 with one error per line.
    Check(CheckArgs),
    /// Print the OCI runtime spec (config.json) a config compiles to.
    Translate(CompileArgs),
    /// Show, for each policy field, what enforces it.
    Explain(ExplainArgs),
    /// Check what this host supports (namespaces, nftables, seccomp, cgroups, helpers,
    /// containerd and Docker set-up) and say how to fix what is missing; exit 1 if anything
    /// a sandbox needs is missing.
    Doctor(DoctorArgs),
}

#[derive(Args)]
struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Append one JSON line per decision (policy applied, each denied connection, exit,
    /// timeout, a refused config) to this file.
    #[arg(long, value_name = "FILE", env = "MXC_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Where the egress proxy looks host names up (ADDRESS[:PORT]); the host's resolver if
    /// not given.
    #[arg(long, value_name = "ADDR")]
    resolver: Option<String>,
    /// The MXC config file.
    file: PathBuf,
}

#[derive(Args)]
struct CheckArgs {
    /// Also apply MXC's contract-crate rules (exact versions, no null, closed surfaces).
    #[arg(long)]
    strict: bool,
    /// Treat the file as a one-shot request even if it carries `phase` (as `mxc run` does).
    #[arg(long)]
    one_shot: bool,
    /// Also resolve it for `mxc run` on this host (containment, backend sections, host paths).
    #[arg(long)]
    runnable: bool,
    /// Also check this node configuration (TOML), as `mxc-runtime --config` and the shim read
    /// it: its `[egress]` host rules and resolver, its `[ceiling]`.
    #[arg(long, value_name = "FILE")]
    node_config: Option<PathBuf>,
    /// Also check this value of the annotation io.mxc.egress.hosts (`{"allow": [...], "deny":
    /// [...]}`) against the node's ceiling, as the runtime does for a container.
    #[arg(long, value_name = "JSON")]
    egress_hosts: Option<String>,
    #[command(flatten)]
    target: TargetArgs,
    /// The MXC config file.
    file: PathBuf,
}

/// A sandbox's bounds; hitting one is an error the workload sees, never a host out-of-memory.
#[derive(Args, Clone)]
struct LimitArgs {
    /// Memory limit of the sandbox's cgroup (no swap on top), e.g. 512M, 4G.
    #[arg(long, value_name = "SIZE", value_parser = size, default_value = "2G")]
    memory: u64,
    /// Size of the sandbox's private /tmp (a tmpfs, also counted against --memory).
    #[arg(long, value_name = "SIZE", value_parser = size, default_value = "1G")]
    tmp_size: u64,
    /// cgroup limit on the number of processes and threads in the sandbox.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(i64).range(1..))]
    pids_limit: i64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            memory: self.memory,
            tmp_size: self.tmp_size,
            pids: self.pids_limit,
        }
    }
}

fn size(text: &str) -> Result<u64, String> {
    match mxc_translate::size::parse_size(text) {
        Some(bytes) if bytes >= 1 << 20 => Ok(bytes),
        Some(_) => Err("must be at least 1M".into()),
        None => Err("a size: a number with an optional K, M, G or T suffix".into()),
    }
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// Allow egress to host names matching PATTERN (`api.example.com`, `*.example.com` for
    /// every subdomain, `**.example.com` for the domain too, optional `:PORT`); repeatable.
    /// An mxc-oci extension: MXC's own parser never sees it.
    #[arg(long = "allow-host", value_name = "PATTERN")]
    allow_hosts: Vec<String>,
    /// Deny host names matching PATTERN (beats every allow); repeatable.
    #[arg(long = "deny-host", value_name = "PATTERN")]
    deny_hosts: Vec<String>,
    /// Use this root filesystem instead of the read-only host baseline.
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Host uid[:gid] the sandbox runs as (default: the sudo caller, else 65534:65534).
    #[arg(long, value_name = "UID[:GID]")]
    user: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct CompileArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The MXC config file.
    file: PathBuf,
}

#[derive(Args)]
struct ExplainArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: TargetArgs,
    /// The MXC config file.
    file: PathBuf,
}

fn main() -> ExitCode {
    mxc_runtime::helper::run_if_requested();
    // No sealed re-execution (CVE-2019-5736) here, unlike mxc-runtime: `mxc` never joins a
    // sandbox's namespaces (there is no exec), so no sandbox process can ever see this process
    // in /proc, and the workload is never host root anyway.
    let cli = Cli::parse();
    // Diagnostics only when asked for (MXC_LOG=debug): stderr belongs to the workload. A
    // reader that stops reading it must not end a run halfway (tracing would report the failed
    // write on stderr, and panic there).
    init_tracing();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => check(args),
        Command::Translate(args) => translate(args),
        Command::Explain(args) => run_explain(args),
        Command::Doctor(args) => doctor(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("mxc: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// `MXC_LOG` (diagnostics on stderr) and `MXC_SPANS` (phase times), each only when set.
fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let log = std::env::var("MXC_LOG").ok().map(|filter| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .log_internal_errors(false)
            .with_filter(tracing_subscriber::EnvFilter::new(filter))
    });
    let spans = spans::layer();
    if log.is_some() || spans.is_some() {
        let subscriber = tracing_subscriber::registry().with(log).with(spans);
        let _ = tracing::subscriber::set_global_default(subscriber);
    }
}

/// A config problem: its lines on stderr, exit 1.
fn rejected(errors: &ConfigErrors) -> ExitCode {
    for error in errors.iter() {
        eprintln!("{error}");
    }
    ExitCode::from(1)
}

fn load(
    file: &PathBuf,
    options: ParseOptions,
) -> Result<std::result::Result<Config, ConfigErrors>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("{}: cannot read the config", file.display()))?;
    Ok(parse(Source::File(file.clone()), &text, options))
}

fn identity(user: Option<&str>) -> Result<Identity> {
    if let Some(text) = user {
        let (uid, gid) = match text.split_once(':') {
            Some((uid, gid)) => (uid.parse()?, gid.parse()?),
            None => {
                let uid: u32 = text.parse().context("--user takes UID[:GID]")?;
                (uid, uid)
            }
        };
        anyhow::ensure!(
            uid != 0 && gid != 0,
            "--user {text}: the sandbox never runs as host root; name an unprivileged uid and gid"
        );
        return Ok(Identity { uid, gid });
    }
    Ok(mxc_runtime::oneshot::caller_identity())
}

/// The caller's host rules, each named by its flag and position.
fn host_rules(target: &TargetArgs) -> Result<Vec<mxc_translate::hosts::HostRule>> {
    use mxc_translate::hosts::HostRule;
    use mxc_translate::network::Action;
    let mut rules = Vec::new();
    for (flag, list, action) in [
        ("--allow-host", &target.allow_hosts, Action::Allow),
        ("--deny-host", &target.deny_hosts, Action::Deny),
    ] {
        for (i, text) in list.iter().enumerate() {
            rules.push(
                HostRule::parse(&format!("{flag}[{i}]"), text, action)
                    .map_err(anyhow::Error::msg)?,
            );
        }
    }
    Ok(rules)
}

fn resolve_for_run(
    config: &Config,
    target: &TargetArgs,
) -> Result<std::result::Result<Policy, ConfigErrors>> {
    let options = ResolveOptions {
        target: Target::OneShot {
            rootfs: target.rootfs.clone(),
        },
        identity: identity(target.user.as_deref())?,
        hosts: host_rules(target)?,
        limits: target.limits.limits(),
    };
    Ok(resolve(config, &RealHost, &options))
}

fn run(args: RunArgs) -> Result<ExitCode> {
    use mxc_runtime::oneshot;
    let cancel = executor_contract::cancel_on_signals().context("handling signals")?;
    let audit = match args.audit_log.as_deref().map(AuditLog::open).transpose() {
        Ok(audit) => audit,
        Err(error) => {
            let outcome = oneshot::Outcome::SetupFailed(error.to_string());
            return Ok(executor_contract::report(&outcome, false));
        }
    };
    let request = oneshot::RunRequest {
        config: oneshot::ConfigInput::File(args.file),
        rootfs: args.target.rootfs.clone(),
        identity: identity(args.target.user.as_deref())?,
        limits: args.target.limits.limits(),
        state_root: PathBuf::from(oneshot::STATE_ROOT),
        audit_log: audit.clone(),
        hosts: host_rules(&args.target)?,
        resolver: match &args.resolver {
            Some(text) => mxc_runtime::network::Resolver::parse(text)
                .map_err(|e| anyhow::anyhow!("--resolver: {e}"))?,
            None => mxc_runtime::network::Resolver::System,
        },
        experimental: false,
        dry_run: false,
        terminal: None,
    };
    let outcome = oneshot::run(request, &cancel, &mut |_| {});
    let status = executor_contract::report(&outcome, false);
    // Lost records are the user's to know about, after whatever the command said.
    if let Some(failures) = audit.and_then(|log| log.failures()) {
        eprintln!("mxc: {failures}");
    }
    Ok(status)
}

fn check(args: CheckArgs) -> Result<ExitCode> {
    let expect = if args.one_shot || args.runnable {
        Expect::OneShot
    } else {
        Expect::Any
    };
    let options = ParseOptions {
        strict: args.strict,
        expect,
        ..ParseOptions::default()
    };
    let config = match load(&args.file, options)? {
        Ok(config) => config,
        Err(errors) => return Ok(rejected(&errors)),
    };
    let mut extensions = Vec::new();
    if !host_rules(&args.target)?.is_empty() {
        extensions.push("--allow-host and --deny-host");
    }
    if let Some(file) = &args.node_config {
        use mxc_runtime::policy::{NodeConfig, NodeContext};
        let node = NodeContext {
            config_path: Some(file.clone()),
            ..NodeContext::default()
        };
        let config = NodeConfig::load(&node)?;
        let egress = &config.egress;
        if !egress.rules().is_empty() || egress.resolver.is_some() {
            extensions.push("the node configuration's [egress] host rules and resolver");
        }
        if let Some(text) = &args.egress_hosts {
            use mxc_runtime::policy::{annotation_ceiling, egress_hosts_annotation};
            let rules = egress_hosts_annotation(text)?;
            let identity = mxc_runtime::oneshot::caller_identity();
            let source = Source::Annotation(mxc_runtime::policy::EGRESS_HOSTS_ANNOTATION.into());
            if let Err(errors) =
                annotation_ceiling(&node, &config, identity)?.check_hosts(&source, &rules)
            {
                return Ok(rejected(&errors));
            }
        }
    } else if let Some(text) = &args.egress_hosts {
        mxc_runtime::policy::egress_hosts_annotation(text)?;
    }
    if args.egress_hosts.is_some() {
        extensions.push("the annotation io.mxc.egress.hosts");
    }
    if args.strict && !extensions.is_empty() {
        eprintln!(
            "note: {} are mxc-oci extensions: MXC's own parser never sees them, and the config \
             itself is checked as MXC would",
            extensions.join(", ")
        );
    }
    if args.runnable {
        if let Err(errors) = resolve_for_run(&config, &args.target)? {
            return Ok(rejected(&errors));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn compiled(
    file: &PathBuf,
    target: &TargetArgs,
) -> Result<std::result::Result<(Policy, oci_spec::runtime::Spec), ConfigErrors>> {
    let options = ParseOptions {
        strict: false,
        expect: Expect::OneShot,
        ..ParseOptions::default()
    };
    let config = match load(file, options)? {
        Ok(config) => config,
        Err(errors) => return Ok(Err(errors)),
    };
    let policy = match resolve_for_run(&config, target)? {
        Ok(policy) => policy,
        Err(errors) => return Ok(Err(errors)),
    };
    let id = policy
        .container_id
        .clone()
        .unwrap_or_else(|| "mxc-example".to_string());
    let empty_root = PathBuf::from("/run/mxc").join(&id).join("rootfs");
    let sandbox = mxc_translate::one_shot(
        &policy,
        &mxc_translate::OneShotOptions {
            container_id: &id,
            empty_root: &empty_root,
            host: &RealHost,
            staging_dir: &PathBuf::from("/run/mxc").join(&id).join("stage"),
        },
    )
    .map_err(anyhow::Error::msg)?;
    Ok(Ok((policy, sandbox.spec)))
}

fn translate(args: CompileArgs) -> Result<ExitCode> {
    match compiled(&args.file, &args.target)? {
        Ok((_, spec)) => {
            println!("{}", serde_json::to_string_pretty(&spec)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => Ok(rejected(&errors)),
    }
}

fn doctor(args: DoctorArgs) -> Result<ExitCode> {
    let report = doctor::examine();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(if report.ready() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_explain(args: ExplainArgs) -> Result<ExitCode> {
    match compiled(&args.file, &args.target)? {
        Ok((policy, _)) => {
            let rows = explain::explain(&policy);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", explain::render(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => Ok(rejected(&errors)),
    }
}

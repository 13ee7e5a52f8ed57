//! Side by side with MXC's own Linux executor (the `lxc-exec` that `@microsoft/mxc-sdk` 1.0.1
//! ships, kept aside by `conformance/sdk/setup.sh`): the same accept/reject decision and the
//! same exit status, for every contract fixture and for every config MXC's own Linux tests run
//! (vendored in `translate/tests/mxc/`), checked with `--dry-run` (nothing runs; MXC's configs
//! reach the internet). A few run for real on both, and their exit statuses must match too.
//!
//! Where the two differ, the difference must be one this project documents (README, `mxc
//! explain`): mxc-oci refuses before start what MXC runs without enforcing or fails on at run
//! time, and it still reads the 0.6-0.9 schemas that MXC 1.0 no longer registers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use mxc_conformance::bins;
use mxc_conformance::command::run;
use mxc_conformance::leaks::LeakCheck;
use mxc_conformance::sdk::Backend;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(60);

/// Where mxc-oci is stricter than MXC, by the reason its message gives; each is in the README's
/// list and in `mxc explain`.
const STRICTER: &[(&str, &str)] = &[
    ("does not exist on the host", "a grant's source must exist"),
    ("must be an absolute path", "paths and cwd must be absolute"),
    (
        "'lxc' runs an image root filesystem",
        "'lxc' needs an unpacked root filesystem",
    ),
    (
        "cannot be granted",
        "ui grants and inbound connections are refused",
    ),
    (
        "always destroys a one-shot sandbox",
        "lifecycle reuse is refused",
    ),
    (
        "nothing to preserve after exit",
        "lifecycle reuse is refused",
    ),
    (
        "never changes host permissions",
        "fallback.allowDaclMutation is refused",
    ),
    ("must be KEY=VALUE", "env entries without '=' are refused"),
    (
        "not a directory visible inside the sandbox",
        "cwd must be visible",
    ),
    (
        "the OCI runtime's id rules",
        "containerId must be an OCI id",
    ),
    (
        "placeholder development feature",
        "1.1.0-alpha's test section is refused",
    ),
    ("cannot be masked", "an unmaskable denied path is refused"),
    ("refusing to create", "an unmaskable denied path is refused"),
];

/// The versions MXC 1.0's executor registers; everything older it refuses by version.
const MXC_VERSIONS: &[&str] = &["0.9.0-alpha", "1.0.0", "1.1.0-alpha"];

#[derive(Debug)]
struct Verdict {
    code: Option<i32>,
    text: String,
}

fn dry_run(executor: &Path, config: &Path, experimental: bool) -> Result<Verdict> {
    let mut cmd = Command::new(executor);
    cmd.arg("--dry-run");
    if experimental {
        cmd.arg("--experimental");
    }
    cmd.arg(config);
    let output = run(&mut cmd, LIMIT)?;
    Ok(Verdict {
        code: output.code(),
        text: format!("{}{}", output.stdout, output.stderr),
    })
}

/// Why a difference is allowed, or `None`.
fn explained(config: &Value, mxc: &Verdict, ours: &Verdict) -> Option<&'static str> {
    let version = config["version"].as_str().unwrap_or_default();
    if !MXC_VERSIONS.contains(&version)
        && (mxc.text.contains("Unsupported contract version")
            || mxc.text.contains("Invalid version declaration"))
    {
        return Some("mxc-oci still reads the 0.6-0.9 schemas (SDK 0.8.0 sends them)");
    }
    if mxc.code == Some(0) {
        return STRICTER
            .iter()
            .find(|(reason, _)| ours.text.contains(reason))
            .map(|(_, rule)| *rule);
    }
    None
}

/// Gives the host paths a config names a private home: absolute paths outside the system's
/// own directories move below `root`, grants are created as directories there (as MXC's test
/// scripts create them before a run), and denied names inside them as files or directories.
fn localized(config: &mut Value, root: &Path) -> Result<()> {
    let system = [
        "/etc", "/usr", "/bin", "/sbin", "/lib", "/proc", "/sys", "/dev", "/run", "/var",
    ];
    let relocate = |text: &str| -> Option<PathBuf> {
        (text.starts_with('/')
            && !system
                .iter()
                .any(|s| text == *s || text.starts_with(&format!("{s}/"))))
        .then(|| root.join(text.trim_start_matches('/')))
    };
    let Some(filesystem) = config.get_mut("filesystem").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    for list in ["readwritePaths", "readonlyPaths", "deniedPaths"] {
        for entry in filesystem
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(path) = entry.as_str().and_then(relocate) else {
                continue;
            };
            if list != "deniedPaths" {
                std::fs::create_dir_all(&path)?;
            } else if !path.exists() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if path.extension().is_some() {
                    std::fs::write(&path, "denied\n")?;
                } else {
                    std::fs::create_dir_all(&path)?;
                }
            }
            *entry = json!(path);
        }
    }
    // Every directory on the way must be reachable by the sandbox identity.
    for dir in walk(root) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
    }
    Ok(())
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            out.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        i += 1;
    }
    out
}

struct Tally {
    same: usize,
    differences: BTreeMap<String, Vec<String>>,
    unexplained: Vec<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            same: 0,
            differences: BTreeMap::new(),
            unexplained: Vec::new(),
        }
    }

    fn compare(&mut self, name: &str, config: &Path, experimental: bool) -> Result<()> {
        let mxc = dry_run(&Backend::mxc_executor()?, config, experimental)?;
        let ours = dry_run(&bins::binary("lxc-exec")?, config, experimental)?;
        if mxc.code == ours.code {
            self.same += 1;
            return Ok(());
        }
        let document: Value =
            serde_json::from_str(&std::fs::read_to_string(config)?).unwrap_or(Value::Null);
        match explained(&document, &mxc, &ours) {
            Some(rule) => self
                .differences
                .entry(rule.to_string())
                .or_default()
                .push(name.to_string()),
            None => self.unexplained.push(format!(
                "{name}: MXC exits {:?}, mxc-oci {:?}\n  MXC: {}\n  mxc-oci: {}",
                mxc.code,
                ours.code,
                mxc.text.trim(),
                ours.text.trim()
            )),
        }
        Ok(())
    }

    fn report(&self, what: &str) -> Result<()> {
        eprintln!("{what}: {} the same", self.same);
        for (rule, names) in &self.differences {
            eprintln!("  differs ({rule}): {}", names.join(", "));
        }
        ensure!(
            self.unexplained.is_empty(),
            "{what}: differences no documented rule explains:\n{}",
            self.unexplained.join("\n")
        );
        Ok(())
    }
}

fn vendored(dir: &str) -> PathBuf {
    mxc_conformance::workspace_root()
        .join("translate/tests/mxc")
        .join(dir)
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walk(dir)
        .into_iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_contract_fixture_gets_mxcs_decision() -> Result<()> {
    let root = vendored("fixtures");
    let mut tally = Tally::new();
    for file in json_files(&root) {
        let name = file.strip_prefix(&root)?.display().to_string();
        let experimental = name.starts_with("v1_1_0_alpha");
        tally.compare(&name, &file, experimental)?;
    }
    tally.report("contract fixtures")?;
    ensure!(
        tally.same >= 80,
        "too few fixtures compared: {}",
        tally.same
    );
    Ok(())
}

#[test]
fn every_config_of_mxcs_linux_tests_gets_mxcs_decision() -> Result<()> {
    let scratch = mxc_conformance::scratch_dir("mxc-parity")?;
    let mut as_written = Tally::new();
    let mut at_1_0 = Tally::new();
    for file in json_files(&vendored("configs")) {
        let name = file
            .file_name()
            .context("a file name")?
            .to_string_lossy()
            .into_owned();
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
        let home = scratch.path().join(name.trim_end_matches(".json"));
        std::fs::create_dir_all(&home)?;
        localized(&mut config, &home)?;
        let written = home.join("as-written.json");
        std::fs::write(&written, config.to_string())?;
        as_written.compare(&name, &written, false)?;
        // The same config under MXC 1.0's version: the legacy network fields are gone there,
        // so both must refuse those, and agree on the rest.
        config["version"] = json!("1.0.0");
        if let Some(map) = config.as_object_mut() {
            map.remove("$schema");
        }
        let migrated = home.join("1.0.0.json");
        std::fs::write(&migrated, config.to_string())?;
        at_1_0.compare(&name, &migrated, false)?;
    }
    as_written.report("MXC's Linux test configs as written")?;
    at_1_0.report("MXC's Linux test configs at version 1.0.0")?;
    ensure!(at_1_0.same >= 40, "too few configs agree: {}", at_1_0.same);
    Ok(())
}

/// Runs `config` for real on one executor, with a leak check.
fn real_run(executor: &Path, config: &Value) -> Result<Option<i32>> {
    let dir = mxc_conformance::scratch_dir("mxc-parity-run")?;
    let file = dir.path().join("config.json");
    std::fs::write(&file, config.to_string())?;
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir("/run/mxc");
    let output = run(Command::new(executor).arg(&file), LIMIT)?;
    leaks.assert_clean()?;
    Ok(output.code())
}

#[test]
fn the_same_configs_run_to_the_same_exit_status() -> Result<()> {
    let cases = [
        json!({"version": "1.0.0", "process": {"commandLine": "echo hello"}}),
        json!({"version": "1.0.0", "process": {"commandLine": "exit 7"}}),
        json!({"version": "1.0.0", "process": {"commandLine": "cat /etc/shadow"}, "filesystem": {"deniedPaths": ["/etc/shadow"]}}),
        json!({"version": "1.0.0", "process": {"commandLine": "sleep 10", "timeout": 300}}),
        json!({"version": "1.0.0", "process": {"commandLine": "true"}, "network": {"ingress": {"hostLoopback": "allow"}}}),
        json!({"version": "1.0.0", "process": {"commandLine": "true"}, "network": {"egress": {"allow": [{"to": [{"cidr": "10.0.0.1/8"}]}]}}}),
        json!({"version": "1.0.0", "containment": "seatbelt", "process": {"commandLine": "true"}}),
    ];
    for config in cases {
        let mxc = real_run(&Backend::mxc_executor()?, &config)?;
        let ours = real_run(&bins::binary("lxc-exec")?, &config)?;
        assert_eq!(ours, mxc, "{config}");
    }
    Ok(())
}

/// How one executor answered a command line: its exit status, and the lines a client reads.
#[derive(Debug, PartialEq)]
struct Answer {
    code: Option<i32>,
    stdout: String,
    /// The first line of stderr (the rest is a workload's or a log's).
    stderr: String,
}

fn answer(executor: &Path, args: &[String]) -> Result<Answer> {
    let mut leaks = LeakCheck::snapshot();
    leaks.watch_dir("/run/mxc");
    let output = run(Command::new(executor).args(args), LIMIT)?;
    leaks.assert_clean()?;
    Ok(Answer {
        code: output.code(),
        stdout: output.stdout,
        stderr: output.stderr.lines().next().unwrap_or_default().to_string(),
    })
}

#[test]
fn the_command_line_is_mxcs_executors() -> Result<()> {
    use base64::Engine as _;
    let dir = mxc_conformance::scratch_dir("mxc-parity-cli")?;
    let config = dir.path().join("config.json");
    let text = r#"{"version": "1.0.0", "process": {"commandLine": "echo out; echo err >&2"}}"#;
    std::fs::write(&config, text)?;
    let config = config.display().to_string();
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    let missing = dir.path().join("missing.json").display().to_string();
    let words = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    // Each command line once as a client writes it; the answers must be the same, except that
    // a dry run's log (MXC prints its log buffer before the verdict) is compared by its verdict.
    let cases = [
        words(&[]),
        words(&[&config]),
        words(&["--config", &config]),
        words(&["--config-base64", &encoded]),
        words(&["--config-base64", "not base64!"]),
        words(&["--config", &missing]),
        words(&["--delete"]),
        words(&["--delete", "--containername", "mxc-parity-no-such-sandbox"]),
        words(&["--no-such-flag"]),
    ];
    for args in &cases {
        let mxc = answer(&Backend::mxc_executor()?, args)?;
        let ours = answer(&bins::binary("lxc-exec")?, args)?;
        assert_eq!(ours.code, mxc.code, "{args:?}: {ours:?} / {mxc:?}");
        assert_eq!(ours.stdout, mxc.stdout, "{args:?}");
        // MXC names the missing file once; mxc-oci's messages lead with their source.
        if args.first().map(String::as_str) != Some("--config") || args[1] != missing {
            assert_eq!(ours.stderr, mxc.stderr, "{args:?}");
        }
    }
    // SDK 0.8.0's full argument order, with a log file: a dry run that passes on both.
    for (executor, log) in [
        (Backend::mxc_executor()?, dir.path().join("mxc.log")),
        (bins::binary("lxc-exec")?, dir.path().join("ours.log")),
    ] {
        let log = log.display().to_string();
        let args = words(&[
            "--config-base64",
            &encoded,
            "--dry-run",
            "--debug",
            "--experimental",
            "--log-file",
            &log,
        ]);
        let answer = answer(&executor, &args)?;
        assert_eq!(answer.code, Some(0), "{}: {answer:?}", executor.display());
        assert!(
            answer
                .stdout
                .ends_with("Dry run completed. Result: validation passed\n"),
            "{answer:?}"
        );
        assert!(Path::new(&log).is_file(), "{log} was not created");
    }
    // What the host supports: both name the bubblewrap backend with proxy enforcement (the
    // set-up installs the userspace network stack and nftables that mxc-oci needs for it).
    for executor in [Backend::mxc_executor()?, bins::binary("lxc-exec")?] {
        let answer = answer(&executor, &words(&["--available-backends"]))?;
        assert_eq!(answer.code, Some(0), "{answer:?}");
        let backends: Value = serde_json::from_str(&answer.stdout)?;
        let bubblewrap = backends
            .as_array()
            .and_then(|list| list.iter().find(|b| b["backend"] == "bubblewrap"));
        assert_eq!(
            bubblewrap.map(|b| b["capabilities"].clone()),
            Some(json!(["proxyEnforcement"])),
            "{}: {backends}",
            executor.display()
        );
    }
    // SDK 0.8.0 adds --allow-testing-features for its built-in test proxy; MXC 1.0.1's
    // executor no longer knows the flag, mxc-oci's still accepts it (and refuses the proxy).
    let ours = answer(
        &bins::binary("lxc-exec")?,
        &words(&["--allow-testing-features", &config]),
    )?;
    assert_eq!(ours.code, Some(0), "{ours:?}");
    assert_eq!(ours.stdout, "out\n");
    Ok(())
}

#[test]
fn a_reader_that_leaves_stderr_early_changes_no_exit_status() -> Result<()> {
    // `--debug` logs on stderr; its reader going away must not end the executor halfway
    // through a sandbox's set-up (leaving it behind): both executors, and `mxc run`, exit with
    // the command's status.
    use std::io::Read;
    use std::process::Stdio;
    let dir = mxc_conformance::scratch_dir("mxc-parity-stderr")?;
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"version": "1.0.0", "process": {"commandLine": "echo out; exit 3"}}"#,
    )?;
    let runs = [
        (Backend::mxc_executor()?, "--debug"),
        (bins::binary("lxc-exec")?, "--debug"),
        (bins::mxc()?, "run"),
    ];
    for (executor, first_argument) in runs {
        let mut leaks = LeakCheck::snapshot();
        leaks.watch_dir("/run/mxc");
        let mut child = Command::new(&executor)
            .arg(first_argument)
            .arg(&config)
            .env("MXC_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stderr = child.stderr.take().context("stderr is piped")?;
        let mut first = [0u8; 1];
        let _ = stderr.read(&mut first)?;
        drop(stderr);
        let status = mxc_conformance::command::wait_until(&mut child, LIMIT)?;
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(3),
            "{}",
            executor.display()
        );
        leaks.assert_clean()?;
    }
    Ok(())
}

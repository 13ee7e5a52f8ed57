//! `deploy/containerd-config.sh`, which install.sh and the Kubernetes installer use to add the
//! `mxc` runtime to containerd's config: it changes nothing else, is idempotent, undoes
//! exactly what it did, writes the schema of the installed containerd, and what it writes is
//! what the real containerd of each release reads (every private containerd of the suites
//! also gets its `mxc` runtime from this script).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use mxc_conformance::command::{run, Output};
use mxc_conformance::each_containerd;
use mxc_conformance::engines::ContainerdRelease;

each_containerd!(
    the_release_default_config_gets_the_runtime_and_loses_it_again,
    a_new_config_gets_the_schema_of_the_release,
);

const V1_6: ContainerdRelease = ContainerdRelease::V1_6;

/// Debian bookworm's /etc/containerd/config.toml.
const DEBIAN_CONFIG: &str = r#"version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
"#;

fn script(
    release: ContainerdRelease,
    config: &Path,
    env: &[(&str, &str)],
    action: &str,
) -> Result<Output> {
    let mut cmd =
        Command::new(mxc_conformance::workspace_root().join("deploy/containerd-config.sh"));
    cmd.arg(action)
        .env("CONTAINERD_CONFIG", config)
        .env("CONTAINERD", release.containerd())
        .envs(env.iter().copied());
    run(&mut cmd, Duration::from_secs(60))
}

/// What containerd of `release` makes of a config file.
fn dump(release: ContainerdRelease, config: &Path) -> Result<String> {
    let mut cmd = Command::new(release.containerd());
    cmd.arg("--config").arg(config).args(["config", "dump"]);
    Ok(run(&mut cmd, Duration::from_secs(60))?.ok()?.stdout)
}

/// The table of runtime handler `name` in `release`'s own config format.
fn runtime_table(release: ContainerdRelease, name: &str) -> String {
    match release.config_schema() {
        2 => format!(r#"[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]"#),
        _ => format!(r#"[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.{name}]"#),
    }
}

fn the_release_default_config_gets_the_runtime_and_loses_it_again(
    release: ContainerdRelease,
) -> Result<()> {
    mxc_conformance::engines::require(&release.containerd())?;
    let dir = mxc_conformance::scratch_dir("ctdcfg")?;
    let config = dir.path().join("config.toml");
    // What `containerd config default` writes is what a node of this release starts from.
    let mut cmd = Command::new(release.containerd());
    cmd.args(["config", "default"]);
    let default = run(&mut cmd, Duration::from_secs(60))?.ok()?.stdout;
    // 1.x writes its top-level keys in alphabetical order, 2.x `version` first.
    let version = format!("version = {}", release.config_schema());
    assert!(default.lines().any(|line| line == version), "{default}");
    std::fs::write(&config, &default)?;

    let out = script(release, &config, &[], "add")?.ok()?;
    assert!(
        out.stdout
            .contains(&format!("(schema {})", release.config_schema())),
        "{out}"
    );
    let dumped = dump(release, &config)?;
    for expected in [
        runtime_table(release, "mxc"),
        "runtime_type = 'io.containerd.mxc.v1'".into(),
        "pod_annotations = ['io.mxc.*']".into(),
        "ConfigPath = '/etc/mxc/config.toml'".into(),
        runtime_table(release, "runc"),
    ] {
        let expected = match release.config_schema() {
            2 => expected.replace('\'', "\""),
            _ => expected,
        };
        assert!(dumped.contains(&expected), "{expected} in:\n{dumped}");
    }
    let runc = runtime_table(release, "runc");
    assert_eq!(dumped.matches(runc.as_str()).count(), 1, "{dumped}");

    script(release, &config, &[], "remove")?.ok()?;
    assert_eq!(std::fs::read_to_string(&config)?, default);
    Ok(())
}

#[test]
fn adds_the_runtime_to_an_existing_config_and_takes_it_out_again() -> Result<()> {
    let dir = mxc_conformance::scratch_dir("ctdcfg")?;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, DEBIAN_CONFIG)?;

    let out = script(
        V1_6,
        &config,
        &[("MXC_NODE_CONFIG", "/etc/mxc/node.toml")],
        "add",
    )?
    .ok()?;
    assert!(out.stdout.contains("added the mxc runtime"), "{out}");
    let text = std::fs::read_to_string(&config)?;
    assert!(
        text.starts_with(DEBIAN_CONFIG),
        "what was there stays as it was:\n{text}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.toml.mxc-backup"))?,
        DEBIAN_CONFIG
    );
    let dumped = dump(V1_6, &config)?;
    for expected in [
        r#"[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.mxc]"#,
        r#"runtime_type = "io.containerd.mxc.v1""#,
        r#"pod_annotations = ["io.mxc.*"]"#,
        r#"container_annotations = ["io.mxc.*"]"#,
        r#"ConfigPath = "/etc/mxc/node.toml""#,
        // Declaring a runtime replaces containerd's default list: runc is kept.
        r#"[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]"#,
        r#"runtime_type = "io.containerd.runc.v2""#,
        // The rest of the file is still read.
        r#"conf_dir = "/etc/cni/net.d""#,
    ] {
        assert!(dumped.contains(expected), "{expected} in:\n{dumped}");
    }

    // Again: nothing to do.
    let out = script(V1_6, &config, &[], "add")?.ok()?;
    assert!(out.stdout.contains("unchanged"), "{out}");
    assert_eq!(std::fs::read_to_string(&config)?, text);

    // remove undoes add, byte for byte.
    script(V1_6, &config, &[], "remove")?.ok()?;
    assert_eq!(std::fs::read_to_string(&config)?, DEBIAN_CONFIG);
    Ok(())
}

#[test]
fn a_config_that_declares_runc_keeps_its_own() -> Result<()> {
    let dir = mxc_conformance::scratch_dir("ctdcfg")?;
    let config = dir.path().join("config.toml");
    let original = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n";
    std::fs::write(&config, original)?;
    script(V1_6, &config, &[], "add")?.ok()?;
    let text = std::fs::read_to_string(&config)?;
    assert_eq!(text.matches("runtimes.runc]").count(), 1, "{text}");
    let dumped = dump(V1_6, &config)?;
    assert!(dumped.contains("SystemdCgroup = true"), "{dumped}");
    assert!(dumped.contains("io.containerd.mxc.v1"), "{dumped}");
    Ok(())
}

fn a_new_config_gets_the_schema_of_the_release(release: ContainerdRelease) -> Result<()> {
    mxc_conformance::engines::require(&release.containerd())?;
    let dir = mxc_conformance::scratch_dir("ctdcfg")?;
    let config = dir.path().join("new/config.toml");
    script(release, &config, &[], "add")?.ok()?;
    let text = std::fs::read_to_string(&config)?;
    assert!(
        text.starts_with(&format!("version = {}\n", release.config_schema())),
        "{text}"
    );
    let dumped = dump(release, &config)?;
    assert!(dumped.contains(&runtime_table(release, "mxc")), "{dumped}");
    assert!(dumped.contains(&runtime_table(release, "runc")), "{dumped}");
    Ok(())
}

#[test]
fn a_schema_1_config_is_not_edited() -> Result<()> {
    let dir = mxc_conformance::scratch_dir("ctdcfg")?;
    let config = dir.path().join("v1.toml");
    let v1 = "[plugins.cri]\n  sandbox_image = \"pause\"\n";
    std::fs::write(&config, v1)?;
    let out = script(V1_6, &config, &[], "add")?;
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("schema version 1"), "{out}");
    assert_eq!(std::fs::read_to_string(&config)?, v1);
    Ok(())
}

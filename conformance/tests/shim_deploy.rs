//! `deploy/containerd-config.sh`, which install.sh and the Kubernetes installer use to add the
//! `mxc` runtime to containerd's config: it changes nothing else, is idempotent, undoes
//! exactly what it did, writes the schema of the installed containerd, and what it writes is
//! what the real containerd reads.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use mxc_conformance::bins;
use mxc_conformance::command::{run, Output};

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

fn script(config: &Path, env: &[(&str, &str)], action: &str) -> Result<Output> {
    let mut cmd =
        Command::new(mxc_conformance::workspace_root().join("deploy/containerd-config.sh"));
    cmd.arg(action)
        .env("CONTAINERD_CONFIG", config)
        .env("CONTAINERD", bins::containerd())
        .envs(env.iter().copied());
    run(&mut cmd, Duration::from_secs(60))
}

/// What containerd makes of a config file.
fn dump(config: &Path) -> Result<String> {
    let mut cmd = Command::new(bins::containerd());
    cmd.arg("--config").arg(config).args(["config", "dump"]);
    Ok(run(&mut cmd, Duration::from_secs(60))?.ok()?.stdout)
}

#[test]
fn adds_the_runtime_to_an_existing_config_and_takes_it_out_again() -> Result<()> {
    let dir = mxc_conformance::scratch_dir("ctdcfg")?;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, DEBIAN_CONFIG)?;

    let out = script(&config, &[("MXC_NODE_CONFIG", "/etc/mxc/node.toml")], "add")?.ok()?;
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
    let dumped = dump(&config)?;
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
    let out = script(&config, &[], "add")?.ok()?;
    assert!(out.stdout.contains("unchanged"), "{out}");
    assert_eq!(std::fs::read_to_string(&config)?, text);

    // remove undoes add, byte for byte.
    script(&config, &[], "remove")?.ok()?;
    assert_eq!(std::fs::read_to_string(&config)?, DEBIAN_CONFIG);
    Ok(())
}

#[test]
fn a_config_that_declares_runc_keeps_its_own() -> Result<()> {
    let dir = mxc_conformance::scratch_dir("ctdcfg")?;
    let config = dir.path().join("config.toml");
    let original = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n";
    std::fs::write(&config, original)?;
    script(&config, &[], "add")?.ok()?;
    let text = std::fs::read_to_string(&config)?;
    assert_eq!(text.matches("runtimes.runc]").count(), 1, "{text}");
    let dumped = dump(&config)?;
    assert!(dumped.contains("SystemdCgroup = true"), "{dumped}");
    assert!(dumped.contains("io.containerd.mxc.v1"), "{dumped}");
    Ok(())
}

#[test]
fn a_new_config_gets_the_schema_of_the_installed_containerd() -> Result<()> {
    let dir = mxc_conformance::scratch_dir("ctdcfg")?;

    // containerd 1.6 here: schema 2, which it reads back.
    let config = dir.path().join("v2/config.toml");
    script(&config, &[], "add")?.ok()?;
    let text = std::fs::read_to_string(&config)?;
    assert!(text.starts_with("version = 2\n"), "{text}");
    assert!(dump(&config)?.contains("io.containerd.mxc.v1"));

    // containerd 2.x: schema 3 and its CRI runtime plugin.
    let config = dir.path().join("v3/config.toml");
    script(
        &config,
        &[
            ("CONTAINERD_VERSION", "v2.0.4"),
            ("CONTAINERD", "/nonexistent"),
        ],
        "add",
    )?
    .ok()?;
    let text = std::fs::read_to_string(&config)?;
    assert!(text.starts_with("version = 3\n"), "{text}");
    assert!(
        text.contains(r#"[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.mxc]"#),
        "{text}"
    );

    // A schema-1 file is not edited.
    let config = dir.path().join("v1.toml");
    let v1 = "[plugins.cri]\n  sandbox_image = \"pause\"\n";
    std::fs::write(&config, v1)?;
    let out = script(&config, &[], "add")?;
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("schema version 1"), "{out}");
    assert_eq!(std::fs::read_to_string(&config)?, v1);
    Ok(())
}

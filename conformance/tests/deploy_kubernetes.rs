//! The Kubernetes manifests in `deploy/kubernetes/` against the real schemas: built-in kinds
//! against the Kubernetes OpenAPI schemas (the `kubernetes-validate` package, which
//! `setup.sh` installs), the agent-sandbox resources against the vendored CRDs of that
//! project, strictly (an unknown field is an error); and the MXC policies their annotations
//! carry are there.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use mxc_conformance::command::{run, Output};

const LIMIT: Duration = Duration::from_secs(120);

fn kubernetes_dir() -> PathBuf {
    mxc_conformance::workspace_root().join("deploy/kubernetes")
}

/// The Python of the virtual environment `setup.sh` made (`MXC_K8S_VENV`).
fn python() -> Result<PathBuf> {
    let venv = std::env::var_os("MXC_K8S_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| mxc_conformance::workspace_root().join("target/k8s-venv"));
    let python = venv.join("bin/python");
    anyhow::ensure!(
        python.is_file(),
        "{} is missing: run conformance/setup.sh",
        python.display()
    );
    Ok(python)
}

fn validate(files: &[PathBuf]) -> Result<Output> {
    let mut cmd = Command::new(python()?);
    cmd.arg(mxc_conformance::workspace_root().join("conformance/k8s/validate.py"))
        .arg("--crds")
        .arg(kubernetes_dir().join("agent-sandbox/crds"))
        .args(files);
    run(&mut cmd, LIMIT)
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "runtimeclass.yaml",
        "mxc-deploy.yaml",
        "mxc-cleanup.yaml",
        "examples/agent-pod.yaml",
        "examples/agent-sandbox.yaml",
    ]
    .iter()
    .map(|f| kubernetes_dir().join(f))
    .collect();
    files.sort();
    files
}

#[test]
fn every_manifest_matches_its_schema() -> Result<()> {
    let out = validate(&manifests())?;
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("checked 11 documents, 0 problems"),
        "{out}"
    );
    Ok(())
}

#[test]
fn a_misspelt_field_is_caught_in_a_pod_and_in_a_sandbox() -> Result<()> {
    let dir = mxc_conformance::scratch_dir("k8s")?;
    let mut bad = Vec::new();
    for example in ["agent-pod.yaml", "agent-sandbox.yaml"] {
        let text = std::fs::read_to_string(kubernetes_dir().join("examples").join(example))?;
        let path = dir.path().join(example);
        std::fs::write(&path, text.replace("runtimeClassName:", "runtimeClass:"))?;
        bad.push(path);
    }
    let out = validate(&bad)?;
    assert!(!out.success(), "{out}");
    for (document, at) in [
        ("Pod/agent", ".spec"),
        ("SandboxTemplate/mxc-python-agent", ".spec.podTemplate.spec"),
        ("Sandbox/mxc-shell-agent", ".spec.podTemplate.spec"),
    ] {
        assert!(
            out.stdout.lines().any(|l| l.contains(document)
                && l.contains(&format!("{at}: "))
                && l.contains("'runtimeClass' was unexpected")),
            "{document} at {at}: {out}"
        );
    }
    Ok(())
}

/// The values of `key` in the examples' annotations (block scalars or plain values).
fn annotations(text: &str, key: &str) -> Vec<String> {
    let mut found = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(value) = trimmed.strip_prefix(&format!("{key}:")) else {
            continue;
        };
        let value = value.trim();
        if value == "|" {
            let indent = line.len() - trimmed.len();
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            found.push(block.join("\n"));
        } else {
            found.push(value.trim_matches('"').to_string());
        }
    }
    found
}

#[test]
fn the_policies_the_examples_carry_exist() -> Result<()> {
    let mut inline = 0;
    let mut named = 0;
    for example in ["agent-pod.yaml", "agent-sandbox.yaml"] {
        let text = std::fs::read_to_string(kubernetes_dir().join("examples").join(example))?;
        for policy in annotations(&text, "io.mxc.config") {
            let value: serde_json::Value = serde_json::from_str(&policy)
                .map_err(|e| anyhow::anyhow!("{example}: {e}: {policy}"))?;
            assert!(value["version"].is_string(), "{example}: {policy}");
            inline += 1;
        }
        for name in annotations(&text, "io.mxc.config.name") {
            let policy = mxc_conformance::workspace_root()
                .join("deploy/policies")
                .join(format!("{name}.json"));
            assert!(policy.is_file(), "{example}: {}", policy.display());
            named += 1;
        }
    }
    assert_eq!((inline, named), (2, 1));
    Ok(())
}

#[test]
fn the_examples_use_the_runtime_class() -> Result<()> {
    for example in ["agent-pod.yaml", "agent-sandbox.yaml"] {
        let text = std::fs::read_to_string(kubernetes_dir().join("examples").join(example))?;
        let classes = annotations(&text, "runtimeClassName");
        assert!(!classes.is_empty(), "{example}");
        assert!(classes.iter().all(|c| c == "mxc"), "{example}: {classes:?}");
    }
    let class = std::fs::read_to_string(kubernetes_dir().join("runtimeclass.yaml"))?;
    assert!(class.contains("name: mxc\nhandler: mxc\n"), "{class}");
    Ok(())
}

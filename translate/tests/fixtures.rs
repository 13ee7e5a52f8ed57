//! MXC's published contract fixtures (vendored under `tests/mxc/`, MIT, see `LICENSE-MXC.md`):
//! `--strict` agrees with every one of them (valid accepted, invalid rejected), and the default
//! mode accepts every valid one. The exact 1.x contracts apply in every mode, so there the
//! default mode agrees with every fixture too.

use std::path::{Path, PathBuf};

use mxc_translate::{parse, Expect, ParseOptions, Source};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mxc/fixtures")
}

struct Fixture {
    path: PathBuf,
    valid: bool,
    expect: Expect,
}

/// `<version>/<phase>/...` holds state-aware requests (from 0.8.0-alpha); `one_shot/` and the
/// older `valid`/`invalid` pairs hold one-shot requests.
fn fixtures() -> Vec<Fixture> {
    let mut found = Vec::new();
    let mut stack = vec![fixtures_dir()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let parent = path.parent().unwrap();
                let valid = parent.file_name().unwrap() == "valid";
                let group = parent
                    .parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap();
                let one_shot = group == "one_shot" || group.starts_with("v0_");
                found.push(Fixture {
                    path,
                    valid,
                    expect: if one_shot {
                        Expect::OneShot
                    } else {
                        Expect::Any
                    },
                });
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(
        found.len() >= 150,
        "expected MXC's fixture suite, found {}",
        found.len()
    );
    found
}

fn check(fixture: &Fixture, strict: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(&fixture.path).unwrap();
    let options = ParseOptions {
        strict,
        expect: fixture.expect,
        experimental: true,
    };
    parse(Source::File(fixture.path.clone()), &text, options)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn strict_mode_agrees_with_every_fixture() {
    let mut disagreements = Vec::new();
    for fixture in fixtures() {
        match (fixture.valid, check(&fixture, true)) {
            (true, Err(error)) => disagreements.push(format!("valid fixture rejected: {error}")),
            (false, Ok(())) => disagreements.push(format!(
                "invalid fixture accepted: {}",
                fixture.path.display()
            )),
            _ => {}
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn default_mode_accepts_every_valid_fixture() {
    let rejected: Vec<String> = fixtures()
        .iter()
        .filter(|f| f.valid)
        .filter_map(|f| check(f, false).err())
        .collect();
    assert!(rejected.is_empty(), "{}", rejected.join("\n"));
}

fn is_exact(fixture: &Fixture) -> bool {
    ["v1_0_0", "v1_1_0_alpha"]
        .iter()
        .any(|version| fixture.path.components().any(|c| c.as_os_str() == *version))
}

#[test]
fn default_mode_agrees_with_every_exact_contract_fixture() {
    let mut disagreements = Vec::new();
    let exact: Vec<Fixture> = fixtures().into_iter().filter(is_exact).collect();
    assert!(exact.len() >= 80, "found {} 1.x fixtures", exact.len());
    for fixture in exact {
        match (fixture.valid, check(&fixture, false)) {
            (true, Err(error)) => disagreements.push(format!("valid fixture rejected: {error}")),
            (false, Ok(())) => disagreements.push(format!(
                "invalid fixture accepted: {}",
                fixture.path.display()
            )),
            _ => {}
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn development_contract_needs_experimental_features() {
    let path = fixtures_dir().join("v1_1_0_alpha/one_shot/valid/minimal.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let options = ParseOptions {
        expect: Expect::OneShot,
        ..ParseOptions::default()
    };
    let error = parse(Source::File(path), &text, options).unwrap_err();
    assert!(error.to_string().contains("--experimental"), "{error}");
}

#[test]
fn errors_name_the_file_and_the_json_path() {
    for fixture in fixtures().iter().filter(|f| !f.valid) {
        let error = check(fixture, true).unwrap_err();
        assert!(
            error.starts_with(&fixture.path.display().to_string()),
            "error does not name its file: {error}"
        );
    }
}

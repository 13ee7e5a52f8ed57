//! Property tests: whatever the policy, a compiled spec never exposes a host path the policy did
//! not grant, and always masks every denied path that would otherwise be visible.

use std::path::{Path, PathBuf};

use mxc_translate::compile::staging::{StagedGrant, StagedStep, StagingPlan};
use mxc_translate::{
    one_shot, parse, resolve, FakeHost, Identity, OneShotOptions, ParseOptions, ResolveOptions,
    Source, Target,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const NAMES: &[&str] = &["a", "b", "c"];

/// A tree under /h: directories /h/x, /h/x/y, /h/x/y/z and a file `f` in each directory.
fn tree(selection: &[bool]) -> (FakeHost, Vec<PathBuf>) {
    let mut host = FakeHost::new().dir("/h");
    let mut paths = vec![PathBuf::from("/h")];
    let mut i = 0;
    for a in NAMES {
        for b in std::iter::once(None).chain(NAMES.iter().map(Some)) {
            for c in std::iter::once(None).chain(NAMES.iter().map(Some)) {
                if b.is_none() && c.is_some() {
                    continue;
                }
                let keep = selection.get(i).copied().unwrap_or(true);
                i += 1;
                let mut dir = PathBuf::from("/h").join(a);
                if let Some(b) = b {
                    dir.push(b);
                }
                if let Some(c) = c {
                    dir.push(c);
                }
                if !keep && dir.components().count() > 3 {
                    continue;
                }
                host = host.dir(dir.to_str().unwrap());
                let file = dir.join("f");
                host = host.file(file.to_str().unwrap());
                paths.push(dir);
                paths.push(file);
            }
        }
    }
    paths.sort();
    paths.dedup();
    (host, paths)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    ReadWrite,
    ReadOnly,
    Denied,
}

fn config(entries: &[(usize, Access)], paths: &[PathBuf]) -> Value {
    let list = |access: Access| -> Vec<String> {
        entries
            .iter()
            .filter(|(_, a)| *a == access)
            .map(|(i, _)| paths[i % paths.len()].display().to_string())
            .collect()
    };
    json!({
        "version": "0.8.0-alpha",
        "process": {"commandLine": "true"},
        "filesystem": {
            "readwritePaths": list(Access::ReadWrite),
            "readonlyPaths": list(Access::ReadOnly),
            "deniedPaths": list(Access::Denied),
        }
    })
}

/// The policy entry that governs `path`: the deepest covering entry, stricter on ties.
fn intent(path: &Path, entries: &[(PathBuf, Access)]) -> Option<Access> {
    entries
        .iter()
        .filter(|(p, _)| path.starts_with(p))
        .max_by_key(|(p, a)| (p.components().count(), *a))
        .map(|(_, a)| *a)
}

const STAGING: &str = "/run/mxc/prop/stage";

/// The sandbox's mounts in order, staged trees expanded: a spec mount of a staged tree becomes
/// the tree's grant, then what was staged inside it, at sandbox paths (a pin re-mounts what is
/// already there, so it changes nothing that shows).
fn view(spec_mounts: &[Value], staging: &StagingPlan) -> Vec<Value> {
    let mut out = Vec::new();
    for mount in spec_mounts {
        let source = mount["source"].as_str().unwrap_or_default();
        let Some(tree) = staging
            .trees
            .iter()
            .find(|t| Path::new(STAGING).join(&t.name) == Path::new(source))
        else {
            out.push(mount.clone());
            continue;
        };
        let bind = |dest: &Path, grant: &StagedGrant| {
            let mut options = vec![json!("rbind")];
            if grant.readonly {
                options.push(json!("ro"));
            }
            json!({"destination": dest, "type": "bind", "source": grant.source, "options": options})
        };
        out.push(bind(&tree.destination, &tree.grant));
        for step in &tree.steps {
            let dest = tree.destination.join(step.path());
            match step {
                StagedStep::Grant { grant, .. } => out.push(bind(&dest, grant)),
                StagedStep::Pin { .. } => {}
                StagedStep::MaskFile { .. } => {
                    out.push(json!({"destination": dest, "type": "bind", "source": "/dev/null"}))
                }
                StagedStep::MaskDirectory { .. } => {
                    out.push(json!({"destination": dest, "type": "tmpfs"}))
                }
            }
        }
    }
    out
}

/// What the sandbox shows at `path`: the last mount whose destination covers it.
fn effective<'a>(path: &Path, mounts: &'a [Value]) -> Option<&'a Value> {
    mounts
        .iter()
        .rev()
        .find(|m| path.starts_with(m["destination"].as_str().unwrap()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_exposes_ungranted_and_always_masks_denied(
        selection in proptest::collection::vec(any::<bool>(), 40),
        raw in proptest::collection::vec((0usize..200, 0u8..3), 0..8),
    ) {
        let (host, paths) = tree(&selection);
        let entries: Vec<(usize, Access)> = raw
            .iter()
            .map(|(i, a)| (*i, match a { 0 => Access::ReadWrite, 1 => Access::ReadOnly, _ => Access::Denied }))
            .collect();
        let text = config(&entries, &paths).to_string();
        let parsed = parse(Source::Named("prop.json".into()), &text, ParseOptions::default()).unwrap();
        let options = ResolveOptions {
            target: Target::OneShot { rootfs: None },
            identity: Identity { uid: 0, gid: 0 },
            hosts: Vec::new(),
            limits: Default::default(),
        };
        let policy = resolve(&parsed, &host, &options);
        let policy = match policy {
            Ok(policy) => policy,
            Err(errors) => {
                let text = errors.to_string();
                // A denied file can only be rejected for hard links; none exist here.
                prop_assert!(false, "unexpected rejection: {}", text);
                unreachable!()
            }
        };
        let sandbox = one_shot(&policy, &OneShotOptions {
            container_id: "prop",
            empty_root: Path::new("/run/mxc/prop/rootfs"),
            host: &host,
            staging_dir: Path::new(STAGING),
        }).unwrap();
        let spec = serde_json::to_value(&sandbox.spec).unwrap();
        let mounts = view(spec["mounts"].as_array().unwrap(), &sandbox.staging);

        // Same string in several lists: the strictest list wins.
        let mut resolved: Vec<(PathBuf, Access)> = Vec::new();
        for (i, access) in &entries {
            let path = paths[i % paths.len()].clone();
            match resolved.iter_mut().find(|(p, _)| *p == path) {
                Some(slot) => slot.1 = slot.1.max(*access),
                None => resolved.push((path, *access)),
            }
        }

        for path in &paths {
            let shown = effective(path, &mounts);
            let exposed = shown.and_then(|m| {
                (m["type"] == "bind" && m["source"] != "/dev/null").then(|| {
                    let dest = Path::new(m["destination"].as_str().unwrap());
                    let source = Path::new(m["source"].as_str().unwrap());
                    (source.join(path.strip_prefix(dest).unwrap()), m["options"].as_array().unwrap().contains(&json!("ro")))
                })
            });
            match intent(path, &resolved) {
                None => prop_assert!(exposed.is_none(), "{} exposed without a grant", path.display()),
                Some(Access::Denied) => prop_assert!(
                    exposed.is_none(),
                    "{} is denied but exposed by {:?}", path.display(), shown
                ),
                Some(access) => {
                    let (host_path, readonly) = exposed.unwrap_or_else(|| panic!("{} granted but not exposed", path.display()));
                    prop_assert_eq!(&host_path, path);
                    prop_assert_eq!(readonly, access == Access::ReadOnly, "{} has the wrong access", path.display());
                }
            }
        }
    }
}

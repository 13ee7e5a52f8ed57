//! Resolution and compilation rules, one test per rule, against a fake host.

use std::path::{Path, PathBuf};

use mxc_translate::{
    apply_to_bundle, one_shot, parse, resolve, BundleOptions, Expect, FakeHost, HostFacts,
    Identity, MountAction, NetworkPlan, ObjectId, OneShotOptions, ParseOptions, Policy,
    ResolveOptions, Source, Target,
};
use serde_json::{json, Value};

const ME: Identity = Identity {
    uid: 1000,
    gid: 1000,
};

fn host() -> FakeHost {
    FakeHost::new()
        .dir("/usr/bin")
        .dir("/usr/lib")
        .symlink("/bin", "usr/bin")
        .symlink("/lib", "usr/lib")
        .dir("/etc")
        .file_owned("/etc/shadow", 0o640, 0, 42)
        .dir_owned("/work", 0o755, 1000, 1000)
        .dir_owned("/work/sub", 0o755, 1000, 1000)
        .dir_owned("/work/sub/x", 0o755, 1000, 1000)
        .file_owned("/work/secret.txt", 0o644, 1000, 1000)
        .symlink("/work/link", "/work/secret.txt")
        .symlink("/work/dangling", "/nowhere")
        .dir_owned("/data", 0o755, 1000, 1000)
        .dir_owned("/data/c", 0o755, 1000, 1000)
        .dir_owned("/rootonly", 0o700, 0, 0)
        .dir_owned("/rootonly/open", 0o777, 1000, 1000)
        .hard_linked_file("/work/hard", 2)
        .dir_owned("/work/fixed", 0o755, 0, 0)
        .symlink("/work/fixed/link", "/work/secret.txt")
        .symlink_owned("/work/planted", "/", 1000)
        .symlink("/work/fixed/proc", "/proc/self")
        .dir("/proc/self")
        .dir_owned("/work/deny-dir", 0o755, 1000, 1000)
        .hard_linked_file("/work/deny-dir/inner", 2)
        .dir_owned("/opt", 0o755, 0, 0)
        .symlink("/opt/link", "/data")
}

fn resolved(config: Value) -> Result<Policy, String> {
    resolved_for(config, Target::OneShot { rootfs: None })
}

fn resolved_for(config: Value, target: Target) -> Result<Policy, String> {
    let text = config.to_string();
    let expect = match target {
        Target::OneShot { .. } => Expect::OneShot,
        Target::Bundle => Expect::BundlePolicy,
    };
    let options = ParseOptions {
        strict: false,
        expect,
        ..ParseOptions::default()
    };
    let parsed =
        parse(Source::Named("cfg.json".into()), &text, options).map_err(|e| e.to_string())?;
    resolve(
        &parsed,
        &host(),
        &ResolveOptions {
            target,
            identity: ME,
            hosts: Vec::new(),
            limits: Default::default(),
        },
    )
    .map_err(|e| e.to_string())
}

fn with_fs(fs: Value) -> Value {
    json!({"version": "0.8.0-alpha", "process": {"commandLine": "true"}, "filesystem": fs})
}

/// Each step's destination and action; grants without the object they were checked to be,
/// which [`grants_carry_the_object_they_were_checked_against`] looks at.
fn actions(policy: &Policy) -> Vec<(String, MountAction)> {
    policy
        .mounts
        .iter()
        .map(|m| {
            let action = match &m.action {
                MountAction::Bind {
                    source, readonly, ..
                } => MountAction::Bind {
                    source: source.clone(),
                    readonly: *readonly,
                    object: None,
                },
                other => other.clone(),
            };
            (m.destination.display().to_string(), action)
        })
        .collect()
}

#[test]
fn most_specific_path_wins_in_mount_order() {
    let policy = resolved(with_fs(json!({
        "readwritePaths": ["/data/c", "/work"], "readonlyPaths": ["/data"], "deniedPaths": ["/work/sub"],
    })))
    .unwrap();
    let order: Vec<String> = actions(&policy).into_iter().map(|(d, _)| d).collect();
    assert_eq!(order, ["/work", "/data", "/data/c", "/work/sub"]);
    // Not visible at all (no grant covers it): nothing to mask.
    let policy = resolved(with_fs(
        json!({"deniedPaths": ["/data"], "readwritePaths": ["/data/c"]}),
    ))
    .unwrap();
    assert_eq!(actions(&policy).len(), 1);
}

#[test]
fn denied_symlink_masks_its_target() {
    let policy = resolved(with_fs(
        json!({"readwritePaths": ["/work"], "deniedPaths": ["/work/fixed/link"]}),
    ))
    .unwrap();
    assert!(actions(&policy).contains(&("/work/secret.txt".into(), MountAction::MaskFile)));
}

#[test]
fn symlinks_the_sandbox_could_have_planted_are_refused_in_grants_and_denials() {
    // /work belongs to the sandbox identity: a link there may be a previous run's plant.
    let error = resolved(with_fs(
        json!({"readwritePaths": ["/work"], "deniedPaths": ["/work/link"]}),
    ))
    .unwrap_err();
    assert!(
        error.contains("filesystem.deniedPaths[0]") && error.contains("could have planted"),
        "{error}"
    );
    let error = resolved(with_fs(json!({"readonlyPaths": ["/work/planted"]}))).unwrap_err();
    assert!(
        error.contains("filesystem.readonlyPaths[0]") && error.contains("could have planted"),
        "{error}"
    );
    // A link only root could have made is followed (as MXC does): /opt/link -> /data.
    let policy = resolved(with_fs(json!({"readonlyPaths": ["/opt/link"]}))).unwrap();
    assert!(matches!(
        &policy.mounts[0].action,
        MountAction::Bind { source, object: Some(_), .. } if source == Path::new("/data")
    ));
}

#[test]
fn a_grant_that_resolves_into_proc_sys_dev_or_the_root_is_refused() {
    let error = resolved(with_fs(json!({"readonlyPaths": ["/work/fixed/proc"]}))).unwrap_err();
    assert!(
        error.contains("resolves to /proc/self") && error.contains("/proc"),
        "{error}"
    );
}

#[test]
fn grants_carry_the_object_they_were_checked_against() {
    let policy = resolved(with_fs(json!({"readonlyPaths": ["/data"]}))).unwrap();
    let expected = host().metadata(Path::new("/data")).unwrap();
    assert_eq!(
        policy.mounts[0].action,
        MountAction::Bind {
            source: "/data".into(),
            readonly: true,
            object: Some(ObjectId {
                dev: expected.dev,
                ino: expected.ino
            }),
        }
    );
}

#[test]
fn dangling_denied_symlink_is_refused() {
    let error = resolved(with_fs(
        json!({"readwritePaths": ["/work"], "deniedPaths": ["/work/dangling"]}),
    ))
    .unwrap_err();
    assert!(
        error.contains("filesystem.deniedPaths[0]") && error.contains("dangling"),
        "{error}"
    );
}

#[test]
fn missing_denied_path_inside_a_writable_grant_is_refused() {
    let error = resolved(with_fs(
        json!({"readwritePaths": ["/work"], "deniedPaths": ["/work/new"]}),
    ))
    .unwrap_err();
    assert!(
        error.contains("does not exist but lies in a writable grant"),
        "{error}"
    );
    let ok = resolved(with_fs(
        json!({"readonlyPaths": ["/work"], "deniedPaths": ["/work/new"]}),
    ))
    .unwrap();
    assert!(ok.notes.iter().any(|n| n.contains("nothing to mask")));
}

#[test]
fn denied_directory_with_granted_child_is_traversable_mask() {
    let policy = resolved(with_fs(json!({
        "readwritePaths": ["/work"], "deniedPaths": ["/work/sub"], "readonlyPaths": ["/work/sub/x"],
    })))
    .unwrap();
    assert_eq!(
        actions(&policy),
        [
            (
                "/work".into(),
                MountAction::Bind {
                    source: "/work".into(),
                    readonly: false,
                    object: None,
                }
            ),
            (
                "/work/sub".into(),
                MountAction::MaskDirectory {
                    granted_descendants: true
                }
            ),
            (
                "/work/sub/x".into(),
                MountAction::Bind {
                    source: "/work/sub/x".into(),
                    readonly: true,
                    object: None,
                }
            ),
        ]
    );
}

#[test]
fn baseline_secrets_are_masked_when_denied() {
    let policy = resolved(with_fs(json!({"deniedPaths": ["/etc/shadow"]}))).unwrap();
    assert_eq!(
        actions(&policy),
        [("/etc/shadow".into(), MountAction::MaskFile)]
    );
}

#[test]
fn same_string_and_same_object_take_the_strictest_intent() {
    let policy = resolved(with_fs(
        json!({"readwritePaths": ["/work/sub/"], "deniedPaths": ["/work/sub"]}),
    ))
    .unwrap();
    assert!(actions(&policy)
        .iter()
        .all(|(_, a)| !matches!(a, MountAction::Bind { .. })));
    assert!(policy.notes.iter().any(|n| n.contains("stricter")));
}

#[test]
fn hard_linked_denied_files_are_refused_in_any_grant_and_below_denied_directories() {
    for grant in ["readwritePaths", "readonlyPaths"] {
        let error = resolved(with_fs(
            json!({grant: ["/work"], "deniedPaths": ["/work/hard"]}),
        ))
        .unwrap_err();
        assert!(error.contains("hard links"), "{grant}: {error}");
    }
    let error = resolved(with_fs(
        json!({"readonlyPaths": ["/work"], "deniedPaths": ["/work/deny-dir"]}),
    ))
    .unwrap_err();
    assert!(
        error.contains("/work/deny-dir/inner") && error.contains("hard links"),
        "{error}"
    );
}

#[test]
fn grants_are_checked_against_the_sandbox_identity() {
    let error = resolved(with_fs(json!({"readonlyPaths": ["/rootonly"]}))).unwrap_err();
    assert!(
        error.contains("filesystem.readonlyPaths[0] = \"/rootonly\"")
            && error.contains("1000:1000"),
        "{error}"
    );
    let error = resolved(with_fs(json!({"readwritePaths": ["/rootonly/open"]}))).unwrap_err();
    assert!(
        error.contains("parent directory /rootonly is not searchable"),
        "{error}"
    );
}

#[test]
fn paths_must_be_absolute_and_exist_and_not_cover_kernel_filesystems() {
    let error = resolved(with_fs(json!({"readwritePaths": ["work"]}))).unwrap_err();
    assert!(error.contains("must be an absolute path"), "{error}");
    let error = resolved(with_fs(json!({"readonlyPaths": ["/missing"]}))).unwrap_err();
    assert!(error.contains("does not exist on the host"), "{error}");
    for path in ["/", "/proc", "/proc/1", "/dev"] {
        let error = resolved(with_fs(json!({"readonlyPaths": [path]}))).unwrap_err();
        assert!(error.contains("runtime's own"), "{path}: {error}");
    }
}

#[test]
fn cwd_is_absolute_visible_or_defaulted() {
    let cfg = |cwd: Option<&str>| {
        let mut process = json!({"commandLine": "true"});
        if let Some(cwd) = cwd {
            process["cwd"] = json!(cwd);
        }
        json!({"version": "0.8.0-alpha", "process": process, "filesystem": {"readonlyPaths": ["/data"], "readwritePaths": ["/work"]}})
    };
    assert_eq!(
        resolved(cfg(None)).unwrap().cwd,
        Some(PathBuf::from("/work"))
    );
    assert_eq!(
        resolved(cfg(Some("/data/c"))).unwrap().cwd,
        Some(PathBuf::from("/data/c"))
    );
    assert!(resolved(cfg(Some("usr")))
        .unwrap_err()
        .contains("process.cwd"));
    assert!(resolved(cfg(Some("/rootonly")))
        .unwrap_err()
        .contains("not a directory visible"));
    let bare = json!({"process": {"commandLine": "true"}});
    assert_eq!(resolved(bare).unwrap().cwd, Some(PathBuf::from("/")));
}

#[test]
fn non_linux_containment_and_foreign_sections_are_refused() {
    let error =
        resolved(json!({"containment": "seatbelt", "process": {"commandLine": "x"}})).unwrap_err();
    assert!(error.contains("not available on Linux"), "{error}");
    let error = resolved(json!({"process": {"commandLine": "x"}, "appContainer": {}})).unwrap_err();
    assert!(
        error.contains("processContainer") && error.contains("multiple containment backends"),
        "{error}"
    );
    let error = resolved(json!({"containment": "lxc", "process": {"commandLine": "x"}, "lxc": {"distribution": "alpine", "release": "3.20"}})).unwrap_err();
    assert!(error.contains("--rootfs"), "{error}");
}

#[test]
fn fields_linux_cannot_honour_are_refused_not_ignored() {
    for (field, value) in [
        ("ui", json!({"disable": false})),
        ("ui", json!({"clipboard": "all"})),
        ("lifecycle", json!({"destroyOnExit": false})),
        ("lifecycle", json!({"preservePolicy": true})),
        ("fallback", json!({"allowDaclMutation": true})),
        ("experimental", json!({"test": {}})),
    ] {
        let mut cfg = json!({"version": "0.8.0-alpha", "process": {"commandLine": "x"}});
        cfg[field] = value;
        assert!(resolved(cfg).is_err(), "{field} accepted");
    }
}

#[test]
fn network_models_resolve_to_one_plan() {
    let plan = |network: Value, version: &str| {
        resolved(json!({"version": version, "process": {"commandLine": "x"}, "network": network}))
            .map(|p| p.network)
    };
    assert_eq!(plan(json!({}), "0.8.0").unwrap(), NetworkPlan::Isolated);
    assert_eq!(
        plan(json!({}), "0.6.0-alpha").unwrap(),
        NetworkPlan::Isolated
    );
    assert!(matches!(
        plan(json!({"egress": {"default": "allow"}}), "0.8.0").unwrap(),
        NetworkPlan::Filtered(_)
    ));
    assert!(matches!(
        plan(json!({"defaultPolicy": "block", "enforcementMode": "firewall", "allowedHosts": ["10.0.0.0/8", "api.example.com"]}), "0.7.0").unwrap(),
        NetworkPlan::Filtered(f) if f.allow.len() == 1 && f.hosts.len() == 1
    ));
    let error = plan(json!({"allowedHosts": ["10.0.0.1"]}), "0.8.0").unwrap_err();
    assert!(
        error.contains("require an enforcement mechanism"),
        "{error}"
    );
    let error = plan(json!({"proxy": {"url": "http://p:3128"}}), "0.7.0").unwrap_err();
    assert!(error.contains("defaultPolicy 'block'"), "{error}");
    assert!(matches!(
        plan(
            json!({"defaultPolicy": "allow", "proxy": {"url": "http://p:3128"}}),
            "0.7.0"
        )
        .unwrap(),
        NetworkPlan::ProxyOnly { .. }
    ));
    // MXC's bundled exact-name proxy: its lists are enforced by name.
    assert!(matches!(
        plan(
            json!({"proxy": {"builtinTestServer": true}, "allowedHosts": ["api.example.com", "198.18.0.0/15"]}),
            "0.7.0"
        )
        .unwrap(),
        NetworkPlan::Filtered(f) if !f.default_allow && f.hosts.len() == 1 && f.allow.len() == 1
    ));
    assert!(plan(
        json!({"proxy": {"builtinTestServer": true}, "enforcementMode": "firewall"}),
        "0.7.0"
    )
    .unwrap_err()
    .contains("enforcementMode"));
    let error = plan(
        json!({"enforcementMode": "firewall", "allowedHosts": ["*.co.uk"]}),
        "0.7.0",
    )
    .unwrap_err();
    assert!(
        error.contains("network.allowedHosts[0]") && error.contains("public suffix"),
        "{error}"
    );
    assert!(plan(json!({"ingress": {"default": "allow"}}), "0.8.0").is_err());
    assert!(plan(json!({"allowLocalNetwork": true}), "0.7.0").is_err());
    let proxy_with_rules = json!({"version": "0.8.0", "process": {"commandLine": "x"}, "runtimeConfig": {"networkProxy": "http://127.0.0.1:8080"}, "network": {"egress": {"allow": [{"ports": [{"port": 443}]}]}}});
    assert!(resolved(proxy_with_rules)
        .unwrap_err()
        .contains("egress.default='deny'"));
}

#[test]
fn one_shot_spec_cuts_privileges() {
    let policy = resolved(with_fs(json!({"readwritePaths": ["/work"]}))).unwrap();
    let sandbox = one_shot(
        &policy,
        &OneShotOptions {
            container_id: "t1",
            empty_root: Path::new("/run/mxc/t1/rootfs"),
            host: &host(),
            staging_dir: Path::new("/run/mxc/t1/stage"),
        },
    )
    .unwrap();
    let spec = serde_json::to_value(&sandbox.spec).unwrap();
    assert_eq!(spec["process"]["args"], json!(["/bin/sh", "-c", "true"]));
    assert_eq!(spec["process"]["noNewPrivileges"], json!(true));
    for set in [
        "bounding",
        "effective",
        "inheritable",
        "permitted",
        "ambient",
    ] {
        assert_eq!(spec["process"]["capabilities"][set], json!([]), "{set}");
    }
    assert_eq!(
        spec["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": 1000, "size": 1}])
    );
    let namespaces: Vec<&str> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for ns in ["pid", "ipc", "uts", "mount", "user", "network", "cgroup"] {
        assert!(namespaces.contains(&ns), "{ns}");
    }
    assert_eq!(spec["root"]["readonly"], json!(true));
    // Every sandbox is bounded: processes, memory (no swap on top), /tmp, user namespace counts.
    assert_eq!(spec["linux"]["resources"]["pids"]["limit"], json!(1024));
    assert_eq!(
        spec["linux"]["resources"]["memory"]["limit"],
        json!(2u64 << 30)
    );
    assert_eq!(
        spec["linux"]["resources"]["memory"]["swap"],
        json!(2u64 << 30)
    );
    let tmp = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/tmp")
        .unwrap();
    assert!(tmp["options"]
        .as_array()
        .unwrap()
        .contains(&json!("size=1073741824")));
    assert_eq!(
        spec["linux"]["sysctl"]["user.max_inotify_instances"],
        json!("64")
    );
    assert_eq!(
        spec["linux"]["sysctl"]["user.max_user_namespaces"],
        json!("0")
    );
    assert!(
        spec["linux"]["seccomp"]["syscalls"]
            .as_array()
            .unwrap()
            .len()
            >= 3
    );
    // Merged /usr: /bin and /lib are symlinks in the root, not extra mounts.
    assert!(sandbox
        .skeleton
        .iter()
        .any(|e| format!("{e:?}").contains("\"bin\"")));
    let env = spec["process"]["env"].as_array().unwrap();
    assert!(
        env.contains(&json!("PWD=/work"))
            && env.iter().any(|e| e.as_str().unwrap().starts_with("PATH="))
    );
}

#[test]
fn bundle_mode_rejects_engine_fields_and_host_network() {
    let target = || Target::Bundle;
    let error = resolved_for(json!({"process": {"commandLine": "x"}}), target()).unwrap_err();
    assert!(error.contains("engine"), "{error}");

    let policy = resolved_for(
        json!({"filesystem": {"readonlyPaths": ["/data"], "deniedPaths": ["/etc/passwd"]}}),
        target(),
    )
    .unwrap();
    let engine = json!({
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 1000, "gid": 1000}, "args": ["sh"], "cwd": "/", "env": ["HOME=/root"],
                    "capabilities": {"bounding": ["CAP_NET_RAW"], "effective": ["CAP_NET_RAW"]}},
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}]},
    });
    let mut out = engine.clone();
    apply_to_bundle(
        &policy,
        &mut out,
        &BundleOptions::strict(Path::new("/stage")),
    )
    .unwrap();
    assert_eq!(out["process"]["capabilities"]["bounding"], json!([]));
    assert!(out["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .contains(&json!("/etc/passwd")));
    assert!(out["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["destination"] == "/data"));
    assert!(out["process"]["env"]
        .as_array()
        .unwrap()
        .contains(&json!("HOME=/root")));

    let mut host_net = engine.clone();
    host_net["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
    let mut spec = host_net;
    assert!(apply_to_bundle(
        &policy,
        &mut spec,
        &BundleOptions::strict(Path::new("/stage"))
    )
    .unwrap_err()
    .to_string()
    .contains("host network"));

    let mut as_root = engine;
    as_root["process"]["user"] = json!({"uid": 0, "gid": 0});
    let mut spec = as_root;
    assert!(apply_to_bundle(
        &policy,
        &mut spec,
        &BundleOptions::strict(Path::new("/stage"))
    )
    .unwrap_err()
    .to_string()
    .contains("root"));
}

#[test]
fn caller_host_rules_join_the_policy() {
    use mxc_translate::hosts::HostRule;
    use mxc_translate::network::Action;
    let with_hosts = |network: Value, version: &str| {
        let config =
            json!({"version": version, "process": {"commandLine": "true"}, "network": network});
        let parsed = parse(
            Source::Named("cfg.json".into()),
            &config.to_string(),
            ParseOptions {
                strict: false,
                expect: Expect::OneShot,
                ..ParseOptions::default()
            },
        )
        .unwrap();
        resolve(
            &parsed,
            &host(),
            &ResolveOptions {
                target: Target::OneShot { rootfs: None },
                identity: ME,
                hosts: vec![
                    HostRule::parse("--allow-host[0]", "**.example.com", Action::Allow).unwrap(),
                ],
                limits: Default::default(),
            },
        )
        .map(|p| p.network)
        .map_err(|e| e.to_string())
    };
    // A sandbox with no egress gains exactly the caller's names.
    let NetworkPlan::Filtered(filter) = with_hosts(json!({}), "0.8.0").unwrap() else {
        panic!()
    };
    assert!(!filter.default_allow && filter.allow.is_empty() && filter.hosts.len() == 1);
    // Rules of the policy stay.
    let NetworkPlan::Filtered(filter) = with_hosts(
        json!({"egress": {"allow": [{"to": [{"cidr": "198.18.0.0/15"}]}]}}),
        "0.8.0",
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!((filter.allow.len(), filter.hosts.len()), (1, 1));
    // A proxy of the config's own decides names itself.
    let error = with_hosts(
        json!({"defaultPolicy": "allow", "proxy": {"url": "http://127.0.0.1:3128"}}),
        "0.7.0",
    )
    .unwrap_err();
    assert!(
        error.contains("--allow-host[0]") && error.contains("proxy"),
        "{error}"
    );
}

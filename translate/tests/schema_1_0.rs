//! Schema 1.0.0 (and the development contract 1.1.0-alpha): the exact contract, MXC's failure
//! classes, and what 1.0 changes in compilation (environment defaults, the directional-only
//! network model).

use std::path::Path;

use mxc_translate::{
    one_shot, parse, resolve, Class, ConfigErrors, Expect, FakeHost, Identity, NetworkPlan,
    OneShotOptions, ParseOptions, Policy, ResolveOptions, Source, Target,
};
use serde_json::{json, Value};

const ME: Identity = Identity {
    uid: 1000,
    gid: 1000,
};

fn host() -> FakeHost {
    FakeHost::new()
        .dir("/usr/bin")
        .dir("/etc")
        .dir_owned("/work", 0o755, 1000, 1000)
}

fn parsed(config: &Value, experimental: bool) -> Result<mxc_translate::Config, ConfigErrors> {
    let options = ParseOptions {
        expect: Expect::OneShot,
        experimental,
        ..ParseOptions::default()
    };
    parse(
        Source::Named("cfg.json".into()),
        &config.to_string(),
        options,
    )
}

fn resolved(config: Value) -> Result<Policy, ConfigErrors> {
    let config = parsed(&config, false)?;
    resolve(
        &config,
        &host(),
        &ResolveOptions {
            target: Target::OneShot { rootfs: None },
            identity: ME,
            hosts: Vec::new(),
            limits: Default::default(),
        },
    )
}

fn rejection(config: Value) -> ConfigErrors {
    match resolved(config) {
        Ok(_) => panic!("accepted"),
        Err(errors) => errors,
    }
}

fn env_of(config: Value) -> Vec<String> {
    let policy = resolved(config).unwrap();
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
    serde_json::from_value(spec["process"]["env"].clone()).unwrap()
}

fn v1(extra: Value) -> Value {
    let mut config = json!({"version": "1.0.0", "process": {"commandLine": "true"}});
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    config
}

#[test]
fn the_version_is_spelled_exactly() {
    for version in ["1.0.1", "1.1.0", "2.0.0", "1.0.0-rc.1"] {
        let error = parsed(
            &json!({"version": version, "process": {"commandLine": "true"}}),
            true,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("unsupported contract version"),
            "{version}: {error}"
        );
        assert_eq!(error.class(), Class::Request);
    }
    assert!(parsed(&v1(json!({})), false).is_ok());
}

#[test]
fn legacy_network_fields_are_gone_with_mxc_migration_hints() {
    let error = parsed(&v1(json!({"network": {"defaultPolicy": "allow"}})), false).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("network.defaultPolicy"), "{text}");
    assert!(text.contains("use network.egress.default"), "{text}");
    let error = parsed(&v1(json!({"network": {"allowOutbound": true}})), false).unwrap_err();
    assert!(error.to_string().contains("unknown field `allowOutbound`"));
}

#[test]
fn null_aliases_and_tagged_enums_are_refused() {
    for extra in [
        json!({"containerId": null}),
        json!({"appContainer": {}}),
        json!({"containment": "macos_sandbox"}),
        json!({"containment": {"process": null}}),
        json!({"experimental": {}}),
        json!({"network": {"egress": {"allow": [{"to": []}]}}}),
        json!({"network": {"egress": {"allow": [{"ports": [{"port": 0}]}]}}}),
        json!({"lxc": {"distribution": "alpine"}}),
    ] {
        let error = parsed(&v1(extra.clone()), false).unwrap_err();
        assert_eq!(error.class(), Class::Request, "{extra}: {error}");
    }
    let error = parsed(
        &json!({"version": "1.0.0", "process": {"commandLine": ""}}),
        false,
    )
    .unwrap_err();
    assert!(error.to_string().contains("process.commandLine"), "{error}");
}

#[test]
fn members_of_1_0_are_unknown_to_older_versions() {
    let old = json!({"version": "0.8.0-alpha", "process": {"commandLine": "true", "inheritDefaultEnv": true}, "telemetry": {"enabled": false}});
    let text = parsed(&old, false).unwrap_err().to_string();
    assert!(text.contains("process.inheritDefaultEnv"), "{text}");
    assert!(text.contains("telemetry"), "{text}");
}

#[test]
fn non_linux_containment_is_its_own_class() {
    for containment in ["processcontainer", "seatbelt", "wslc"] {
        let errors = rejection(v1(json!({"containment": containment})));
        assert_eq!(errors.class(), Class::Containment, "{errors}");
        assert!(
            errors.to_string().contains(&format!(
                "the '{containment}' backend is not available on Linux"
            )),
            "{errors}"
        );
    }
    let errors = rejection(v1(json!({"wslc": {}})));
    assert_eq!(errors.class(), Class::Request, "{errors}");
}

#[test]
fn what_this_host_refuses_is_the_runner_class() {
    let errors = rejection(v1(json!({"network": {"ingress": {"default": "allow"}}})));
    assert_eq!(errors.class(), Class::Backend, "{errors}");
    let errors = rejection(v1(json!({"filesystem": {"readonlyPaths": ["/missing"]}})));
    assert_eq!(errors.class(), Class::Backend, "{errors}");
}

#[test]
fn environment_follows_mxc_1_0() {
    let omitted = env_of(v1(json!({})));
    assert!(
        omitted.contains(&"TERM=xterm-256color".to_string()),
        "{omitted:?}"
    );
    assert!(
        omitted.iter().any(|e| e.starts_with("PATH=")),
        "{omitted:?}"
    );

    let verbatim = env_of(v1(
        json!({"process": {"commandLine": "true", "env": ["A=1"]}}),
    ));
    assert!(verbatim.contains(&"A=1".to_string()), "{verbatim:?}");
    assert!(
        !verbatim
            .iter()
            .any(|e| e.starts_with("PATH=") || e.starts_with("TERM=")),
        "a written env is used as it is: {verbatim:?}"
    );

    let layered = env_of(v1(
        json!({"process": {"commandLine": "true", "env": ["PATH=/x"], "inheritDefaultEnv": true}}),
    ));
    assert!(layered.contains(&"PATH=/x".to_string()), "{layered:?}");
    assert!(
        layered.contains(&"TERM=xterm-256color".to_string()),
        "{layered:?}"
    );

    let legacy = env_of(
        json!({"version": "0.8.0-alpha", "process": {"commandLine": "true", "env": ["A=1"]}}),
    );
    assert!(legacy.iter().any(|e| e.starts_with("PATH=")), "{legacy:?}");
}

#[test]
fn the_network_is_directional_and_deny_by_default() {
    let policy = resolved(v1(json!({}))).unwrap();
    assert!(matches!(policy.network, NetworkPlan::Isolated));
    let policy = resolved(v1(json!({"network": {"egress": {"default": "deny", "allow": [{"to": [{"cidr": "198.18.0.0/15"}], "ports": [{"protocol": "tcp", "port": 443}]}]}}}))).unwrap();
    assert!(matches!(policy.network, NetworkPlan::Filtered(_)));
    let policy = resolved(v1(
        json!({"runtimeConfig": {"networkProxy": "http://127.0.0.1:3128"}}),
    ))
    .unwrap();
    assert!(matches!(policy.network, NetworkPlan::ProxyOnly { .. }));
    let errors = rejection(v1(
        json!({"runtimeConfig": {"networkProxy": "http://10.0.0.1:3128"}}),
    ));
    assert!(errors.to_string().contains("localhost"), "{errors}");
}

#[test]
fn telemetry_is_accepted_and_the_development_contract_needs_its_flag() {
    assert!(resolved(v1(json!({"telemetry": {"enabled": false}}))).is_ok());
    let dev = json!({"version": "1.1.0-alpha", "process": {"commandLine": "true"}});
    assert!(parsed(&dev, false).is_err());
    assert!(parsed(&dev, true).is_ok());
    let test_feature =
        json!({"version": "1.1.0-alpha", "process": {"commandLine": "true"}, "test": {}});
    let config = parsed(&test_feature, true).unwrap();
    let errors = resolve(
        &config,
        &host(),
        &ResolveOptions {
            target: Target::OneShot { rootfs: None },
            identity: ME,
            hosts: Vec::new(),
            limits: Default::default(),
        },
    )
    .unwrap_err();
    assert!(errors.to_string().contains("test"), "{errors}");
}

#[test]
fn messages_never_quote_command_text_or_environment() {
    for version in ["0.8.0-alpha", "1.0.0"] {
        for process in [
            json!({"commandLine": "echo secret-one\u{0}"}),
            json!({"commandLine": "true", "env": ["secret-two"]}),
            json!({"commandLine": "true", "env": "TOKEN=secret-three"}),
            json!({"commandLine": "true", "env": ["A=secret-four\u{0}"]}),
            json!({"commandLine": ["secret-five"]}),
        ] {
            let config = json!({"version": version, "process": process});
            let text = parsed(&config, false).unwrap_err().to_string();
            assert!(!text.contains("secret"), "{version}: {text}");
        }
    }
}

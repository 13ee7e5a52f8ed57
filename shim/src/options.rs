//! What the shim learns from containerd besides the task itself: runtime options and where the
//! engine keeps its state.
//!
//! Runtime options arrive as a protobuf `Any`. For runtimes other than runc, containerd's CRI
//! plugin (and `ctr run --runtime-config-path`) sends `runtimeoptions.v1.Options`, whose
//! `ConfigPath` names the node configuration (`/etc/mxc/config.toml` otherwise).

use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::CodedInputStream;

/// The runtime options the shim honours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// The node configuration file (`ConfigPath`).
    pub config_path: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("runtime options ({type_url}): {reason}")]
pub struct OptionsError {
    type_url: String,
    reason: String,
}

/// Decodes the options of a Create request. Options of other shims' types (runc's, when a
/// configuration reuses a runc runtime table) carry nothing for this shim and are ignored.
pub fn decode(options: Option<&Any>) -> Result<RuntimeOptions, OptionsError> {
    let Some(any) = options else {
        return Ok(RuntimeOptions::default());
    };
    if !any.type_url.ends_with("runtimeoptions.v1.Options") {
        if !any.type_url.is_empty() {
            tracing::debug!(type_url = %any.type_url, "ignoring runtime options of another type");
        }
        return Ok(RuntimeOptions::default());
    }
    let error = |reason: String| OptionsError {
        type_url: any.type_url.clone(),
        reason,
    };
    let fields = runtime_options_fields(&any.value).map_err(|e| error(e.to_string()))?;
    if !fields.config_body.is_empty() {
        return Err(error(
            "ConfigBody is not supported: put the node configuration in a file and name it \
             with ConfigPath"
                .into(),
        ));
    }
    let config_path = (!fields.config_path.is_empty()).then(|| PathBuf::from(fields.config_path));
    if let Some(path) = &config_path {
        if !path.is_absolute() {
            return Err(error(format!(
                "ConfigPath {} must be an absolute path",
                path.display()
            )));
        }
    }
    Ok(RuntimeOptions { config_path })
}

#[derive(Default)]
struct RuntimeOptionsFields {
    config_path: String,
    config_body: Vec<u8>,
}

/// `message Options { string type_url = 1; string config_path = 2; bytes config_body = 3; }`
fn runtime_options_fields(
    bytes: &[u8],
) -> containerd_shim_protos::protobuf::Result<RuntimeOptionsFields> {
    let mut input = CodedInputStream::from_bytes(bytes);
    let mut fields = RuntimeOptionsFields::default();
    while let Some(tag) = input.read_raw_tag_or_eof()? {
        match tag {
            // field 1, length-delimited: type_url (unused)
            10 => {
                input.read_string()?;
            }
            18 => fields.config_path = input.read_string()?,
            26 => fields.config_body = input.read_bytes()?,
            other => {
                let wire_type = containerd_shim_protos::protobuf::rt::WireType::new(other & 7)
                    .ok_or_else(|| {
                        containerd_shim_protos::protobuf::Error::from(std::io::Error::other(
                            format!("invalid wire type in tag {other}"),
                        ))
                    })?;
                input.skip_field(wire_type)?;
            }
        }
    }
    Ok(fields)
}

/// Where the engine keeps the state of containerd's containers of `namespace`: beside
/// containerd's own state (`/run/containerd/mxc/<namespace>` for the default state directory,
/// as runc's is `/run/containerd/runc/<namespace>`), so that a containerd with a private
/// state directory keeps its containers private too. The bundle is
/// `<state>/io.containerd.runtime.v2.task/<namespace>/<id>`.
pub fn engine_root(bundle: &Path, namespace: &str) -> PathBuf {
    let state = bundle
        .parent()
        .and_then(Path::parent)
        .filter(|tasks| {
            tasks
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("io.containerd.runtime.v2"))
        })
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/run/containerd"));
    state.join("mxc").join(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(config_path: &str, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut field = |tag: u8, bytes: &[u8]| {
            out.push(tag);
            out.push(bytes.len() as u8);
            out.extend_from_slice(bytes);
        };
        field(10, b"ignored");
        field(18, config_path.as_bytes());
        if !body.is_empty() {
            field(26, body);
        }
        out
    }

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any {
            type_url: type_url.into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn config_path_from_runtime_options() {
        let opts = decode(Some(&any(
            "runtimeoptions.v1.Options",
            encode("/etc/mxc/node.toml", b""),
        )))
        .unwrap();
        assert_eq!(opts.config_path, Some(PathBuf::from("/etc/mxc/node.toml")));
        assert_eq!(decode(None).unwrap(), RuntimeOptions::default());
        assert_eq!(
            decode(Some(&any("containerd.runc.v1.Options", vec![8, 1]))).unwrap(),
            RuntimeOptions::default()
        );
        let err = decode(Some(&any(
            "runtimeoptions.v1.Options",
            encode("", b"policy_dir = '/x'"),
        )))
        .unwrap_err();
        assert!(
            err.to_string().contains("ConfigBody is not supported"),
            "{err}"
        );
        let err = decode(Some(&any(
            "runtimeoptions.v1.Options",
            encode("relative.toml", b""),
        )))
        .unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
    }

    #[test]
    fn engine_state_sits_beside_containerds() {
        assert_eq!(
            engine_root(
                Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc"),
                "k8s.io"
            ),
            Path::new("/run/containerd/mxc/k8s.io")
        );
        assert_eq!(
            engine_root(
                Path::new("/tmp/x/state/io.containerd.runtime.v2.task/default/c1"),
                "default"
            ),
            Path::new("/tmp/x/state/mxc/default")
        );
        assert_eq!(
            engine_root(Path::new("/somewhere/else"), "default"),
            Path::new("/run/containerd/mxc/default")
        );
    }
}

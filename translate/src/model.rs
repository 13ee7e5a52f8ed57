//! The MXC config as written: serde types that mirror MXC's JSON one to one, for schema
//! 0.6.0-alpha through 0.9.0-dev and the exact 1.x contracts. Stable objects reject unknown
//! members; `experimental` and its children are open, as in MXC's production parser. `null`
//! means "absent" here; the 1.x contracts refuse it (see `exact`), and they also decide which
//! version may use which member.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MxcConfig {
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    #[serde(rename = "_comment")]
    pub comment: Option<Value>,
    pub version: Option<String>,
    pub phase: Option<Phase>,
    pub sandbox_id: Option<String>,
    pub correlation_vector: Option<String>,
    pub container_id: Option<String>,
    pub containment: Option<Containment>,
    pub process: Option<Process>,
    pub lifecycle: Option<Lifecycle>,
    #[serde(alias = "appContainer")]
    pub process_container: Option<ProcessContainer>,
    pub lxc: Option<Lxc>,
    pub filesystem: Option<Filesystem>,
    pub fallback: Option<Fallback>,
    pub network: Option<Network>,
    pub runtime_config: Option<RuntimeConfig>,
    pub ui: Option<Ui>,
    #[serde(alias = "macos_sandbox")]
    pub seatbelt: Option<Seatbelt>,
    pub experimental: Option<Experimental>,
    /// 1.x: MXC's own telemetry for the run.
    pub telemetry: Option<Telemetry>,
    /// 1.x: WSLC settings (one-shot backend section, or `provision` settings); its shape
    /// depends on the request kind and is checked by the exact contract.
    pub wslc: Option<Value>,
    /// 1.x state-aware `provision` settings of IsolationSession.
    pub isolation_session: Option<Value>,
    /// 1.1.0-alpha: Hyperlight backend section.
    pub hyperlight: Option<Value>,
    /// 1.1.0-alpha: Windows Sandbox backend section.
    pub windows_sandbox: Option<Value>,
    /// 1.1.0-alpha: MXC's placeholder development feature.
    pub test: Option<TestFeature>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Provision,
    Start,
    Exec,
    Stop,
    Deprovision,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Provision => "provision",
            Phase::Start => "start",
            Phase::Exec => "exec",
            Phase::Stop => "stop",
            Phase::Deprovision => "deprovision",
        }
    }
}

/// The envelope of a request: one-shot, or one phase of MXC's state-aware lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    OneShot,
    StateAware(Phase),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Containment {
    Process,
    #[serde(rename = "processcontainer", alias = "appcontainer")]
    ProcessContainer,
    Vm,
    WindowsSandbox,
    Lxc,
    Microvm,
    Hyperlight,
    Wslc,
    #[serde(alias = "macos_sandbox")]
    Seatbelt,
    IsolationSession,
    Bubblewrap,
}

impl Containment {
    pub fn as_str(self) -> &'static str {
        match self {
            Containment::Process => "process",
            Containment::ProcessContainer => "processcontainer",
            Containment::Vm => "vm",
            Containment::WindowsSandbox => "windows_sandbox",
            Containment::Lxc => "lxc",
            Containment::Microvm => "microvm",
            Containment::Hyperlight => "hyperlight",
            Containment::Wslc => "wslc",
            Containment::Seatbelt => "seatbelt",
            Containment::IsolationSession => "isolation_session",
            Containment::Bubblewrap => "bubblewrap",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Process {
    pub command_line: Option<String>,
    pub cwd: Option<String>,
    pub env: Option<Vec<String>>,
    pub timeout: Option<u32>,
    /// 1.x: layer `env` on the backend's default environment instead of replacing it.
    pub inherit_default_env: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifecycle {
    pub destroy_on_exit: Option<bool>,
    pub preserve_policy: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessContainer {
    pub least_privilege: Option<bool>,
    pub learning_mode: Option<bool>,
    pub capabilities: Option<Vec<String>>,
    pub capture_denials: Option<CaptureDenials>,
    pub ui: Option<BaseProcessUi>,
    pub network: Option<ProcessContainerNetwork>,
    /// 1.x: paths that may be enumerated without read access.
    pub filesystem: Option<ProcessContainerFilesystem>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessContainerFilesystem {
    pub enumerate_paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessContainerNetwork {
    pub allowed_proxy_peer: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaptureDenials {
    pub mode: Option<CaptureDenialsMode>,
    pub output_path: Option<String>,
    pub retain_etl: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureDenialsMode {
    Block,
    Allow,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BaseProcessUi {
    pub isolation: Option<UiIsolation>,
    pub desktop_system_control: Option<bool>,
    pub system_settings: Option<String>,
    pub ime: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UiIsolation {
    Desktop,
    Handles,
    Atoms,
    Container,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lxc {
    pub distribution: Option<String>,
    pub release: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filesystem {
    pub readwrite_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub denied_paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fallback {
    pub allow_dacl_mutation: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    pub default_policy: Option<NetworkPolicy>,
    pub enforcement_mode: Option<NetworkEnforcement>,
    pub allow_local_network: Option<bool>,
    pub allowed_hosts: Option<Vec<String>>,
    pub blocked_hosts: Option<Vec<String>>,
    pub proxy: Option<Proxy>,
    pub egress: Option<NetworkEgress>,
    pub ingress: Option<NetworkIngress>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkEgress {
    pub default: Option<NetworkAction>,
    pub allow: Option<Vec<NetworkRule>>,
    pub deny: Option<Vec<NetworkRule>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkIngress {
    pub default: Option<NetworkAction>,
    pub host_loopback: Option<NetworkAction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkAction {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkRule {
    pub to: Option<Vec<NetworkPeer>>,
    pub ports: Option<Vec<NetworkPort>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPeer {
    pub cidr: String,
    pub except: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPort {
    pub protocol: Option<NetworkProtocol>,
    pub port: Option<u16>,
    pub end_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkProtocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkPolicy {
    Allow,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkEnforcement {
    Capabilities,
    Firewall,
    Both,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Proxy {
    pub localhost: Option<u16>,
    pub builtin_test_server: Option<bool>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeConfig {
    pub network_proxy: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ui {
    pub disable: Option<bool>,
    pub clipboard: Option<ClipboardPolicy>,
    pub injection: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipboardPolicy {
    None,
    Read,
    Write,
    All,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seatbelt {
    pub profile_override: Option<String>,
    pub gui_access: Option<bool>,
    pub launch_method: Option<LaunchMethod>,
    pub nested_pty: Option<bool>,
    pub keychain_access: Option<bool>,
    pub extra_mach_lookups: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchMethod {
    Exec,
    Open,
}

/// Open in production: unknown members are accepted (and ignored) at every level below.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Experimental {
    pub test: Option<TestFeature>,
    pub windows_sandbox: Option<WindowsSandbox>,
    pub wslc: Option<Wslc>,
    pub isolation_session: Option<IsolationSession>,
    #[serde(alias = "macos_sandbox")]
    pub seatbelt: Option<Seatbelt>,
    pub telemetry: Option<Telemetry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Telemetry {
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestFeature {
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowsSandbox {
    pub idle_timeout_ms: Option<u32>,
    pub idle_timeout: Option<u32>,
    pub daemon_pipe_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wslc {
    pub target_os: Option<String>,
    pub image: Option<String>,
    pub image_tar_path: Option<String>,
    pub cpu_count: Option<u32>,
    pub memory_mb: Option<u64>,
    pub gpu: Option<bool>,
    pub storage_path: Option<String>,
    pub port_mappings: Option<Vec<PortMapping>>,
    pub provision: Option<WslcProvision>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WslcProvision {
    pub image: Option<String>,
    pub image_tar_path: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub windows_port: u16,
    pub container_port: u16,
    pub protocol: Option<TransportProtocol>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportProtocol {
    Tcp,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IsolationSession {
    pub provision: Option<IsolationSessionProvision>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IsolationSessionProvision {
    pub app_id: Option<String>,
}

/**
 * GENERATED FILE — DO NOT EDIT BY HAND.
 *
 * Emitted from the exact MXC 1.0.0 contract by
 * mxc_schema_gen. This is a drift oracle, not public API, and is not exported
 * from the SDK.
 *
 * Regenerate with:
 *   cargo run --manifest-path src/Cargo.toml -p mxc_schema_gen -- types --version 1.0.0 --out sdk/node/src/generated/v1_0_0/wire.ts
 */
/**
 * Windows denial-capture settings.
 */
export interface CaptureDenials {
    /**
     * How each ungranted access is handled while it is recorded.
     */
    mode?: CaptureDenialsMode;
    /**
     * Optional destination for the generated denial report.
     */
    outputPath?: string;
    /**
     * Whether to retain the sealed ETL trace after analysis. Retained traces can contain sensitive resource paths and identifiers; callers are responsible for deleting them.
     */
    retainEtl?: boolean;
}
export type CaptureDenialsMode = "block" | "allow";
export type DeprovisionPhase = "deprovision";
/**
 * A complete state-aware `deprovision` request.
 */
export interface DeprovisionRequest {
    /**
     * Optional JSON Schema reference for editor validation.
     */
    $schema?: string;
    /**
     * Optional human-readable annotation ignored by the runtime.
     */
    _comment?: unknown;
    /**
     * Exact `deprovision` phase marker.
     */
    phase: DeprovisionPhase;
    /**
     * Identifier of the sandbox to deprovision.
     */
    sandboxId: string;
    /**
     * Optional telemetry configuration.
     */
    telemetry?: Telemetry;
    /**
     * Exact published contract version.
     */
    version: Version;
}
export type ExecPhase = "exec";
/**
 * A complete state-aware `exec` request.
 */
export interface ExecRequest {
    /**
     * Optional JSON Schema reference for editor validation.
     */
    $schema?: string;
    /**
     * Optional human-readable annotation ignored by the runtime.
     */
    _comment?: unknown;
    /**
     * Optional per-execution network settings.
     */
    network?: Network;
    /**
     * Exact `exec` phase marker.
     */
    phase: ExecPhase;
    /**
     * Process to execute in the sandbox.
     */
    process: Process;
    /**
     * Optional per-execution runtime values, including the cooperative proxy URL.
     */
    runtimeConfig?: RuntimeConfig;
    /**
     * Identifier of the sandbox to execute in.
     */
    sandboxId: string;
    /**
     * Optional telemetry configuration.
     */
    telemetry?: Telemetry;
    /**
     * Exact published contract version.
     */
    version: Version;
}
/**
 * Operator consent for containment fallback behavior.
 */
export interface Fallback {
    /**
     * Whether the runtime may mutate host filesystem DACLs as a fallback.
     */
    allowDaclMutation?: boolean;
}
/**
 * Filesystem access policy.
 */
export interface Filesystem {
    /**
     * Optional paths denied access.
     */
    deniedPaths?: string[];
    /**
     * Optional paths granted read-only access.
     */
    readonlyPaths?: string[];
    /**
     * Optional paths granted read-write access.
     */
    readwritePaths?: string[];
}
export type IsolationSessionContainment = "isolation_session";
/**
 * The canonical unrestricted-network posture.
 */
export interface IsolationSessionNetwork {
    /**
     * Required unrestricted outbound posture.
     */
    egress: IsolationSessionNetworkEgress;
    /**
     * Required unrestricted inbound and host-loopback posture.
     */
    ingress: IsolationSessionNetworkIngress;
}
export type IsolationSessionNetworkAllow = "allow";
/**
 * Unrestricted outbound posture.
 */
export interface IsolationSessionNetworkEgress {
    /**
     * Allow outbound traffic by default.
     */
    default: IsolationSessionNetworkAllow;
}
/**
 * Unrestricted inbound and host-loopback posture.
 */
export interface IsolationSessionNetworkIngress {
    /**
     * Allow private-network inbound traffic by default.
     */
    default: IsolationSessionNetworkAllow;
    /**
     * Allow bidirectional host-loopback connectivity.
     */
    hostLoopback: IsolationSessionNetworkAllow;
}
/**
 * IsolationSession settings accepted during provisioning.
 */
export interface IsolationSessionProvision {
    /**
     * Optional application identifier carried by the sandbox identity.
     */
    appId?: string;
}
/**
 * A complete state-aware `provision` request for IsolationSession.
 *
 * The backend cannot restrict networking, so `network` is required and must describe its actual unrestricted posture through the standard directional all-allow shape.
 */
export interface IsolationSessionProvisionRequest {
    /**
     * Optional JSON Schema reference for editor validation.
     */
    $schema?: string;
    /**
     * Optional human-readable annotation ignored by the runtime.
     */
    _comment?: unknown;
    /**
     * Exact `isolation_session` containment marker.
     */
    containment: IsolationSessionContainment;
    /**
     * Optional IsolationSession provision settings.
     */
    isolationSession?: StateAwareIsolationSession;
    /**
     * Required unrestricted network posture.
     */
    network: IsolationSessionNetwork;
    /**
     * Exact `provision` phase marker.
     */
    phase: ProvisionPhase;
    /**
     * Optional telemetry configuration.
     */
    telemetry?: Telemetry;
    /**
     * Exact published contract version.
     */
    version: Version;
}
/**
 * Container lifecycle settings.
 */
export interface Lifecycle {
    /**
     * Whether to destroy the container when execution ends.
     */
    destroyOnExit?: boolean;
    /**
     * Whether to preserve applied policy after execution ends.
     */
    preservePolicy?: boolean;
}
/**
 * Linux LXC distribution settings.
 */
export interface Lxc {
    /**
     * The Linux distribution name.
     */
    distribution: string;
    /**
     * The distribution release.
     */
    release: string;
}
/**
 * Network access policy shared by the stable containment backends.
 */
export interface Network {
    /**
     * Optional outbound network rules.
     */
    egress?: NetworkEgress;
    /**
     * Optional inbound and host-loopback network rules.
     */
    ingress?: NetworkIngress;
}
export type NetworkAction = "allow" | "deny";
/**
 * Outbound network policy.
 */
export interface NetworkEgress {
    /**
     * Optional explicit allow rules.
     */
    allow?: NetworkRule[];
    /**
     * Optional action applied when no explicit rule matches.
     */
    default?: NetworkAction;
    /**
     * Optional explicit deny rules. Deny takes precedence over allow.
     */
    deny?: NetworkRule[];
}
/**
 * Inbound and host-loopback network policy.
 */
export interface NetworkIngress {
    /**
     * Optional default action for private-network inbound traffic.
     */
    default?: NetworkAction;
    /**
     * Optional bidirectional host-loopback connectivity action.
     */
    hostLoopback?: NetworkAction;
}
/**
 * A CIDR destination, optionally excluding narrower ranges within it.
 */
export interface NetworkPeer {
    /**
     * The IPv4 or IPv6 CIDR this destination matches.
     */
    cidr: string;
    /**
     * Optional CIDRs excluded from this destination.
     */
    except?: string[];
}
/**
 * A protocol and destination-port selector.
 */
export interface NetworkPort {
    /**
     * Optional inclusive end of a destination-port range. Requires `port`.
     */
    endPort?: number;
    /**
     * Optional destination port. Omission matches every port.
     */
    port?: number;
    /**
     * Optional transport protocol. Defaults to `any`.
     */
    protocol?: NetworkProtocol;
}
export type NetworkProtocol = "tcp" | "udp" | "icmp" | "any";
/**
 * One outbound rule, matching destinations and ports.
 */
export interface NetworkRule {
    /**
     * Optional destination protocols and ports. Omission matches all.
     */
    ports?: NetworkPort[];
    /**
     * Optional destination CIDRs. Omission matches both IP families.
     */
    to?: NetworkPeer[];
}
export type NonEmptyString = string;
export type OneShotContainment = "process" | "processcontainer" | "lxc" | "bubblewrap" | "seatbelt" | "isolation_session" | "wslc";
/**
 * A complete one-shot `1.0.0` configuration request.
 */
export interface OneShotRequest {
    /**
     * Optional JSON Schema reference for editor validation.
     */
    $schema?: string;
    /**
     * Optional human-readable annotation ignored by the runtime.
     */
    _comment?: unknown;
    /**
     * Optional externally assigned container identifier.
     */
    containerId?: string;
    /**
     * Optional containment selection.
     */
    containment?: OneShotContainment;
    /**
     * Optional fallback consent.
     */
    fallback?: Fallback;
    /**
     * Optional filesystem policy.
     */
    filesystem?: Filesystem;
    /**
     * Optional lifecycle settings.
     */
    lifecycle?: Lifecycle;
    /**
     * Optional LXC distribution settings.
     */
    lxc?: Lxc;
    /**
     * Optional network policy.
     */
    network?: Network;
    /**
     * The process to execute.
     */
    process: Process;
    /**
     * Optional ProcessContainer settings.
     */
    processContainer?: ProcessContainer;
    /**
     * Optional runtime configuration settings.
     */
    runtimeConfig?: RuntimeConfig;
    /**
     * Optional macOS Seatbelt configuration.
     */
    seatbelt?: Seatbelt;
    /**
     * Optional telemetry configuration.
     */
    telemetry?: Telemetry;
    /**
     * Optional cross-platform user-interface policy.
     */
    ui?: Ui;
    /**
     * The exact contract version marker.
     */
    version: Version;
    /**
     * Optional one-shot WSLC backend settings.
     */
    wslc?: OneShotWslc;
}
/**
 * One-shot WSLC backend settings.
 */
export interface OneShotWslc {
    /**
     * Requested virtual CPU count.
     */
    cpuCount?: number;
    /**
     * Whether GPU passthrough is enabled.
     */
    gpu?: boolean;
    /**
     * Container image reference.
     */
    image?: string;
    /**
     * Path to a local image tarball to import.
     */
    imageTarPath?: string;
    /**
     * Requested memory limit in megabytes.
     */
    memoryMb?: number;
    /**
     * Optional host-to-container TCP port mappings.
     */
    portMappings?: PortMapping[];
    /**
     * Optional storage path override.
     */
    storagePath?: string;
    /**
     * Target operating system inside the container.
     */
    targetOs?: string;
}
/**
 * A host-to-container WSLC port mapping.
 */
export interface PortMapping {
    /**
     * Non-zero TCP port inside the container.
     */
    containerPort: number;
    /**
     * Optional transport protocol. Only TCP is currently supported.
     */
    protocol?: TransportProtocol;
    /**
     * Non-zero TCP port on the Windows host.
     */
    windowsPort: number;
}
/**
 * Process execution settings.
 */
export interface Process {
    /**
     * The non-empty command line to execute.
     */
    commandLine: NonEmptyString;
    /**
     * Optional working directory.
     */
    cwd?: string;
    /**
     * Optional environment entries encoded as `KEY=VALUE` strings.
     *
     * Omitted gives the backend's default environment; supplied (including as an empty array) is used verbatim unless `inheritDefaultEnv` is set.
     */
    env?: string[];
    /**
     * Layer `env` on top of the backend's default environment rather than replacing it.
     */
    inheritDefaultEnv?: boolean;
    /**
     * Optional execution timeout in milliseconds.
     */
    timeout?: number;
}
/**
 * ProcessContainer-specific settings.
 */
export interface ProcessContainer {
    /**
     * Optional AppContainer capability names. Each entry must contain one name; commas are rejected because BaseContainer uses them as its wire delimiter. `learningModeLogging` and `permissiveLearningMode` are reserved; use `learningMode`, `--audit`, or `captureDenials` instead.
     */
    capabilities?: ProcessContainerCapability[];
    /**
     * Optional capture-denials policy.
     */
    captureDenials?: CaptureDenials;
    /**
     * Optional ProcessContainer-specific filesystem policy.
     */
    filesystem?: ProcessContainerFilesystem;
    /**
     * Optional learning-mode (deny-and-record)
     */
    learningMode?: boolean;
    /**
     * Whether least-privilege mode is enabled.
     */
    leastPrivilege?: boolean;
    /**
     * Optional ProcessContainer-specific network settings.
     */
    network?: ProcessContainerNetwork;
    /**
     * Optional ProcessContainer-specific user-interface policy.
     */
    ui?: ProcessContainerUi;
}
export type ProcessContainerCapability = string;
/**
 * ProcessContainer-specific filesystem policy.
 */
export interface ProcessContainerFilesystem {
    /**
     * Optional paths that may be queried or enumerated without granting file-content reads.
     */
    enumeratePaths?: string[];
}
/**
 * ProcessContainer-specific network settings.
 */
export interface ProcessContainerNetwork {
    /**
     * Optional loopback peer the contained process may reach in addition to the configured runtime proxy. Requires `runtimeConfig.networkProxy`.
     */
    allowedProxyPeer?: string;
}
/**
 * ProcessContainer-specific user-interface policy.
 */
export interface ProcessContainerUi {
    /**
     * Whether desktop system control is allowed.
     */
    desktopSystemControl?: boolean;
    /**
     * Whether Input Method Editor access is allowed.
     */
    ime?: boolean;
    /**
     * Optional desktop-resource isolation level.
     */
    isolation?: ProcessContainerUiIsolation;
    /**
     * Optional system-settings access level.
     */
    systemSettings?: string;
}
export type ProcessContainerUiIsolation = "container" | "desktop" | "handles" | "atoms";
export type ProvisionPhase = "provision";
/**
 * Runtime configuration supplied alongside the sandbox policy.
 */
export interface RuntimeConfig {
    /**
     * Optional HTTP/S proxy URL. Host-process backends require a localhost endpoint; WSLc requires an endpoint routable from its container and inherits the provisioned networking mode on exec.
     */
    networkProxy?: string;
}
/**
 * macOS Seatbelt backend settings.
 */
export interface Seatbelt {
    /**
     * Additional Mach service global names the process may resolve.
     */
    extraMachLookups?: string[];
    /**
     * Whether GUI application access is allowed.
     */
    guiAccess?: boolean;
    /**
     * Whether macOS Keychain access is allowed.
     */
    keychainAccess?: boolean;
    /**
     * Whether the contained process may allocate nested pseudo-terminals.
     */
    nestedPty?: boolean;
    /**
     * Optional override of the generated sandbox profile.
     */
    profileOverride?: string;
}
export type StartPhase = "start";
/**
 * A complete state-aware `start` request.
 */
export interface StartRequest {
    /**
     * Optional JSON Schema reference for editor validation.
     */
    $schema?: string;
    /**
     * Optional human-readable annotation ignored by the runtime.
     */
    _comment?: unknown;
    /**
     * Exact `start` phase marker.
     */
    phase: StartPhase;
    /**
     * Identifier returned by the provision phase.
     */
    sandboxId: string;
    /**
     * Optional telemetry configuration.
     */
    telemetry?: Telemetry;
    /**
     * Exact published contract version.
     */
    version: Version;
}
/**
 * State-aware IsolationSession settings.
 */
export interface StateAwareIsolationSession {
    /**
     * Optional provision-phase settings.
     */
    provision?: IsolationSessionProvision;
}
/**
 * State-aware WSLC settings.
 */
export interface StateAwareWslc {
    /**
     * Optional provision-phase settings.
     */
    provision?: WslcProvision;
}
export type StopPhase = "stop";
/**
 * A complete state-aware `stop` request.
 */
export interface StopRequest {
    /**
     * Optional JSON Schema reference for editor validation.
     */
    $schema?: string;
    /**
     * Optional human-readable annotation ignored by the runtime.
     */
    _comment?: unknown;
    /**
     * Exact `stop` phase marker.
     */
    phase: StopPhase;
    /**
     * Identifier returned by the provision phase.
     */
    sandboxId: string;
    /**
     * Optional telemetry configuration.
     */
    telemetry?: Telemetry;
    /**
     * Exact published contract version.
     */
    version: Version;
}
/**
 * Telemetry settings.
 */
export interface Telemetry {
    /**
     * Whether telemetry is enabled.
     */
    enabled?: boolean;
}
export type TransportProtocol = "tcp";
/**
 * Cross-platform user-interface policy.
 */
export interface Ui {
    /**
     * Optional clipboard access level.
     */
    clipboard?: UiClipboard;
    /**
     * Whether visible user interface is disabled.
     */
    disable?: boolean;
    /**
     * Whether keyboard and mouse input injection is allowed.
     */
    injection?: boolean;
}
export type UiClipboard = "none" | "read" | "write" | "all";
export type Version = "1.0.0";
export type WslcContainment = "wslc";
/**
 * WSLC settings accepted during provisioning.
 */
export interface WslcProvision {
    /**
     * Optional container image reference.
     */
    image?: string;
    /**
     * Optional path to a local container image archive.
     */
    imageTarPath?: string;
}
/**
 * A complete state-aware `provision` request for WSLC.
 */
export interface WslcProvisionRequest {
    /**
     * Optional JSON Schema reference for editor validation.
     */
    $schema?: string;
    /**
     * Optional human-readable annotation ignored by the runtime.
     */
    _comment?: unknown;
    /**
     * Exact `wslc` containment marker.
     */
    containment: WslcContainment;
    /**
     * Optional filesystem policy fixed at provision time.
     */
    filesystem?: Filesystem;
    /**
     * Optional network policy fixed at provision time.
     */
    network?: Network;
    /**
     * Exact `provision` phase marker.
     */
    phase: ProvisionPhase;
    /**
     * Optional telemetry configuration.
     */
    telemetry?: Telemetry;
    /**
     * Exact published contract version.
     */
    version: Version;
    /**
     * Optional WSLC provision settings.
     */
    wslc?: StateAwareWslc;
}
/**
 * Exact immutable MXC published configuration contract.
 */
export type MXCConfiguration = OneShotRequest | DeprovisionRequest | StopRequest | ExecRequest | StartRequest | WslcProvisionRequest | IsolationSessionProvisionRequest;
//# sourceMappingURL=wire.d.ts.map
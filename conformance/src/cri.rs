//! A CRI v1 client on the private containerd's socket, driving its CRI plugin as a kubelet
//! does (`runtime_handler` = the `RuntimeClass` handler). Calls are blocking: each runs on a
//! small tokio runtime that the client owns.

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ExecSyncResponse, ImageSpec, KeyValue,
    LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, ListContainersRequest, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PodSandboxStatusRequest,
    PodSandboxStatusResponse, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StatusRequest, StopContainerRequest,
    StopPodSandboxRequest, VersionRequest, VersionResponse,
};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::command::poll;
use crate::containerd::Containerd;

/// How long one CRI call may take.
pub const CALL_LIMIT: Duration = Duration::from_secs(120);

/// A connected CRI client.
pub struct Cri {
    tokio: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    log_root: PathBuf,
}

impl Cri {
    /// Connects to `containerd`'s CRI plugin and waits until it reports ready. Pod logs go
    /// under the containerd's directory.
    pub fn connect(containerd: &Containerd) -> Result<Cri> {
        Cri::connect_to(&containerd.address(), &containerd.dir().join("pod-logs"))
    }

    /// Connects to the CRI endpoint `socket`; pod log directories go under `log_root`.
    pub fn connect_to(socket: &Path, log_root: &Path) -> Result<Cri> {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a tokio runtime")?;
        let socket = socket.to_path_buf();
        let channel = tokio
            .block_on(async move {
                Endpoint::try_from("http://[::]:50051")?
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let socket = socket.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                UnixStream::connect(socket).await?,
                            ))
                        }
                    }))
                    .await
            })
            .context("connecting to the CRI socket")?;
        let mut cri = Cri {
            tokio,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            log_root: log_root.to_path_buf(),
        };
        cri.wait_ready()?;
        Ok(cri)
    }

    fn wait_ready(&mut self) -> Result<()> {
        poll(Duration::from_secs(60), || {
            self.version()?;
            let status = self
                .call(|mut rt| async move { rt.status(StatusRequest { verbose: false }).await })?;
            let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
            let runtime_ready = conditions
                .iter()
                .any(|c| c.r#type == "RuntimeReady" && c.status);
            Ok(runtime_ready.then_some(()))
        })
        .context("waiting for the CRI plugin to be ready")
    }

    /// Runs `future` to completion on this client's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.tokio.block_on(future)
    }

    /// The raw runtime service, for calls without a helper here (use with [`Cri::block_on`]).
    pub fn runtime_service(&mut self) -> &mut RuntimeServiceClient<Channel> {
        &mut self.runtime
    }

    /// The raw image service.
    pub fn image_service(&mut self) -> &mut ImageServiceClient<Channel> {
        &mut self.images
    }

    fn call<T, F, Fut>(&mut self, f: F) -> Result<T>
    where
        F: FnOnce(RuntimeServiceClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.runtime.clone();
        self.tokio.block_on(async move {
            match tokio::time::timeout(CALL_LIMIT, f(client)).await {
                Ok(Ok(response)) => Ok(response.into_inner()),
                Ok(Err(status)) => Err(anyhow!("CRI: {:?}: {}", status.code(), status.message())),
                Err(_) => Err(anyhow!("CRI call did not finish within {CALL_LIMIT:?}")),
            }
        })
    }

    pub fn version(&mut self) -> Result<VersionResponse> {
        self.call(|mut rt| async move {
            rt.version(VersionRequest {
                version: "v1".into(),
            })
            .await
        })
    }

    /// A pod config with a unique name; `host_network` shares the node's network namespace.
    /// Its log directory is created under the client's log root.
    pub fn pod_config(&self, name: &str, host_network: bool) -> Result<PodSandboxConfig> {
        let log_directory = self.log_root.join(name);
        fs::create_dir_all(&log_directory)?;
        let network = if host_network {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        };
        Ok(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: crate::unique_name("uid"),
                namespace: "mxc-conformance".into(),
                attempt: 0,
            }),
            hostname: if host_network {
                String::new()
            } else {
                name.into()
            },
            log_directory: log_directory.to_string_lossy().into_owned(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// A container config for a pod created from `pod_config`, running `command` in `image`
    /// and logging to `NAME.log` in the pod's log directory. Like a kubelet, it shares the
    /// pod's network and IPC namespaces and gives the container a PID namespace of its own.
    pub fn container_config(
        pod_config: &PodSandboxConfig,
        name: &str,
        image: &str,
        command: &[&str],
    ) -> ContainerConfig {
        let pod_namespaces = pod_config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            envs: vec![KeyValue {
                key: "MXC_CONFORMANCE".into(),
                value: "1".into(),
            }],
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: pod_namespaces.network,
                        ipc: pod_namespaces.ipc,
                        pid: NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `RunPodSandbox` with `handler` (`runc`, `mxc`); the sandbox id.
    pub fn run_pod_sandbox(&mut self, config: &PodSandboxConfig, handler: &str) -> Result<String> {
        let request = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        Ok(self
            .call(|mut rt| async move { rt.run_pod_sandbox(request).await })?
            .pod_sandbox_id)
    }

    /// `PodSandboxStatus`, verbose (its `info` has containerd's view, with the netns path).
    pub fn pod_sandbox_status(&mut self, id: &str) -> Result<PodSandboxStatusResponse> {
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        };
        self.call(|mut rt| async move { rt.pod_sandbox_status(request).await })
    }

    /// The pod's IP address, empty for a host-network pod.
    pub fn pod_ip(&mut self, id: &str) -> Result<String> {
        Ok(self
            .pod_sandbox_status(id)?
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default())
    }

    pub fn stop_pod_sandbox(&mut self, id: &str) -> Result<()> {
        let request = StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call(|mut rt| async move { rt.stop_pod_sandbox(request).await })
            .map(drop)
    }

    pub fn remove_pod_sandbox(&mut self, id: &str) -> Result<()> {
        let request = RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call(|mut rt| async move { rt.remove_pod_sandbox(request).await })
            .map(drop)
    }

    /// `CreateContainer` in pod `pod_id` (created from `pod_config`); the container id.
    pub fn create_container(
        &mut self,
        pod_id: &str,
        config: &ContainerConfig,
        pod_config: &PodSandboxConfig,
    ) -> Result<String> {
        let request = CreateContainerRequest {
            pod_sandbox_id: pod_id.into(),
            config: Some(config.clone()),
            sandbox_config: Some(pod_config.clone()),
        };
        Ok(self
            .call(|mut rt| async move { rt.create_container(request).await })?
            .container_id)
    }

    pub fn start_container(&mut self, id: &str) -> Result<()> {
        let request = StartContainerRequest {
            container_id: id.into(),
        };
        self.call(|mut rt| async move { rt.start_container(request).await })
            .map(drop)
    }

    /// `StopContainer` with a grace period of `timeout_seconds`.
    pub fn stop_container(&mut self, id: &str, timeout_seconds: i64) -> Result<()> {
        let request = StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_seconds,
        };
        self.call(|mut rt| async move { rt.stop_container(request).await })
            .map(drop)
    }

    pub fn remove_container(&mut self, id: &str) -> Result<()> {
        let request = RemoveContainerRequest {
            container_id: id.into(),
        };
        self.call(|mut rt| async move { rt.remove_container(request).await })
            .map(drop)
    }

    pub fn container_status(&mut self, id: &str) -> Result<ContainerStatus> {
        let request = ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.call(|mut rt| async move { rt.container_status(request).await })?
            .status
            .ok_or_else(|| anyhow!("CRI: no status for container {id}"))
    }

    /// Waits (at most `limit`) until container `id` has exited; its final status.
    pub fn wait_exited(&mut self, id: &str, limit: Duration) -> Result<ContainerStatus> {
        poll(limit, || {
            let status = self.container_status(id)?;
            Ok((status.state == ContainerState::ContainerExited as i32).then_some(status))
        })
        .with_context(|| format!("waiting for container {id} to exit"))
    }

    /// `ExecSync` of `cmd` in container `id`, with the CRI's own timeout in seconds.
    pub fn exec_sync(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout_seconds: i64,
    ) -> Result<ExecSyncResponse> {
        let request = ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_seconds,
        };
        self.call(|mut rt| async move { rt.exec_sync(request).await })
    }

    /// What container `name` of a pod created with `pod_config` wrote (the CRI log format:
    /// `TIME STREAM TAG MESSAGE` per line), reduced to the messages.
    pub fn container_log(&self, pod_config: &PodSandboxConfig, name: &str) -> Result<String> {
        let path = Path::new(&pod_config.log_directory).join(format!("{name}.log"));
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(text
            .lines()
            .filter_map(|line| line.splitn(4, ' ').nth(3))
            .map(|message| format!("{message}\n"))
            .collect())
    }

    /// Stops and removes every container and pod sandbox the CRI plugin knows.
    pub fn remove_everything(&mut self) -> Result<()> {
        let containers = self
            .call(|mut rt| async move {
                rt.list_containers(ListContainersRequest { filter: None })
                    .await
            })?
            .containers;
        for container in containers {
            let _ = self.stop_container(&container.id, 0);
            self.remove_container(&container.id)?;
        }
        let pods = self
            .call(|mut rt| async move {
                rt.list_pod_sandbox(ListPodSandboxRequest { filter: None })
                    .await
            })?
            .items;
        for pod in pods {
            self.stop_pod_sandbox(&pod.id)?;
            self.remove_pod_sandbox(&pod.id)?;
        }
        Ok(())
    }

    /// The path of the network namespace of sandbox `id`, from the verbose status (empty for a
    /// host-network pod).
    pub fn pod_netns_path(&mut self, id: &str) -> Result<Option<PathBuf>> {
        let info: HashMap<String, String> = self.pod_sandbox_status(id)?.info;
        let Some(raw) = info.get("info") else {
            bail!("CRI: the verbose status of {id} has no `info`");
        };
        let info: serde_json::Value = serde_json::from_str(raw)?;
        let namespaces = info
            .pointer("/runtimeSpec/linux/namespaces")
            .and_then(|n| n.as_array())
            .cloned()
            .unwrap_or_default();
        Ok(namespaces
            .iter()
            .find(|ns| ns["type"] == "network")
            .and_then(|ns| ns["path"].as_str())
            .filter(|path| !path.is_empty())
            .map(PathBuf::from))
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        // Through the CRI, so that CNI teardown runs; the containerd's own drop is the
        // fallback.
        let _ = self.remove_everything();
    }
}

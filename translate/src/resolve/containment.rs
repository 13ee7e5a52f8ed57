//! The containment section: which backend, which profile (host baseline, image root, bundle),
//! the single-backend-section rule, and fields that are valid MXC but that a Linux sandbox cannot
//! honour.

use super::Target;
use crate::error::{Class, Report};
use crate::model::{self, Containment};
use crate::policy::Profile;

pub(super) fn profile(
    report: &mut Report,
    model: &model::MxcConfig,
    containment: Containment,
    target: &Target,
) -> Profile {
    let rootfs = match target {
        Target::OneShot { rootfs } => rootfs.clone(),
        Target::Bundle => return Profile::Bundle,
    };
    match containment {
        Containment::Process | Containment::Bubblewrap => match rootfs {
            Some(path) => Profile::Rootfs {
                path,
                distribution: None,
            },
            None => Profile::HostBaseline,
        },
        Containment::Lxc => {
            let lxc = model.lxc.clone().unwrap_or_default();
            let distribution = match (lxc.distribution, lxc.release) {
                (Some(d), Some(r)) if !d.is_empty() && !r.is_empty() => Some((d, r)),
                _ => {
                    report.reject_path("lxc", "LXC distribution and release are required");
                    None
                }
            };
            match rootfs {
                Some(path) => Profile::Rootfs { path, distribution },
                None => {
                    let image = distribution
                        .map(|(d, r)| format!("{d}:{r}"))
                        .unwrap_or_else(|| "the distribution".into());
                    report.reject(
                        "containment",
                        "lxc",
                        format!(
                            "'lxc' runs an image root filesystem: pass --rootfs DIR with an \
                             unpacked {image} root filesystem"
                        ),
                    );
                    Profile::HostBaseline
                }
            }
        }
        other => {
            report.classed(Class::Containment, |report| {
                report.reject(
                    "containment",
                    other.as_str(),
                    format!(
                        "the '{}' backend is not available on Linux; use 'process', \
                         'bubblewrap' or 'lxc'",
                        other.as_str()
                    ),
                )
            });
            Profile::HostBaseline
        }
    }
}

/// MXC's single-backend-section rule with Linux resolution: `process`/omitted/`bubblewrap`
/// allow no backend section, `lxc` allows `lxc`. A document problem in MXC (exit 1).
pub(super) fn backend_sections(
    report: &mut Report,
    model: &model::MxcConfig,
    containment: Containment,
) {
    let allowed = match containment {
        Containment::Lxc => Some("lxc"),
        Containment::ProcessContainer => Some("processContainer"),
        Containment::Seatbelt => Some("seatbelt"),
        Containment::Wslc => Some("wslc"),
        Containment::Hyperlight => Some("hyperlight"),
        Containment::WindowsSandbox => Some("windowsSandbox"),
        _ => None,
    };
    let experimental = model.experimental.clone().unwrap_or_default();
    let present = [
        ("processContainer", model.process_container.is_some()),
        ("lxc", model.lxc.is_some()),
        ("seatbelt", model.seatbelt.is_some()),
        ("wslc", model.wslc.is_some()),
        ("hyperlight", model.hyperlight.is_some()),
        ("windowsSandbox", model.windows_sandbox.is_some()),
        (
            "experimental.windows_sandbox",
            experimental.windows_sandbox.is_some(),
        ),
        ("experimental.wslc", experimental.wslc.is_some()),
        (
            "experimental.isolation_session",
            experimental.isolation_session.is_some(),
        ),
    ];
    for (section, is_present) in present {
        if is_present && Some(section) != allowed {
            let reason = match allowed {
                Some(name) => format!(
                    "multiple containment backends configured: 'containment' is '{}' (allows the \
                     '{name}' section); only one backend section is allowed, remove this one",
                    containment.as_str()
                ),
                None => format!(
                    "multiple containment backends configured: 'containment' is '{}' (no \
                     per-backend section is defined for it on Linux); remove this section",
                    containment.as_str()
                ),
            };
            report.classed(Class::Request, |report| report.reject_path(section, reason));
        }
    }
}

/// Fields that are valid MXC but that a Linux sandbox cannot honour: rejected, never ignored.
pub(super) fn unsupported_sections(report: &mut Report, model: &model::MxcConfig) {
    if let Some(ui) = &model.ui {
        if ui.disable == Some(false) {
            report.reject(
                "ui.disable",
                false,
                "UI access cannot be granted: the sandbox has no display, no audio and no \
                 session bus, and a private network namespace hides abstract sockets",
            );
        }
        if ui
            .clipboard
            .is_some_and(|c| c != model::ClipboardPolicy::None)
        {
            report.reject_path(
                "ui.clipboard",
                "clipboard access cannot be granted on Linux",
            );
        }
        if ui.injection == Some(true) {
            report.reject(
                "ui.injection",
                true,
                "UI input injection cannot be granted on Linux",
            );
        }
    }
    if let Some(lifecycle) = &model.lifecycle {
        if lifecycle.destroy_on_exit == Some(false) {
            report.reject(
                "lifecycle.destroyOnExit",
                false,
                "mxc-oci always destroys a one-shot sandbox when its command exits; keeping it \
                 for reuse is not supported",
            );
        }
        if lifecycle.preserve_policy == Some(true) {
            report.reject(
                "lifecycle.preservePolicy",
                true,
                "mxc-oci keeps no policy state outside the sandbox's own namespaces, so there is \
                 nothing to preserve after exit",
            );
        }
    }
    if let Some(fallback) = &model.fallback {
        if fallback.allow_dacl_mutation == Some(true) {
            report.reject(
                "fallback.allowDaclMutation",
                true,
                "Windows-only: mxc-oci never changes host permissions; set it to false or remove it",
            );
        }
    }
    if let Some(experimental) = &model.experimental {
        let used = experimental.test.is_some()
            || experimental.telemetry.is_some()
            || experimental.windows_sandbox.is_some()
            || experimental.wslc.is_some()
            || experimental.isolation_session.is_some();
        if used {
            report.reject_path(
                "experimental",
                "experimental features are not supported by mxc-oci; remove the section",
            );
        }
    }
    if model.test.is_some() {
        report.reject_path(
            "test",
            "MXC's placeholder development feature does nothing on Linux; remove the section",
        );
    }
}

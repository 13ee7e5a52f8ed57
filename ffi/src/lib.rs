//! `libmxc_ffi.so`: the C ABI that MXC's TypeScript SDK (`@microsoft/mxc-sdk` 1.x) loads with
//! koffi, implemented over mxc-oci. The SDK finds it through `MXC_FFI_DIR`.
//!
//! The library is loaded into a multi-threaded Node process, so it builds no sandbox itself:
//! each `run`, `spawn` or `spawnWithPty` starts this project's `lxc-exec` (found beside the
//! library) with the request, and supervises it through a progress descriptor ([`sandbox`]).
//! The sandbox's stdio are real descriptors handed to the SDK. Killing, the SDK's own deadline
//! and freeing a handle all end in `lxc-exec` removing the whole sandbox; a closed control
//! descriptor (the Node process gone) does too. `lxc-exec` inherits the process's environment:
//! with `MXC_AUDIT_LOG=FILE` there, every sandbox's decisions are appended to FILE as
//! `mxc run --audit-log FILE` writes them (an audit log that cannot be opened refuses the run).
//!
//! Status codes and error details are MXC's (`abi::status`); the entry points that exist only for
//! Windows backends (state-aware lifecycle, telemetry consent) answer as MXC's own library does
//! on Linux.

pub mod abi;
pub mod executor;
pub mod sandbox;

use std::ffi::{c_char, c_void};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use abi::{
    owned, owned_bytes, request, status, MxcErrorDetail, MxcNativeStdio, MxcRunResult,
    MxcStateAwareResult,
};
use sandbox::{Ending, Refusal, Sandbox, Terminal};

/// The opaque `MxcSandbox*` the SDK holds.
pub struct MxcSandbox(Sandbox);

/// Runs `body`, turning a panic into `failed` (a panic must not cross into C).
fn guard<T>(failed: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(failed)
}

/// The version of MXC's ABI this library implements, and this project's own version.
#[no_mangle]
pub extern "C" fn mxc_version() -> *const c_char {
    static VERSION: &std::ffi::CStr = c"1.0.1+mxc-oci";
    VERSION.as_ptr()
}

/// Runs a one-shot request to completion and fills `out`. A workload's exit status and a
/// timeout are results (status 0); a refused request is an error status with its message.
///
/// # Safety
/// `request_json` is null or a NUL-terminated string; `out` is null or points to writable
/// memory for one `MxcNodeJsonRunResult`, later released with [`mxc_run_result_free`].
#[no_mangle]
pub unsafe extern "C" fn mxc_run_json(
    request_json: *const c_char,
    experimental: i32,
    out: *mut MxcRunResult,
) -> i32 {
    if out.is_null() {
        return status::INVALID_ARGUMENT;
    }
    let result = guard(
        MxcRunResult::failed(status::BACKEND_ERROR, "mxc-oci: internal error"),
        || {
            let Some(request) = request(request_json) else {
                return MxcRunResult::failed(
                    status::MALFORMED_REQUEST,
                    "the request must be a UTF-8 JSON string",
                );
            };
            match sandbox::run(request, experimental != 0) {
                Ok(done) => MxcRunResult {
                    status: status::OK,
                    exit_code: done.ending.exit_code,
                    timed_out: i32::from(done.ending.timed_out),
                    stdout: owned_bytes(&done.stdout),
                    stderr: owned_bytes(&done.stderr),
                    warnings: warnings_json(&done.ending),
                    ..MxcRunResult::EMPTY
                },
                Err(refusal) => MxcRunResult::failed(refusal.status, &refusal.message),
            }
        },
    );
    let code = result.status;
    out.write(result);
    code
}

fn warnings_json(ending: &Ending) -> *mut c_char {
    if ending.warnings.is_empty() {
        return std::ptr::null_mut();
    }
    serde_json::to_string(&ending.warnings).map_or(std::ptr::null_mut(), |json| owned(&json))
}

/// # Safety
/// `result` is null or was filled by [`mxc_run_json`] or [`mxc_run_state_aware_exec_json`].
#[no_mangle]
pub unsafe extern "C" fn mxc_run_result_free(result: *mut MxcRunResult) {
    if let Some(result) = result.as_mut() {
        result.clear();
    }
}

unsafe fn spawn(
    request_json: *const c_char,
    experimental: i32,
    terminal: Terminal,
    out: *mut *mut MxcSandbox,
    error: *mut MxcErrorDetail,
) -> i32 {
    if out.is_null() {
        return status::INVALID_ARGUMENT;
    }
    out.write(std::ptr::null_mut());
    let outcome = guard(Err(Refusal::backend("mxc-oci: internal error")), || {
        let Some(request) = request(request_json) else {
            return Err(Refusal {
                status: status::MALFORMED_REQUEST,
                message: "the request must be a UTF-8 JSON string".into(),
            });
        };
        Sandbox::spawn(request, experimental != 0, terminal)
    });
    match outcome {
        Ok(sandbox) => {
            out.write(Box::into_raw(Box::new(MxcSandbox(sandbox))));
            status::OK
        }
        Err(refusal) => {
            if !error.is_null() {
                error.write(MxcErrorDetail::message(&refusal.message));
            }
            refusal.status
        }
    }
}

/// Starts a one-shot request with streaming stdio.
///
/// # Safety
/// `request_json` is null or a NUL-terminated string; `out` points to a writable handle
/// pointer; `error` is null or points to writable memory for one error detail.
#[no_mangle]
pub unsafe extern "C" fn mxc_spawn_json(
    request_json: *const c_char,
    experimental: i32,
    out: *mut *mut MxcSandbox,
    error: *mut MxcErrorDetail,
) -> i32 {
    spawn(request_json, experimental, Terminal::Pipes, out, error)
}

/// Starts a one-shot request on a terminal of `rows` x `columns`: input and merged output.
///
/// # Safety
/// As [`mxc_spawn_json`].
#[no_mangle]
pub unsafe extern "C" fn mxc_spawn_pty_json(
    request_json: *const c_char,
    experimental: i32,
    rows: u16,
    columns: u16,
    out: *mut *mut MxcSandbox,
    error: *mut MxcErrorDetail,
) -> i32 {
    if rows == 0 || columns == 0 {
        if !error.is_null() {
            error.write(MxcErrorDetail::message(
                "PTY rows and columns must be between 1 and 65535",
            ));
        }
        return status::MALFORMED_REQUEST;
    }
    spawn(
        request_json,
        experimental,
        Terminal::Pty { rows, columns },
        out,
        error,
    )
}

/// # Safety
/// `handle` is null or a live handle from a spawn call.
unsafe fn sandbox<'a>(handle: *mut MxcSandbox) -> Option<&'a Sandbox> {
    handle.as_ref().map(|h| &h.0)
}

/// Hands the sandbox's stdio descriptors to the SDK, once (-1 for none; a terminal has no
/// separate stderr).
///
/// # Safety
/// `handle` is a live handle; `out` points to writable memory for one `MxcNodeNativeStdio`.
#[no_mangle]
pub unsafe extern "C" fn mxc_sandbox_take_native_stdio(
    handle: *mut MxcSandbox,
    out: *mut MxcNativeStdio,
) -> i32 {
    let (Some(sandbox), false) = (sandbox(handle), out.is_null()) else {
        return status::INVALID_ARGUMENT;
    };
    guard(status::BACKEND_ERROR, || {
        let Some(stdio) = sandbox.take_stdio() else {
            return status::MALFORMED_REQUEST;
        };
        let [stdin, stdout, stderr] = stdio.map(|fd| fd.map_or(-1, |fd| fd.into_raw_fd() as isize));
        out.write(MxcNativeStdio {
            stdin_handle: stdin,
            stdout_handle: stdout,
            stderr_handle: stderr,
        });
        status::OK
    })
}

/// Closes a descriptor from [`mxc_sandbox_take_native_stdio`] that the SDK could not use.
#[no_mangle]
pub extern "C" fn mxc_native_pipe_close(handle: isize) {
    if handle >= 0 && handle <= i32::MAX as isize {
        // SAFETY: the SDK owns this descriptor (we handed it over) and gives it back to close.
        drop(unsafe { OwnedFd::from_raw_fd(handle as i32) });
    }
}

/// The host pid of the sandbox's first process.
///
/// # Safety
/// `handle` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mxc_sandbox_id(handle: *mut MxcSandbox) -> u32 {
    sandbox(handle).map_or(0, |s| s.pid)
}

unsafe fn report(ending: &Ending, exit: *mut i32, timed_out: *mut i32) {
    if !exit.is_null() {
        exit.write(ending.exit_code);
    }
    if !timed_out.is_null() {
        timed_out.write(i32::from(ending.timed_out));
    }
}

/// Polls the sandbox: `running` 1 while it runs, else its exit code and whether it timed out.
///
/// # Safety
/// `handle` is a live handle; the out pointers are null or writable.
#[no_mangle]
pub unsafe extern "C" fn mxc_sandbox_try_wait(
    handle: *mut MxcSandbox,
    exit: *mut i32,
    running: *mut i32,
    timed_out: *mut i32,
) -> i32 {
    let Some(sandbox) = sandbox(handle) else {
        return status::INVALID_ARGUMENT;
    };
    guard(status::BACKEND_ERROR, || match sandbox.try_wait() {
        Ok(Some(ending)) => {
            report(&ending, exit, timed_out);
            if !running.is_null() {
                running.write(0);
            }
            status::OK
        }
        Ok(None) => {
            if !running.is_null() {
                running.write(1);
            }
            status::OK
        }
        Err(_) => status::BACKEND_ERROR,
    })
}

/// Blocks until the sandbox has ended.
///
/// # Safety
/// `handle` is a live handle; the out pointers are null or writable.
#[no_mangle]
pub unsafe extern "C" fn mxc_sandbox_wait(
    handle: *mut MxcSandbox,
    exit: *mut i32,
    timed_out: *mut i32,
) -> i32 {
    let Some(sandbox) = sandbox(handle) else {
        return status::INVALID_ARGUMENT;
    };
    guard(status::BACKEND_ERROR, || match sandbox.wait() {
        Ok(ending) => {
            report(&ending, exit, timed_out);
            status::OK
        }
        Err(_) => status::BACKEND_ERROR,
    })
}

/// Stops the sandbox: its processes die and everything it set up is removed.
///
/// # Safety
/// `handle` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mxc_sandbox_kill(handle: *mut MxcSandbox) -> i32 {
    kill(handle, false)
}

/// As [`mxc_sandbox_kill`], for the SDK's own deadline: the result then says it timed out.
///
/// # Safety
/// `handle` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mxc_sandbox_kill_for_timeout(handle: *mut MxcSandbox) -> i32 {
    kill(handle, true)
}

unsafe fn kill(handle: *mut MxcSandbox, deadline: bool) -> i32 {
    let Some(sandbox) = sandbox(handle) else {
        return status::INVALID_ARGUMENT;
    };
    guard(status::BACKEND_ERROR, || match sandbox.kill(deadline) {
        Ok(()) => status::OK,
        Err(_) => status::BACKEND_ERROR,
    })
}

/// The warnings of an ended sandbox as a JSON array of strings, or null for none.
///
/// # Safety
/// `handle` is a live handle; `out` points to a writable string pointer.
#[no_mangle]
pub unsafe extern "C" fn mxc_sandbox_warnings_json(
    handle: *mut MxcSandbox,
    out: *mut *mut c_char,
) -> i32 {
    let (Some(sandbox), false) = (sandbox(handle), out.is_null()) else {
        return status::INVALID_ARGUMENT;
    };
    let warnings = guard(None, || sandbox.try_wait().ok().flatten());
    out.write(
        warnings
            .as_ref()
            .map_or(std::ptr::null_mut(), warnings_json),
    );
    status::OK
}

/// Output metadata (MXC's capture-denials report): Windows-only, so always none here.
///
/// # Safety
/// `out` is null or points to a writable string pointer.
#[no_mangle]
pub unsafe extern "C" fn mxc_sandbox_output_metadata_json(
    handle: *mut MxcSandbox,
    out: *mut *mut c_char,
) -> i32 {
    if handle.is_null() || out.is_null() {
        return status::INVALID_ARGUMENT;
    }
    out.write(std::ptr::null_mut());
    status::OK
}

/// Resizes a sandbox's terminal.
///
/// # Safety
/// `handle` is null or a live handle.
#[no_mangle]
pub unsafe extern "C" fn mxc_sandbox_pty_resize(
    handle: *mut MxcSandbox,
    rows: u16,
    columns: u16,
) -> i32 {
    let Some(sandbox) = sandbox(handle) else {
        return status::INVALID_ARGUMENT;
    };
    guard(status::BACKEND_ERROR, || {
        match sandbox.resize(rows, columns) {
            Ok(()) => status::OK,
            Err(code) => code,
        }
    })
}

/// Releases a handle: a sandbox that still runs is stopped and removed first.
///
/// # Safety
/// `handle` is null or a live handle, not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn mxc_sandbox_free(handle: *mut MxcSandbox) {
    if handle.is_null() {
        return;
    }
    let sandbox = Box::from_raw(handle);
    guard((), move || sandbox.0.release());
}

/// # Safety
/// `text` is null or a string this library returned.
#[no_mangle]
pub unsafe extern "C" fn mxc_string_free(text: *mut c_char) {
    abi::free_owned(text);
}

/// # Safety
/// `detail` is null or was filled by this library.
#[no_mangle]
pub unsafe extern "C" fn mxc_error_detail_free(detail: *mut MxcErrorDetail) {
    if let Some(detail) = detail.as_mut() {
        detail.clear();
    }
}

/// What this host supports, as `lxc-exec --available-backends` reports it; null when the
/// executor cannot be asked (the SDK then reports the failure).
#[no_mangle]
pub extern "C" fn mxc_available_backends_json() -> *mut c_char {
    guard(std::ptr::null_mut(), || match available_backends() {
        Some(json) => owned(&json),
        None => std::ptr::null_mut(),
    })
}

fn available_backends() -> Option<String> {
    let program = executor::locate().ok()?;
    let output =
        executor::output(&program, &["--available-backends"], Duration::from_secs(20)).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&output).ok()?;
    value.is_array().then(|| value.to_string())
}

/// The platform summary MXC's library reports, from the same answer.
#[no_mangle]
pub extern "C" fn mxc_platform_support_json() -> *mut c_char {
    guard(std::ptr::null_mut(), || {
        let backends: Vec<serde_json::Value> = available_backends()
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        let bubblewrap = backends
            .iter()
            .find(|b| b["backend"] == "bubblewrap")
            .cloned();
        let summary = match bubblewrap {
            Some(entry) => {
                let proxy = entry["capabilities"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c == "proxyEnforcement"));
                serde_json::json!({
                    "isSupported": true,
                    "reason": null,
                    "availableMethods": ["bubblewrap"],
                    "bubblewrapNetwork": {
                        "proxyEnforcement": if proxy { "supported" } else { "unsupported" },
                        "warnings": entry.get("warnings").cloned().unwrap_or(serde_json::json!([])),
                    },
                })
            }
            None => serde_json::json!({
                "isSupported": false,
                "reason": "mxc-oci's lxc-exec reports no usable sandbox on this host",
                "availableMethods": [],
            }),
        };
        owned(&summary.to_string())
    })
}

// ----- Windows-only entry points, answering as MXC's library does on Linux. -----

const NO_LIFECYCLE: &str = "state-aware lifecycle requests run on IsolationSession and WSLC, \
    which are Windows backends; they are not available on Linux";

/// # Safety
/// `out` is null or points to writable memory for one `MxcNodeStateAwareResult`.
#[no_mangle]
pub unsafe extern "C" fn mxc_run_state_aware_json(
    request_json: *const c_char,
    _dry_run: i32,
    _experimental: i32,
    out: *mut MxcStateAwareResult,
) -> i32 {
    if out.is_null() {
        return status::INVALID_ARGUMENT;
    }
    let is_exec = request(request_json)
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .is_some_and(|value| value["phase"] == "exec");
    let (code, message) = if is_exec {
        (
            status::MALFORMED_REQUEST,
            "the exec phase does not return an envelope; run it through one of the exec entry \
             points instead",
        )
    } else {
        (status::BACKEND_UNAVAILABLE, NO_LIFECYCLE)
    };
    out.write(MxcStateAwareResult {
        status: code,
        response_json: std::ptr::null_mut(),
        error: MxcErrorDetail::message(message),
    });
    code
}

/// # Safety
/// `result` is null or was filled by [`mxc_run_state_aware_json`].
#[no_mangle]
pub unsafe extern "C" fn mxc_state_aware_result_free(result: *mut MxcStateAwareResult) {
    if let Some(result) = result.as_mut() {
        abi::free_owned(result.response_json);
        result.response_json = std::ptr::null_mut();
        result.error.clear();
    }
}

unsafe fn no_lifecycle(out: *mut *mut MxcSandbox, error: *mut MxcErrorDetail) -> i32 {
    if !out.is_null() {
        out.write(std::ptr::null_mut());
    }
    if !error.is_null() {
        error.write(MxcErrorDetail::message(NO_LIFECYCLE));
    }
    status::BACKEND_UNAVAILABLE
}

/// # Safety
/// `out` and `error` are null or writable.
#[no_mangle]
pub unsafe extern "C" fn mxc_exec_state_aware_json(
    _request_json: *const c_char,
    _experimental: i32,
    out: *mut *mut MxcSandbox,
    error: *mut MxcErrorDetail,
) -> i32 {
    no_lifecycle(out, error)
}

/// # Safety
/// `out` and `error` are null or writable.
#[no_mangle]
pub unsafe extern "C" fn mxc_state_aware_exec_pty(
    _request_json: *const c_char,
    _experimental: i32,
    _rows: u16,
    _columns: u16,
    out: *mut *mut MxcSandbox,
    error: *mut MxcErrorDetail,
) -> i32 {
    no_lifecycle(out, error)
}

/// # Safety
/// `out` is null or points to writable memory for one `MxcNodeJsonRunResult`.
#[no_mangle]
pub unsafe extern "C" fn mxc_run_state_aware_exec_json(
    _request_json: *const c_char,
    _experimental: i32,
    out: *mut MxcRunResult,
) -> i32 {
    if out.is_null() {
        return status::INVALID_ARGUMENT;
    }
    out.write(MxcRunResult::failed(
        status::BACKEND_UNAVAILABLE,
        NO_LIFECYCLE,
    ));
    status::BACKEND_UNAVAILABLE
}

/// Telemetry consent is a Windows feature: everything is `not-applicable`.
const CONSENT_STATUS: &str = r#"{"effectiveState":"not-applicable","policy":"not-applicable","reason":"not-applicable","storedState":"not-applicable"}"#;
const CONSENT_OUTCOME: &str = r#"{"effectiveState":"not-applicable","policy":"not-applicable","reason":"not-applicable","result":"notApplicable","storedState":"not-applicable"}"#;

unsafe fn answer(out: *mut *mut c_char, json: &str) -> i32 {
    if out.is_null() {
        return status::INVALID_ARGUMENT;
    }
    out.write(owned(json));
    status::OK
}

/// # Safety
/// `out` is null or points to a writable string pointer.
#[no_mangle]
pub unsafe extern "C" fn mxc_telemetry_get_consent_status(out: *mut *mut c_char) -> i32 {
    answer(out, CONSENT_STATUS)
}

/// # Safety
/// `out` is null or points to a writable string pointer.
#[no_mangle]
pub unsafe extern "C" fn mxc_telemetry_withdraw_consent(out: *mut *mut c_char) -> i32 {
    answer(out, CONSENT_OUTCOME)
}

/// The consent prompt callback: `(prompt JSON, context) -> decision`.
pub type ConsentPresenter = unsafe extern "C" fn(*const c_char, *mut c_void) -> i32;

/// # Safety
/// `out` is null or points to a writable string pointer. The presenter is never called.
#[no_mangle]
pub unsafe extern "C" fn mxc_telemetry_request_consent(
    _locale: *const c_char,
    presenter: Option<ConsentPresenter>,
    _context: *mut c_void,
    out: *mut *mut c_char,
) -> i32 {
    if presenter.is_none() {
        return status::INVALID_ARGUMENT;
    }
    answer(out, CONSENT_OUTCOME)
}

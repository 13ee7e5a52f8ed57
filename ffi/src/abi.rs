//! The C side of the ABI: the structs the SDK declares with koffi, the status codes it maps to
//! `MxcError.code`, and the ownership of strings handed across (allocated here, freed here).

use std::ffi::{c_char, CString};

use mxc_translate::Class;

/// `MxcError.code` by status, as the SDK maps them.
pub mod status {
    pub const OK: i32 = 0;
    pub const MALFORMED_REQUEST: i32 = 1;
    pub const UNSUPPORTED_CONTAINMENT: i32 = 2;
    pub const BACKEND_UNAVAILABLE: i32 = 4;
    pub const BACKEND_ERROR: i32 = 12;
    /// A null or unusable argument (MXC's library answers 100 for these; also `malformed_request`).
    pub const INVALID_ARGUMENT: i32 = 100;
}

/// The status a refusal of this class is reported with.
pub fn status_of(class: Class) -> i32 {
    match class {
        Class::Request => status::MALFORMED_REQUEST,
        Class::Containment => status::UNSUPPORTED_CONTAINMENT,
        Class::Backend => status::BACKEND_ERROR,
    }
}

/// `MxcNodeJsonErrorDetail`.
#[repr(C)]
pub struct MxcErrorDetail {
    pub message: *mut c_char,
    pub operation: *mut c_char,
    pub native_code: *mut c_char,
    pub remediation: *mut c_char,
}

impl MxcErrorDetail {
    pub const EMPTY: MxcErrorDetail = MxcErrorDetail {
        message: std::ptr::null_mut(),
        operation: std::ptr::null_mut(),
        native_code: std::ptr::null_mut(),
        remediation: std::ptr::null_mut(),
    };

    pub fn message(text: &str) -> MxcErrorDetail {
        MxcErrorDetail {
            message: owned(text),
            ..MxcErrorDetail::EMPTY
        }
    }

    /// Frees the strings and leaves the detail empty.
    ///
    /// # Safety
    /// Every non-null pointer must come from [`owned`] and not have been freed.
    pub unsafe fn clear(&mut self) {
        for field in [
            &mut self.message,
            &mut self.operation,
            &mut self.native_code,
            &mut self.remediation,
        ] {
            free_owned(*field);
            *field = std::ptr::null_mut();
        }
    }
}

/// `MxcNodeJsonRunResult`.
#[repr(C)]
pub struct MxcRunResult {
    pub status: i32,
    pub exit_code: i32,
    pub timed_out: i32,
    pub stdout: *mut c_char,
    pub stderr: *mut c_char,
    pub error: MxcErrorDetail,
    pub output_metadata: *mut c_char,
    pub warnings: *mut c_char,
}

impl MxcRunResult {
    pub const EMPTY: MxcRunResult = MxcRunResult {
        status: status::OK,
        exit_code: 0,
        timed_out: 0,
        stdout: std::ptr::null_mut(),
        stderr: std::ptr::null_mut(),
        error: MxcErrorDetail::EMPTY,
        output_metadata: std::ptr::null_mut(),
        warnings: std::ptr::null_mut(),
    };

    pub fn failed(status: i32, message: &str) -> MxcRunResult {
        MxcRunResult {
            status,
            error: MxcErrorDetail::message(message),
            ..MxcRunResult::EMPTY
        }
    }

    /// # Safety
    /// Every non-null pointer must come from [`owned`] and not have been freed.
    pub unsafe fn clear(&mut self) {
        for field in [
            &mut self.stdout,
            &mut self.stderr,
            &mut self.output_metadata,
            &mut self.warnings,
        ] {
            free_owned(*field);
            *field = std::ptr::null_mut();
        }
        self.error.clear();
    }
}

/// `MxcNodeNativeStdio`: descriptors the SDK takes ownership of; -1 for none.
#[repr(C)]
pub struct MxcNativeStdio {
    pub stdin_handle: isize,
    pub stdout_handle: isize,
    pub stderr_handle: isize,
}

/// `MxcNodeStateAwareResult`.
#[repr(C)]
pub struct MxcStateAwareResult {
    pub status: i32,
    pub response_json: *mut c_char,
    pub error: MxcErrorDetail,
}

/// A string the caller frees with `mxc_string_free`. Text is UTF-8; a NUL byte inside it (which
/// a C string cannot carry) is dropped.
pub fn owned(text: &str) -> *mut c_char {
    owned_bytes(text.as_bytes())
}

pub fn owned_bytes(bytes: &[u8]) -> *mut c_char {
    let bytes: Vec<u8> = String::from_utf8_lossy(bytes)
        .bytes()
        .filter(|b| *b != 0)
        .collect();
    CString::new(bytes).map_or(std::ptr::null_mut(), CString::into_raw)
}

/// # Safety
/// `text` is null or came from [`owned`] and has not been freed.
pub unsafe fn free_owned(text: *mut c_char) {
    if !text.is_null() {
        drop(CString::from_raw(text));
    }
}

/// Reads a request string from the caller.
///
/// # Safety
/// `text` is null or a NUL-terminated string that stays valid for the call.
pub unsafe fn request<'a>(text: *const c_char) -> Option<&'a str> {
    if text.is_null() {
        return None;
    }
    std::ffi::CStr::from_ptr(text).to_str().ok()
}

//! The default seccomp profile: everything a workload needs stays allowed; kernel surfaces an
//! agent has no business with, and every way to make new namespaces or reach the kernel's
//! attack surface, fail with EPERM (ENOSYS for clone3, so libcs fall back to clone, where flags
//! can be inspected).

use serde_json::{json, Value};

/// Syscalls that fail with EPERM.
pub const DENIED: &[&str] = &[
    // Namespaces and mounts: no new user namespace, no remounting the sandbox away.
    "unshare",
    "setns",
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    // Kernel modules, kexec, reboot, swap, clocks, accounting.
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "get_kernel_syms",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "settimeofday",
    "stime",
    "clock_settime",
    "clock_settime64",
    "clock_adjtime",
    "clock_adjtime64",
    "adjtimex",
    "acct",
    // Tracing and other processes' memory.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    // Large kernel attack surfaces.
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "keyctl",
    "add_key",
    "request_key",
    "lookup_dcookie",
    "fanotify_init",
    "open_by_handle_at",
    "name_to_handle_at",
    "quotactl",
    "quotactl_fd",
    "nfsservctl",
    "syslog",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "vm86",
    "vm86old",
    "iopl",
    "ioperm",
    "lsm_set_self_attr",
];

/// clone(2) flags that create namespaces.
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
    0x0000_0080, // CLONE_NEWTIME
];

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

fn architectures() -> Value {
    if cfg!(target_arch = "aarch64") {
        json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
    } else {
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    }
}

/// The rules that deny; shared by the one-shot profile and the bundle-mode merge.
pub fn deny_rules() -> Vec<Value> {
    // One condition per flag on the same argument: the runtime adds them as separate rules, so a
    // clone with any namespace flag is refused. value == valueTwo keeps the meaning whichever way
    // a runtime orders mask and datum for SCMP_CMP_MASKED_EQ.
    let clone_args: Vec<Value> = NAMESPACE_FLAGS
        .iter()
        .map(
            |flag| json!({"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}),
        )
        .collect();
    vec![
        json!({"names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}),
        json!({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM, "args": clone_args}),
        json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}),
    ]
}

/// The profile of a one-shot sandbox.
pub fn profile() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": architectures(),
        "syscalls": deny_rules(),
    })
}

/// Names this profile handles itself (an engine profile's rules for them are replaced).
pub fn governed_names() -> Vec<&'static str> {
    let mut names = DENIED.to_vec();
    names.extend(["clone", "clone3"]);
    names
}

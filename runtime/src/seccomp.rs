//! A second seccomp filter, stacked on the spec's profile just before the workload's `exec`.
//!
//! The spec's profile is compiled by libseccomp, which knows syscalls by name and silently skips
//! names it does not know (Debian 12's libseccomp 2.5.4 stops at Linux 6.0's table), and an
//! engine's own profile may allow what this project governs. The kernel runs every stacked
//! filter and the most restrictive answer wins, so this small program holds whatever the first
//! one says:
//!
//! - **No set-id files.** `chmod`, `fchmod`, `fchmodat`, `creat`, `mknod`, `mknodat`, and `open`
//!   and `openat` with `O_CREAT` or `O_TMPFILE`, fail with `EPERM` when the mode carries
//!   `S_ISUID` or `S_ISGID`: a sandbox must not leave a set-id program in a workspace for someone
//!   outside to run. An `open` that creates nothing has no mode: its mode register holds
//!   whatever the caller left there, so it is not read.
//!   `openat2` answers `ENOSYS` (its mode sits in a struct a filter cannot read; libcs fall back
//!   to `openat`).
//! - **No syscall newer than this table.** Numbers from 451 on (`cachestat`, `fchmodat2`,
//!   `mseal`, the `lsm_*` and `*xattrat` calls, `open_tree_attr`, ...) answer `ENOSYS`, as an
//!   unknown syscall would on an older kernel; libcs fall back (`fchmodat2` -> `fchmodat`).
//! - **No x32 ABI** on x86-64 (`ENOSYS`): its numbers alias the 64-bit ones and nothing here
//!   uses it.
//!
//! Installing a filter needs `no_new_privs` (or `CAP_SYS_ADMIN`): every policy sets it unless the
//! node's administrator allowed otherwise.

use std::io;

/// `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Instruction {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
/// The low 32 bits of argument `i` (little-endian).
const fn arg_low(i: u32) -> u32 {
    16 + 8 * i
}

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The first syscall number this filter does not know.
pub const FIRST_UNREVIEWED: u32 = 451;
const OPENAT2: u32 = 437;
const SET_ID_BITS: u32 = 0o6000;
/// The `open` flags that make it create a file, and so read its mode (`O_CREAT`,
/// `__O_TMPFILE`; the same on x86 and the generic table).
const CREATING_FLAGS: u32 = 0o100 | 0o20000000;

/// One architecture: its audit id and which syscalls take a file mode in which argument.
struct Abi {
    audit_arch: u32,
    /// Reject the x32 ABI (only on x86-64).
    x32_bit: bool,
    /// Calls that take a mode: syscall number, index of the mode argument, and, for `open`
    /// and `openat`, the index of the flags argument that says whether the mode is read.
    mode_calls: &'static [(u32, u32, Option<u32>)],
}

// chmod fchmod fchmodat open openat creat mknod mknodat
const X86_64: Abi = Abi {
    audit_arch: AUDIT_ARCH_X86_64,
    x32_bit: true,
    mode_calls: &[
        (90, 1, None),
        (91, 1, None),
        (268, 2, None),
        (2, 2, Some(1)),
        (257, 3, Some(2)),
        (85, 1, None),
        (133, 1, None),
        (259, 2, None),
    ],
};

const I386: Abi = Abi {
    audit_arch: AUDIT_ARCH_I386,
    x32_bit: false,
    mode_calls: &[
        (15, 1, None),
        (94, 1, None),
        (306, 2, None),
        (5, 2, Some(1)),
        (295, 3, Some(2)),
        (8, 1, None),
        (14, 1, None),
        (297, 2, None),
    ],
};

// fchmod fchmodat openat mknodat (the generic table has no chmod, open, creat or mknod)
const AARCH64: Abi = Abi {
    audit_arch: AUDIT_ARCH_AARCH64,
    x32_bit: false,
    mode_calls: &[
        (52, 1, None),
        (53, 2, None),
        (56, 3, Some(2)),
        (33, 2, None),
    ],
};

fn abis() -> &'static [Abi] {
    if cfg!(target_arch = "aarch64") {
        &[AARCH64]
    } else {
        &[X86_64, I386]
    }
}

/// A label-resolving builder: jumps name their targets, resolved once the program is laid out.
#[derive(Default)]
struct Program {
    code: Vec<(Instruction, Option<usize>, Option<usize>)>,
    labels: Vec<Option<usize>>,
}

impl Program {
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
    }

    fn op(&mut self, code: u16, k: u32) {
        self.code.push((
            Instruction {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            None,
            None,
        ));
    }

    /// A conditional jump to `on_true`; falls through otherwise.
    fn jump_if(&mut self, code: u16, k: u32, on_true: usize) {
        self.code.push((
            Instruction {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            Some(on_true),
            None,
        ));
    }

    fn assemble(self) -> Vec<Instruction> {
        let labels = self.labels;
        self.code
            .into_iter()
            .enumerate()
            .map(|(at, (mut instruction, jt, jf))| {
                let offset = |label: usize| {
                    let target = labels[label].expect("every label is bound");
                    u8::try_from(target - at - 1).expect("jumps stay short in this program")
                };
                if let Some(label) = jt {
                    instruction.jt = offset(label);
                }
                if let Some(label) = jf {
                    instruction.jf = offset(label);
                }
                instruction
            })
            .collect()
    }
}

/// The filter program.
fn program() -> Vec<Instruction> {
    let mut p = Program::default();
    let enosys = p.label();
    let eperm = p.label();
    let blocks: Vec<usize> = abis().iter().map(|_| p.label()).collect();

    p.op(LD_W_ABS, ARCH);
    for (abi, block) in abis().iter().zip(&blocks) {
        p.jump_if(JEQ_K, abi.audit_arch, *block);
    }
    // Another ABI: the spec's profile decides alone.
    p.op(RET_K, RET_ALLOW);

    for (abi, block) in abis().iter().zip(&blocks) {
        p.bind(*block);
        p.op(LD_W_ABS, NR);
        if abi.x32_bit {
            p.jump_if(JSET_K, X32_SYSCALL_BIT, enosys);
        }
        p.jump_if(JGE_K, FIRST_UNREVIEWED, enosys);
        p.jump_if(JEQ_K, OPENAT2, enosys);
        let checks: Vec<usize> = abi.mode_calls.iter().map(|_| p.label()).collect();
        for ((nr, _, _), check) in abi.mode_calls.iter().zip(&checks) {
            p.jump_if(JEQ_K, *nr, *check);
        }
        p.op(RET_K, RET_ALLOW);
        for ((_, arg, flags), check) in abi.mode_calls.iter().zip(&checks) {
            p.bind(*check);
            if let Some(flags) = flags {
                let creates = p.label();
                p.op(LD_W_ABS, arg_low(*flags));
                p.jump_if(JSET_K, CREATING_FLAGS, creates);
                p.op(RET_K, RET_ALLOW);
                p.bind(creates);
            }
            p.op(LD_W_ABS, arg_low(*arg));
            p.jump_if(JSET_K, SET_ID_BITS, eperm);
            p.op(RET_K, RET_ALLOW);
        }
    }

    p.bind(enosys);
    p.op(RET_K, RET_ERRNO | libc::ENOSYS as u32);
    p.bind(eperm);
    p.op(RET_K, RET_ERRNO | libc::EPERM as u32);
    p.assemble()
}

/// Installs the filter on the calling thread (and what it execs). Needs `no_new_privs` or
/// `CAP_SYS_ADMIN`.
pub fn install() -> io::Result<()> {
    let program = program();
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: a valid sock_fprog pointing at `program`, which outlives the call; the kernel
    // copies the program.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one `seccomp_data`, as the kernel's classic BPF interpreter would
    /// for the instructions it uses.
    fn evaluate(program: &[Instruction], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let ins = program[pc];
            match ins.code {
                LD_W_ABS => {
                    let at = ins.k as usize;
                    acc = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                    pc += 1;
                }
                RET_K => return ins.k,
                JEQ_K | JGE_K | JSET_K => {
                    let taken = match ins.code {
                        JEQ_K => acc == ins.k,
                        JGE_K => acc >= ins.k,
                        _ => acc & ins.k != 0,
                    };
                    pc += 1 + if taken { ins.jt } else { ins.jf } as usize;
                }
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn set_id_modes_are_refused_on_both_x86_abis() {
        let p = program();
        let x = AUDIT_ARCH_X86_64;
        // chmod(path, 04755), fchmodat(fd, path, 02755), openat(fd, path, O_CREAT, 04700)
        assert_eq!(evaluate(&p, x, 90, [0, 0o4755, 0, 0, 0, 0]), EPERM);
        assert_eq!(evaluate(&p, x, 268, [0, 0, 0o2755, 0, 0, 0]), EPERM);
        assert_eq!(evaluate(&p, x, 257, [0, 0, 0o100, 0o4700, 0, 0]), EPERM);
        assert_eq!(evaluate(&p, x, 133, [0, 0o4644, 0, 0, 0, 0]), EPERM);
        // The same calls without set-id bits, and the high word ignored.
        assert_eq!(evaluate(&p, x, 90, [0, 0o755, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(evaluate(&p, x, 257, [0, 0, 0o100, 0o644, 0, 0]), RET_ALLOW);
        assert_eq!(evaluate(&p, x, 0, [0; 6]), RET_ALLOW, "read");
        // open(path, O_RDONLY) and openat(fd, path, O_RDONLY) pass no mode: whatever the mode
        // register holds is not one, set-id bits included; O_TMPFILE reads it.
        assert_eq!(evaluate(&p, x, 2, [0, 0, 0o7777, 0, 0, 0]), RET_ALLOW);
        assert_eq!(evaluate(&p, x, 257, [0, 0, 0o2, 0o4755, 0, 0]), RET_ALLOW);
        assert_eq!(evaluate(&p, x, 2, [0, 0o100, 0o4755, 0, 0, 0]), EPERM);
        assert_eq!(
            evaluate(&p, x, 257, [0, 0, 0o20200002, 0o2700, 0, 0]),
            EPERM
        );
        assert_eq!(
            evaluate(&p, AUDIT_ARCH_I386, 5, [0, 0, 0o6755, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            evaluate(&p, AUDIT_ARCH_I386, 295, [0, 0, 0o100, 0o4700, 0, 0]),
            EPERM
        );
        // i386 through int 0x80: chmod is 15 there, and 90 is an unrelated call.
        assert_eq!(
            evaluate(&p, AUDIT_ARCH_I386, 15, [0, 0o4755, 0, 0, 0, 0]),
            EPERM
        );
        assert_eq!(
            evaluate(&p, AUDIT_ARCH_I386, 306, [0, 0, 0o6000, 0, 0, 0]),
            EPERM
        );
        assert_eq!(
            evaluate(&p, AUDIT_ARCH_I386, 15, [0, 0o755, 0, 0, 0, 0]),
            RET_ALLOW
        );
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn new_syscalls_openat2_and_x32_answer_enosys() {
        let p = program();
        let x = AUDIT_ARCH_X86_64;
        assert_eq!(
            evaluate(&p, x, 452, [0, 0, 0o4755, 0, 0, 0]),
            ENOSYS,
            "fchmodat2"
        );
        assert_eq!(evaluate(&p, x, 467, [0; 6]), ENOSYS, "open_tree_attr");
        assert_eq!(evaluate(&p, x, OPENAT2, [0; 6]), ENOSYS);
        assert_eq!(evaluate(&p, x, X32_SYSCALL_BIT | 90, [0; 6]), ENOSYS);
        assert_eq!(evaluate(&p, AUDIT_ARCH_I386, 452, [0; 6]), ENOSYS);
        assert_eq!(evaluate(&p, x, 450, [0; 6]), RET_ALLOW);
        assert_eq!(
            evaluate(&p, AUDIT_ARCH_AARCH64, 90, [0, 0o4755, 0, 0, 0, 0]),
            RET_ALLOW
        );
    }

    #[test]
    fn installed_in_a_child_it_refuses_a_setuid_chmod_and_allows_a_plain_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let path = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
        // SAFETY: the child only makes raw system calls and exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                let code = if install().is_err() {
                    1
                } else if libc::chmod(path.as_ptr(), 0o4755) == 0 {
                    2
                } else if *libc::__errno_location() != libc::EPERM {
                    3
                } else if libc::chmod(path.as_ptr(), 0o700) != 0 {
                    4
                } else if libc::syscall(452, libc::AT_FDCWD, path.as_ptr(), 0o755, 0) != -1 {
                    5
                } else if libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    libc::O_RDONLY,
                    0o4755,
                ) < 0
                {
                    // Opening without creating: the mode register is not a mode.
                    6
                } else {
                    0
                };
                libc::_exit(code)
            },
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700);
    }
}

//! Signal names and numbers as runc accepts them on its command line: `9`, `KILL`, `SIGKILL`,
//! `kill`, and the real-time signals `RTMIN+3` / `SIGRTMAX-1`.

use std::fmt;

/// A signal number that `kill(2)` accepts (1 through 64 on Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown signal {0:?}: use a number (1-64) or a name such as TERM, SIGKILL, RTMIN+1")]
pub struct ParseSignalError(pub String);

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// The kernel's SIGRTMIN; glibc reserves the first two for itself and reports 34, as Go does.
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

impl Signal {
    pub const TERM: Signal = Signal(libc::SIGTERM);
    pub const KILL: Signal = Signal(libc::SIGKILL);
    pub const INT: Signal = Signal(libc::SIGINT);
    pub const HUP: Signal = Signal(libc::SIGHUP);

    /// A signal from its number; `None` outside 1..=64.
    pub fn from_raw(n: i32) -> Option<Signal> {
        (1..=RTMAX).contains(&n).then_some(Signal(n))
    }

    pub fn as_raw(self) -> i32 {
        self.0
    }

    /// The conventional name without the `SIG` prefix (`TERM`, `RTMIN+2`), for messages.
    pub fn name(self) -> String {
        if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == self.0) {
            return (*name).to_string();
        }
        if self.0 == RTMIN {
            "RTMIN".to_string()
        } else if self.0 == RTMAX {
            "RTMAX".to_string()
        } else if self.0 > RTMIN {
            format!("RTMIN+{}", self.0 - RTMIN)
        } else {
            self.0.to_string()
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIG{}", self.name())
    }
}

impl std::str::FromStr for Signal {
    type Err = ParseSignalError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let err = || ParseSignalError(raw.to_string());
        let trimmed = raw.trim();
        if let Ok(n) = trimmed.parse::<i32>() {
            return Signal::from_raw(n).ok_or_else(err);
        }
        let upper = trimmed.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((_, n)) = NAMES.iter().find(|(candidate, _)| *candidate == name) {
            return Ok(Signal(*n));
        }
        let realtime = |base: i32, rest: &str| -> Option<i32> {
            if rest.is_empty() {
                return Some(base);
            }
            let (sign, digits) = rest.split_at(1);
            let offset: i32 = digits.parse().ok()?;
            match sign {
                "+" => Some(base + offset),
                "-" => Some(base - offset),
                _ => None,
            }
        };
        let n = if let Some(rest) = name.strip_prefix("RTMIN") {
            realtime(RTMIN, rest)
        } else if let Some(rest) = name.strip_prefix("RTMAX") {
            realtime(RTMAX, rest)
        } else {
            None
        };
        n.filter(|n| (RTMIN..=RTMAX).contains(n))
            .map(Signal)
            .ok_or_else(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<i32, ParseSignalError> {
        s.parse::<Signal>().map(Signal::as_raw)
    }

    #[test]
    fn numbers_names_and_prefixes() {
        assert_eq!(parse("9"), Ok(9));
        assert_eq!(parse("15"), Ok(15));
        assert_eq!(parse("KILL"), Ok(9));
        assert_eq!(parse("SIGKILL"), Ok(9));
        assert_eq!(parse("sigterm"), Ok(15));
        assert_eq!(parse("term"), Ok(15));
        assert_eq!(parse("HUP"), Ok(1));
        assert_eq!(parse("USR1"), Ok(libc::SIGUSR1));
        assert_eq!(parse("SIGWINCH"), Ok(libc::SIGWINCH));
        assert_eq!(parse("64"), Ok(64));
    }

    #[test]
    fn realtime_signals() {
        assert_eq!(parse("RTMIN"), Ok(34));
        assert_eq!(parse("SIGRTMIN+3"), Ok(37));
        assert_eq!(parse("RTMAX-1"), Ok(63));
        assert_eq!(parse("rtmax"), Ok(64));
        assert!(parse("RTMIN+40").is_err());
        assert!(parse("RTMIN*2").is_err());
    }

    #[test]
    fn rejects_unknown_and_out_of_range() {
        assert!(parse("0").is_err());
        assert!(parse("65").is_err());
        assert!(parse("-9").is_err());
        assert!(parse("SIGFOO").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn names_round_trip() {
        for n in 1..=64 {
            let sig = Signal::from_raw(n).unwrap();
            let name = sig.name();
            if n == 32 || n == 33 {
                continue; // reserved by glibc, no name
            }
            assert_eq!(name.parse::<Signal>().unwrap().as_raw(), n, "{name}");
        }
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
    }
}

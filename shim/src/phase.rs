//! The lifecycle of a task's process (a container's init, or an exec process) as explicit
//! transitions. A request that moves a process asks for its transition here before anything
//! is done, and one that does not fit the process's phase is refused with
//! `FailedPrecondition` naming the transition (`stopped -> running`).
//!
//! ```text
//!            start             pause
//!  created ---------> running <-----> paused
//!     |                  |     resume    |
//!     | exit             | exit          | exit
//!     +-------------> stopped <----------+
//!     |                  |
//!     | delete           | delete
//!     +-------------> deleting ---------> deleted
//!                        | failed: back to stopped (it exited) or created
//! ```
//!
//! An exit that arrives while the process is being deleted (delete kills a created init) does
//! not change the phase: the process keeps the exit itself. Exec processes use the same phases
//! without `paused`: pausing is the container's, and shows on its init.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The init waits for Start; an exec process is registered and not yet started.
    Created,
    Running,
    /// The container's processes are frozen (init only).
    Paused,
    Stopped,
    /// Delete is under way.
    Deleting,
    Deleted,
}

/// A request that does not fit the process's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{from} -> {to}")]
pub struct IllegalTransition {
    pub from: Phase,
    pub to: Phase,
}

impl Phase {
    /// Start: created -> running.
    pub fn start(self) -> Result<Phase, IllegalTransition> {
        self.to(Phase::Running, self == Phase::Created)
    }

    /// Pause: running -> paused.
    pub fn pause(self) -> Result<Phase, IllegalTransition> {
        self.to(Phase::Paused, self == Phase::Running)
    }

    /// Resume: paused -> running.
    pub fn resume(self) -> Result<Phase, IllegalTransition> {
        self.to(Phase::Running, self == Phase::Paused)
    }

    /// The process exited: from a live phase to stopped; a process being deleted stays so.
    pub fn exited(self) -> Result<Phase, IllegalTransition> {
        match self {
            Phase::Deleting => Ok(Phase::Deleting),
            Phase::Created | Phase::Running | Phase::Paused => Ok(Phase::Stopped),
            from => Err(IllegalTransition {
                from,
                to: Phase::Stopped,
            }),
        }
    }

    /// Delete begins: a process that does not run (created, or stopped) -> deleting.
    pub fn delete(self) -> Result<Phase, IllegalTransition> {
        self.to(
            Phase::Deleting,
            matches!(self, Phase::Created | Phase::Stopped),
        )
    }

    /// Delete is done: deleting -> deleted.
    pub fn deleted(self) -> Result<Phase, IllegalTransition> {
        self.to(Phase::Deleted, self == Phase::Deleting)
    }

    /// Delete failed: deleting -> stopped if the process has exited meanwhile, else back to
    /// created, so that containerd can try again.
    pub fn delete_failed(self, exited: bool) -> Result<Phase, IllegalTransition> {
        let back = if exited {
            Phase::Stopped
        } else {
            Phase::Created
        };
        self.to(back, self == Phase::Deleting)
    }

    fn to(self, to: Phase, allowed: bool) -> Result<Phase, IllegalTransition> {
        if allowed {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }

    /// The phase's name, as the refusals spell it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Created => "created",
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Stopped => "stopped",
            Phase::Deleting => "deleting",
            Phase::Deleted => "deleted",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Phase; 6] = [
        Phase::Created,
        Phase::Running,
        Phase::Paused,
        Phase::Stopped,
        Phase::Deleting,
        Phase::Deleted,
    ];

    /// The phases `step` accepts; every refusal names its own `from -> to`.
    fn accepted(step: impl Fn(Phase) -> Result<Phase, IllegalTransition>) -> Vec<Phase> {
        let mut accepted = Vec::new();
        for from in ALL {
            match step(from) {
                Ok(_) => accepted.push(from),
                Err(err) => {
                    assert_eq!(err.from, from);
                    assert_eq!(err.to_string(), format!("{} -> {}", from, err.to));
                }
            }
        }
        accepted
    }

    #[test]
    fn each_request_fits_only_its_phases() {
        use Phase::*;
        assert_eq!(accepted(Phase::start), [Created]);
        assert_eq!(accepted(Phase::pause), [Running]);
        assert_eq!(accepted(Phase::resume), [Paused]);
        assert_eq!(
            accepted(Phase::exited),
            [Created, Running, Paused, Deleting]
        );
        assert_eq!(accepted(Phase::delete), [Created, Stopped]);
        assert_eq!(accepted(Phase::deleted), [Deleting]);
        assert_eq!(accepted(|p| p.delete_failed(true)), [Deleting]);
    }

    #[test]
    fn refusals_name_the_transition() {
        let refusal = |result: Result<Phase, IllegalTransition>| result.unwrap_err().to_string();
        assert_eq!(refusal(Phase::Running.start()), "running -> running");
        assert_eq!(refusal(Phase::Stopped.start()), "stopped -> running");
        assert_eq!(refusal(Phase::Running.delete()), "running -> deleting");
        assert_eq!(refusal(Phase::Stopped.pause()), "stopped -> paused");
        assert_eq!(refusal(Phase::Deleted.exited()), "deleted -> stopped");
    }

    #[test]
    fn a_life_from_create_to_delete() {
        type Step = fn(Phase) -> Result<Phase, IllegalTransition>;
        let steps: [Step; 6] = [
            Phase::start,
            Phase::pause,
            Phase::resume,
            Phase::exited,
            Phase::delete,
            Phase::deleted,
        ];
        let mut phase = Phase::Created;
        let mut seen = vec![phase];
        for step in steps {
            phase = step(phase).unwrap();
            seen.push(phase);
        }
        use Phase::*;
        assert_eq!(
            seen,
            [Created, Running, Paused, Running, Stopped, Deleting, Deleted]
        );
    }

    #[test]
    fn a_failed_delete_can_be_tried_again() {
        let deleting = Phase::Created.delete().unwrap();
        // Delete kills a created init: its exit arrives while it is being deleted.
        assert_eq!(deleting.exited().unwrap(), Phase::Deleting);
        let back = deleting.delete_failed(true).unwrap();
        assert_eq!(back, Phase::Stopped);
        assert_eq!(back.delete().unwrap(), Phase::Deleting);
        assert_eq!(deleting.delete_failed(false).unwrap(), Phase::Created);
    }
}

//! What a run reports while it works ([`Progress`]: phases starting and ending, hosts done,
//! notes) and who receives it ([`Observer`]); drawing it is the CLI's job.

/// Something the phases report while they work. Cheap, and called from many hosts at once.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A phase begins over `hosts` hosts.
    PhaseStart {
        phase: &'a str,
        hosts: usize,
    },
    /// A host starts its step of the phase.
    HostStart {
        phase: &'a str,
        host: &'a str,
    },
    /// A host is done with the phase (`detail`: what happened, or why it failed).
    HostDone {
        phase: &'a str,
        host: &'a str,
        ok: bool,
        detail: &'a str,
    },
    PhaseEnd {
        phase: &'a str,
    },
    /// A warning or note worth showing while it runs.
    Message {
        text: &'a str,
    },
}

/// Receives [`Progress`]; the CLI draws it.
pub trait Observer: Send + Sync {
    fn event(&self, event: &Progress<'_>);
}

/// Observes nothing.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: &Progress<'_>) {}
}

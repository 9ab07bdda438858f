//! A read-only phase done once for the whole run, on (or for) the first server: the node list,
//! the target's resolution, the node table at the end. One type holding the step, so each of
//! them is only its step.

use futures::future::BoxFuture;

use crate::engine::{Flow, HostId, Phase};

use super::state::Upgrade;

/// The step of a [`Once`] phase.
pub(super) type Step = for<'b, 'a> fn(&'b mut Upgrade<'a>) -> BoxFuture<'b, anyhow::Result<Flow>>;

/// A read-only phase that runs `step` once; it selects the first server (the run's anchor).
pub(super) struct Once {
    pub title: &'static str,
    pub step: Step,
}

impl<'a> Phase<Upgrade<'a>> for Once {
    fn title(&self) -> &'static str {
        self.title
    }

    fn select(&self, cx: &Upgrade<'a>) -> Vec<HostId> {
        vec![cx.first]
    }

    fn changes(&self) -> bool {
        false
    }

    fn apply<'b>(
        &'b self,
        cx: &'b mut Upgrade<'a>,
        _: &'b [HostId],
    ) -> BoxFuture<'b, anyhow::Result<Flow>> {
        (self.step)(cx)
    }
}

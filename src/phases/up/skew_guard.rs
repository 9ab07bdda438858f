//! `up` with a raised `[cluster] version`: servers go up one minor at a time, as with `edgeops
//! upgrade`; a pin that skips a minor line is refused before anything changes, naming the
//! releases to go through (`k3s::skew`).

use super::*;

impl Runner<'_> {
    /// `false`: a server would skip a minor; every host is stopped with why.
    pub(super) async fn minor_steps_allowed(&mut self) -> bool {
        let Some(target) = self.version.clone() else {
            return true;
        };
        let running = self.hosts.iter().filter_map(|(_, s)| {
            if !s.alive() || s.host.role != Role::Server || s.action() != Action::Upgrade {
                return None;
            }
            Some((s.host.name.clone(), s.facts.as_ref()?.k3s_version.clone()?))
        });
        let behind = crate::k3s::skew::skipping(running, &target);
        let url = &self.inventory.cluster.channel_url;
        let Some((_, steps)) = crate::k3s::skew::releases_between(url, &behind, &target).await
        else {
            return true;
        };
        let text = match steps {
            Ok(steps) => crate::k3s::skew::refusal(&behind, &target, &steps),
            Err(e) => format!(
                "k3s servers upgrade one minor at a time and {target} skips at least one \
                 (the releases in between could not be resolved: {e})"
            ),
        };
        let text = format!(
            "cluster {}: {text}; nothing was changed",
            self.inventory.cluster.name
        );
        self.message(text.clone());
        if let Some(id) = self.core.engine.id_of(&behind[0].0) {
            self.hosts[id].fail(Failure::refused(text));
        }
        self.skip_rest("refused: the pinned version skips a minor (see the note)");
        false
    }
}

//! How `up` holds the cluster lock ([`crate::host::lock::ClusterLock`], in its `RunCore`):
//! taken inside the first server's facts exec (one round trip less), again on its own after the
//! first server rebooted (the lock lives on tmpfs); released with the run's last read-only
//! command (`Runner::exec_releasing`, the GitLab phase) or by `RunCore::finish`.

use super::*;

impl Runner<'_> {
    /// The facts of every host, the first server's in the same exec as taking the lock (one
    /// round trip instead of two; `fold::facts_with_lock`). Fails when another run holds the
    /// lock or the lock could not be taken.
    pub(super) async fn facts_and_lock(&mut self) -> anyhow::Result<()> {
        let lock = &self.core.lock;
        let lock = FirstFacts {
            script: fold::facts_with_lock(&facts::script(), &lock.owner(), lock.stale_after()),
            with_lock: true,
            reply: Mutex::new(None),
        };
        self.gather(Some(&lock)).await;
        match lock.reply.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(out)) => {
                let answer = fold::split_facts_with_lock(&out.stdout_lossy()).0;
                let core = &mut self.core;
                if let Some(note) = core.lock.answered(&core.engine, answer, &out)? {
                    self.message(note);
                }
                Ok(())
            }
            Some(Err(())) if self.core.engine.is_cancelled() => {
                self.core.lock.taken_unanswered();
                Ok(())
            }
            // Unreachable (or its facts failed): facts say so and nothing will be attempted.
            _ => Ok(()),
        }
    }

    /// The first server rebooted while this run held the lock: it is gone with the tmpfs, so
    /// take it again in a round trip of its own (there is no other command to fold it into).
    pub(super) async fn retake_lock(&mut self) -> anyhow::Result<()> {
        self.core.lock.gone();
        Ok(steps::take_lock(&mut self.core).await?)
    }
}

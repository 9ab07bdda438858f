//! `up`'s cluster lock on the first server: taken inside the first server's facts exec (or on
//! its own after a reboot), released with the run's last read-only command or on its own.

use super::*;

impl Runner<'_> {
    /// `EPOCH`-less owner text of this run's lock: `user@workstation pid N run ID (edgeops up)`.
    pub(super) fn lock_owner(&self) -> String {
        crate::phases::lock::owner(&self.run_id, Some("edgeops up"))
    }

    /// The facts of every host, the first server's in the same exec as taking the lock (one
    /// round trip instead of two; `fold::facts_with_lock`). Fails when another run holds the
    /// lock or the lock could not be taken.
    pub(super) async fn facts_and_lock(&mut self) -> anyhow::Result<()> {
        let lock = FirstFacts {
            script: fold::facts_with_lock(
                &facts::script(),
                &self.lock_owner(),
                self.options.lock_stale_after,
            ),
            with_lock: true,
            reply: Mutex::new(None),
        };
        self.gather(Some(&lock)).await;
        match lock.reply.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(out)) => {
                let answer = fold::split_facts_with_lock(&out.stdout_lossy()).0;
                self.lock_answered(out, answer)
            }
            Some(Err(())) if self.engine.is_cancelled() => {
                // Ctrl-C during the exec: the lock may be taken without the answer having
                // come back. The release only removes a lock of this run, so try it.
                self.locked = true;
                Ok(())
            }
            // Unreachable (or its facts failed): facts say so and nothing will be attempted.
            _ => Ok(()),
        }
    }

    /// Take the lock in a round trip of its own: only after the first server rebooted (the
    /// lock is on tmpfs), when there is no other command to fold it into.
    pub(super) async fn lock(&mut self) -> anyhow::Result<()> {
        let first = self.first_name();
        let script = remote::lock_acquire_script(&self.lock_owner(), self.options.lock_stale_after);
        let out = self
            .engine
            .exec(
                self.first,
                "lock",
                &ExecRequest::new(script).sudo(true),
                Output::Logged,
            )
            .await
            .map_err(|failure| anyhow::anyhow!("{first}: cannot take the up lock: {failure}"))?;
        let answer = remote::parse_lock_answer(&out.stdout_lossy());
        self.lock_answered(out, answer)
    }

    /// Act on the lock script's answer (`out`: the whole exec, for the reason when none).
    pub(super) fn lock_answered(
        &mut self,
        out: ExecOutput,
        answer: Option<LockAnswer>,
    ) -> anyhow::Result<()> {
        let first = self.first_name();
        match answer {
            Some(answer) => {
                let note = crate::phases::lock::settle(
                    answer,
                    &self.inventory.cluster.name,
                    &first,
                    self.options.lock_stale_after,
                )?;
                self.locked = true;
                if let Some(note) = note {
                    self.message(note);
                }
                Ok(())
            }
            None => {
                // The script never got to the lock (sudo refused, most often): as before the
                // fold, the run stops here.
                let reason = self
                    .engine
                    .checked("lock", out, Output::Logged)
                    .err()
                    .map_or_else(|| "the lock script gave no answer".to_owned(), |f| f.reason);
                anyhow::bail!("{first}: cannot take the up lock: {reason}")
            }
        }
    }

    /// Release the lock when this run still holds it (also after a failure or Ctrl-C: the
    /// release only removes a lock of this run).
    pub(super) async fn release_lock(&mut self) {
        if !self.locked {
            return;
        }
        let first = self.first_name();
        let request = crate::phases::lock::release_request(&self.run_id);
        if let Err(failure) = self
            .engine
            .run(self.first, "unlock", &request, Output::Logged)
            .await
        {
            self.message(format!(
                "{first}: could not release the up lock ({failure}); it expires after {} (or: edgeops unlock INVENTORY)",
                humantime::format_duration(self.options.lock_stale_after)
            ));
        }
        self.locked = false;
    }
}

//! The join token guard: before `up` writes anything, the inventory's token is compared with
//! the one the running cluster was started with, on the first server, so neither is printed,
//! logged or sent back. k3s binds its datastore to the token: a server restarted with another
//! one exits ("bootstrap data already found and encrypted with different token") and every
//! join with it is refused, so a mismatch stops the run before any change.

use super::*;

/// Compares the token on stdin (first line) with the first server's, the secret part and,
/// when both carry one, the CA hash; prints `token-check: same|secret-differs|ca-differs|absent`.
/// Run with sudo (the server's token file is 0600). Only shell builtins see the values.
pub(super) fn token_check_script() -> String {
    format!(
        "IFS= read -r want || true\n\
         f={path}\n\
         if [ ! -s \"$f\" ]; then echo 'token-check: absent'; exit 0; fi\n\
         IFS= read -r have <\"$f\" || true\n\
         secret() {{ case \"$1\" in K10*::*:*) printf '%s' \"${{1#*::*:}}\" ;; *) printf '%s' \"$1\" ;; esac; }}\n\
         cahash() {{ case \"$1\" in K10*::*) v=${{1#K10}}; printf '%s' \"${{v%%::*}}\" ;; esac; }}\n\
         if [ \"$(secret \"$want\")\" != \"$(secret \"$have\")\" ]; then echo 'token-check: secret-differs'\n\
         elif [ -n \"$(cahash \"$want\")\" ] && [ \"$(cahash \"$want\")\" != \"$(cahash \"$have\")\" ]; then echo 'token-check: ca-differs'\n\
         else echo 'token-check: same'; fi\n",
        path = crate::k3s::token::NODE_TOKEN_PATH,
    )
}

impl Runner<'_> {
    /// `false`: the inventory's token is not the cluster's; every host is stopped with why.
    /// Runs only when the inventory names a token, the first server runs k3s as a server and
    /// some host would be (re)installed (which writes the token): one round trip then, none on a
    /// converged re-run.
    pub(super) async fn join_token_matches(&mut self) -> bool {
        let Some(token) = self.options.token.clone() else {
            return true;
        };
        let first = self.first.clone();
        let running = self.hosts[&first]
            .facts
            .as_ref()
            .is_some_and(|f| f.installed_role() == Some(Role::Server));
        let writers: Vec<String> = self
            .order
            .iter()
            .filter(|n| {
                let s = &self.hosts[*n];
                s.alive()
                    && matches!(
                        s.action(),
                        Action::Install | Action::Reconfigure | Action::Upgrade
                    )
            })
            .cloned()
            .collect();
        if !running || writers.is_empty() || !self.hosts[&first].alive() {
            return true;
        }
        let request = ExecRequest::new(token_check_script())
            .sudo(true)
            .stdin(token.file_contents().into_bytes());
        let answer = match self.step(&first, "join token check", request, false).await {
            Ok(out) => out.stdout_lossy(),
            Err(reason) => {
                self.stop_all(&first, &format!("the join token check failed ({reason})"));
                return false;
            }
        };
        let verdict = answer
            .lines()
            .find_map(|l| l.strip_prefix("token-check: "))
            .unwrap_or("")
            .trim()
            .to_owned();
        let what = match verdict.as_str() {
            "same" | "absent" => return true,
            "ca-differs" => "its CA hash is not this cluster's CA (a token of another cluster)",
            "secret-differs" => "it is not the token the cluster was started with",
            _ => {
                self.stop_all(&first, "the join token check gave no answer");
                return false;
            }
        };
        let source = match &self.inventory.cluster.token {
            crate::inventory::SecretSource::Env(var) => format!("token_env {var}"),
            crate::inventory::SecretSource::File(path) => format!("token_file {}", path.display()),
            _ => "the inventory".to_owned(),
        };
        let reason = format!(
            "cluster {cluster}: the inventory's join token ({source}) does not match the running \
             cluster's on {first}: {what}. k3s would refuse it (a server restarted with it exits: \
             \"bootstrap data already found and encrypted with different token\"; joins with it are \
             refused), so nothing was changed on {hosts}. Fix: give the cluster's token (the one in \
             /var/lib/rancher/k3s/server/token on {first}) in {source}",
            cluster = self.inventory.cluster.name,
            hosts = writers.join(", "),
        );
        self.message(reason.clone());
        self.stop_all(&first, &reason);
        false
    }

    /// The first server fails with `reason`; every other host still waiting is skipped.
    fn stop_all(&mut self, first: &str, reason: &str) {
        self.state_mut(first).fail(reason.to_owned());
        self.skip_rest(&format!(
            "the join token check on {first} stopped the run: nothing was changed"
        ));
    }
}

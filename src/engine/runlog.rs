//! The run folder: one 0600 log per host with the full remote output of every step, secrets
//! redacted. Lives under `$XDG_STATE_HOME/edgeops/runs/<cluster>/<timestamp>/` (default
//! `~/.local/state/...`), folder 0700, so a failed install can be read after the fact.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Replaces every known secret in text with `[redacted]`. Secrets become known during a run (the
/// join token is read from the first server), so the list grows; clones share it.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    pub fn add(&self, secret: &str) {
        // Very short strings would redact ordinary words; real secrets here are long.
        if secret.len() < 8 {
            return;
        }
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        if !secrets.iter().any(|s| s == secret) {
            secrets.push(secret.to_owned());
            // The secret part of a `K10<hash>::server:<secret>` token travels on its own too
            // (k3s writes it to files and logs); redact it wherever it appears.
            if let Some((_, tail)) = secret.rsplit_once(':')
                && tail.len() >= 8
            {
                secrets.push(tail.to_owned());
            }
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_owned();
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        redact_gitlab_tokens(&out)
    }
}

/// Prefixes GitLab puts on its tokens (personal/project/group access, agent, runner
/// authentication, deploy, trigger, CI job tokens), from GitLab's token overview.
const GITLAB_TOKEN_PREFIXES: [&str; 7] = [
    "glpat-", "glagent-", "glrt-", "gldt-", "glptt-", "glcbt-", "glsoat-",
];

/// Shortest token body after a prefix that counts as a token (real ones are 20+ characters), so
/// prose such as "glrt-..." in a message stays readable.
const MIN_GITLAB_TOKEN_BODY: usize = 8;

/// Defence in depth: a GitLab token the run never learnt (a stale one in a file, one echoed by
/// a tool) is still redacted, by its prefix.
fn redact_gitlab_tokens(text: &str) -> String {
    if !text.contains("gl") {
        return text.to_owned();
    }
    let is_body = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while let Some(at) = rest.find("gl") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        for prefix in GITLAB_TOKEN_PREFIXES {
            if let Some(after) = from.strip_prefix(prefix) {
                let body = after.find(|c: char| !is_body(c)).unwrap_or(after.len());
                if body >= MIN_GITLAB_TOKEN_BODY {
                    out.push_str("[redacted]");
                    rest = &after[body..];
                    continue 'scan;
                }
            }
        }
        out.push_str("gl");
        rest = &from[2..];
    }
    out.push_str(rest);
    out
}

/// Where this run's host logs go. Logging never fails a run: a write error is reported once
/// on stderr by the caller's tracing and the step goes on.
#[derive(Clone)]
pub struct RunLog {
    dir: Option<PathBuf>,
    redactor: Redactor,
}

impl RunLog {
    /// A new run folder for `cluster`; `None` inside when it cannot be created (no HOME).
    pub fn create(cluster: &str, redactor: Redactor) -> RunLog {
        let dir = state_home().map(|base| {
            let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                .to_string()
                .replace([':', '-'], "");
            base.join("edgeops/runs")
                .join(sanitize(cluster))
                .join(format!("{stamp}-{}", std::process::id()))
        });
        let dir = dir.filter(|dir| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    tracing::warn!("cannot create the run log folder {}: {e}", dir.display())
                })
                .is_ok()
        });
        RunLog { dir, redactor }
    }

    /// A log in `dir`, which exists (unit tests that read what a run logged).
    pub fn in_dir(dir: &Path, redactor: Redactor) -> RunLog {
        RunLog {
            dir: Some(dir.to_owned()),
            redactor,
        }
    }

    /// A log that writes nothing (plan, status).
    pub fn disabled(redactor: Redactor) -> RunLog {
        RunLog {
            dir: None,
            redactor,
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn host_file(&self, host: &str) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(format!("{}.log", sanitize(host))))
    }

    /// Append a section to `host`'s log, redacted.
    pub fn write(&self, host: &str, title: &str, body: &str) {
        let Some(path) = self.host_file(host) else {
            return;
        };
        let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let text = format!(
            "==== {stamp} {title}\n{}{}",
            self.redactor.redact(body),
            if body.is_empty() || body.ends_with('\n') {
                ""
            } else {
                "\n"
            }
        );
        let result = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = result {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }
}

fn state_home() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
}

/// Names come from the inventory; keep them to one path component.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_whole_tokens_and_their_secret_part() {
        let r = Redactor::default();
        r.add("K10aaaa::server:supersecretvalue");
        assert_eq!(
            r.redact("token K10aaaa::server:supersecretvalue and supersecretvalue"),
            "token [redacted] and [redacted]"
        );
    }

    #[test]
    fn gitlab_tokens_are_redacted_by_prefix_even_when_unknown() {
        let r = Redactor::default();
        assert_eq!(
            r.redact("runnerToken: glrt-t1_AbCdEf0123456789 agent=glagent-xyzXYZ0123456789abc."),
            "runnerToken: [redacted] agent=[redacted]."
        );
        // Short mentions in prose and other words starting with "gl" stay.
        assert_eq!(
            r.redact("the glrt-... token, global glory"),
            "the glrt-... token, global glory"
        );
    }

    #[test]
    fn host_logs_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let log = RunLog {
            dir: Some(dir.path().to_owned()),
            redactor: Redactor::default(),
        };
        log.redactor().add("0123456789abcdef");
        log.write("pi-01", "install", "got 0123456789abcdef\n");
        let path = log.host_file("pi-01").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("got [redacted]"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

//! What edgeops keeps on the first server for GitLab, and its look at it: the tokens file
//! (GitLab shows an agent or runner token only once, so the next run must find it there to
//! create nothing new: one root-only 0600 file beside edgeops's other k3s state, so
//! uninstalling k3s removes it with the cluster it belonged to, tied to the GitLab URL, project
//! and agent it was issued for), and the one-round-trip look at it and at the HelmChart
//! manifests the GitLab phase writes (hash, mode, owner).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::engine::runlog::Redactor;
use crate::gitlab::sha256_hex;
use crate::inventory::GitLab;
use crate::k3s::helmcharts::MANIFESTS_DIR;
use crate::shell::shell_quote;

/// Where the tokens live on the first server (root:root, 0600).
pub const TOKENS_PATH: &str = "/etc/rancher/k3s/edgeops-gitlab-tokens";

/// What the tokens were issued for: tokens of another instance, project or agent are not reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub gitlab_url: String,
    pub project: String,
    pub agent_name: String,
}

impl TokenOwner {
    /// The owner of the tokens issued for the inventory's `[gitlab]`.
    pub fn of(gitlab: &GitLab) -> TokenOwner {
        TokenOwner {
            gitlab_url: gitlab.url.trim_end_matches('/').to_owned(),
            project: gitlab.project.clone(),
            agent_name: gitlab.agent_name.clone(),
        }
    }
}

/// The tokens file's content. `Debug` shows no secret.
#[derive(Clone)]
pub struct StoredTokens {
    pub owner: TokenOwner,
    /// `glagent-...`
    pub agent: Option<SecretString>,
    /// `glrt-...`
    pub runner: Option<SecretString>,
}

impl fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTokens")
            .field("owner", &self.owner)
            .field("agent", &self.agent.as_ref().map(|_| "[redacted]"))
            .field("runner", &self.runner.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl StoredTokens {
    /// Parse the file (`key=value` lines, `#` comments); `None` when it holds no owner (absent,
    /// empty, or not ours).
    pub fn parse(text: &str) -> Option<StoredTokens> {
        let mut url = None;
        let mut project = None;
        let mut agent_name = None;
        let mut agent = None;
        let mut runner = None;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            let secret = || (!value.is_empty()).then(|| SecretString::from(value.to_owned()));
            match key.trim() {
                "gitlab_url" => url = Some(value.to_owned()),
                "project" => project = Some(value.to_owned()),
                "agent_name" => agent_name = Some(value.to_owned()),
                "agent_token" => agent = secret(),
                "runner_token" => runner = secret(),
                _ => {}
            }
        }
        Some(StoredTokens {
            owner: TokenOwner {
                gitlab_url: url?,
                project: project?,
                agent_name: agent_name?,
            },
            agent,
            runner,
        })
    }

    /// The file's content; stable for the same tokens, so an unchanged set is never rewritten.
    pub fn to_file(&self) -> String {
        let mut text = format!(
            "# GitLab tokens edgeops issued for this cluster; reused by `edgeops up`, replaced by\n\
             # `edgeops up --rotate-tokens`. Root only.\n\
             gitlab_url={}\nproject={}\nagent_name={}\n",
            self.owner.gitlab_url, self.owner.project, self.owner.agent_name
        );
        if let Some(token) = &self.agent {
            text.push_str(&format!("agent_token={}\n", token.expose_secret()));
        }
        if let Some(token) = &self.runner {
            text.push_str(&format!("runner_token={}\n", token.expose_secret()));
        }
        text
    }

    /// The tokens, if they were issued for `owner` (a changed URL, project or agent name makes
    /// them useless: the next registration issues new ones).
    pub fn for_owner(self, owner: &TokenOwner) -> Option<StoredTokens> {
        (self.owner == *owner).then_some(self)
    }
}

/// Mode and owner of every file this phase writes: the manifests and the tokens file hold tokens.
pub const SECRET_MODE: u32 = 0o600;
pub const SECRET_OWNER: &str = "root:root";
/// How `stat -c '%a %U:%G'` shows a file written with [`SECRET_MODE`] and [`SECRET_OWNER`].
pub const SECRET_STAT: &str = "600 root:root";

/// One file on the first server as the look script saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub sha256: String,
    /// `600 root:root`
    pub stat: String,
}

/// What the first server holds for the GitLab phase, read in one round trip.
#[derive(Debug, Default)]
pub struct HostLook {
    pub files: Vec<(String, Option<RemoteFile>)>,
    pub tokens_text: String,
}

impl HostLook {
    pub fn file(&self, path: &str) -> Option<&RemoteFile> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .and_then(|(_, f)| f.as_ref())
    }

    /// The tokens stored for this cluster's `owner` (none when another owner's are there),
    /// their values added to `redactor` before anything can print them.
    pub fn stored_tokens(&self, owner: &TokenOwner, redactor: &Redactor) -> Option<StoredTokens> {
        let stored = StoredTokens::parse(&self.tokens_text).and_then(|s| s.for_owner(owner))?;
        for token in [&stored.agent, &stored.runner].into_iter().flatten() {
            redactor.add(token.expose_secret());
        }
        Some(stored)
    }

    /// Whether `content` is already at `path`, private and root-owned.
    pub fn holds(&self, path: &str, content: &str) -> bool {
        self.file(path)
            .is_some_and(|f| f.sha256 == sha256_hex(content.as_bytes()) && f.stat == SECRET_STAT)
    }
}

/// The look script: hash, mode and owner of the manifests of `charts` and of the tokens file,
/// then the tokens, in one round trip (sudo). With `create_dir` the manifests folder is made
/// when missing (never on a converged server).
pub fn look_script(charts: &[String], create_dir: bool) -> String {
    let paths: Vec<String> = charts
        .iter()
        .map(|c| format!("{MANIFESTS_DIR}/{c}.yaml"))
        .chain([TOKENS_PATH.to_owned()])
        .collect();
    let mut script = String::from("set -u\n");
    if create_dir {
        script.push_str(&format!(
            "[ -d {MANIFESTS_DIR} ] || {{ umask 022; mkdir -p {MANIFESTS_DIR}; }}\n"
        ));
    }
    script.push_str(&format!(
        "for f in {}; do\n\
         \x20 if [ -f \"$f\" ]; then\n\
         \x20   echo \"file $f $(sha256sum <\"$f\" | cut -d' ' -f1) $(stat -c '%a %U:%G' \"$f\")\"\n\
         \x20 else echo \"file $f -\"; fi\n\
         done\n\
         echo '--- tokens'\n\
         cat {TOKENS_PATH} 2>/dev/null || true\n",
        paths
            .iter()
            .map(|p| shell_quote(p))
            .collect::<Vec<_>>()
            .join(" "),
    ));
    script
}

/// What [`look_script`] printed.
pub fn parse_look(stdout: &str) -> HostLook {
    let (files, tokens) = stdout.split_once("--- tokens\n").unwrap_or((stdout, ""));
    let files = files
        .lines()
        .filter_map(|line| {
            let mut parts = line.strip_prefix("file ")?.splitn(3, ' ');
            let path = parts.next()?.to_owned();
            let file = match (parts.next()?, parts.next()) {
                ("-", _) | (_, None) => None,
                (sha256, Some(stat)) => Some(RemoteFile {
                    sha256: sha256.to_owned(),
                    stat: stat.trim().to_owned(),
                }),
            };
            Some((path, file))
        })
        .collect();
    HostLook {
        files,
        tokens_text: tokens.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> TokenOwner {
        TokenOwner {
            gitlab_url: "https://gitlab.example.com".into(),
            project: "edge/fleet".into(),
            agent_name: "pi-lab".into(),
        }
    }

    #[test]
    fn round_trips_and_hides_tokens_in_debug() {
        let stored = StoredTokens {
            owner: owner(),
            agent: Some(SecretString::from("glagent-aaaaaaaaaaaa")),
            runner: Some(SecretString::from("glrt-bbbbbbbbbbbb")),
        };
        let text = stored.to_file();
        let back = StoredTokens::parse(&text).unwrap();
        assert_eq!(back.owner, owner());
        assert_eq!(
            back.agent.as_ref().unwrap().expose_secret(),
            "glagent-aaaaaaaaaaaa"
        );
        assert_eq!(back.to_file(), text);
        let debug = format!("{back:?}");
        assert!(
            !debug.contains("glagent-") && !debug.contains("glrt-"),
            "{debug}"
        );
    }

    #[test]
    fn tokens_of_another_agent_or_no_file_are_not_used() {
        assert!(StoredTokens::parse("").is_none());
        let stored = StoredTokens::parse(
            "gitlab_url=https://gitlab.example.com\nproject=edge/fleet\nagent_name=other\n\
             agent_token=glagent-x\n",
        )
        .unwrap();
        assert!(stored.clone().for_owner(&owner()).is_none());
        let mut same = owner();
        same.agent_name = "other".into();
        assert!(stored.for_owner(&same).is_some());
    }

    #[test]
    fn look_output_is_parsed_per_file() {
        let look = parse_look(
            "file /m/a.yaml 0123abcd 600 root:root\nfile /m/b.yaml -\n--- tokens\nproject=x\n",
        );
        assert_eq!(
            look.file("/m/a.yaml"),
            Some(&RemoteFile {
                sha256: "0123abcd".into(),
                stat: "600 root:root".into()
            })
        );
        assert_eq!(look.file("/m/b.yaml"), None);
        assert_eq!(look.tokens_text, "project=x\n");
    }

    #[test]
    fn a_file_is_held_only_with_the_same_content_mode_and_owner() {
        let hash = sha256_hex(b"x: 1\n");
        let look = parse_look(&format!(
            "file /a {hash} 600 root:root\nfile /b {hash} 644 root:root\n--- tokens\n"
        ));
        assert!(look.holds("/a", "x: 1\n"));
        assert!(!look.holds("/a", "x: 2\n"));
        assert!(
            !look.holds("/b", "x: 1\n"),
            "a world-readable copy is rewritten"
        );
        assert!(!look.holds("/c", "x: 1\n"));
    }
}

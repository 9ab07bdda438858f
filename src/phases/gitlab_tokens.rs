//! The GitLab tokens `up` keeps on the first server between runs: GitLab shows an agent or
//! runner token only once, so the next run must find it there to create nothing new. One
//! root-only 0600 file beside edgeops's other k3s state (so uninstalling k3s removes it with the
//! cluster it belonged to), tied to the GitLab URL, project and agent it was issued for.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Where the tokens live on the first server (root:root, 0600).
pub const TOKENS_PATH: &str = "/etc/rancher/k3s/edgeops-gitlab-tokens";

/// What the tokens were issued for: tokens of another instance, project or agent are not reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub gitlab_url: String,
    pub project: String,
    pub agent_name: String,
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
}

//! The cluster join token: validation of its formats, generation, reading it from the inventory's
//! secret source, and keeping it out of every printout.
//!
//! k3s accepts two shapes (docs.k3s.io, "Token"): the *secure* format a server writes to
//! `/var/lib/rancher/k3s/server/node-token`, `K10<sha256 of the cluster CA, hex>::<user>:<secret>`,
//! which lets a joining node pin the CA; and a *short* token, any password-like string, which is
//! what users (and edgeops, when the inventory gives none) set on the first server.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::inventory::SecretSource;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the join token is empty")]
    Empty,
    #[error("the join token contains whitespace or control characters")]
    BadCharacters,
    #[error("the join token starts with K10 but is not `K10<64 hex digits>::<user>:<secret>`: {0}")]
    MalformedSecure(&'static str),
    #[error("environment variable {var} is not set (it should hold the {what})")]
    EnvMissing { var: String, what: &'static str },
    #[error("environment variable {var} is not valid UTF-8 (it should hold the {what})")]
    EnvNotUnicode { var: String, what: &'static str },
    #[error("environment variable {var} is empty (it should hold the {what})")]
    EnvEmpty { var: String, what: &'static str },
    #[error("cannot read the {what} from {}: {reason}", path.display())]
    FileUnreadable {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{} is empty (it should hold the {what})", path.display())]
    FileEmpty { path: PathBuf, what: &'static str },
    #[error("the join token from {origin} is invalid: {source}")]
    Invalid {
        origin: String,
        #[source]
        source: Box<TokenError>,
    },
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
}

/// Where a k3s server keeps the secure join token (also `.../server/token`).
pub const NODE_TOKEN_PATH: &str = "/var/lib/rancher/k3s/server/node-token";

/// The join token. Never printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone)]
pub struct JoinToken(SecretString);

impl JoinToken {
    /// Validate a token. Anything starting with `K10` must be a complete secure token; other
    /// strings are short tokens and only need to be non-empty printable text without spaces
    /// (they end up in a file and a systemd env file, where whitespace would be mangled).
    pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
        if text.is_empty() {
            return Err(TokenError::Empty);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::BadCharacters);
        }
        if let Some(rest) = text.strip_prefix("K10") {
            check_secure(rest)?;
        }
        Ok(JoinToken(SecretString::from(text.to_owned())))
    }

    /// The token read back from a server's `NODE_TOKEN_PATH` (surrounding whitespace and the
    /// final newline trimmed). It must be the secure format: k3s always writes that.
    pub fn from_node_token(contents: &str) -> Result<JoinToken, TokenError> {
        let token = JoinToken::parse(contents.trim())?;
        if !token.is_secure() {
            return Err(TokenError::MalformedSecure(
                "a server's node-token file always holds the secure format",
            ));
        }
        Ok(token)
    }

    /// A fresh short token: 32 bytes from the operating system's CSPRNG, hex-encoded.
    pub fn generate() -> Result<JoinToken, TokenError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|err| TokenError::Random(err.to_string()))?;
        Ok(JoinToken(SecretString::from(hex::encode(bytes))))
    }

    /// Is this the `K10...` format that pins the cluster CA?
    pub fn is_secure(&self) -> bool {
        self.0.expose_secret().starts_with("K10")
    }

    /// The CA hash of a secure token (not secret: it is a hash of the public CA certificate).
    pub fn ca_hash(&self) -> Option<&str> {
        let text = self.0.expose_secret();
        text.strip_prefix("K10").map(|rest| &rest[..64])
    }

    /// The token text, for writing it into the 0600 token file. Named loudly on purpose.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The contents of the token file edgeops uploads (`K3S_TOKEN_FILE`): the token and a newline.
    pub fn file_contents(&self) -> String {
        format!("{}\n", self.expose())
    }
}

/// `rest` is what follows `K10`: 64 hex digits, `::`, then `user:secret`.
fn check_secure(rest: &str) -> Result<(), TokenError> {
    let (hash, credentials) = rest
        .split_once("::")
        .ok_or(TokenError::MalformedSecure("no `::` after the CA hash"))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::MalformedSecure(
            "the CA hash is not 64 hex digits",
        ));
    }
    let (user, secret) = credentials
        .split_once(':')
        .ok_or(TokenError::MalformedSecure("no `user:secret` after `::`"))?;
    if user.is_empty() || secret.is_empty() {
        return Err(TokenError::MalformedSecure("empty user or secret"));
    }
    Ok(())
}

impl PartialEq for JoinToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinToken([redacted])")
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Read a secret from its source: an env var's value or a file's first line, trimmed.
/// `what` names the secret in errors ("k3s join token", "GitLab API token"). `Generate` gives
/// `None`: the caller decides (generate a join token, read it back from the first server).
pub fn read_secret(
    source: &SecretSource,
    what: &'static str,
) -> Result<Option<SecretString>, TokenError> {
    read_secret_with(source, what, |var| std::env::var(var))
}

/// `read_secret` with the environment lookup passed in (tests must not mutate the process
/// environment while other threads read it).
pub fn read_secret_with(
    source: &SecretSource,
    what: &'static str,
    env: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Option<SecretString>, TokenError> {
    match source {
        SecretSource::Generate => Ok(None),
        SecretSource::Env(var) => {
            let value = env(var).map_err(|err| match err {
                std::env::VarError::NotPresent => TokenError::EnvMissing {
                    var: var.clone(),
                    what,
                },
                std::env::VarError::NotUnicode(_) => TokenError::EnvNotUnicode {
                    var: var.clone(),
                    what,
                },
            })?;
            let value = value.trim();
            if value.is_empty() {
                return Err(TokenError::EnvEmpty {
                    var: var.clone(),
                    what,
                });
            }
            Ok(Some(SecretString::from(value.to_owned())))
        }
        SecretSource::File(path) => read_secret_file(path, what).map(Some),
    }
}

fn read_secret_file(path: &Path, what: &'static str) -> Result<SecretString, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|err| TokenError::FileUnreadable {
        path: path.to_owned(),
        what,
        reason: err.to_string(),
    })?;
    let first_line = text.lines().next().unwrap_or("").trim();
    if first_line.is_empty() {
        return Err(TokenError::FileEmpty {
            path: path.to_owned(),
            what,
        });
    }
    Ok(SecretString::from(first_line.to_owned()))
}

/// The join token from the inventory's `[cluster] token` source, validated; `None` when the
/// inventory asks edgeops to generate it (or read it back from the first server).
pub fn read_join_token(source: &SecretSource) -> Result<Option<JoinToken>, TokenError> {
    read_join_token_with(source, |var| std::env::var(var))
}

/// `read_join_token` with the environment lookup passed in.
pub fn read_join_token_with(
    source: &SecretSource,
    env: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<Option<JoinToken>, TokenError> {
    let Some(secret) = read_secret_with(source, "k3s join token", env)? else {
        return Ok(None);
    };
    let origin = match source {
        SecretSource::Env(var) => format!("environment variable {var}"),
        SecretSource::File(path) => path.display().to_string(),
        SecretSource::Generate => unreachable!("Generate returned early"),
    };
    JoinToken::parse(secret.expose_secret())
        .map(Some)
        .map_err(|source| TokenError::Invalid {
            origin,
            source: Box::new(source),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA_HASH: &str = "d1f5c8a2b3e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f";

    #[test]
    fn accepts_secure_and_short_tokens() {
        let secure = JoinToken::parse(&format!("K10{CA_HASH}::server:5e0c2f1d9b")).unwrap();
        assert!(secure.is_secure());
        assert_eq!(secure.ca_hash(), Some(CA_HASH));
        let short = JoinToken::parse("my-cluster-password").unwrap();
        assert!(!short.is_secure());
        assert_eq!(short.ca_hash(), None);
        assert_eq!(short.file_contents(), "my-cluster-password\n");
    }

    #[test]
    fn rejects_broken_tokens_with_the_reason() {
        assert_eq!(JoinToken::parse(""), Err(TokenError::Empty));
        assert_eq!(JoinToken::parse("a b"), Err(TokenError::BadCharacters));
        assert_eq!(JoinToken::parse("abc\n"), Err(TokenError::BadCharacters));
        for (token, reason) in [
            (
                format!("K10{CA_HASH}:server:x"),
                "no `::` after the CA hash",
            ),
            (
                format!("K10{}::server:x", &CA_HASH[1..]),
                "the CA hash is not 64 hex digits",
            ),
            (
                format!("K10{}g::server:x", &CA_HASH[1..]),
                "the CA hash is not 64 hex digits",
            ),
            (
                format!("K10{CA_HASH}::serverx"),
                "no `user:secret` after `::`",
            ),
            (format!("K10{CA_HASH}::server:"), "empty user or secret"),
        ] {
            assert_eq!(
                JoinToken::parse(&token),
                Err(TokenError::MalformedSecure(reason)),
                "{token}"
            );
        }
    }

    #[test]
    fn node_token_files_are_trimmed_and_must_be_secure() {
        let contents = format!("K10{CA_HASH}::server:5e0c2f1d9b\n");
        let token = JoinToken::from_node_token(&contents).unwrap();
        assert_eq!(token.file_contents(), contents);
        assert!(JoinToken::from_node_token("short-one\n").is_err());
    }

    #[test]
    fn generated_tokens_are_64_hex_digits_and_differ() {
        let a = JoinToken::generate().unwrap();
        let b = JoinToken::generate().unwrap();
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(JoinToken::parse(a.expose()).is_ok());
    }

    #[test]
    fn debug_and_display_never_show_the_token() {
        let token = JoinToken::parse("supersecretvalue").unwrap();
        assert_eq!(format!("{token:?}"), "JoinToken([redacted])");
        assert_eq!(format!("{token}"), "[redacted]");
        assert!(!format!("{:?}", Some(&token)).contains("supersecret"));
    }

    #[test]
    fn reads_from_a_file_first_line_trimmed_and_names_the_file_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  abc123  \nignored\n").unwrap();
        let token = read_join_token(&SecretSource::File(path.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(token.expose(), "abc123");

        std::fs::write(&path, "\n").unwrap();
        let err = read_join_token(&SecretSource::File(path.clone())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is empty (it should hold the k3s join token)",
                path.display()
            )
        );

        let missing = dir.path().join("missing");
        let err = read_join_token(&SecretSource::File(missing.clone())).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "cannot read the k3s join token from {}: ",
                missing.display()
            )),
            "{err}"
        );

        std::fs::write(&path, "K10abc::server:x\n").unwrap();
        let err = read_join_token(&SecretSource::File(path.clone())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the join token from {} is invalid: the join token starts with K10 but is not \
                 `K10<64 hex digits>::<user>:<secret>`: the CA hash is not 64 hex digits",
                path.display()
            )
        );
    }

    #[test]
    fn reads_from_an_env_var_and_names_the_var_on_errors() {
        let env = |var: &str| match var {
            "EDGEOPS_TOKEN" => Ok(" tok-en\n".to_owned()),
            "EDGEOPS_BLANK" => Ok("  ".to_owned()),
            _ => Err(std::env::VarError::NotPresent),
        };
        let read = |var: &str| read_join_token_with(&SecretSource::Env(var.into()), env);
        assert_eq!(read("EDGEOPS_TOKEN").unwrap().unwrap().expose(), "tok-en");
        assert_eq!(
            read("EDGEOPS_MISSING").unwrap_err().to_string(),
            "environment variable EDGEOPS_MISSING is not set (it should hold the k3s join token)"
        );
        assert_eq!(
            read("EDGEOPS_BLANK").unwrap_err().to_string(),
            "environment variable EDGEOPS_BLANK is empty (it should hold the k3s join token)"
        );
        assert!(read_join_token(&SecretSource::Generate).unwrap().is_none());
    }

    #[test]
    fn the_real_environment_is_read() {
        // PATH is set in every environment tests run in; a variable nobody sets is not.
        let path = read_secret(&SecretSource::Env("PATH".into()), "test value").unwrap();
        assert_eq!(
            path.unwrap().expose_secret(),
            std::env::var("PATH").unwrap().trim()
        );
        let err = read_secret(
            &SecretSource::Env("EDGEOPS_TEST_NEVER_SET_ANYWHERE".into()),
            "test value",
        )
        .unwrap_err();
        assert!(matches!(err, TokenError::EnvMissing { .. }));
    }
}

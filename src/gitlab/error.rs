//! GitLab errors: one variant per kind of answer a caller may branch on, each message naming the
//! request (method and path, never the token), what GitLab answered, and what to do about it.

use std::fmt;

/// The request an error is about: `GET /projects/group%2Fproject/cluster_agents`.
///
/// Only the method and the API path are kept: the token travels in a header and the query holds
/// nothing the user needs to read, so neither can leak through an error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLabel {
    pub method: String,
    pub path: String,
}

impl fmt::Display for RequestLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Everything that can go wrong talking to GitLab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitLabError {
    /// The configured GitLab URL cannot be used.
    #[error(
        "invalid GitLab URL {url:?}: {reason}; use the instance's address, e.g. https://gitlab.com"
    )]
    InvalidBaseUrl { url: String, reason: String },

    /// The token cannot be put into an HTTP header (a stray newline or control character).
    #[error(
        "the GitLab token cannot be sent in an HTTP header ({reason}); check the token file or \
         variable for stray characters"
    )]
    InvalidToken { reason: String },

    /// 3xx: the URL is not the API's canonical one (http → https, an old host name).
    #[error(
        "{request}: GitLab answered {status}, a redirect to {location}; edgeops does not follow \
         redirects with a token attached: set the GitLab URL to the address redirected to"
    )]
    Redirected {
        request: RequestLabel,
        status: u16,
        location: String,
    },

    /// 401: the token is wrong, expired or revoked.
    #[error(
        "{request}: GitLab answered 401 Unauthorized ({answer}): the token is invalid or expired; \
         create a personal, group or project access token with scope `api` (see docs/GITLAB.md) \
         and give it to edgeops"
    )]
    Unauthorized {
        request: RequestLabel,
        answer: String,
    },

    /// 403: the token works but lacks a scope or the user lacks a role.
    #[error("{request}: GitLab answered 403 Forbidden ({answer}): {needs}")]
    Forbidden {
        request: RequestLabel,
        answer: String,
        /// What the operation needs: the scope and role, named for the user.
        needs: String,
    },

    /// 404: the thing does not exist, or the token's user cannot see it (GitLab does not say which).
    #[error(
        "{request}: GitLab answered 404 Not Found ({answer}): {subject} not found or the token \
         cannot see it; check the name or id, and that the token's user is a member with access"
    )]
    NotFound {
        request: RequestLabel,
        answer: String,
        /// What was looked for, e.g. `project group/app`.
        subject: String,
    },

    /// 400/409/422 and other 4xx: GitLab refused the values sent (a taken name, a bad field).
    #[error(
        "{request}: GitLab rejected the request with {status} ({answer}); fix the value it names \
         in the inventory, or the conflicting object in GitLab, and re-run"
    )]
    Rejected {
        request: RequestLabel,
        status: u16,
        answer: String,
    },

    /// 429 on every attempt.
    #[error(
        "{request}: GitLab answered 429 Too Many Requests ({answer}) on all {attempts} attempts; \
         wait a few minutes and re-run, or ask the GitLab administrator about the rate limits"
    )]
    RateLimited {
        request: RequestLabel,
        attempts: u32,
        answer: String,
    },

    /// 5xx on every attempt.
    #[error(
        "{request}: GitLab answered {status} ({answer}) on all {attempts} attempts; GitLab is \
         failing or under maintenance: check its status page and re-run later"
    )]
    Server {
        request: RequestLabel,
        status: u16,
        attempts: u32,
        answer: String,
    },

    /// No HTTP answer at all: DNS, connection, TLS, timeout.
    #[error(
        "{request}: no answer from GitLab after {attempts} attempt(s): {reason}; check the GitLab \
         URL, the network or proxy, and TLS certificates"
    )]
    Transport {
        request: RequestLabel,
        attempts: u32,
        reason: String,
    },

    /// A 2xx answer that is not what GitLab's API documents.
    #[error(
        "{request}: GitLab answered {status} with a body edgeops cannot read ({detail}); check \
         that the URL points at a GitLab instance"
    )]
    UnexpectedAnswer {
        request: RequestLabel,
        status: u16,
        detail: String,
    },
}

impl GitLabError {
    /// The HTTP status GitLab answered, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::NotFound { .. } => Some(404),
            Self::RateLimited { .. } => Some(429),
            Self::Rejected { status, .. }
            | Self::Redirected { status, .. }
            | Self::Server { status, .. }
            | Self::UnexpectedAnswer { status, .. } => Some(*status),
            Self::InvalidBaseUrl { .. } | Self::InvalidToken { .. } | Self::Transport { .. } => {
                None
            }
        }
    }
}

/// What a failed operation needs and what it was about, supplied by each operation so the error
/// can say "registering an agent needs ..." instead of a bare status.
#[derive(Debug, Clone)]
pub(crate) struct ErrorContext {
    /// What a 404 means here, e.g. `project group/app`.
    pub subject: String,
    /// The scope and role the operation needs, e.g. "registering an agent needs scope `api` ...".
    pub needs: String,
}

/// Longest slice of a non-JSON body quoted in an error.
const MAX_QUOTED_BODY: usize = 200;

/// Summarise an error body the way GitLab shapes it: `{"message": "..."}`, `{"message": {field:
/// [messages]}}`, or `{"error": ..., "error_description": ...}`; anything else is quoted, cut short.
pub(crate) fn summarize_answer(body: &str) -> String {
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return "empty body".to_owned();
    }
    let Ok(json) = serde_json::from_str::<serde_json::Value>(trimmed) else {
        return quote_text(trimmed);
    };
    if let Some(message) = json.get("message") {
        return describe_message(message);
    }
    if let Some(error) = json.get("error") {
        let error = plain(error);
        return match json.get("error_description").map(plain) {
            Some(description) if !description.is_empty() => format!("{error}: {description}"),
            _ => error,
        };
    }
    quote_text(trimmed)
}

/// The scope GitLab names in an `insufficient_scope` answer, if any.
pub(crate) fn missing_scope(body: &str) -> Option<String> {
    let json = serde_json::from_str::<serde_json::Value>(body.trim()).ok()?;
    let scope = json.get("scope")?.as_str()?.trim();
    (!scope.is_empty()).then(|| scope.to_owned())
}

fn describe_message(message: &serde_json::Value) -> String {
    match message {
        serde_json::Value::Object(fields) => fields
            .iter()
            .map(|(field, problems)| format!("{field}: {}", plain(problems)))
            .collect::<Vec<_>>()
            .join("; "),
        other => plain(other),
    }
}

/// A JSON value as prose: strings unquoted, arrays joined with commas.
fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn quote_text(text: &str) -> String {
    let mut end = text.len().min(MAX_QUOTED_BODY);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let ellipsis = if end < text.len() { "..." } else { "" };
    format!("{:?}{ellipsis}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_string_is_quoted_as_is() {
        assert_eq!(
            summarize_answer(r#"{"message":"404 Project Not Found"}"#),
            "404 Project Not Found"
        );
    }

    #[test]
    fn message_object_names_each_field() {
        let body =
            r#"{"message":{"name":["has already been taken","is too short"],"tag_list":"bad"}}"#;
        assert_eq!(
            summarize_answer(body),
            "name: has already been taken, is too short; tag_list: bad"
        );
    }

    #[test]
    fn error_with_description() {
        let body =
            r#"{"error":"insufficient_scope","error_description":"needs more","scope":"api"}"#;
        assert_eq!(summarize_answer(body), "insufficient_scope: needs more");
        assert_eq!(missing_scope(body).as_deref(), Some("api"));
    }

    #[test]
    fn non_json_bodies_are_cut_short() {
        let long = "x".repeat(500);
        let summary = summarize_answer(&long);
        assert!(summary.ends_with("..."), "{summary}");
        assert!(summary.len() < 220, "{summary}");
        assert_eq!(summarize_answer("  "), "empty body");
    }
}

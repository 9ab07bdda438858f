//! The HTTP side of the GitLab client: authentication, timeouts, retries with backoff honouring
//! `Retry-After`, pagination over `X-Next-Page`, and turning non-2xx answers into [`GitLabError`].
//! The operations (agents, runners, files) live in sibling modules and only describe requests.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::error::{ErrorContext, GitLabError, RequestLabel, missing_scope, summarize_answer};

/// GitLab's largest page size (REST API docs, "Pagination": `per_page` max 100).
const PER_PAGE: u32 = 100;

/// A guard against a server that always announces a next page.
const MAX_PAGES: u32 = 10_000;

/// Timeouts and retry policy. The defaults suit GitLab.com over a slow edge link.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time allowed to open the TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Time allowed for one whole request, answer included.
    pub request_timeout: Duration,
    /// Attempts per request, the first included; 429 and 5xx answers (and transport failures of
    /// GET requests) are retried until this many have been made.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each later attempt.
    pub initial_backoff: Duration,
    /// Cap on any single wait, `Retry-After` included, so a hostile header cannot stall a run.
    pub max_backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// A project or group as GitLab's API accepts it: a numeric id or a full path (`group/sub/app`),
/// which goes into URLs percent-encoded (`group%2Fsub%2Fapp`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathOrId {
    Id(u64),
    Path(String),
}

/// A project, by id or path.
pub type ProjectRef = PathOrId;
/// A group, by id or path.
pub type GroupRef = PathOrId;

impl PathOrId {
    /// `"42"` is an id; anything else is a path (leading/trailing slashes dropped).
    pub fn parse(text: &str) -> Self {
        let text = text.trim().trim_matches('/');
        match text.parse::<u64>() {
            Ok(id) => Self::Id(id),
            Err(_) => Self::Path(text.to_owned()),
        }
    }

    /// The form that goes into an API path.
    pub fn url_segment(&self) -> String {
        match self {
            Self::Id(id) => id.to_string(),
            Self::Path(path) => encode_component(path),
        }
    }
}

impl fmt::Display for PathOrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => write!(f, "#{id}"),
            Self::Path(path) => f.write_str(path),
        }
    }
}

impl From<u64> for PathOrId {
    fn from(id: u64) -> Self {
        Self::Id(id)
    }
}

impl From<&str> for PathOrId {
    fn from(text: &str) -> Self {
        Self::parse(text)
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters, so a `/` inside a project path
/// or file path stays one path segment, as GitLab requires.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One request as an operation describes it; the client adds the base URL, auth and retries.
pub(crate) struct Call {
    pub method: Method,
    /// API path below `/api/v4`, already encoded, starting with `/`.
    pub path: String,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<serde_json::Value>,
    pub context: ErrorContext,
}

impl Call {
    pub fn new(method: Method, path: String, context: ErrorContext) -> Self {
        Self {
            method,
            path,
            query: Vec::new(),
            body: None,
            context,
        }
    }

    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    pub fn body(mut self, body: serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }

    fn label(&self) -> RequestLabel {
        RequestLabel {
            method: self.method.to_string(),
            path: self.path.clone(),
        }
    }
}

/// A successful answer: status, headers and the body as text.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// A client for GitLab's REST API v4, authenticated by a personal, group or project access token.
pub struct GitLabClient {
    http: reqwest::Client,
    /// `https://host/api/v4`, without a trailing slash.
    api_base: String,
    /// Kept only to scrub it from quoted answers; it is sent through a sensitive default header.
    token: SecretString,
    options: ClientOptions,
}

impl fmt::Debug for GitLabClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitLabClient")
            .field("api_base", &self.api_base)
            .field("token", &"[redacted]")
            .field("options", &self.options)
            .finish()
    }
}

impl GitLabClient {
    /// A client for the instance at `base_url` (`https://gitlab.com`, or with `/api/v4` already).
    pub fn new(
        base_url: &str,
        token: SecretString,
        options: ClientOptions,
    ) -> Result<Self, GitLabError> {
        let api_base = api_base(base_url)?;
        // A token read from a file usually ends in a newline; it is never part of the token.
        let token = SecretString::from(token.expose_secret().trim().to_owned());
        let mut auth = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
            GitLabError::InvalidToken {
                reason: "it contains a control or non-ASCII character".to_owned(),
            }
        })?;
        // Sensitive header values are redacted by reqwest/http's own Debug output.
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert("PRIVATE-TOKEN", auth);
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("edgeops/", env!("CARGO_PKG_VERSION"))),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            // reqwest would replay the PRIVATE-TOKEN header to wherever a redirect points (it
            // strips only standard auth headers), so redirects are reported, never followed.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .build()
            .map_err(|error| GitLabError::InvalidBaseUrl {
                url: base_url.to_owned(),
                reason: format!("cannot build an HTTP client: {}", error_chain(&error)),
            })?;
        Ok(Self {
            http,
            api_base,
            token,
            options,
        })
    }

    /// The API root requests go to, e.g. `https://gitlab.com/api/v4`.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// Send `call`, retrying 429/5xx (and transport failures of GETs), and return a 2xx answer.
    pub(crate) async fn send(&self, call: &Call) -> Result<Answer, GitLabError> {
        let url = format!(
            "{}{}{}",
            self.api_base,
            call.path,
            query_string(&call.query)
        );
        let max_attempts = self.options.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.http.request(call.method.clone(), &url);
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    response
                        .text()
                        .await
                        .map(|body| Answer {
                            status,
                            headers,
                            body,
                        })
                        .map_err(|error| self.transport_reason(error))
                }
                Err(error) => Err(self.transport_reason(error)),
            };
            let answer = match outcome {
                Ok(answer) => answer,
                Err(reason) => {
                    // A POST that timed out may still have created something: only a GET is
                    // safe to repeat blindly.
                    if call.method == Method::GET && attempt < max_attempts {
                        tracing::debug!(request = %call.label(), attempt, %reason, "retrying");
                        tokio::time::sleep(retry_delay(attempt, None, &self.options)).await;
                        continue;
                    }
                    return Err(GitLabError::Transport {
                        request: call.label(),
                        attempts: attempt,
                        reason,
                    });
                }
            };
            let status = answer.status;
            if status.is_success() {
                return Ok(answer);
            }
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if retryable && attempt < max_attempts {
                let wait = retry_delay(attempt, retry_after(&answer.headers), &self.options);
                tracing::debug!(request = %call.label(), %status, attempt, ?wait, "retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(self.classify(call, status, &answer.headers, &answer.body, attempt));
        }
    }

    /// Send `call` and decode its JSON answer.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        call: Call,
    ) -> Result<T, GitLabError> {
        let answer = self.send(&call).await?;
        self.decode(&call, &answer)
    }

    /// GET every page of a list, following `X-Next-Page` (empty or absent on the last page).
    pub(crate) async fn get_all<T: DeserializeOwned>(
        &self,
        call: Call,
    ) -> Result<Vec<T>, GitLabError> {
        let mut items = Vec::new();
        let mut page = 1u32;
        loop {
            let mut paged = Call::new(call.method.clone(), call.path.clone(), call.context.clone());
            paged.query = call.query.clone();
            let paged = paged
                .query("per_page", PER_PAGE.to_string())
                .query("page", page.to_string());
            let answer = self.send(&paged).await?;
            let batch: Vec<T> = self.decode(&paged, &answer)?;
            items.extend(batch);
            match next_page(&answer.headers) {
                Some(next) if next > page && next <= MAX_PAGES => page = next,
                _ => return Ok(items),
            }
        }
    }

    fn decode<T: DeserializeOwned>(&self, call: &Call, answer: &Answer) -> Result<T, GitLabError> {
        serde_json::from_str(&answer.body).map_err(|error| GitLabError::UnexpectedAnswer {
            request: call.label(),
            status: answer.status.as_u16(),
            detail: self.scrub(&error.to_string()),
        })
    }

    /// Map a final non-2xx answer to its error, quoting GitLab's message.
    fn classify(
        &self,
        call: &Call,
        status: StatusCode,
        headers: &HeaderMap,
        body: &str,
        attempts: u32,
    ) -> GitLabError {
        let request = call.label();
        let answer = self.scrub(&summarize_answer(body));
        match status.as_u16() {
            300..=399 => GitLabError::Redirected {
                request,
                status: status.as_u16(),
                location: headers
                    .get(reqwest::header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .map(|location| self.scrub(location))
                    .unwrap_or_else(|| "nowhere given".to_owned()),
            },
            401 => GitLabError::Unauthorized { request, answer },
            403 => {
                let needs = match missing_scope(body) {
                    Some(scope) => {
                        format!("the token lacks scope `{scope}`; {}", call.context.needs)
                    }
                    None => call.context.needs.clone(),
                };
                GitLabError::Forbidden {
                    request,
                    answer,
                    needs,
                }
            }
            404 => GitLabError::NotFound {
                request,
                answer,
                subject: call.context.subject.clone(),
            },
            429 => GitLabError::RateLimited {
                request,
                attempts,
                answer,
            },
            code if status.is_server_error() => GitLabError::Server {
                request,
                status: code,
                attempts,
                answer,
            },
            code => GitLabError::Rejected {
                request,
                status: code,
                answer,
            },
        }
    }

    fn transport_reason(&self, error: reqwest::Error) -> String {
        if error.is_timeout() {
            return format!(
                "timed out (connect {:?}, request {:?})",
                self.options.connect_timeout, self.options.request_timeout
            );
        }
        // The caller names the request; the URL would only repeat the host.
        self.scrub(&error_chain(&error.without_url()))
    }

    /// Defence in depth: GitLab never echoes the token, but a proxy or a misconfigured server
    /// might, and nothing quoted from an answer may carry it into a log.
    fn scrub(&self, text: &str) -> String {
        let token = self.token.expose_secret();
        if token.is_empty() {
            text.to_owned()
        } else {
            text.replace(token, "[redacted]")
        }
    }
}

/// `https://host[/prefix]` → `https://host[/prefix]/api/v4`; a URL already ending in `/api/v4`
/// is kept.
fn api_base(base_url: &str) -> Result<String, GitLabError> {
    let invalid = |reason: &str| GitLabError::InvalidBaseUrl {
        url: base_url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed =
        reqwest::Url::parse(base_url.trim()).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be https (or http)"));
    }
    if parsed.query().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "it must not carry a query or credentials; the token is passed separately",
        ));
    }
    let trimmed = parsed.as_str().trim_end_matches('/');
    Ok(if trimmed.ends_with("/api/v4") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/api/v4")
    })
}

fn query_string(query: &[(&'static str, String)]) -> String {
    if query.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = query
        .iter()
        .map(|(key, value)| format!("{key}={}", encode_component(value)))
        .collect();
    format!("?{}", pairs.join("&"))
}

fn next_page(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("x-next-page")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `Retry-After` in seconds (GitLab sends seconds; an HTTP date falls back to backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// The wait after failed attempt number `attempt` (1-based): GitLab's `Retry-After` when given,
/// else exponential backoff from `initial_backoff`; both capped at `max_backoff`.
pub fn retry_delay(
    attempt: u32,
    retry_after: Option<Duration>,
    options: &ClientOptions,
) -> Duration {
    let wait = retry_after.unwrap_or_else(|| {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        options.initial_backoff.saturating_mul(factor)
    });
    wait.min(options.max_backoff)
}

/// An error and its sources, joined: reqwest's top-level message alone ("error sending request")
/// hides the reason.
fn error_chain(error: &reqwest::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_as_one_segment() {
        assert_eq!(
            PathOrId::parse("group/sub/app").url_segment(),
            "group%2Fsub%2Fapp"
        );
        assert_eq!(PathOrId::parse("42"), PathOrId::Id(42));
        assert_eq!(
            encode_component(".gitlab/agents/pi lab/config.yaml"),
            ".gitlab%2Fagents%2Fpi%20lab%2Fconfig.yaml"
        );
    }

    #[test]
    fn api_base_is_normalised() {
        assert_eq!(
            api_base("https://gitlab.com").unwrap(),
            "https://gitlab.com/api/v4"
        );
        assert_eq!(
            api_base("https://git.example/gitlab/api/v4/").unwrap(),
            "https://git.example/gitlab/api/v4"
        );
        assert!(api_base("ftp://x").is_err());
        assert!(api_base("https://user:pw@gitlab.com").is_err());
    }

    #[test]
    fn backoff_doubles_and_retry_after_wins_up_to_the_cap() {
        let options = ClientOptions {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            ..ClientOptions::default()
        };
        assert_eq!(retry_delay(1, None, &options), Duration::from_millis(100));
        assert_eq!(retry_delay(3, None, &options), Duration::from_millis(400));
        assert_eq!(retry_delay(30, None, &options), Duration::from_secs(5));
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(2)), &options),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(3600)), &options),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn next_page_header_ends_on_empty() {
        let mut headers = HeaderMap::new();
        headers.insert("x-next-page", HeaderValue::from_static("3"));
        assert_eq!(next_page(&headers), Some(3));
        headers.insert("x-next-page", HeaderValue::from_static(""));
        assert_eq!(next_page(&headers), None);
    }
}

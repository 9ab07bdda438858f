//! Channel → version resolution against the k3s channel server, done once per run so every node
//! gets the same pinned release.
//!
//! Like the install script (`get_release_version` in k3s-io/k3s `install.sh`), we ask for
//! `CHANNEL_URL/CHANNEL` and read the release tag from the last path segment of where the server
//! redirects us. We do not follow the redirect: the tag is in the `Location` header and the
//! target (a GitHub release page) is neither needed nor reachable from every site. When the server
//! answers without a redirect (some mirrors), we fall back to the JSON channel list at
//! `CHANNEL_URL`, whose entries carry a `latest` field.

use std::time::Duration;

use serde::Deserialize;

use super::version::{Channel, K3sVersion};

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("could not build the HTTP client for the channel server: {0}")]
    Client(#[source] reqwest::Error),
    #[error("could not reach the k3s channel server at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "{url} redirected to {location:?}, whose last path segment is not a k3s release: {reason}"
    )]
    BadRedirect {
        url: String,
        location: String,
        reason: String,
    },
    #[error(
        "{url} answered {status} without a redirect, and the channel list at {list_url} did not help: {list_problem}"
    )]
    NoRelease {
        url: String,
        status: u16,
        list_url: String,
        list_problem: String,
    },
    #[error("channel {channel} resolved to {version} (from {url}), which is not in that channel")]
    OutsideChannel {
        channel: Channel,
        version: K3sVersion,
        url: String,
    },
}

/// The channel list document (`{"data":[{"id":"stable","latest":"v1.31.4+k3s1",...}]}`); only
/// the fields we use.
#[derive(Debug, Deserialize)]
struct ChannelList {
    data: Vec<ChannelEntry>,
}

#[derive(Debug, Deserialize)]
struct ChannelEntry {
    id: String,
    #[serde(default)]
    latest: Option<String>,
}

/// How long one request to the channel server (`[cluster] channel_url`) may take: `up`'s
/// version and `upgrade`'s target, and the releases between two minors.
pub const CHANNEL_TIMEOUT: Duration = Duration::from_secs(30);

/// Talks to one channel server. Redirects are never followed (see the module comment).
#[derive(Debug, Clone)]
pub struct ChannelResolver {
    client: reqwest::Client,
}

impl ChannelResolver {
    /// `timeout` bounds each request as a whole (connect + answer).
    pub fn new(timeout: Duration) -> Result<Self, ResolveError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("edgeops/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ResolveError::Client)?;
        Ok(ChannelResolver { client })
    }

    /// Resolve `channel` at `channel_url` (e.g. `https://update.k3s.io/v1-release/channels`).
    pub async fn resolve(
        &self,
        channel_url: &str,
        channel: &Channel,
    ) -> Result<K3sVersion, ResolveError> {
        let list_url = channel_url.trim_end_matches('/').to_owned();
        let url = format!("{list_url}/{channel}");
        let response =
            self.client
                .get(&url)
                .send()
                .await
                .map_err(|source| ResolveError::Unreachable {
                    url: url.clone(),
                    source,
                })?;
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let version = match location {
            Some(location) if status.is_redirection() => {
                version_from_location(&location).map_err(|reason| ResolveError::BadRedirect {
                    url: url.clone(),
                    location,
                    reason,
                })?
            }
            _ => self
                .latest_from_list(&list_url, channel)
                .await
                .map_err(|list_problem| ResolveError::NoRelease {
                    url: url.clone(),
                    status: status.as_u16(),
                    list_url: list_url.clone(),
                    list_problem,
                })?,
        };
        if !channel.admits(&version) {
            return Err(ResolveError::OutsideChannel {
                channel: channel.clone(),
                version,
                url,
            });
        }
        Ok(version)
    }

    /// The fallback: the channel's `latest` in the JSON list. Errors are plain words for
    /// `ResolveError::NoRelease`.
    async fn latest_from_list(
        &self,
        list_url: &str,
        channel: &Channel,
    ) -> Result<K3sVersion, String> {
        let response = self
            .client
            .get(list_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| format!("request failed: {err}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|err| format!("reading the answer failed: {err}"))?;
        if !status.is_success() {
            return Err(format!("it answered {status}: {}", snippet(&body)));
        }
        let list: ChannelList = serde_json::from_str(&body)
            .map_err(|err| format!("it is not a channel list ({err}): {}", snippet(&body)))?;
        let name = channel.to_string();
        let entry = list
            .data
            .iter()
            .find(|entry| entry.id == name)
            .ok_or_else(|| {
                let known: Vec<&str> = list.data.iter().map(|entry| entry.id.as_str()).collect();
                format!("it has no channel {name:?} (it has: {})", known.join(", "))
            })?;
        let latest = entry
            .latest
            .as_deref()
            .ok_or_else(|| format!("its channel {name:?} has no `latest` field"))?;
        latest
            .parse()
            .map_err(|err| format!("its channel {name:?} lists {err}"))
    }
}

/// The release tag is the last path segment of the redirect target, as in the install script;
/// `+` may arrive URL-encoded (`%2B`).
fn version_from_location(location: &str) -> Result<K3sVersion, String> {
    let path = location
        .split(['?', '#'])
        .next()
        .unwrap_or(location)
        .trim_end_matches('/');
    let segment = path.rsplit('/').next().unwrap_or(path);
    let tag = percent_decode(segment);
    tag.parse()
        .map_err(|err: super::version::VersionError| err.to_string())
}

/// Decode `%XX` escapes; anything malformed is kept as it is (the version parser reports it).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The start of an error body, on one line, for messages.
fn snippet(body: &str) -> String {
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 200 {
        let cut: String = one_line.chars().take(200).collect();
        format!("{cut}...")
    } else if one_line.is_empty() {
        "(empty body)".to_owned()
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tag_from_the_last_segment_of_the_location() {
        for location in [
            "https://github.com/k3s-io/k3s/releases/tag/v1.31.4+k3s1",
            "https://github.com/k3s-io/k3s/releases/tag/v1.31.4%2Bk3s1",
            "/releases/tag/v1.31.4%2bk3s1/",
            "https://mirror.example/tag/v1.31.4+k3s1?from=channel",
        ] {
            assert_eq!(
                version_from_location(location).unwrap().to_string(),
                "v1.31.4+k3s1",
                "{location}"
            );
        }
        assert!(version_from_location("https://github.com/k3s-io/k3s/releases").is_err());
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%2Bb%zz%4"), "a+b%zz%4");
    }

    /// A real HTTP/1.1 server on 127.0.0.1:0 answering each path with a canned raw response;
    /// unknown paths get a 404. It serves until the test's runtime ends.
    async fn serve(routes: Vec<(&'static str, String)>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let routes = routes.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let response = routes
                        .iter()
                        .find(|(route, _)| *route == path)
                        .map(|(_, response)| response.clone())
                        .unwrap_or_else(|| response(404, &[], "not found"));
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        format!("http://{address}/v1-release/channels")
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> String {
        let mut text = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(body);
        text
    }

    const CHANNEL_LIST: &str = r#"{"type":"collection","resourceType":"channels","links":{},
        "data":[{"id":"stable","type":"channel","name":"stable","latest":"v1.31.4+k3s1","links":{}},
                {"id":"v1.30","type":"channel","name":"v1.30","latest":"v1.30.8+k3s1","links":{}}]}"#;

    fn resolver() -> ChannelResolver {
        ChannelResolver::new(Duration::from_secs(10)).unwrap()
    }

    #[tokio::test]
    async fn resolves_a_channel_from_the_redirect_without_following_it() {
        let base = serve(vec![(
            "/v1-release/channels/stable",
            response(
                302,
                &[(
                    "Location",
                    "https://github.com/k3s-io/k3s/releases/tag/v1.31.4%2Bk3s1",
                )],
                "",
            ),
        )])
        .await;
        let version = resolver().resolve(&base, &Channel::Stable).await.unwrap();
        assert_eq!(version.to_string(), "v1.31.4+k3s1");
    }

    #[tokio::test]
    async fn falls_back_to_the_channel_list_when_there_is_no_redirect() {
        let base = serve(vec![
            (
                "/v1-release/channels/v1.30",
                response(200, &[], "no redirects here"),
            ),
            ("/v1-release/channels", response(200, &[], CHANNEL_LIST)),
        ])
        .await;
        let channel: Channel = "v1.30".parse().unwrap();
        let version = resolver()
            .resolve(&format!("{base}/"), &channel)
            .await
            .unwrap();
        assert_eq!(version.to_string(), "v1.30.8+k3s1");
    }

    #[tokio::test]
    async fn errors_name_both_urls_and_what_they_answered() {
        let base = serve(vec![(
            "/v1-release/channels",
            response(200, &[], CHANNEL_LIST),
        )])
        .await;
        let err = resolver()
            .resolve(&base, &Channel::Testing)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{base}/testing answered 404 without a redirect, and the channel list at {base} \
                 did not help: it has no channel \"testing\" (it has: stable, v1.30)"
            )
        );

        let base = serve(vec![(
            "/v1-release/channels",
            response(503, &[], "upstream\n down"),
        )])
        .await;
        let err = resolver()
            .resolve(&base, &Channel::Stable)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{base}/stable answered 404 without a redirect, and the channel list at {base} \
                 did not help: it answered 503 Service Unavailable: upstream down"
            )
        );
    }

    #[tokio::test]
    async fn a_redirect_to_something_that_is_not_a_release_is_an_error() {
        let base = serve(vec![(
            "/v1-release/channels/stable",
            response(
                307,
                &[("Location", "https://github.com/k3s-io/k3s/releases")],
                "",
            ),
        )])
        .await;
        let err = resolver()
            .resolve(&base, &Channel::Stable)
            .await
            .unwrap_err();
        assert!(matches!(err, ResolveError::BadRedirect { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("{base}/stable redirected to")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_minor_channel_answering_another_minor_line_is_refused() {
        let base = serve(vec![(
            "/v1-release/channels/v1.30",
            response(302, &[("Location", "/tag/v1.31.4+k3s1")], ""),
        )])
        .await;
        let err = resolver()
            .resolve(&base, &"v1.30".parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "channel v1.30 resolved to v1.31.4+k3s1 (from {base}/v1.30), which is not in that channel"
            )
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named() {
        // Bind then drop: the port is (almost certainly) closed when we connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}/channels");
        let err = resolver()
            .resolve(&base, &Channel::Stable)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "could not reach the k3s channel server at {base}/stable: "
            )),
            "{err}"
        );
    }
}

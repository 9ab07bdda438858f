//! The agent server (KAS) address the gitlab-agent chart's `config.kasAddress` needs, derived from
//! the instance URL: GitLab.com runs KAS on its own host, self-managed instances serve it under
//! `/-/kubernetes-agent/` (GitLab's agent installation docs).

use super::error::GitLabError;

/// `https://gitlab.com` → `wss://kas.gitlab.com`; `https://git.example/gl` →
/// `wss://git.example/gl/-/kubernetes-agent/` (`ws://` for an `http://` instance).
pub fn kas_address(gitlab_url: &str) -> Result<String, GitLabError> {
    let invalid = |reason: String| GitLabError::InvalidBaseUrl {
        url: gitlab_url.to_owned(),
        reason,
    };
    let url = reqwest::Url::parse(gitlab_url.trim()).map_err(|error| invalid(error.to_string()))?;
    let scheme = match url.scheme() {
        "https" => "wss",
        "http" => "ws",
        other => return Err(invalid(format!("unsupported scheme {other:?}"))),
    };
    let host = url
        .host_str()
        .ok_or_else(|| invalid("it has no host".to_owned()))?;
    if host.eq_ignore_ascii_case("gitlab.com") {
        return Ok("wss://kas.gitlab.com".to_owned());
    }
    let port = url
        .port()
        .map(|port| format!(":{port}"))
        .unwrap_or_default();
    let prefix = url
        .path()
        .trim_end_matches('/')
        .trim_end_matches("/api/v4")
        .trim_end_matches('/');
    Ok(format!(
        "{scheme}://{host}{port}{prefix}/-/kubernetes-agent/"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_com_uses_its_kas_host() {
        assert_eq!(
            kas_address("https://gitlab.com/").unwrap(),
            "wss://kas.gitlab.com"
        );
    }

    #[test]
    fn self_managed_serves_kas_under_its_path() {
        assert_eq!(
            kas_address("https://git.example").unwrap(),
            "wss://git.example/-/kubernetes-agent/"
        );
        assert_eq!(
            kas_address("http://10.0.0.5:8080/gitlab/api/v4").unwrap(),
            "ws://10.0.0.5:8080/gitlab/-/kubernetes-agent/"
        );
        assert!(kas_address("ftp://x").is_err());
    }
}

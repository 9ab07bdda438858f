//! Version skew rules k3s documents (docs.k3s.io "Upgrades", Kubernetes version skew policy):
//! servers go up one minor at a time (1.30 → 1.31 → 1.32, any patch in between); a kubelet may
//! not be newer than the API servers. A step that skips a minor is refused with the versions to
//! go through, each the newest release of its minor from the channel server (`vMAJOR.MINOR`).

use super::channel::{CHANNEL_TIMEOUT, ChannelResolver, ResolveError};
use super::nodes::NodeStatus;
use super::version::{Channel, K3sVersion};

/// The minor lines between `from` and `to` (both excluded): `v1.30.8` → `v1.32.0` skips `v1.31`.
pub fn skipped_minors(from: &K3sVersion, to: &K3sVersion) -> Vec<Channel> {
    if from.major != to.major || to.minor <= from.minor + 1 {
        return Vec::new();
    }
    (from.minor + 1..to.minor)
        .map(|minor| Channel::Minor {
            major: from.major,
            minor,
        })
        .collect()
}

/// The newest release of each skipped minor line, resolved once each at `channel_url`.
pub async fn intermediate_versions(
    resolver: &ChannelResolver,
    channel_url: &str,
    from: &K3sVersion,
    to: &K3sVersion,
) -> Result<Vec<K3sVersion>, ResolveError> {
    let mut steps = Vec::new();
    for channel in skipped_minors(from, to) {
        steps.push(resolver.resolve(channel_url, &channel).await?);
    }
    Ok(steps)
}

/// The servers among `running` (name, version) whose step to `to` skips a minor, in order.
pub fn skipping(
    running: impl IntoIterator<Item = (String, K3sVersion)>,
    to: &K3sVersion,
) -> Vec<(String, K3sVersion)> {
    running
        .into_iter()
        .filter(|(_, from)| !skipped_minors(from, to).is_empty())
        .collect()
}

/// For the servers `behind` (from [`skipping`]): the oldest version among them and the
/// releases to go through from it to `to`, resolved at `channel_url` (each request bounded by
/// [`CHANNEL_TIMEOUT`]). `None`: no server is behind.
pub async fn releases_between(
    channel_url: &str,
    behind: &[(String, K3sVersion)],
    to: &K3sVersion,
) -> Option<(K3sVersion, Result<Vec<K3sVersion>, ResolveError>)> {
    let oldest = behind.iter().map(|(_, v)| v.clone()).min()?;
    let steps = match ChannelResolver::new(CHANNEL_TIMEOUT) {
        Ok(resolver) => intermediate_versions(&resolver, channel_url, &oldest, to).await,
        Err(e) => Err(e),
    };
    Some((oldest, steps))
}

/// Each node of `list` whose kubelet version parses: `(name, version, is control-plane)`.
pub fn node_versions(list: &[NodeStatus]) -> Vec<(String, K3sVersion, bool)> {
    list.iter()
        .filter_map(|n| {
            let server = n
                .roles
                .iter()
                .any(|r| r == "control-plane" || r == "master");
            Some((n.name.clone(), n.kubelet_version.parse().ok()?, server))
        })
        .collect()
}

/// Control-plane nodes left out of this run (`--limit`) that would stay older than `target`:
/// `(node, version)`. Kubernetes supports no kubelet newer than its API server, so agents must
/// not overtake them. `nodes`: `(name, version, is control-plane)`.
pub fn servers_left_behind(
    nodes: &[(String, K3sVersion, bool)],
    in_run: &[String],
    target: &K3sVersion,
) -> Vec<(String, K3sVersion)> {
    nodes
        .iter()
        .filter(|(name, version, server)| *server && version < target && !in_run.contains(name))
        .map(|(name, version, _)| (name.clone(), version.clone()))
        .collect()
}

/// The refusal: which servers, from what, the versions to go through, and how.
pub fn refusal(servers: &[(String, K3sVersion)], to: &K3sVersion, steps: &[K3sVersion]) -> String {
    let list = servers
        .iter()
        .map(|(h, v)| format!("{h} runs {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let path = steps
        .iter()
        .chain(std::iter::once(to))
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(" → ");
    format!(
        "k3s servers upgrade one minor at a time, and going to {to} skips a minor ({list}): go \
         through {path}, one `edgeops upgrade --version V` (or pinned `version` and `up`) each"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> K3sVersion {
        s.parse().unwrap()
    }

    #[test]
    fn only_whole_skipped_minor_lines_count() {
        assert!(skipped_minors(&v("v1.30.8+k3s1"), &v("v1.31.4+k3s1")).is_empty());
        assert!(skipped_minors(&v("v1.31.3+k3s1"), &v("v1.31.4+k3s1")).is_empty());
        assert_eq!(
            skipped_minors(&v("v1.29.1+k3s1"), &v("v1.32.0+k3s1"))
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>(),
            ["v1.30", "v1.31"]
        );
        let text = refusal(
            &[("lab-01".into(), v("v1.30.8+k3s1"))],
            &v("v1.32.0+k3s1"),
            &[v("v1.31.4+k3s1")],
        );
        assert!(text.contains("v1.31.4+k3s1 → v1.32.0+k3s1"), "{text}");
    }

    #[test]
    fn agents_never_overtake_servers_left_out_of_the_run() {
        let target = v("v1.31.4+k3s1");
        let nodes = vec![
            ("s1".to_owned(), v("v1.30.8+k3s1"), true),
            ("s2".to_owned(), v("v1.31.4+k3s1"), true),
            ("a1".to_owned(), v("v1.30.8+k3s1"), false),
        ];
        let behind = servers_left_behind(&nodes, &["a1".to_owned()], &target);
        assert_eq!(behind, vec![("s1".to_owned(), v("v1.30.8+k3s1"))]);
        assert!(
            servers_left_behind(&nodes, &["s1".to_owned(), "a1".to_owned()], &target).is_empty()
        );
    }
}

//! Small value formats the inventory accepts: k3s versions, DNS labels, Kubernetes label keys and
//! taints, URLs, durations, jump hosts, host addresses. Each check returns what is expected on failure.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::model::JumpHost;

/// A failed format check: the problem and what is expected instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    pub help: String,
}

fn invalid(message: impl Into<String>, help: impl Into<String>) -> Invalid {
    Invalid {
        message: message.into(),
        help: help.into(),
    }
}

/// `v1.31.4+k3s1`, optionally with a pre-release such as `v1.32.0-rc1+k3s1`.
pub fn k3s_version(text: &str) -> Result<(), Invalid> {
    let fail = || {
        invalid(
            format!("`{text}` is not a k3s version"),
            "a k3s release tag looks like `v1.31.4+k3s1` (see https://github.com/k3s-io/k3s/releases)",
        )
    };
    let rest = text.strip_prefix('v').ok_or_else(fail)?;
    let (core, build) = rest.split_once('+').ok_or_else(fail)?;
    let (numbers, pre) = match core.split_once('-') {
        Some((numbers, pre)) => (numbers, Some(pre)),
        None => (core, None),
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if parts.len() != 3 || !parts.iter().all(|p| is_number(p)) {
        return Err(fail());
    }
    if let Some(pre) = pre
        && (pre.is_empty() || !pre.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'))
    {
        return Err(fail());
    }
    let build_number = build.strip_prefix("k3s").ok_or_else(fail)?;
    if !is_number(build_number) {
        return Err(fail());
    }
    Ok(())
}

/// A release channel name: `stable`, `latest`, `testing`, `v1.31`, or a mirror's own.
pub fn channel(text: &str) -> Result<(), Invalid> {
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("`{text}` is not a channel name"),
            "a channel is `stable`, `latest`, `testing` or a minor line such as `v1.31`",
        ))
    }
}

/// An RFC 1123 DNS label: 1-63 of `a-z0-9-`, starting and ending alphanumeric.
pub fn is_dns_label(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// An RFC 1123 DNS subdomain: dot-separated labels, at most 253 characters (Kubernetes node names).
pub fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// A Kubernetes label name segment (also a label value when non-empty): up to 63 characters of
/// `A-Za-z0-9-_.`, starting and ending alphanumeric.
fn is_label_segment(text: &str) -> bool {
    let b = text.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// `name` or `prefix/name` where prefix is a DNS subdomain (e.g. `topology.kubernetes.io/zone`).
pub fn label_key(key: &str) -> Result<(), Invalid> {
    let ok = match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_segment(name),
        None => is_label_segment(key),
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("`{key}` is not a Kubernetes label key"),
            "a label key is `name` or `prefix/name`: name up to 63 of `A-Za-z0-9-_.` starting and ending alphanumeric, prefix a DNS name such as `example.com`",
        ))
    }
}

/// Empty, or a label segment.
pub fn label_value(key: &str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() || is_label_segment(value) {
        Ok(())
    } else {
        Err(invalid(
            format!("`{value}` is not a valid value for label `{key}`"),
            "a label value is empty or up to 63 of `A-Za-z0-9-_.`, starting and ending alphanumeric",
        ))
    }
}

/// `key=value:Effect` or `key:Effect`, Effect one of NoSchedule, PreferNoSchedule, NoExecute.
pub fn taint(text: &str) -> Result<(), Invalid> {
    let help = "a taint is `key=value:Effect` or `key:Effect` with Effect `NoSchedule`, `PreferNoSchedule` or `NoExecute`";
    let Some((key_value, effect)) = text.rsplit_once(':') else {
        return Err(invalid(format!("taint `{text}` has no effect"), help));
    };
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(invalid(
            format!("taint `{text}` has an unknown effect `{effect}`"),
            help,
        ));
    }
    let (key, value) = key_value.split_once('=').unwrap_or((key_value, ""));
    if label_key(key).is_err() || label_value(key, value).is_err() {
        return Err(invalid(
            format!("taint `{text}` has an invalid key or value"),
            help,
        ));
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host.
pub fn http_url(text: &str) -> Result<(), Invalid> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty()
                && !rest.starts_with('/')
                && !text.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(invalid(
            format!("`{text}` is not an http(s) URL"),
            "write a full URL starting with `https://` (or `http://`), e.g. `https://gitlab.example.com`",
        )),
    }
}

/// The longest wait edgeops accepts anywhere (inventory or command line): a day. Longer is a
/// typo, and unbounded values would overflow the clock arithmetic of deadlines.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

const DURATION_HELP: &str = "a duration is a string such as `10s`, `5m`, `1h30m`, or a whole number of seconds, \
     more than zero and at most 24h";

/// A duration given as text (the command line's `--timeout 30s`), under the inventory's rules.
pub fn duration_text(text: &str) -> Result<Duration, String> {
    duration(&toml::Value::String(text.to_owned()))
        .map_err(|e| format!("{} ({})", e.message, e.help))
}

/// Seconds as an integer, or a humantime string such as `10s`, `5m`, `1h 30m`.
pub fn duration(value: &toml::Value) -> Result<Duration, Invalid> {
    let help = DURATION_HELP;
    let duration = match value {
        toml::Value::Integer(secs) if *secs > 0 => Duration::from_secs(*secs as u64),
        toml::Value::Integer(secs) => {
            return Err(invalid(format!("duration `{secs}` is not positive"), help));
        }
        toml::Value::String(text) => humantime::parse_duration(text)
            .map_err(|e| invalid(format!("`{text}` is not a duration: {e}"), help))?,
        other => {
            return Err(invalid(
                format!("a duration cannot be a {}", other.type_str()),
                help,
            ));
        }
    };
    if duration.is_zero() {
        return Err(invalid("a zero duration would time out at once", help));
    }
    if duration > MAX_DURATION {
        return Err(invalid(
            format!(
                "duration {} is longer than the 24h limit",
                humantime::format_duration(duration)
            ),
            help,
        ));
    }
    Ok(duration)
}

/// A host address: IPv4, IPv6, or a DNS name.
pub fn address(text: &str) -> Result<(), Invalid> {
    let help = "an address is an IPv4 address (`10.0.1.11`), an IPv6 address, or a DNS name (`pi-01.local`)";
    if text.is_empty() {
        return Err(invalid("empty address", help));
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return Ok(());
    }
    let looks_ipv4 = text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if looks_ipv4 {
        return text
            .parse::<Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| invalid(format!("`{text}` is not an IPv4 address"), help));
    }
    let ok = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !text.starts_with(['-', '.'])
        && !text.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("`{text}` is not an address"), help))
    }
}

/// `[user@]host[:port]`, host may be `[v6]`.
pub fn jump(text: &str) -> Result<JumpHost, Invalid> {
    let fail = |why: &str| {
        invalid(
            format!("jump host `{text}` {why}"),
            "a jump host is `host`, `user@host` or `user@host:port` (an empty string means none)",
        )
    };
    let (user, host_port) = match text.split_once('@') {
        Some((user, rest)) => {
            if user.is_empty() {
                return Err(fail("has an empty user"));
            }
            (Some(user.to_string()), rest)
        }
        None => (None, text),
    };
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| fail("has an unclosed `[`"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(fail("has text after `]`")),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    address(host).map_err(|_| fail("has no valid host"))?;
    let port = match port {
        Some(port) => match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(fail("has a port outside 1-65535")),
        },
        None => 22,
    };
    Ok(JumpHost {
        user,
        address: host.to_string(),
        port,
    })
}

/// Closest candidate by edit distance, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.len() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, c)| d <= limit || c.starts_with(word) || word.starts_with(c))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev + usize::from(ca != *cb);
            prev = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(prev + 1);
        }
    }
    row[b.len()]
}

/// File name endings of the image tarballs k3s imports from `agent/images/` (the compressions
/// its containerd import handles: none, gzip, bzip2, lz4, zstd).
pub const IMAGE_TARBALL_SUFFIXES: &[&str] = &[
    ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.lz4", ".tar.zst", ".tzst",
];

/// `name` (a file name or path) ends like an image tarball k3s imports.
pub fn is_image_tarball(name: &str) -> bool {
    IMAGE_TARBALL_SUFFIXES.iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["v1.31.4+k3s1", "v1.32.0-rc1+k3s1", "v1.28.15+k3s12"] {
            assert!(k3s_version(ok).is_ok(), "{ok}");
        }
        for bad in [
            "1.31.4+k3s1",
            "v1.31.4",
            "v1.31+k3s1",
            "v1.31.4+k8s1",
            "v1.31.x+k3s1",
            "latest",
        ] {
            assert!(k3s_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn taints() {
        for ok in [
            "dedicated=gpu:NoSchedule",
            "node.example.com/edge:NoExecute",
            "k=:PreferNoSchedule",
        ] {
            assert!(taint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "dedicated=gpu",
            "dedicated=gpu:Sometimes",
            "=x:NoSchedule",
            "a b:NoSchedule",
        ] {
            assert!(taint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_keys() {
        for ok in ["zone", "topology.kubernetes.io/zone", "a_b.c-d"] {
            assert!(label_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-zone", "Bad_Prefix/x", "a/b/c", "zone!"] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jumps() {
        let j = jump("ops@bastion.example.com:2222").unwrap();
        assert_eq!(
            (j.user.as_deref(), j.address.as_str(), j.port),
            (Some("ops"), "bastion.example.com", 2222)
        );
        assert_eq!(jump("10.0.0.1").unwrap().port, 22);
        assert_eq!(jump("[fd00::1]:2200").unwrap().address, "fd00::1");
        for bad in ["@host", "host:0", "host:99999", "user@", "ho st"] {
            assert!(jump(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            duration(&toml::Value::Integer(10)).unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(duration(&"5m".into()).unwrap(), Duration::from_secs(300));
        assert!(duration(&toml::Value::Integer(0)).is_err());
        assert!(duration(&"soon".into()).is_err());
        assert!(duration(&toml::Value::Boolean(true)).is_err());
    }

    #[test]
    fn suggestions() {
        let keys = ["user", "port", "identity_files", "agent"];
        assert_eq!(closest("identity_file", keys), Some("identity_files"));
        assert_eq!(closest("usr", keys), Some("user"));
        assert_eq!(closest("zzzzzzzz", keys), None);
    }
}

//! k3s release versions (`v1.31.4+k3s1`, `v1.32.0-rc2+k3s1`) and release channels (`stable`, `v1.31`).
//!
//! A k3s version is a Kubernetes version plus a k3s build number after `+k3s`. Ordering follows
//! what the channel server and upgrades mean by "newer": Kubernetes version first, a release
//! candidate sorts before its release, and the k3s build number breaks ties.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a k3s version (expected e.g. v1.31.4+k3s1): {reason}")]
pub struct VersionError {
    pub input: String,
    pub reason: &'static str,
}

/// One k3s release, parsed. `Display` gives the canonical tag (`v1.31.4+k3s1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct K3sVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// Release candidate number (`-rc2` = 2); `None` for a release.
    pub rc: Option<u32>,
    /// The k3s build of this Kubernetes version (`+k3s1` = 1). Kubelet versions reported by
    /// plain Kubernetes nodes have none; they compare as build 0.
    pub k3s_build: Option<u32>,
}

impl K3sVersion {
    /// The version in the output of `k3s --version` (`k3s version v1.31.4+k3s1 (a1b2c3d4)` then
    /// a `go version ...` line): what the facts phase reads from an installed node.
    pub fn from_k3s_version_output(output: &str) -> Result<K3sVersion, VersionError> {
        let tag = output
            .lines()
            .find_map(|line| line.trim().strip_prefix("k3s version "))
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| VersionError {
                input: output.trim().to_owned(),
                reason: "no `k3s version vX.Y.Z+k3sN` line",
            })?;
        tag.parse()
    }

    /// The `vMAJOR.MINOR` channel this release belongs to.
    pub fn minor_channel(&self) -> Channel {
        Channel::Minor {
            major: self.major,
            minor: self.minor,
        }
    }
}

impl FromStr for K3sVersion {
    type Err = VersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| VersionError {
            input: input.to_owned(),
            reason,
        };
        let rest = input.strip_prefix('v').unwrap_or(input);
        let (core_and_pre, build) = match rest.split_once('+') {
            Some((head, build)) => (head, Some(build)),
            None => (rest, None),
        };
        let k3s_build = match build {
            None => None,
            Some(build) => {
                let number = build
                    .strip_prefix("k3s")
                    .ok_or_else(|| fail("the build suffix must look like +k3s1"))?;
                Some(parse_number(number).ok_or_else(|| fail("the k3s build is not a number"))?)
            }
        };
        let (core, rc) = match core_and_pre.split_once('-') {
            Some((core, pre)) => {
                let number = pre
                    .strip_prefix("rc")
                    .ok_or_else(|| fail("only -rcN pre-releases exist for k3s"))?;
                let number =
                    parse_number(number).ok_or_else(|| fail("the rc number is not a number"))?;
                (core, Some(number))
            }
            None => (core_and_pre, None),
        };
        let mut parts = core.split('.');
        let mut next = |what| {
            parts
                .next()
                .and_then(parse_number)
                .ok_or_else(|| fail(what))
        };
        let major = next("missing or bad major number")?;
        let minor = next("missing or bad minor number")?;
        let patch = next("missing or bad patch number")?;
        if parts.next().is_some() {
            return Err(fail("too many dot-separated numbers"));
        }
        Ok(K3sVersion {
            major,
            minor,
            patch,
            rc,
            k3s_build,
        })
    }
}

/// Digits only: `u32::from_str` would also accept a leading `+`.
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for K3sVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(rc) = self.rc {
            write!(f, "-rc{rc}")?;
        }
        if let Some(build) = self.k3s_build {
            write!(f, "+k3s{build}")?;
        }
        Ok(())
    }
}

impl Ord for K3sVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            // A release (no rc) is newer than any of its release candidates.
            .then_with(|| match (self.rc, other.rc) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(&b),
            })
            .then_with(|| {
                self.k3s_build
                    .unwrap_or(0)
                    .cmp(&other.k3s_build.unwrap_or(0))
            })
    }
}

impl PartialOrd for K3sVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a k3s channel (expected stable, latest, testing or a minor line like v1.31)")]
pub struct ChannelError(pub String);

/// A release channel as the k3s channel server names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    Stable,
    Latest,
    Testing,
    /// `v1.31`: the newest release of one minor line.
    Minor {
        major: u32,
        minor: u32,
    },
}

impl Channel {
    /// Does this version belong to this channel? Only minor channels can say; the named ones
    /// move over time and accept any version.
    pub fn admits(&self, version: &K3sVersion) -> bool {
        match self {
            Channel::Minor { major, minor } => version.major == *major && version.minor == *minor,
            Channel::Stable | Channel::Latest | Channel::Testing => true,
        }
    }
}

impl FromStr for Channel {
    type Err = ChannelError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input {
            "stable" => return Ok(Channel::Stable),
            "latest" => return Ok(Channel::Latest),
            "testing" => return Ok(Channel::Testing),
            _ => {}
        }
        let fail = || ChannelError(input.to_owned());
        let rest = input.strip_prefix('v').ok_or_else(fail)?;
        let (major, minor) = rest.split_once('.').ok_or_else(fail)?;
        Ok(Channel::Minor {
            major: parse_number(major).ok_or_else(fail)?,
            minor: parse_number(minor).ok_or_else(fail)?,
        })
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Channel::Stable => f.write_str("stable"),
            Channel::Latest => f.write_str("latest"),
            Channel::Testing => f.write_str("testing"),
            Channel::Minor { major, minor } => write!(f, "v{major}.{minor}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> K3sVersion {
        text.parse().unwrap()
    }

    #[test]
    fn parses_release_and_rc_tags() {
        assert_eq!(
            v("v1.31.4+k3s1"),
            K3sVersion {
                major: 1,
                minor: 31,
                patch: 4,
                rc: None,
                k3s_build: Some(1)
            }
        );
        let rc = v("v1.32.0-rc2+k3s1");
        assert_eq!(rc.rc, Some(2));
        assert_eq!(rc.to_string(), "v1.32.0-rc2+k3s1");
        // Kubelet versions of non-k3s nodes and tags written without the `v` still parse.
        assert_eq!(v("1.30.2").to_string(), "v1.30.2");
    }

    #[test]
    fn reads_the_version_from_k3s_version_output() {
        let output = "k3s version v1.31.4+k3s1 (a4c5612e)\ngo version go1.22.9\n";
        assert_eq!(
            K3sVersion::from_k3s_version_output(output)
                .unwrap()
                .to_string(),
            "v1.31.4+k3s1"
        );
        let err = K3sVersion::from_k3s_version_output("sh: k3s: not found\n").unwrap_err();
        assert_eq!(err.reason, "no `k3s version vX.Y.Z+k3sN` line");
    }

    #[test]
    fn rejects_malformed_versions_with_the_reason() {
        for (input, reason) in [
            ("v1.31+k3s1", "missing or bad patch number"),
            ("v1.31.4+rke2r1", "the build suffix must look like +k3s1"),
            ("v1.31.4-beta1+k3s1", "only -rcN pre-releases exist for k3s"),
            ("v1.31.4.5", "too many dot-separated numbers"),
            ("v1.x.4", "missing or bad minor number"),
            ("", "missing or bad major number"),
        ] {
            let err = input.parse::<K3sVersion>().unwrap_err();
            assert_eq!(err.reason, reason, "for {input:?}");
        }
    }

    #[test]
    fn orders_by_kubernetes_version_then_rc_then_k3s_build() {
        let mut versions = [
            v("v1.31.4+k3s2"),
            v("v1.31.10+k3s1"),
            v("v1.31.4+k3s1"),
            v("v1.31.4-rc1+k3s1"),
            v("v1.30.9+k3s1"),
            v("v1.31.4-rc2+k3s1"),
        ];
        versions.sort();
        let sorted: Vec<String> = versions.iter().map(ToString::to_string).collect();
        assert_eq!(
            sorted,
            [
                "v1.30.9+k3s1",
                "v1.31.4-rc1+k3s1",
                "v1.31.4-rc2+k3s1",
                "v1.31.4+k3s1",
                "v1.31.4+k3s2",
                "v1.31.10+k3s1",
            ]
        );
    }

    #[test]
    fn channels_round_trip_and_minor_channels_admit_their_line_only() {
        for name in ["stable", "latest", "testing", "v1.31"] {
            assert_eq!(name.parse::<Channel>().unwrap().to_string(), name);
        }
        let channel: Channel = "v1.31".parse().unwrap();
        assert!(channel.admits(&v("v1.31.9+k3s1")));
        assert!(!channel.admits(&v("v1.32.0+k3s1")));
        assert_eq!(v("v1.31.9+k3s1").minor_channel(), channel);
        assert!("v1".parse::<Channel>().is_err());
        assert!("beta".parse::<Channel>().is_err());
    }
}

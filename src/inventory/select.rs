//! `--limit PATTERN` host selection. Comma-separated terms: exact names, globs (`pi-0*`), hostlist
//! ranges (`pi-[01-04]`), roles (`role:server`, `servers`, `agents`), groups (`group:NAME`, `@NAME`),
//! and `!term` to exclude. The result keeps inventory order; a term matching nothing is an error.

use std::collections::HashSet;

use globset::{Glob, GlobMatcher};

use super::formats;
use super::hostlist::Pattern;
use super::model::{Host, Inventory, Role};

/// Why a `--limit` pattern could not be applied. All are usage errors (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("--limit `{pattern}` has an empty term")]
    EmptyTerm { pattern: String },
    #[error("--limit term `{term}` matches no host{hint}")]
    NoMatch { term: String, hint: String },
    #[error("--limit term `{term}` is not a valid glob: {reason}")]
    BadGlob { term: String, reason: String },
    #[error("--limit term `{term}` is not a valid range: {reason}")]
    BadRange { term: String, reason: String },
    #[error("--limit term `{term}` names unknown role `{role}` (expected `server` or `agent`)")]
    UnknownRole { term: String, role: String },
    #[error("--limit `{pattern}` excludes every host it selects")]
    NothingSelected { pattern: String },
}

enum Matcher {
    Name(String),
    Names(HashSet<String>),
    Glob(GlobMatcher),
    Role(Role),
    Group(String),
}

impl Matcher {
    fn matches(&self, host: &Host) -> bool {
        match self {
            Matcher::Name(name) => host.name == *name,
            Matcher::Names(names) => names.contains(&host.name),
            Matcher::Glob(glob) => glob.is_match(&host.name),
            Matcher::Role(role) => host.role == *role,
            Matcher::Group(group) => host.groups.iter().any(|g| g == group),
        }
    }
}

/// The hosts `pattern` selects, in inventory order; `None` selects every host.
pub fn select<'a>(inv: &'a Inventory, pattern: Option<&str>) -> Result<Vec<&'a Host>, SelectError> {
    let Some(pattern) = pattern else {
        return Ok(inv.hosts.iter().collect());
    };
    let hosts = &inv.hosts;
    let mut included = vec![false; hosts.len()];
    let mut excluded = vec![false; hosts.len()];
    let mut any_included_term = false;
    for raw_term in split_terms(pattern) {
        let term = raw_term.trim();
        let (negated, body) = match term.strip_prefix('!') {
            Some(body) => (true, body.trim()),
            None => (false, term),
        };
        if body.is_empty() {
            return Err(SelectError::EmptyTerm {
                pattern: pattern.to_string(),
            });
        }
        let matcher = matcher(term, body)?;
        let mut matched = false;
        for (i, host) in hosts.iter().enumerate() {
            if matcher.matches(host) {
                matched = true;
                if negated {
                    excluded[i] = true;
                } else {
                    included[i] = true;
                }
            }
        }
        if !matched {
            return Err(SelectError::NoMatch {
                term: term.to_string(),
                hint: no_match_hint(inv, &matcher),
            });
        }
        any_included_term |= !negated;
    }
    let selected: Vec<&Host> = hosts
        .iter()
        .enumerate()
        .filter(|&(i, _)| (included[i] || !any_included_term) && !excluded[i])
        .map(|(_, h)| h)
        .collect();
    if selected.is_empty() {
        return Err(SelectError::NothingSelected {
            pattern: pattern.to_string(),
        });
    }
    Ok(selected)
}

/// Split on commas that are not inside `[..]` (hostlist ranges) or `{..}` (glob alternatives).
fn split_terms(pattern: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in pattern.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth <= 0 => {
                terms.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&pattern[start..]);
    terms
}

fn matcher(term: &str, body: &str) -> Result<Matcher, SelectError> {
    match body {
        "servers" => return Ok(Matcher::Role(Role::Server)),
        "agents" => return Ok(Matcher::Role(Role::Agent)),
        _ => {}
    }
    if let Some(role) = body.strip_prefix("role:") {
        return match role.trim() {
            "server" | "servers" => Ok(Matcher::Role(Role::Server)),
            "agent" | "agents" => Ok(Matcher::Role(Role::Agent)),
            other => Err(SelectError::UnknownRole {
                term: term.to_string(),
                role: other.to_string(),
            }),
        };
    }
    if let Some(group) = body
        .strip_prefix("group:")
        .or_else(|| body.strip_prefix('@'))
    {
        let group = group.trim();
        if group.is_empty() {
            return Err(SelectError::EmptyTerm {
                pattern: term.to_string(),
            });
        }
        return Ok(Matcher::Group(group.to_string()));
    }
    if is_hostlist(body) {
        return Pattern::parse(body)
            .map(|p| Matcher::Names(p.expand().into_iter().collect()))
            .map_err(|e| SelectError::BadRange {
                term: term.to_string(),
                reason: e.to_string(),
            });
    }
    if body.contains(['*', '?', '[', ']', '{', '}']) {
        return Glob::new(body)
            .map(|g| Matcher::Glob(g.compile_matcher()))
            .map_err(|e| SelectError::BadGlob {
                term: term.to_string(),
                reason: e.kind().to_string(),
            });
    }
    Ok(Matcher::Name(body.to_string()))
}

/// Brackets holding only digits, `-` and `,` are hostlist ranges (`pi-[01-04]`); any other
/// bracket (`pi-0[!5]`) is a glob character class.
fn is_hostlist(body: &str) -> bool {
    if !body.contains('[') || body.contains(['*', '?', '{']) {
        return false;
    }
    let mut inside = false;
    for c in body.chars() {
        match c {
            '[' => inside = true,
            ']' => inside = false,
            c if inside && !(c.is_ascii_digit() || c == '-' || c == ',') => return false,
            _ => {}
        }
    }
    true
}

fn no_match_hint(inv: &Inventory, matcher: &Matcher) -> String {
    match matcher {
        Matcher::Name(name) => formats::closest(name, inv.hosts.iter().map(|h| h.name.as_str()))
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default(),
        Matcher::Group(_) => {
            let mut groups: Vec<&str> = inv
                .hosts
                .iter()
                .flat_map(|h| h.groups.iter().map(String::as_str))
                .collect();
            groups.sort_unstable();
            groups.dedup();
            if groups.is_empty() {
                " (no host is in a group)".to_string()
            } else {
                format!(" (groups with hosts: {})", groups.join(", "))
            }
        }
        Matcher::Role(role) => format!(" (the inventory has no {}s)", role.as_str()),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory() -> Inventory {
        let text = r#"
            [cluster]
            name = "t"
            ha = true
            [ssh]
            identity_files = []
            [groups.edge]
            role = "agent"
            [groups.gpu]
            [[hosts]]
            name = "cp-[1-3]"
            address = "10.0.0.[1-3]"
            role = "server"
            [[hosts]]
            name = "pi-[01-08]"
            address = "10.0.1.[1-8]"
            groups = ["edge"]
            [[hosts]]
            name = "jet-1"
            address = "10.0.2.1"
            groups = ["edge", "gpu"]
        "#;
        crate::inventory::parse(text, std::path::Path::new("t.toml")).unwrap()
    }

    fn names(pattern: &str) -> Vec<String> {
        let inv = inventory();
        select(&inv, Some(pattern))
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .iter()
            .map(|h| h.name.clone())
            .collect()
    }

    #[test]
    fn no_pattern_selects_everything_in_order() {
        let inv = inventory();
        let all = select(&inv, None).unwrap();
        assert_eq!(all.len(), 12);
        assert_eq!(all[0].name, "cp-1");
        assert_eq!(all[11].name, "jet-1");
    }

    #[test]
    fn table_of_selections() {
        let cases: &[(&str, &[&str])] = &[
            ("cp-2", &["cp-2"]),
            ("jet-1,cp-1", &["cp-1", "jet-1"]),
            ("servers", &["cp-1", "cp-2", "cp-3"]),
            ("role:server", &["cp-1", "cp-2", "cp-3"]),
            ("@gpu", &["jet-1"]),
            ("group:gpu", &["jet-1"]),
            ("pi-0[1-3]", &["pi-01", "pi-02", "pi-03"]),
            ("pi-[01-02,07]", &["pi-01", "pi-02", "pi-07"]),
            ("pi-*,!pi-0[2-8]", &["pi-01"]),
            ("agents,!@gpu,!pi-[03-08]", &["pi-01", "pi-02"]),
            ("!agents", &["cp-1", "cp-2", "cp-3"]),
            ("cp-{1,3}", &["cp-1", "cp-3"]),
            (" cp-1 , cp-2 ", &["cp-1", "cp-2"]),
            ("pi-0[!2-8]", &["pi-01"]),
        ];
        for (pattern, expected) in cases {
            assert_eq!(names(pattern), *expected, "{pattern}");
        }
    }

    #[test]
    fn terms_matching_nothing_are_errors_naming_the_term() {
        let inv = inventory();
        let err = select(&inv, Some("cp-1,cp-9")).unwrap_err();
        assert!(
            matches!(&err, SelectError::NoMatch { term, .. } if term == "cp-9"),
            "{err}"
        );
        assert!(err.to_string().contains("did you mean `cp-1`"), "{err}");
        let err = select(&inv, Some("@nope")).unwrap_err();
        assert!(
            err.to_string().contains("groups with hosts: edge, gpu"),
            "{err}"
        );
        let err = select(&inv, Some("!zz*")).unwrap_err();
        assert!(matches!(err, SelectError::NoMatch { .. }));
    }

    #[test]
    fn malformed_patterns_are_errors() {
        let inv = inventory();
        assert!(matches!(
            select(&inv, Some("cp-1,,cp-2")),
            Err(SelectError::EmptyTerm { .. })
        ));
        assert!(matches!(
            select(&inv, Some("")),
            Err(SelectError::EmptyTerm { .. })
        ));
        assert!(matches!(
            select(&inv, Some("role:boss")),
            Err(SelectError::UnknownRole { .. })
        ));
        assert!(matches!(
            select(&inv, Some("pi-[08-01]")),
            Err(SelectError::BadRange { .. })
        ));
        assert!(matches!(
            select(&inv, Some("pi-{01")),
            Err(SelectError::BadGlob { .. })
        ));
        assert!(matches!(
            select(&inv, Some("servers,!cp-*")),
            Err(SelectError::NothingSelected { .. })
        ));
    }
}

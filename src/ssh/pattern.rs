//! OpenSSH PATTERNS (ssh_config(5)): `*` and `?` wildcards, shared by ssh_config `Host` lines
//! and known_hosts host patterns.

/// `*` and `?` wildcards, as in ssh_config(5) PATTERNS.
pub fn wildcard(pattern: &[u8], value: &[u8]) -> bool {
    match (pattern.first(), value.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard(&pattern[1..], value) || (!value.is_empty() && wildcard(pattern, &value[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &value[1..]),
        (Some(p), Some(v)) if p == v => wildcard(&pattern[1..], &value[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard(b"pi-*", b"pi-01"));
        assert!(wildcard(b"10.0.?.1", b"10.0.5.1"));
        assert!(!wildcard(b"pi-?", b"pi-01"));
        assert!(wildcard(b"*", b""));
    }
}

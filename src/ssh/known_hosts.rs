//! known_hosts, read once per run and shared by every connection: lookup of a host's recorded keys
//! (plain, `[host]:port` and hashed `|1|salt|hash` entries) and serialized appends for `accept-new`.
//!
//! russh's own helpers re-read the file on every check; with hundreds of hosts that is hundreds of
//! reads and parses of the same file, so the files are parsed here once into memory.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

/// Where a recorded key came from, for messages that tell the user exactly what to edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One usable line of a known_hosts file.
#[derive(Debug)]
struct Entry {
    key: PublicKey,
    origin: Origin,
    /// `@revoked` marker: this key must never be accepted for the matching hosts.
    revoked: bool,
}

/// A `|1|salt|hash` host pattern: HMAC-SHA1 of the host name keyed with the salt.
#[derive(Debug)]
struct HashedPattern {
    salt: Vec<u8>,
    hash: Vec<u8>,
    entry: usize,
}

/// What the recorded keys say about a key a server just offered.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The offered key is recorded for this host.
    Known,
    /// No key of the offered type is recorded; `other_types` lists the types that are (if any).
    Unknown {
        other_types: Vec<String>,
    },
    /// A different key of the same type is recorded (or the key is `@revoked`) at this line.
    Changed {
        recorded_at: Origin,
    },
    Revoked {
        recorded_at: Origin,
    },
}

/// A `@cert-authority` line: host certificates signed by `key` are trusted for these patterns.
#[derive(Debug)]
pub struct Authority {
    patterns: Vec<String>,
    pub key: PublicKey,
    pub origin: Origin,
}

/// All known_hosts files of a run, parsed once. Cheap lookups, shared through an `Arc`.
#[derive(Debug)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    /// Plain host patterns (`host` or `[host]:port`) to the entries that name them.
    plain: HashMap<String, Vec<usize>>,
    hashed: Vec<HashedPattern>,
    /// Lines whose host list has wildcards (`*`, `?`) or negations (`!`): matched as OpenSSH
    /// pattern lists.
    wild: Vec<(Vec<String>, usize)>,
    authorities: Vec<Authority>,
    /// The file new keys are appended to under `accept-new`.
    learn_file: Option<PathBuf>,
    /// Serializes appends so concurrent hosts never interleave lines; also remembers what was
    /// learned during this run so a second connection to the same host sees it.
    learned: Mutex<Vec<(String, PublicKey)>>,
    /// Lines that could not be parsed (file:line), reported once by the caller.
    pub skipped: Vec<Origin>,
}

/// The host pattern OpenSSH writes for an address and port.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The known_hosts line that records `key` for `host:port`, as `ssh-keyscan` would print it.
pub fn known_hosts_line(host: &str, port: u16, key: &PublicKey) -> String {
    format!(
        "{} {} {}",
        host_pattern(host, port),
        key.algorithm().as_str(),
        key_base64(key)
    )
}

/// The key's SHA256 fingerprint in OpenSSH's format (`SHA256:...`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn key_base64(key: &PublicKey) -> String {
    // to_openssh() gives "type base64 [comment]"; only the base64 field belongs in known_hosts.
    key.to_openssh()
        .ok()
        .and_then(|s| s.split(' ').nth(1).map(str::to_string))
        .unwrap_or_default()
}

impl KnownHosts {
    /// Read every file that exists (missing files are normal: a fresh machine has none).
    /// `learn_file` is where `accept-new` appends; it is usually also one of `files`.
    pub fn load(files: &[PathBuf], learn_file: Option<PathBuf>) -> std::io::Result<Self> {
        let mut known = KnownHosts {
            entries: Vec::new(),
            plain: HashMap::new(),
            hashed: Vec::new(),
            wild: Vec::new(),
            authorities: Vec::new(),
            learn_file,
            learned: Mutex::new(Vec::new()),
            skipped: Vec::new(),
        };
        for file in files {
            match std::fs::read_to_string(file) {
                Ok(text) => known.add_text(file, &text),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(std::io::Error::new(
                        err.kind(),
                        format!("reading {}: {err}", file.display()),
                    ));
                }
            }
        }
        Ok(known)
    }

    /// Parse one file's text; `file` is only used to name lines in messages.
    pub fn add_text(&mut self, file: &Path, text: &str) {
        for (index, raw) in text.lines().enumerate() {
            let origin = Origin {
                file: file.to_path_buf(),
                line: index + 1,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let mut revoked = false;
            let mut authority = false;
            if let Some(marker) = first.strip_prefix('@') {
                match marker {
                    "revoked" => revoked = true,
                    "cert-authority" => authority = true,
                    _ => {
                        self.skipped.push(origin);
                        continue;
                    }
                }
                first = fields.next().unwrap_or_default();
            }
            let (Some(_key_type), Some(base64)) = (fields.next(), fields.next()) else {
                self.skipped.push(origin);
                continue;
            };
            let Ok(key) = russh::keys::parse_public_key_base64(base64) else {
                self.skipped.push(origin);
                continue;
            };
            if authority {
                // A CA vouches for host certificates only, never for a plain key.
                self.authorities.push(Authority {
                    patterns: first.split(',').map(str::to_string).collect(),
                    key,
                    origin,
                });
                continue;
            }
            let entry = self.entries.len();
            if first.contains(['*', '?', '!']) {
                self.wild
                    .push((first.split(',').map(str::to_string).collect(), entry));
                self.entries.push(Entry {
                    key,
                    origin,
                    revoked,
                });
                continue;
            }
            for pattern in first.split(',') {
                if let Some(hashed) = pattern.strip_prefix("|1|") {
                    let mut parts = hashed.split('|');
                    if let (Some(Ok(salt)), Some(Ok(hash))) = (
                        parts.next().map(|p| BASE64.decode(p.as_bytes())),
                        parts.next().map(|p| BASE64.decode(p.as_bytes())),
                    ) {
                        self.hashed.push(HashedPattern { salt, hash, entry });
                    }
                } else {
                    self.plain
                        .entry(pattern.to_string())
                        .or_default()
                        .push(entry);
                }
            }
            self.entries.push(Entry {
                key,
                origin,
                revoked,
            });
        }
    }

    /// Judge `key` offered by `host:port` (the address as connected to, like OpenSSH).
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let pattern = host_pattern(host, port);
        let learned_match = self
            .learned
            .lock()
            .expect("known_hosts lock")
            .iter()
            .any(|(h, k)| *h == pattern && k == key);
        let mut indexes: Vec<usize> = self.plain.get(&pattern).cloned().unwrap_or_default();
        for hashed in &self.hashed {
            if let Ok(mac) = Hmac::<Sha1>::new_from_slice(&hashed.salt)
                && mac
                    .chain_update(pattern.as_bytes())
                    .verify_slice(&hashed.hash)
                    .is_ok()
            {
                indexes.push(hashed.entry);
            }
        }
        for (patterns, entry) in &self.wild {
            if matches_pattern_list(patterns, host, port) {
                indexes.push(*entry);
            }
        }
        indexes.sort_unstable();
        let recorded: Vec<&Entry> = indexes.iter().map(|&i| &self.entries[i]).collect();
        if let Some(revoked) = recorded.iter().find(|e| e.revoked && e.key == *key) {
            return Verdict::Revoked {
                recorded_at: revoked.origin.clone(),
            };
        }
        if learned_match || recorded.iter().any(|e| !e.revoked && e.key == *key) {
            return Verdict::Known;
        }
        if let Some(changed) = recorded
            .iter()
            .find(|e| !e.revoked && e.key.algorithm() == key.algorithm())
        {
            return Verdict::Changed {
                recorded_at: changed.origin.clone(),
            };
        }
        let mut other_types: Vec<String> = recorded
            .iter()
            .filter(|e| !e.revoked)
            .map(|e| e.key.algorithm().as_str().to_string())
            .collect();
        other_types.dedup();
        Verdict::Unknown { other_types }
    }

    /// The `@cert-authority` keys trusted for `host:port`.
    pub fn authorities_for(&self, host: &str, port: u16) -> Vec<&Authority> {
        self.authorities
            .iter()
            .filter(|a| matches_pattern_list(&a.patterns, host, port))
            .collect()
    }

    /// Where `key` is marked `@revoked` for `host:port`, if it is.
    pub fn revoked_at(&self, host: &str, port: u16, key: &PublicKey) -> Option<Origin> {
        match self.check(host, port, key) {
            Verdict::Revoked { recorded_at } => Some(recorded_at),
            _ => None,
        }
    }

    /// The file `accept-new` writes to.
    pub fn learn_file(&self) -> Option<&Path> {
        self.learn_file.as_deref()
    }

    /// Append `key` for `host:port` to the learn file. Appends are serialized by a lock held
    /// across the write, so lines from concurrent hosts never interleave.
    pub fn learn(&self, host: &str, port: u16, key: &PublicKey) -> std::io::Result<PathBuf> {
        let file = self.learn_file.clone().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no known_hosts file to record new host keys in",
            )
        })?;
        let pattern = host_pattern(host, port);
        let mut learned = self.learned.lock().expect("known_hosts lock");
        if learned.iter().any(|(h, k)| *h == pattern && k == key) {
            return Ok(file);
        }
        if let Some(dir) = file.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)?;
        // Only the first append of a run can meet a file without a final newline: after it, the
        // file ends with one of our lines (and this lock is held for every append).
        let needs_newline = learned.is_empty()
            && std::fs::read(&file)
                .map(|b| !b.is_empty() && !b.ends_with(b"\n"))
                .unwrap_or(false);
        let mut line = String::new();
        if needs_newline {
            line.push('\n');
        }
        line.push_str(&known_hosts_line(host, port, key));
        line.push('\n');
        out.write_all(line.as_bytes())?;
        learned.push((pattern, key.clone()));
        Ok(file)
    }
}

/// OpenSSH's pattern-list rule for a known_hosts host field, tried against `[host]:port` (and
/// the bare host on port 22): a matching `!pattern` rejects, else any matching pattern accepts.
fn matches_pattern_list(patterns: &[String], host: &str, port: u16) -> bool {
    let target = host_pattern(host, port);
    let mut hit = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern.as_str()),
        };
        let pattern = pattern.to_ascii_lowercase();
        if super::pattern::wildcard(pattern.as_bytes(), target.to_ascii_lowercase().as_bytes()) {
            if negated {
                return false;
            }
            hit = true;
        }
    }
    hit
}

/// Edit one known_hosts file: drop the given 1-based lines (changed keys being replaced), then
/// append `lines`. Written to a temporary file beside it and renamed over it, so a reader never
/// sees half a file; the file's permissions are kept (0644 for a new file, like OpenSSH's).
pub fn rewrite(file: &Path, drop_lines: &[usize], lines: &[String]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let existing = match std::fs::read_to_string(file) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    let mut text = String::new();
    for (index, line) in existing.as_deref().unwrap_or("").lines().enumerate() {
        if !drop_lines.contains(&(index + 1)) {
            text.push_str(line);
            text.push('\n');
        }
    }
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mode = std::fs::metadata(file)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "known_hosts".into());
    let tmp = dir.join(format!(".{name}.edgeops-{}", std::process::id()));
    let result = (|| {
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIKP9q3oGDqfotxcrFc0TuXbRleBatw7AyUjj2ON8V4cZ";
    const ED_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIIRDAivtA9i8rIY9Yudp2xPfs6uyZDjR0mKNUzRIkQ7q";

    fn key(b64: &str) -> PublicKey {
        russh::keys::parse_public_key_base64(b64).unwrap()
    }

    fn hashed_pattern(host: &str, salt: &[u8]) -> String {
        let mac = Hmac::<Sha1>::new_from_slice(salt)
            .unwrap()
            .chain_update(host.as_bytes())
            .finalize()
            .into_bytes();
        format!("|1|{}|{}", BASE64.encode(salt), BASE64.encode(&mac))
    }

    fn known(text: &str) -> KnownHosts {
        let mut k = KnownHosts::load(&[], None).unwrap();
        k.add_text(Path::new("/kh"), text);
        k
    }

    #[test]
    fn plain_entry_with_port_matches_only_that_port() {
        let k = known(&format!("# comment\n[10.0.0.5]:2222 ssh-ed25519 {ED_A}\n"));
        assert_eq!(k.check("10.0.0.5", 2222, &key(ED_A)), Verdict::Known);
        assert_eq!(
            k.check("10.0.0.5", 22, &key(ED_A)),
            Verdict::Unknown {
                other_types: vec![]
            }
        );
    }

    #[test]
    fn changed_key_names_file_and_line() {
        let k = known(&format!("\nhost-a,10.0.0.5 ssh-ed25519 {ED_A}\n"));
        assert_eq!(
            k.check("10.0.0.5", 22, &key(ED_B)),
            Verdict::Changed {
                recorded_at: Origin {
                    file: "/kh".into(),
                    line: 2
                }
            }
        );
    }

    #[test]
    fn hashed_entry_matches_host_and_port() {
        let pattern = hashed_pattern("[lab-01]:2200", b"0123456789abcdefghij");
        let k = known(&format!("{pattern} ssh-ed25519 {ED_A}\n"));
        assert_eq!(k.check("lab-01", 2200, &key(ED_A)), Verdict::Known);
        assert!(matches!(
            k.check("lab-01", 2200, &key(ED_B)),
            Verdict::Changed { .. }
        ));
        assert!(matches!(
            k.check("lab-02", 2200, &key(ED_A)),
            Verdict::Unknown { .. }
        ));
    }

    #[test]
    fn revoked_key_is_refused_even_if_also_listed() {
        let k = known(&format!(
            "h ssh-ed25519 {ED_A}\n@revoked h ssh-ed25519 {ED_A}\n"
        ));
        assert!(matches!(
            k.check("h", 22, &key(ED_A)),
            Verdict::Revoked { .. }
        ));
    }

    #[test]
    fn wildcard_lines_and_cert_authorities_match_by_pattern() {
        let k = known(&format!(
            "10.0.0.* ssh-ed25519 {ED_A}\n@revoked !10.0.0.9,* ssh-ed25519 {ED_B}\n\
             @cert-authority *.lab,[10.1.*]:2222 ssh-ed25519 {ED_B}\n"
        ));
        assert_eq!(k.check("10.0.0.5", 22, &key(ED_A)), Verdict::Known);
        assert!(matches!(
            k.check("10.0.0.5", 22, &key(ED_B)),
            Verdict::Revoked { .. }
        ));
        assert!(!matches!(
            k.check("10.0.0.9", 22, &key(ED_B)),
            Verdict::Revoked { .. }
        ));
        assert_eq!(k.authorities_for("pi.lab", 22).len(), 1);
        assert_eq!(k.authorities_for("10.1.2.3", 2222).len(), 1);
        assert!(k.authorities_for("10.1.2.3", 22).is_empty());
        // A CA line vouches for no plain key.
        assert!(matches!(
            k.check("pi.lab", 22, &key(ED_B)),
            Verdict::Revoked { .. }
        ));
    }

    #[test]
    fn garbage_lines_are_skipped_and_reported() {
        let k = known("h ssh-ed25519 not-base64!\nonlyonefield\n");
        assert_eq!(k.skipped.len(), 2);
    }

    #[test]
    fn learned_keys_are_appended_once_and_then_known() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/known_hosts");
        let k = KnownHosts::load(std::slice::from_ref(&file), Some(file.clone())).unwrap();
        k.learn("10.0.0.9", 2222, &key(ED_A)).unwrap();
        k.learn("10.0.0.9", 2222, &key(ED_A)).unwrap();
        assert_eq!(k.check("10.0.0.9", 2222, &key(ED_A)), Verdict::Known);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text, format!("[10.0.0.9]:2222 ssh-ed25519 {ED_A}\n"));
        let reread = KnownHosts::load(&[file], None).unwrap();
        assert_eq!(reread.check("10.0.0.9", 2222, &key(ED_A)), Verdict::Known);
    }

    #[test]
    fn rewrite_drops_replaced_lines_and_appends_keeping_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        std::fs::write(
            &file,
            format!("a ssh-ed25519 {ED_A}\nb ssh-ed25519 {ED_A}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        rewrite(&file, &[1], &[format!("a ssh-ed25519 {ED_B}")]).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            text,
            format!("b ssh-ed25519 {ED_A}\na ssh-ed25519 {ED_B}\n")
        );
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let fresh = dir.path().join("new/known_hosts");
        rewrite(&fresh, &[], &[format!("c ssh-ed25519 {ED_A}")]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&fresh).unwrap(),
            format!("c ssh-ed25519 {ED_A}\n")
        );
    }
}

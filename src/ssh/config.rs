//! OpenSSH client configuration (`~/.ssh/config` or `-F FILE`): parsing with `Include`, `Host`
//! and `Match` blocks, and resolution of the settings edgeops uses for one host, each with the
//! file and line it came from. First value wins, as in ssh(1); `IdentityFile` accumulates.
//!
//! Written here rather than taken from a crate: edgeops needs the origin of every value (for
//! `check -v`) and a report of every directive it does not honour, which the maintained parsers
//! (ssh2-config) do not give.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::known_hosts::Origin;
use super::pattern::wildcard;

/// How deep `Include` may nest (OpenSSH's limit is 16 too).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Directives that change nothing edgeops does (or only how an interactive ssh behaves), so
/// ignoring them silently is faithful.
const HARMLESS: &[&str] = &[
    "addkeystoagent",
    "batchmode",
    "checkhostip",
    "compression",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "escapechar",
    "forwardx11",
    "forwardx11trusted",
    "hashknownhosts",
    "loglevel",
    "requesttty",
    "serveralivecountmax",
    "serveraliveinterval",
    "tcpkeepalive",
    "updatehostkeys",
    "visualhostkey",
];

/// A block's condition.
#[derive(Debug)]
enum Condition {
    /// `Host PATTERN...` (a `!pattern` excludes).
    Host(Vec<String>),
    /// `Match` criteria, all of which must hold.
    Match(Vec<Criterion>),
}

#[derive(Debug)]
struct Criterion {
    negated: bool,
    kind: CriterionKind,
}

#[derive(Debug)]
enum CriterionKind {
    All,
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
    /// Not supported: the block never matches, and that is reported.
    Unsupported(String),
}

/// One directive with the conditions of every block it sits in (its own and its includers').
#[derive(Debug)]
struct Line {
    keyword: String,
    args: Vec<String>,
    origin: Origin,
    conditions: Vec<Arc<(Condition, Origin)>>,
}

/// A parsed configuration, ready to resolve hosts.
#[derive(Debug, Default)]
pub struct SshConfig {
    lines: Vec<Line>,
    /// Files read, in order (for messages).
    pub files: Vec<PathBuf>,
    /// Problems found while reading (bad lines, unreadable includes), each located.
    pub problems: Vec<String>,
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

/// One hop of a `ProxyJump` list: `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpSpec {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// What the configuration says about one host. `None` = not set there.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HostConfig {
    pub hostname: Option<Sourced<String>>,
    pub user: Option<Sourced<String>>,
    pub port: Option<Sourced<u16>>,
    pub identity_files: Vec<Sourced<PathBuf>>,
    pub identities_only: Option<Sourced<bool>>,
    /// Empty list: `ProxyJump none`.
    pub proxy_jump: Option<Sourced<Vec<JumpSpec>>>,
    /// `None` inside: `ProxyCommand none`. Tokens (`%h` ...) are expanded by [`expand_proxy_command`].
    pub proxy_command: Option<Sourced<Option<String>>>,
    pub user_known_hosts_files: Option<Sourced<Vec<PathBuf>>>,
    pub connect_timeout: Option<Sourced<Duration>>,
    /// Directives (and `Match` criteria) that apply to this host but edgeops does not honour.
    pub unsupported: Vec<String>,
}

/// Who is asking: the local user and home, for `~`, `%d`, `%u` and `Match localuser`.
#[derive(Debug, Clone)]
pub struct LocalContext {
    pub home: PathBuf,
    pub user: String,
}

impl LocalContext {
    pub fn from_env() -> LocalContext {
        LocalContext {
            home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default(),
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "root".into()),
        }
    }
}

impl SshConfig {
    /// Read `file` and what it includes. A missing file is an empty configuration.
    pub fn load(file: &Path, local: &LocalContext) -> SshConfig {
        let mut config = SshConfig::default();
        config.read_file(file, local, &[], 0, true);
        config
    }

    /// Parse configuration text (includes are read from disk relative to `~/.ssh`).
    pub fn parse(file: &Path, text: &str, local: &LocalContext) -> SshConfig {
        let mut config = SshConfig::default();
        config.files.push(file.to_path_buf());
        config.parse_text(file, text, local, &[], 0);
        config
    }

    fn read_file(
        &mut self,
        file: &Path,
        local: &LocalContext,
        outer: &[Arc<(Condition, Origin)>],
        depth: usize,
        missing_ok: bool,
    ) {
        match std::fs::read_to_string(file) {
            Ok(text) => {
                self.files.push(file.to_path_buf());
                self.parse_text(file, &text, local, outer, depth);
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && missing_ok => {}
            Err(err) => self
                .problems
                .push(format!("{}: cannot read: {err}", file.display())),
        }
    }

    fn parse_text(
        &mut self,
        file: &Path,
        text: &str,
        local: &LocalContext,
        outer: &[Arc<(Condition, Origin)>],
        depth: usize,
    ) {
        // Lines before the first Host/Match apply to every host (only the includer's conditions).
        let mut current: Vec<Arc<(Condition, Origin)>> = outer.to_vec();
        for (index, raw) in text.lines().enumerate() {
            let origin = Origin {
                file: file.to_path_buf(),
                line: index + 1,
            };
            let words = match split_words(raw) {
                Ok(words) => words,
                Err(reason) => {
                    self.problems.push(format!("{origin}: {reason}"));
                    continue;
                }
            };
            let Some((keyword, args)) = words.split_first() else {
                continue;
            };
            let keyword = keyword.to_ascii_lowercase();
            let args = args.to_vec();
            match keyword.as_str() {
                "host" => {
                    if args.is_empty() {
                        self.problems
                            .push(format!("{origin}: `Host` needs at least one pattern"));
                    }
                    current = outer.to_vec();
                    current.push(Arc::new((Condition::Host(args), origin)));
                }
                "match" => {
                    let criteria = match parse_match(&args) {
                        Ok(c) => c,
                        Err(reason) => {
                            self.problems.push(format!("{origin}: {reason}"));
                            vec![Criterion {
                                negated: false,
                                kind: CriterionKind::Unsupported(args.join(" ")),
                            }]
                        }
                    };
                    current = outer.to_vec();
                    current.push(Arc::new((Condition::Match(criteria), origin)));
                }
                "include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        self.problems.push(format!(
                            "{origin}: Include nested deeper than {MAX_INCLUDE_DEPTH} levels"
                        ));
                        continue;
                    }
                    for pattern in &args {
                        for path in include_paths(pattern, local) {
                            self.read_file(&path, local, &current, depth + 1, false);
                        }
                    }
                }
                _ => self.lines.push(Line {
                    keyword,
                    args,
                    origin,
                    conditions: current.clone(),
                }),
            }
        }
    }

    /// The settings for `original` (what one would type after `ssh`), with `user` the login
    /// user decided so far (the inventory's when it names one), for `Match user`.
    pub fn resolve(&self, original: &str, user: Option<&str>, local: &LocalContext) -> HostConfig {
        let mut out = HostConfig::default();
        for line in &self.lines {
            let hostname = out
                .hostname
                .as_ref()
                .map_or(original, |h| h.value.as_str())
                .to_string();
            let current_user = user
                .map(str::to_string)
                .or_else(|| out.user.as_ref().map(|u| u.value.clone()))
                .unwrap_or_else(|| local.user.clone());
            let facts = Facts {
                original,
                hostname: &hostname,
                user: &current_user,
                local_user: &local.user,
            };
            let mut applies = true;
            for condition in &line.conditions {
                match matches(&condition.0, &facts) {
                    Ok(true) => {}
                    Ok(false) => applies = false,
                    Err(criterion) => {
                        let note = format!(
                            "{}: `Match {criterion}` is not supported; the block is skipped",
                            condition.1
                        );
                        if !out.unsupported.contains(&note) {
                            out.unsupported.push(note);
                        }
                        applies = false;
                    }
                }
            }
            if applies {
                apply(&mut out, line, original, local);
            }
        }
        out
    }
}

struct Facts<'a> {
    original: &'a str,
    hostname: &'a str,
    user: &'a str,
    local_user: &'a str,
}

/// Whether a block's condition holds; `Err(criterion)` for an unsupported `Match` criterion.
fn matches(condition: &Condition, facts: &Facts) -> Result<bool, String> {
    match condition {
        Condition::Host(patterns) => Ok(match_list(
            patterns.iter().map(String::as_str),
            facts.original,
            true,
        )),
        Condition::Match(criteria) => {
            for criterion in criteria {
                let hit = match &criterion.kind {
                    CriterionKind::All => true,
                    CriterionKind::Host(list) => match_list(list.split(','), facts.hostname, true),
                    CriterionKind::OriginalHost(list) => {
                        match_list(list.split(','), facts.original, true)
                    }
                    CriterionKind::User(list) => match_list(list.split(','), facts.user, false),
                    CriterionKind::LocalUser(list) => {
                        match_list(list.split(','), facts.local_user, false)
                    }
                    CriterionKind::Unsupported(what) => return Err(what.clone()),
                };
                if hit == criterion.negated {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

/// OpenSSH's pattern-list rule: a matching `!pattern` rejects, else any matching pattern accepts.
fn match_list<'a>(patterns: impl Iterator<Item = &'a str>, value: &str, fold_case: bool) -> bool {
    let value = if fold_case {
        value.to_ascii_lowercase()
    } else {
        value.to_string()
    };
    let mut hit = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        let pattern = if fold_case {
            pattern.to_ascii_lowercase()
        } else {
            pattern.to_string()
        };
        if wildcard(pattern.as_bytes(), value.as_bytes()) {
            if negated {
                return false;
            }
            hit = true;
        }
    }
    hit
}

fn parse_match(args: &[String]) -> Result<Vec<Criterion>, String> {
    let mut criteria = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let (negated, name) = match word.strip_prefix('!') {
            Some(n) => (true, n),
            None => (false, word.as_str()),
        };
        let name = name.to_ascii_lowercase();
        let mut arg = |what: &str| {
            words
                .next()
                .cloned()
                .ok_or_else(|| format!("`Match {what}` needs an argument"))
        };
        let kind = match name.as_str() {
            "all" => CriterionKind::All,
            "host" => CriterionKind::Host(arg("host")?),
            "originalhost" => CriterionKind::OriginalHost(arg("originalhost")?),
            "user" => CriterionKind::User(arg("user")?),
            "localuser" => CriterionKind::LocalUser(arg("localuser")?),
            "canonical" | "final" => CriterionKind::Unsupported(name.clone()),
            other => CriterionKind::Unsupported(match arg(other) {
                Ok(value) => format!("{other} {value}"),
                Err(_) => other.to_string(),
            }),
        };
        criteria.push(Criterion { negated, kind });
    }
    if criteria.is_empty() {
        return Err("`Match` needs criteria (e.g. `Match host pi-*`)".into());
    }
    Ok(criteria)
}

/// Apply one matching directive: the first value of each setting wins.
fn apply(out: &mut HostConfig, line: &Line, original: &str, local: &LocalContext) {
    let origin = &line.origin;
    let first = line.args.first().cloned().unwrap_or_default();
    let bad = |out: &mut HostConfig, why: &str| {
        out.unsupported.push(format!(
            "{origin}: {} {}: {why}",
            line.keyword,
            line.args.join(" ")
        ))
    };
    match line.keyword.as_str() {
        "hostname" => {
            if out.hostname.is_none() {
                out.hostname = Some(at(origin, first.replace("%h", original).replace("%%", "%")));
            }
        }
        "user" => {
            if out.user.is_none() {
                out.user = Some(at(origin, first));
            }
        }
        "port" => {
            if out.port.is_none() {
                match first.parse::<u16>() {
                    Ok(port) if port > 0 => out.port = Some(at(origin, port)),
                    _ => bad(out, "not a port number (ignored)"),
                }
            }
        }
        "identityfile" => {
            let path = expand_path(&first, local, original);
            if !out.identity_files.iter().any(|f| f.value == path) {
                out.identity_files.push(at(origin, path));
            }
        }
        "identitiesonly" => {
            if out.identities_only.is_none() {
                out.identities_only = Some(at(origin, yes(&first)));
            }
        }
        // ProxyJump and ProxyCommand compete: whichever comes first wins, as in ssh_config(5).
        "proxyjump" => {
            if out.proxy_jump.is_none() && out.proxy_command.is_none() {
                if first.eq_ignore_ascii_case("none") {
                    out.proxy_jump = Some(at(origin, Vec::new()));
                } else {
                    match first.split(',').map(parse_jump).collect::<Option<Vec<_>>>() {
                        Some(hops) => out.proxy_jump = Some(at(origin, hops)),
                        None => bad(out, "not a `[user@]host[:port]` list (ignored)"),
                    }
                }
            }
        }
        "proxycommand" => {
            if out.proxy_command.is_none() && out.proxy_jump.is_none() {
                let command = line.args.join(" ");
                out.proxy_command = Some(at(
                    origin,
                    (!command.eq_ignore_ascii_case("none")).then_some(command),
                ));
            }
        }
        "userknownhostsfile" => {
            if out.user_known_hosts_files.is_none() {
                let files = line
                    .args
                    .iter()
                    .filter(|f| !f.eq_ignore_ascii_case("none"))
                    .map(|f| expand_path(f, local, original))
                    .collect();
                out.user_known_hosts_files = Some(at(origin, files));
            }
        }
        "connecttimeout" => {
            if out.connect_timeout.is_none() {
                match first.parse::<u64>() {
                    Ok(seconds) if seconds > 0 => {
                        out.connect_timeout = Some(at(origin, Duration::from_secs(seconds)))
                    }
                    _ => bad(out, "not a number of seconds (ignored)"),
                }
            }
        }
        keyword if HARMLESS.contains(&keyword) => {}
        _ => bad(out, "not supported by edgeops (ignored)"),
    }
}

fn at<T>(origin: &Origin, value: T) -> Sourced<T> {
    Sourced {
        value,
        origin: origin.clone(),
    }
}

fn yes(word: &str) -> bool {
    matches!(word.to_ascii_lowercase().as_str(), "yes" | "true")
}

fn parse_jump(hop: &str) -> Option<JumpSpec> {
    let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
    let (user, rest) = match hop.rsplit_once('@') {
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, hop),
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, tail) = v6.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        (host.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port.parse().ok()?)),
            None => (rest.to_string(), None),
        }
    };
    (!host.is_empty()).then_some(JumpSpec { user, host, port })
}

/// `~`, `%d` (home), `%u` (local user), `%n` (host as given); relative paths are under `~/.ssh`
/// like OpenSSH's for files named in a user configuration.
fn expand_path(raw: &str, local: &LocalContext, original: &str) -> PathBuf {
    let home = local.home.display().to_string();
    let text = match raw.strip_prefix("~/") {
        Some(rest) => format!("{home}/{rest}"),
        None if raw == "~" => home.clone(),
        None => raw.to_string(),
    };
    let text = text
        .replace("%d", &home)
        .replace("%u", &local.user)
        .replace("%n", original)
        .replace("%%", "%");
    let path = PathBuf::from(text);
    if path.is_absolute() {
        path
    } else {
        local.home.join(".ssh").join(path)
    }
}

/// `ProxyCommand` tokens: `%h` host, `%p` port, `%r` user, `%n` host as given, `%%`.
pub fn expand_proxy_command(
    command: &str,
    host: &str,
    port: u16,
    user: &str,
    original: &str,
) -> String {
    let mut out = String::new();
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(host),
            Some('p') => out.push_str(&port.to_string()),
            Some('r') => out.push_str(user),
            Some('n') => out.push_str(original),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The files an `Include` argument names: `~` expanded, relative to `~/.ssh`, a glob in the last
/// component expanded in sorted order (as glob(3) does).
fn include_paths(pattern: &str, local: &LocalContext) -> Vec<PathBuf> {
    let path = expand_path(pattern, local, "");
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![path];
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| wildcard(name.as_bytes(), e.file_name().to_string_lossy().as_bytes()))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
}

/// Split a line into words: whitespace separated, `"double quotes"` group, `#` starts a comment
/// outside quotes, `Keyword=value` is `Keyword value`.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '#' if !quoted => break,
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '=' if !quoted && words.is_empty() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(home: &Path) -> LocalContext {
        LocalContext {
            home: home.to_path_buf(),
            user: "me".into(),
        }
    }

    #[test]
    fn first_value_wins_and_origins_are_kept() {
        let text = "\
# fleet
Host pi-* !pi-99
  User pi
  Port 2222
  IdentityFile ~/.ssh/pi_key
Host *
  User other
  Port=22
  IdentityFile id_extra
  ConnectTimeout 7
";
        let l = local(Path::new("/home/me"));
        let c = SshConfig::parse(Path::new("/home/me/.ssh/config"), text, &l);
        let r = c.resolve("pi-01", None, &l);
        assert_eq!(r.user.as_ref().unwrap().value, "pi");
        assert_eq!(r.user.as_ref().unwrap().origin.line, 3);
        assert_eq!(r.port.as_ref().unwrap().value, 2222);
        let files: Vec<_> = r.identity_files.iter().map(|f| f.value.clone()).collect();
        assert_eq!(
            files,
            [
                PathBuf::from("/home/me/.ssh/pi_key"),
                PathBuf::from("/home/me/.ssh/id_extra")
            ]
        );
        assert_eq!(r.connect_timeout.unwrap().value, Duration::from_secs(7));
        // Negated pattern: pi-99 falls through to `Host *`.
        let r = c.resolve("pi-99", None, &l);
        assert_eq!(r.user.unwrap().value, "other");
        assert_eq!(r.port.unwrap().value, 22);
    }

    #[test]
    fn match_host_user_and_unsupported_criteria() {
        let text = "\
Host board
  HostName 10.0.0.5
Match host 10.0.0.* user pi
  ProxyJump admin@bastion:2200,gw
Match exec \"true\"
  User nobody
Match all
  ForwardAgent yes
";
        let l = local(Path::new("/h"));
        let c = SshConfig::parse(Path::new("/h/.ssh/config"), text, &l);
        let r = c.resolve("board", Some("pi"), &l);
        assert_eq!(r.hostname.as_ref().unwrap().value, "10.0.0.5");
        let hops = r.proxy_jump.as_ref().unwrap().value.clone();
        assert_eq!(
            hops,
            vec![
                JumpSpec {
                    user: Some("admin".into()),
                    host: "bastion".into(),
                    port: Some(2200)
                },
                JumpSpec {
                    user: None,
                    host: "gw".into(),
                    port: None
                }
            ]
        );
        assert!(r.user.is_none(), "the exec block is skipped");
        assert_eq!(r.unsupported.len(), 2, "{:?}", r.unsupported);
        assert!(
            r.unsupported[0].contains("Match exec true"),
            "{:?}",
            r.unsupported
        );
        assert!(r.unsupported[1].contains("forwardagent yes: not supported"));
        // Another user: the Match user block does not apply.
        let r = c.resolve("board", Some("root"), &l);
        assert!(r.proxy_jump.is_none());
    }

    #[test]
    fn include_globs_relative_to_dot_ssh_inside_a_host_block() {
        let home = tempfile::tempdir().unwrap();
        let l = local(home.path());
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(ssh.join("conf.d")).unwrap();
        std::fs::write(ssh.join("conf.d/10-a.conf"), "User from-a\n").unwrap();
        std::fs::write(ssh.join("conf.d/20-b.conf"), "User from-b\nPort 2200\n").unwrap();
        std::fs::write(
            ssh.join("config"),
            "Host lab-*\n  Include conf.d/*.conf\nHost *\n  Port 22\n",
        )
        .unwrap();
        let c = SshConfig::load(&ssh.join("config"), &l);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let r = c.resolve("lab-01", None, &l);
        assert_eq!(r.user.as_ref().unwrap().value, "from-a");
        assert_eq!(r.port.as_ref().unwrap().value, 2200);
        assert!(r.port.unwrap().origin.file.ends_with("conf.d/20-b.conf"));
        // The include sits in `Host lab-*`: other hosts do not get it.
        let r = c.resolve("web", None, &l);
        assert!(r.user.is_none());
        assert_eq!(r.port.unwrap().value, 22);
    }

    #[test]
    fn proxy_command_tokens_and_none() {
        assert_eq!(
            expand_proxy_command("ssh -W %h:%p -l %r gw # 100%%", "10.0.0.5", 22, "pi", "b"),
            "ssh -W 10.0.0.5:22 -l pi gw # 100%"
        );
        let l = local(Path::new("/h"));
        let c = SshConfig::parse(
            Path::new("c"),
            "Host a\n ProxyCommand none\nHost *\n ProxyCommand nc %h %p\n",
            &l,
        );
        assert_eq!(c.resolve("a", None, &l).proxy_command.unwrap().value, None);
        assert_eq!(
            c.resolve("b", None, &l)
                .proxy_command
                .unwrap()
                .value
                .as_deref(),
            Some("nc %h %p")
        );
    }
}

//! `include = "FILE"`: settings several site inventories share ([ssh], [gitlab], [groups.*],
//! ...) kept in one file. The included file's tables are added to the site's as if written at
//! its end: a table is defined in one of the two files, never both (the site overrides per
//! group or host, as everywhere). Errors in the included part point at the included file and
//! line, and say which inventory included it. One level: an included file includes nothing.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::error::{Diagnostic, ErrorKind, InventoryError, SourceMap};
use super::hosts::HostEntry;
use super::model::Inventory;

/// The one key this stage reads from the site text; everything else is left to `raw`.
#[derive(Deserialize)]
struct Head {
    include: Option<Spanned<toml::Value>>,
}

/// Parse and validate `text` (from `path`), first adding the tables of the file its
/// `include` names, if it names one.
pub(super) fn parse_with_includes(
    text: &str,
    path: &Path,
) -> Result<(Inventory, Vec<HostEntry>), InventoryError> {
    // Not TOML, or no string `include`: the normal parse reports whatever is wrong.
    let Some((value, span)) = toml::from_str::<Head>(text)
        .ok()
        .and_then(|h| h.include)
        .and_then(|v| {
            let span = v.span();
            v.into_inner().as_str().map(|s| (s.to_owned(), span))
        })
    else {
        return super::parse_with_entries(text, path);
    };
    let site_error = |kind, message: String, help: &str| {
        InventoryError::single(Diagnostic {
            kind,
            message,
            path: path.to_path_buf(),
            location: Some(SourceMap::new(text).locate(span.clone(), false)),
            help: Some(help.to_owned()),
        })
    };
    let shared_path = resolve(path, &value);
    if !shared_path.exists() {
        return Err(site_error(
            ErrorKind::MissingFile,
            format!(
                "cannot read the included file `{}`: it does not exist",
                shared_path.display()
            ),
            "`include` names a file of shared tables, relative to this inventory's folder",
        ));
    }
    // The same bounded read as the inventory itself (regular file, size cap, UTF-8 located).
    let shared = super::source::read_inventory(&shared_path)?;
    // The included file must be TOML on its own: its syntax errors point into it.
    let shared_table: toml::Table = match toml::from_str(&shared) {
        Ok(table) => table,
        Err(_) => return Err(super::parse_with_entries(&shared, &shared_path).unwrap_err()),
    };
    let site_table: toml::Table = toml::from_str(text).unwrap_or_default();
    check_shared(&shared, &shared_path, &shared_table, &site_table, path)?;
    let mut combined = String::with_capacity(text.len() + shared.len() + 1);
    combined.push_str(text);
    if !text.ends_with('\n') {
        combined.push('\n');
    }
    let site_lines = combined.matches('\n').count();
    combined.push_str(&shared);
    let include_line = SourceMap::new(text).locate(span, false).line;
    super::parse_with_entries(&combined, path)
        .map_err(|err| relocate(err, site_lines, &shared_path, path, include_line))
}

/// The file an inventory includes, if it names one (for `edgeops ci`'s changed-paths rules).
pub fn included_file(path: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(path).ok()?;
    let head: Head = toml::from_str(&text).ok()?;
    let value = head.include?.into_inner();
    Some(resolve(path, value.as_str()?))
}

/// `value` from the site's folder, `dir/../x` folded to `x` so messages name the file plainly.
fn resolve(site: &Path, value: &str) -> PathBuf {
    let value = Path::new(value);
    let joined = match site.parent() {
        _ if value.is_absolute() => value.to_path_buf(),
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(value),
        _ => value.to_path_buf(),
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(
                    out.components().next_back(),
                    Some(std::path::Component::Normal(_))
                ) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// What the included file may hold: tables (and `[[hosts]]`) that the site does not define.
/// A bare key would attach to the site's last table; a second `include` would nest.
fn check_shared(
    shared: &str,
    shared_path: &Path,
    shared_table: &toml::Table,
    site_table: &toml::Table,
    site_path: &Path,
) -> Result<(), InventoryError> {
    let mut diagnostics = Vec::new();
    let map = SourceMap::new(shared);
    let mut report = |key: &str, message: String, help: String| {
        diagnostics.push(Diagnostic {
            kind: ErrorKind::Conflict,
            message,
            path: shared_path.to_path_buf(),
            location: key_span(shared, key).map(|s| map.locate(s, false)),
            help: Some(help),
        });
    };
    for (key, value) in shared_table {
        let is_tables = value.is_table()
            || value
                .as_array()
                .is_some_and(|a| a.iter().all(toml::Value::is_table));
        if key == "include" {
            report(
                key,
                "an included file cannot include another".to_owned(),
                "keep one level: put the shared tables in this file".to_owned(),
            );
        } else if !is_tables {
            report(
                key,
                format!("`{key}` is a plain key: an included file holds only tables"),
                "write it under its table (`[cluster]`, `[ssh]`, ...); top-level keys belong in the site inventory".to_owned(),
            );
        } else if let Some(site_value) = site_table.get(key) {
            match (value.as_table(), site_value.as_table()) {
                // `[groups.a]` here and `[groups.b]` there add up; the same group twice does not.
                (Some(shared_sub), Some(site_sub)) if key == "groups" => {
                    for name in shared_sub.keys().filter(|n| site_sub.contains_key(*n)) {
                        report(
                            &format!("groups.{name}"),
                            format!(
                                "`[groups.{name}]` is in both this file and `{}`",
                                site_path.display()
                            ),
                            "define a group in one of the two files".to_owned(),
                        );
                    }
                }
                (Some(_), _) => report(
                    key,
                    format!(
                        "`[{key}]` is in both this file and `{}`",
                        site_path.display()
                    ),
                    format!(
                        "a table comes from one file: keep `[{key}]` here for every site, or in each site's inventory"
                    ),
                ),
                _ => {}
            }
        }
    }
    if diagnostics.is_empty() {
        Ok(())
    } else {
        Err(InventoryError::new(diagnostics))
    }
}

/// Where `[key]` (or `key =`) starts in `text`, for pointing at it.
fn key_span(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let lead = line.len() - trimmed.len();
        let header = trimmed
            .trim_start_matches('[')
            .split(']')
            .next()
            .map(str::trim);
        let bare = trimmed.split('=').next().map(str::trim);
        if (trimmed.starts_with('[') && header == Some(key)) || bare == Some(key) {
            let start = offset + lead;
            return Some(start..start + trimmed.trim_end().len());
        }
        offset += line.len();
    }
    None
}

/// Diagnostics located after the site's own lines are in the included file: point there.
fn relocate(
    err: InventoryError,
    site_lines: usize,
    shared_path: &Path,
    site_path: &Path,
    include_line: usize,
) -> InventoryError {
    let diagnostics = err
        .diagnostics()
        .iter()
        .cloned()
        .map(|mut d| {
            if let Some(loc) = d.location.as_mut().filter(|l| l.line > site_lines) {
                loc.line -= site_lines;
                d.path = shared_path.to_path_buf();
                let from = format!("included by `{}` line {include_line}", site_path.display());
                d.help = Some(match d.help.take() {
                    Some(help) => format!("{help} ({from})"),
                    None => from,
                });
            }
            d
        })
        .collect();
    InventoryError::new(diagnostics)
}

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::*;

    const SITE: &str = "include = \"../common.toml\"\n\n[cluster]\nname = \"berlin\"\n\n[[hosts]]\nname = \"ber-01\"\naddress = \"10.0.0.1\"\nrole = \"server\"\ngroups = [\"pis\"]\n";

    fn repo(common: &str, site: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sites")).unwrap();
        std::fs::write(dir.path().join("common.toml"), common).unwrap();
        let site_path = dir.path().join("sites/berlin.toml");
        std::fs::write(&site_path, site).unwrap();
        (dir, site_path)
    }

    #[test]
    fn the_sites_hosts_get_the_shared_tables() {
        let (_dir, site) = repo(
            "[ssh]\nuser = \"edge\"\nport = 2222\n\n[groups.pis]\nlabels = { \"example.com/board\" = \"rpi4\" }\n",
            SITE,
        );
        let inv = load(&site).unwrap();
        let host = &inv.hosts[0];
        assert_eq!((host.ssh.user.as_str(), host.ssh.port), ("edge", 2222));
        assert_eq!(host.labels["example.com/board"], "rpi4");
        assert_eq!(inv.path, site, "the inventory is still the site's file");
        assert_eq!(
            included_file(&site).unwrap(),
            site.parent().unwrap().parent().unwrap().join("common.toml")
        );
    }

    #[test]
    fn an_error_in_the_shared_part_points_at_the_included_file() {
        let (_dir, site) = repo("# shared\n[ssh]\nusr = \"edge\"\n", SITE);
        let err = load(&site).unwrap_err();
        let d = &err.diagnostics()[0];
        assert_eq!(d.kind, ErrorKind::UnknownKey);
        assert!(d.path.ends_with("common.toml"), "{err}");
        assert_eq!(d.location.as_ref().unwrap().line, 3, "{err}");
        let text = err.to_string();
        assert!(text.contains("common.toml:3:1"), "{text}");
        assert!(
            text.contains("included by `") && text.contains("berlin.toml` line 1"),
            "{text}"
        );
    }

    #[test]
    fn a_table_in_both_files_a_plain_key_or_a_nested_include_is_refused() {
        let (_dir, site) = repo(
            "include = \"other.toml\"\nchannel = \"stable\"\n\n[cluster]\nversion = \"v1.31.4+k3s1\"\n",
            SITE,
        );
        let err = load(&site).unwrap_err();
        let text = err.to_string();
        assert!(
            err.diagnostics()
                .iter()
                .all(|d| d.path.ends_with("common.toml")),
            "{text}"
        );
        assert!(
            text.contains("an included file cannot include another"),
            "{text}"
        );
        assert!(text.contains("`channel` is a plain key"), "{text}");
        assert!(
            text.contains("`[cluster]` is in both this file and"),
            "{text}"
        );
        assert!(
            text.contains("common.toml:4:1"),
            "the [cluster] line: {text}"
        );
    }

    #[test]
    fn a_missing_included_file_is_named_at_the_include_line() {
        let (dir, site) = repo("", SITE);
        std::fs::remove_file(dir.path().join("common.toml")).unwrap();
        let err = load(&site).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingFile);
        let text = err.to_string();
        assert!(text.contains("cannot read the included file"), "{text}");
        assert!(text.contains("berlin.toml:1:11"), "{text}");
    }
}

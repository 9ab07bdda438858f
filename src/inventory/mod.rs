//! The inventory: TOML schema, defaults and overrides, hostlist ranges, validation, host selection.
//!
//! Two stages, as in ripgrep's flags: `raw` mirrors the TOML (unknown keys rejected, spans kept),
//! `validate` turns it into the `model` everything else uses, with every problem located at a
//! file:line:column. `select` implements `--limit`. The format is documented in docs/INVENTORY.md.

mod ci;
pub mod cluster_extras;
mod diagnostics;
mod error;
pub mod files;
pub(crate) mod formats;
pub mod hostlist;
mod hosts;
mod include;
pub mod k3s_flags;
mod layers;
pub mod model;
mod raw;
pub mod registries;
mod secret_args;
pub mod select;
mod source;
mod validate;

pub use error::{Diagnostic, ErrorKind, InventoryError, Location};
pub use hosts::HostEntry;
pub use include::included_file;
pub use model::*;
pub use select::{SelectError, select};
pub use source::MAX_INVENTORY_BYTES;
pub use validate::DEFAULT_INSTALL_URL;

/// `[ssh] concurrency` and `--concurrency`: how many hosts are worked on at once.
pub const CONCURRENCY_RANGE: std::ops::RangeInclusive<usize> = 1..=10_000;

use std::path::Path;

use error::SourceMap;

/// Read, parse and validate an inventory file.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    load_with_entries(path).map(|(inventory, _)| inventory)
}

/// Like [`load`], also returning the `[[hosts]]` entries as written (for summaries).
pub fn load_with_entries(path: &Path) -> Result<(Inventory, Vec<HostEntry>), InventoryError> {
    let text = source::read_inventory(path)?;
    include::parse_with_includes(&text, path)
}

/// Parse and validate inventory text; `path` is used in messages and to resolve relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
    parse_with_entries(text, path).map(|(inventory, _)| inventory)
}

/// Like [`parse`], also returning the `[[hosts]]` entries as written.
pub fn parse_with_entries(
    text: &str,
    path: &Path,
) -> Result<(Inventory, Vec<HostEntry>), InventoryError> {
    let raw: raw::RawInventory = toml::from_str(text).map_err(|e| syntax_error(&e, text, path))?;
    validate::validate(raw, path, text)
}

/// Turn a toml/serde error into a located diagnostic, recognising unknown keys to suggest the
/// closest valid one.
fn syntax_error(err: &toml::de::Error, text: &str, path: &Path) -> InventoryError {
    let message = err.message().trim();
    // toml reports a too-long dotted key (`a.b.c...`, its recursion limit) without a span.
    // Anything else without a place points at 1:1, so every error carries file:line:column.
    let span = err
        .span()
        .or_else(|| {
            message
                .contains("recursion")
                .then(|| deepest_key(text))
                .flatten()
        })
        .or(Some(0..0));
    let location = span.clone().map(|span| {
        let mut location = SourceMap::new(text).locate(span, false);
        mask_secret_assignment(&mut location.source_line);
        location
    });
    let (kind, message, help) = match parse_unknown_field(message) {
        Some((key, expected)) => {
            let valid: Vec<&str> = expected
                .iter()
                .map(String::as_str)
                .filter(|k| !raw::INLINE_SECRET_KEYS.contains(k))
                .collect();
            let hint = formats::closest(&key, valid.iter().copied())
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            let list = if valid.is_empty() {
                "this table takes no keys".to_string()
            } else {
                format!("valid keys here: {}", valid.join(", "))
            };
            let table = span
                .clone()
                .and_then(|span| enclosing_table(text, span.start))
                .map(|t| format!(" in `{t}`"))
                .unwrap_or_default();
            (
                ErrorKind::UnknownKey,
                format!("unknown key `{key}`{table}"),
                format!("{hint}{list}"),
            )
        }
        None => {
            let on_hosts_table = location
                .as_ref()
                .is_some_and(|l| l.source_line.trim() == "[hosts]");
            let help = if on_hosts_table {
                "each host is an entry of an array of tables: write `[[hosts]]` (double brackets)"
            } else if message.starts_with("invalid type") {
                "check the value's type: strings are quoted, lists are `[..]`, tables are `{..}` (see docs/INVENTORY.md)"
            } else if message.starts_with("missing field") {
                "add the missing key (see docs/INVENTORY.md)"
            } else if message.contains("recursion") {
                "tables, lists and dotted keys are nested too deeply: an inventory needs at most a few levels (see docs/INVENTORY.md)"
            } else if message.contains("duplicate key") {
                "each key may appear once per table"
            } else {
                "the inventory must be valid TOML (https://toml.io); see docs/INVENTORY.md for the format"
            };
            let message = if message == "recursion limit" {
                "a key with too many dotted parts (toml's recursion limit)"
            } else {
                message
            };
            (ErrorKind::Syntax, plain_types(message), help.to_string())
        }
    };
    InventoryError::single(Diagnostic {
        kind,
        message,
        path: path.to_path_buf(),
        location,
        help: Some(help),
    })
}

/// A source line shown in an error must not echo a secret: everything after the `=` of a
/// secret-looking key (`token`, `agent_token`, `k3s_token`, `secret`, `passwd`, ..., also inside
/// an inline table or a `--flag=value` string) is masked. Applied to every error's source line.
fn mask_secret_assignment(line: &mut String) {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut cut = None;
    for (eq, _) in line.match_indices('=') {
        let key_end = line[..eq].trim_end().trim_end_matches('"').len();
        let key = line[..key_end]
            .rsplit(|c: char| !is_key_char(c))
            .next()
            .unwrap_or("");
        if raw::looks_secret(key) {
            cut = Some(eq + 1);
            break;
        }
    }
    if let Some(cut) = cut {
        let masked: String = line[cut..]
            .chars()
            .map(|c| if c == ' ' { c } else { '*' })
            .collect();
        line.truncate(cut);
        line.push_str(&masked);
    }
}

/// The span of the key with the most dotted parts (a `[table.header]` or a `dotted.key =`), for
/// errors toml reports without a place. Dots inside quotes do not count.
fn deepest_key(text: &str) -> Option<std::ops::Range<usize>> {
    let mut deepest: Option<(usize, std::ops::Range<usize>)> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset + (line.len() - line.trim_start().len());
        offset += line.len();
        let key = line.trim_start().trim_start_matches('[');
        let mut quote = None;
        let mut dots = 0;
        let mut key_len = 0;
        for (i, c) in key.char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '.') => dots += 1,
                (None, '=' | ']' | '#' | '\n') => break,
                _ => {}
            }
            key_len = i + c.len_utf8();
        }
        if dots > deepest.as_ref().map_or(0, |(d, _)| *d) {
            let end = start + (line.trim_start().len() - key.len()) + key_len;
            deepest = Some((dots, start..end.min(text.len())));
        }
    }
    deepest.map(|(_, span)| span)
}

/// serde's type names in TOML's words: a map is a table, a sequence a list.
fn plain_types(message: &str) -> String {
    message
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected a list `[..]`")
        .replace("expected a map", "expected a table `{..}`")
        .replace("type: map", "type: table")
        .replace("type: sequence", "type: list")
}

/// The `[table]` header a key at `offset` belongs to, when the key starts its line (not inside an
/// inline table, whose keys belong to a sub-table the header does not name).
fn enclosing_table(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let key_line = &text[line_start..];
    if !text[line_start..offset].trim().is_empty() || key_line.trim_start().starts_with('[') {
        return None;
    }
    let header = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.starts_with('['));
    match header {
        Some(line) => {
            let end = line.rfind(']')?;
            Some(line[..=end].to_string())
        }
        None => None,
    }
}

/// serde's wording: "unknown field `x`, expected one of `a`, `b`" / "expected `a`" /
/// "there are no fields".
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((key.to_string(), expected))
}

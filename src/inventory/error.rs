//! Inventory errors and their compiler-style rendering: `what`, `--> file:line:col`, the source line
//! with a caret, and a help line saying what is expected.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What went wrong, for callers (and tests) that branch on it rather than on the wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid TOML, or a value of the wrong type.
    Syntax,
    /// A key the format does not know (usually a typo).
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A secret written into the inventory in clear.
    InlineSecret,
    /// A value of the right type but not an accepted one (bad version, taint, URL, ...).
    InvalidValue,
    /// Two settings that cannot both be given.
    Conflict,
    /// A hostlist range or address pattern that is malformed or does not line up.
    Range,
    /// Two hosts with the same name, node name or address:port.
    Duplicate,
    /// A host refers to a group that is not defined.
    UnknownGroup,
    /// A file the inventory refers to does not exist.
    MissingFile,
    /// The set of servers cannot form the cluster asked for (none, even HA count, ...).
    Topology,
}

/// Where in the file a problem is, resolved from a byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The whole source line, as shown under the arrow (secrets already masked).
    pub source_line: String,
    /// How many characters the caret underlines (at least 1).
    pub caret_len: usize,
}

/// One problem in an inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub kind: ErrorKind,
    /// What is wrong, one line.
    pub message: String,
    pub path: PathBuf,
    pub location: Option<Location>,
    /// What is expected instead.
    pub help: Option<String>,
}

/// Anything wrong with an inventory file: one or more diagnostics, each rendered with file:line:column.
///
/// `Display` leaves out the leading `error: ` of the first diagnostic because the binary's top
/// level prints every error as `error: {err}`; later diagnostics carry their own prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InventoryError {
    diagnostics: Vec<Diagnostic>,
    /// Diagnostics found but not kept, so one systematic mistake in a 5,000-host file stays readable.
    omitted: usize,
}

/// At most this many diagnostics are rendered; the rest are counted.
pub(crate) const MAX_DIAGNOSTICS: usize = 20;

impl InventoryError {
    pub(crate) fn new(mut diagnostics: Vec<Diagnostic>) -> Self {
        debug_assert!(!diagnostics.is_empty());
        // File order reads like a compiler's output; unlocated problems (a missing table) first.
        diagnostics.sort_by_key(|d| d.location.as_ref().map(|l| (l.line, l.column)));
        let omitted = diagnostics.len().saturating_sub(MAX_DIAGNOSTICS);
        diagnostics.truncate(MAX_DIAGNOSTICS);
        InventoryError {
            diagnostics,
            omitted,
        }
    }

    pub(crate) fn single(diagnostic: Diagnostic) -> Self {
        Self::new(vec![diagnostic])
    }

    /// The kind of the first (most important) problem.
    pub fn kind(&self) -> ErrorKind {
        self.diagnostics[0].kind
    }

    /// Every problem kept, in file order of discovery.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Whether any diagnostic is of this kind.
    pub fn has_kind(&self, kind: ErrorKind) -> bool {
        self.diagnostics.iter().any(|d| d.kind == kind)
    }

    pub(crate) fn io(path: &Path, err: &std::io::Error) -> Self {
        Self::single(Diagnostic {
            kind: ErrorKind::Io,
            message: format!("cannot read inventory `{}`: {err}", path.display()),
            path: path.to_path_buf(),
            location: None,
            help: Some(
                "pass the path of an inventory TOML file, e.g. `inventory/pi-cluster.toml`".into(),
            ),
        })
    }
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                write!(f, "\n\nerror: ")?;
            }
            write!(f, "{diagnostic}")?;
        }
        let total = self.diagnostics.len() + self.omitted;
        if self.omitted > 0 {
            write!(f, "\n\nerror: {} more errors not shown", self.omitted)?;
        }
        if total > 1 {
            let path = self.diagnostics[0].path.display();
            write!(f, "\n\nerror: {total} errors in `{path}`")?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagnostic {
    /// Renders without the `error: ` prefix (see [`InventoryError`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        let path = self.path.display();
        match &self.location {
            Some(loc) => {
                let width = loc.line.to_string().len();
                let pad = " ".repeat(width + 1);
                write!(f, "\n{pad}--> {path}:{}:{}", loc.line, loc.column)?;
                write!(f, "\n{pad}|")?;
                write!(f, "\n{:>width$} | {}", loc.line, loc.source_line)?;
                let lead = " ".repeat(loc.column - 1);
                let carets = "^".repeat(loc.caret_len);
                write!(f, "\n{pad}| {lead}{carets}")?;
                if let Some(help) = &self.help {
                    write!(f, "\n{pad}= help: {help}")?;
                }
            }
            None => {
                write!(f, "\n  --> {path}")?;
                if let Some(help) = &self.help {
                    write!(f, "\n   = help: {help}")?;
                }
            }
        }
        Ok(())
    }
}

/// Byte offsets to line:column for one source text; built once, queried only when reporting.
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap { text, line_starts }
    }

    /// Resolve a span; `mask` replaces the spanned characters with `*` (for inline secrets).
    pub(crate) fn locate(&self, span: Range<usize>, mask: bool) -> Location {
        let start = span.start.min(self.text.len());
        let line_index = match self.line_starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line_start = self.line_starts[line_index];
        let line_end = self.text[line_start..]
            .find('\n')
            .map_or(self.text.len(), |i| line_start + i);
        let raw_line = self.text[line_start..line_end].trim_end_matches('\r');
        let column = self.text[line_start..start].chars().count() + 1;
        let end = span.end.clamp(start, line_start + raw_line.len());
        let caret_len = self.text[start..end].chars().count().max(1);
        // Tabs become single spaces so the caret lines up whatever the terminal's tab width.
        let mut source_line: String = raw_line
            .char_indices()
            .map(|(i, c)| {
                let absolute = line_start + i;
                if mask && absolute >= start && absolute < end {
                    '*'
                } else if c == '\t' {
                    ' '
                } else if c.is_control() {
                    // A terminal escape in the file is shown, not obeyed (one char per char, so
                    // the caret still lines up).
                    '?'
                } else {
                    c
                }
            })
            .collect();
        super::mask_secret_assignment(&mut source_line);
        Location {
            line: line_index + 1,
            column,
            source_line,
            caret_len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_line_and_column_in_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        let map = SourceMap::new(text);
        let start = text.find("\"x\"").unwrap();
        let loc = map.locate(start..start + 3, false);
        assert_eq!((loc.line, loc.column, loc.caret_len), (2, 6, 3));
        assert_eq!(loc.source_line, "bé = \"x\"");
    }

    #[test]
    fn masks_secrets_in_the_shown_line() {
        let text = "token = \"hunter2\"\n";
        let map = SourceMap::new(text);
        let loc = map.locate(8..17, true);
        assert_eq!(loc.source_line, "token = *********");
        assert!(!loc.source_line.contains("hunter2"));
    }

    #[test]
    fn renders_like_a_compiler() {
        let err = InventoryError::single(Diagnostic {
            kind: ErrorKind::UnknownKey,
            message: "unknown key `usr`".into(),
            path: "inv.toml".into(),
            location: Some(SourceMap::new("[ssh]\nusr = \"pi\"\n").locate(6..9, false)),
            help: Some("did you mean `user`?".into()),
        });
        assert_eq!(
            err.to_string(),
            "unknown key `usr`\n  --> inv.toml:2:1\n  |\n2 | usr = \"pi\"\n  | ^^^\n  = help: did you mean `user`?"
        );
    }
}

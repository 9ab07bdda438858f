//! The collector of problems while an inventory is validated: every check reports into one
//! [`Ctx`] (file, source map, base folder), so one run shows every problem with its location.
//! The checks in `validate`, `hosts`, `layers`, `registries`, ... import it; it imports none of them.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{Diagnostic, ErrorKind, InventoryError, SourceMap};
use super::formats::Invalid;

/// Collects diagnostics while validation goes on, so one run reports every problem it can.
pub(super) struct Ctx<'a> {
    pub path: &'a Path,
    map: SourceMap<'a>,
    /// Relative paths in the inventory are relative to the inventory file's folder.
    base_dir: PathBuf,
    home: Option<PathBuf>,
    diagnostics: Vec<Diagnostic>,
    /// (message, span start) already reported: a shared setting read by many hosts reports once.
    seen: HashSet<(String, Option<usize>)>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Self {
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ctx {
            path,
            map: SourceMap::new(text),
            base_dir,
            home: std::env::var_os("HOME").map(PathBuf::from),
            diagnostics: Vec::new(),
            seen: HashSet::new(),
        }
    }

    pub(super) fn report(
        &mut self,
        kind: ErrorKind,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.push(kind, span, message.into(), help.into(), false);
    }

    /// Like `report`, but the spanned text (a secret) is masked in the shown source line.
    pub(super) fn report_secret(&mut self, span: Range<usize>, message: String, help: String) {
        self.push(ErrorKind::InlineSecret, Some(span), message, help, true);
    }

    /// Like `report`, masking the spanned text: for values that may be a misplaced secret.
    pub(super) fn report_masked(
        &mut self,
        kind: ErrorKind,
        span: Range<usize>,
        message: String,
        help: String,
    ) {
        self.push(kind, Some(span), message, help, true);
    }

    pub(super) fn invalid(&mut self, kind: ErrorKind, span: Range<usize>, invalid: Invalid) {
        self.report(kind, Some(span), invalid.message, invalid.help);
    }

    fn push(
        &mut self,
        kind: ErrorKind,
        span: Option<Range<usize>>,
        message: String,
        help: String,
        mask: bool,
    ) {
        if !self
            .seen
            .insert((message.clone(), span.as_ref().map(|s| s.start)))
        {
            return;
        }
        let location = span.map(|span| self.map.locate(span, mask));
        self.diagnostics.push(Diagnostic {
            kind,
            message,
            path: self.path.to_path_buf(),
            location,
            help: Some(help),
        });
    }

    pub(super) fn has_errors(&self) -> bool {
        !self.diagnostics.is_empty()
    }

    /// 1-based line of a span, for "first defined at line N" notes.
    pub(super) fn line_of(&self, span: Range<usize>) -> usize {
        self.map.locate(span, false).line
    }

    /// `~` and `~/x` expand to the home folder; relative paths are relative to the inventory.
    pub(super) fn resolve_path(&self, text: &str) -> PathBuf {
        if let Some(home) = &self.home {
            if text == "~" {
                return home.clone();
            }
            if let Some(rest) = text.strip_prefix("~/") {
                return home.join(rest);
            }
        }
        let path = Path::new(text);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    pub(super) fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    pub(super) fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    pub(super) fn finish<T>(self, value: Option<T>) -> Result<T, InventoryError> {
        match value {
            Some(value) if self.diagnostics.is_empty() => Ok(value),
            _ => Err(InventoryError::new(self.diagnostics)),
        }
    }
}

/// An environment variable name as a shell would accept it.
pub(super) fn check_env_name(ctx: &mut Ctx, field: &str, value: &Spanned<String>) -> String {
    let name = value.get_ref();
    let ok = !name.is_empty()
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        // Not echoed: a value that is not a variable name may be the secret itself.
        ctx.report_masked(
            ErrorKind::InvalidValue,
            value.span(),
            format!("`{field}` is not an environment variable name"),
            format!("`{field}` names the variable that holds the secret (letters, digits, `_`), e.g. `K3S_TOKEN`; the secret itself never goes in the inventory"),
        );
    }
    name.clone()
}

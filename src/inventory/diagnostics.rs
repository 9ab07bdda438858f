//! The collector of problems while an inventory is validated: every check reports into one
//! [`Ctx`] (file, source map, base folder), so one run shows every problem with its location.
//! The checks in `validate`, `hosts`, `layers`, `registries`, ... import it; it imports none of them.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{Diagnostic, ErrorKind, InventoryError, SourceMap};
use super::formats::Invalid;
use super::model::SecretSource;

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

    /// A `templates_dir` key: resolved, and reported when it is not a folder or escapes.
    pub(super) fn templates_dir(&mut self, dir: &Spanned<String>) -> PathBuf {
        let path = self.resolve_path(dir.get_ref());
        if !path.is_dir() {
            self.report(
                ErrorKind::MissingFile,
                Some(dir.span()),
                format!("templates_dir `{}` is not a folder", path.display()),
                "point `templates_dir` at a folder of template overrides (relative paths start at the inventory's folder)",
            );
        } else if let Err(e) =
            super::files::templates_dir_stays_in(dir.get_ref(), &path, &self.base_dir)
        {
            self.invalid(ErrorKind::InvalidValue, dir.span(), e);
        }
        path
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

/// A secret given as `KEY_env` or `KEY_file` (an inline `KEY` is reported, masked; both ways at
/// once is a conflict; a missing file is reported). `inline_help_tail` ends the inline help.
pub(super) fn secret_source(
    ctx: &mut Ctx,
    table: &str,
    key: &str,
    inline: &Option<Spanned<toml::Value>>,
    env: &Option<Spanned<String>>,
    file: &Option<Spanned<String>>,
    inline_help_tail: &str,
) -> Option<SecretSource> {
    if let Some(inline) = inline {
        ctx.report_secret(
            inline.span(),
            format!("inline secret `{key}` in `{table}`"),
            format!("secrets never go in the inventory: use `{key}_env = \"VAR\"` (an environment variable) or `{key}_file = \"path\"` (a file holding it){inline_help_tail}"),
        );
    }
    match (env, file) {
        (Some(_), Some(file)) => {
            ctx.report(
                ErrorKind::Conflict,
                Some(file.span()),
                format!("both `{key}_env` and `{key}_file` are set in `{table}`"),
                format!("give the {key} one way: `{key}_env` or `{key}_file`"),
            );
            None
        }
        (Some(env), None) => Some(SecretSource::Env(check_env_name(
            ctx,
            &format!("{key}_env"),
            env,
        ))),
        (None, Some(file)) => {
            let path = ctx.resolve_path(file.get_ref());
            if !path.is_file() {
                ctx.report(
                    ErrorKind::MissingFile,
                    Some(file.span()),
                    format!("{key}_file `{}` does not exist", path.display()),
                    format!("create the file with the {key} on its first line (relative paths start at the inventory's folder), or use `{key}_env`"),
                );
            }
            Some(SecretSource::File(path))
        }
        (None, None) => None,
    }
}

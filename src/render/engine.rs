//! The minijinja environment: built-in templates compiled into the binary, a per-file override
//! folder, strict undefined variables, and the filters our templates need. Knows minijinja only.

use std::path::{Path, PathBuf};

use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use serde::Serialize;

/// Template names, relative to `templates/` and to an override folder.
pub const K3S_CONFIG: &str = "k3s/config.yaml.j2";
pub const GITLAB_AGENT_CONFIG: &str = "gitlab/agent-config.yaml.j2";
pub const GITLAB_AGENT_VALUES: &str = "gitlab/agent-values.yaml.j2";
pub const GITLAB_RUNNER_VALUES: &str = "gitlab/runner-values.yaml.j2";
pub const GITLAB_HELMCHART_AGENT: &str = "gitlab/helmchart-agent.yaml.j2";
pub const GITLAB_HELMCHART_RUNNER: &str = "gitlab/helmchart-runner.yaml.j2";

/// Every built-in template, embedded at compile time so the binary needs no files beside it.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    (
        K3S_CONFIG,
        include_str!("../../templates/k3s/config.yaml.j2"),
    ),
    (
        GITLAB_AGENT_CONFIG,
        include_str!("../../templates/gitlab/agent-config.yaml.j2"),
    ),
    (
        GITLAB_AGENT_VALUES,
        include_str!("../../templates/gitlab/agent-values.yaml.j2"),
    ),
    (
        GITLAB_RUNNER_VALUES,
        include_str!("../../templates/gitlab/runner-values.yaml.j2"),
    ),
    (
        GITLAB_HELMCHART_AGENT,
        include_str!("../../templates/gitlab/helmchart-agent.yaml.j2"),
    ),
    (
        GITLAB_HELMCHART_RUNNER,
        include_str!("../../templates/gitlab/helmchart-runner.yaml.j2"),
    ),
];

/// A template that failed to load or render, named by the file it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {detail}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct RenderError {
    /// `templates/k3s/config.yaml.j2 (built-in)` or the override's path.
    pub file: String,
    pub line: Option<usize>,
    pub detail: String,
}

/// Renders templates by name. Built once per run; cheap to share by reference.
pub struct Renderer {
    env: Environment<'static>,
    overrides: Option<PathBuf>,
}

impl Renderer {
    /// Only the built-in templates.
    pub fn builtin() -> Renderer {
        Renderer::build(None)
    }

    /// Built-in templates, each replaced by `DIR/<name>` when that file exists (e.g.
    /// `DIR/gitlab/runner-values.yaml.j2`). A missing folder is an error: a typo in the
    /// inventory should not silently fall back to the defaults.
    pub fn with_overrides(dir: &Path) -> Result<Renderer, RenderError> {
        if !dir.is_dir() {
            return Err(RenderError {
                file: dir.display().to_string(),
                line: None,
                detail: "the template override folder does not exist or is not a folder".to_owned(),
            });
        }
        Ok(Renderer::build(Some(dir.to_owned())))
    }

    fn build(overrides: Option<PathBuf>) -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Config files, not HTML: never escape (minijinja would pick by file extension).
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            // Block tags on their own line leave no blank line or indentation behind, so YAML
            // templates read like the YAML they produce.
            .trim_blocks(true)
            .lstrip_blocks(true)
            // Config files end with a newline; minijinja drops it by default.
            .keep_trailing_newline(true)
            .build()
            .expect("default delimiters are valid");
        env.set_syntax(syntax);
        env.add_filter("tojson", tojson);
        env.add_filter("toml", toml_literal);
        let dir = overrides.clone();
        env.set_loader(move |name| load(dir.as_deref(), name));
        Renderer { env, overrides }
    }

    /// Where template `name` is read from, for messages and for `edgeops render`'s summary.
    pub fn origin(&self, name: &str) -> String {
        match self.override_path(name) {
            Some(path) => path.display().to_string(),
            None => format!("templates/{name} (built-in)"),
        }
    }

    /// Template files in the override folder that match no built-in template: likely typos, since
    /// nothing would ever render them.
    pub fn unknown_overrides(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.overrides else {
            return Vec::new();
        };
        let mut unknown = Vec::new();
        let mut pending = vec![dir.clone()];
        while let Some(folder) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.extension().is_some_and(|ext| ext == "j2") {
                    let relative = path.strip_prefix(dir).unwrap_or(&path);
                    let known = BUILTIN_TEMPLATES
                        .iter()
                        .any(|(name, _)| Path::new(name) == relative);
                    if !known {
                        unknown.push(path);
                    }
                }
            }
        }
        unknown.sort();
        unknown
    }

    fn override_path(&self, name: &str) -> Option<PathBuf> {
        let path = self.overrides.as_ref()?.join(name);
        path.is_file().then_some(path)
    }

    /// Render template `name` with `context` (any serde value, typically a small struct).
    pub fn render<C: Serialize>(&self, name: &str, context: &C) -> Result<String, RenderError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|err| self.error(name, &err))?;
        template
            .render(Value::from(Serde(context)))
            .map_err(|err| self.error(name, &err))
    }

    /// Name the file the error is in: the template where it happened (an include may differ from
    /// the one asked for), resolved to its override path or built-in name.
    fn error(&self, requested: &str, err: &Error) -> RenderError {
        let name = err.name().unwrap_or(requested);
        let mut detail = match err.detail() {
            Some(detail) => format!("{}: {detail}", err.kind()),
            None => err.kind().to_string(),
        };
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            detail.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        RenderError {
            file: self.origin(name),
            line: err.line(),
            detail,
        }
    }
}

fn load(overrides: Option<&Path>, name: &str) -> Result<Option<String>, Error> {
    if let Some(dir) = overrides {
        let path = dir.join(name);
        if path.is_file() {
            return std::fs::read_to_string(&path).map(Some).map_err(|err| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("cannot read template override {}", path.display()),
                )
                .with_source(err)
            });
        }
    }
    Ok(BUILTIN_TEMPLATES
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, source)| (*source).to_owned()))
}

/// Any value as compact JSON. A JSON string is also a valid YAML double-quoted scalar, so this is
/// the YAML-safe way to write a string that may hold `:`, `#`, quotes or a leading `*`.
fn tojson(value: Value) -> Result<String, Error> {
    serde_json::to_string(&value).map_err(|err| {
        Error::new(ErrorKind::InvalidOperation, "cannot write value as JSON").with_source(err)
    })
}

/// A value as a TOML literal (string, integer, float, boolean, or an array of those), for the
/// runner's `config.toml` block.
fn toml_literal(value: Value) -> Result<String, Error> {
    let json = serde_json::to_value(&value).map_err(|err| {
        Error::new(ErrorKind::InvalidOperation, "cannot convert value").with_source(err)
    })?;
    Ok(json_to_toml(&json)?.to_string())
}

fn json_to_toml(json: &serde_json::Value) -> Result<toml::Value, Error> {
    use serde_json::Value as J;
    Ok(match json {
        J::String(text) => toml::Value::String(text.clone()),
        J::Bool(flag) => toml::Value::Boolean(*flag),
        J::Number(number) => match number.as_i64() {
            Some(int) => toml::Value::Integer(int),
            None => toml::Value::Float(number.as_f64().unwrap_or(f64::NAN)),
        },
        J::Array(items) => {
            toml::Value::Array(items.iter().map(json_to_toml).collect::<Result<_, _>>()?)
        }
        J::Null | J::Object(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "the toml filter takes strings, numbers, booleans and arrays of them",
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render_str(
        renderer: &Renderer,
        source: &str,
        ctx: serde_json::Value,
    ) -> Result<String, Error> {
        renderer.env.render_str(source, Value::from(Serde(&ctx)))
    }

    #[test]
    fn filters_quote_for_yaml_and_toml() {
        let renderer = Renderer::builtin();
        let out = render_str(
            &renderer,
            "{{ s | tojson }} {{ s | toml }} {{ n | toml }} {{ list | toml }}",
            json!({"s": "a: \"b\" # c", "n": 4, "list": ["x", true]}),
        )
        .unwrap();
        // TOML picks a literal string when that needs no escapes.
        assert_eq!(out, r#""a: \"b\" # c" 'a: "b" # c' 4 ["x", true]"#);
        let err = render_str(&renderer, "{{ m | toml }}", json!({"m": {"a": 1}})).unwrap_err();
        assert!(err.to_string().contains("the toml filter takes"), "{err}");
    }

    #[test]
    fn undefined_variables_are_errors_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("k3s")).unwrap();
        let path = dir.path().join(K3S_CONFIG);
        std::fs::write(&path, "node-name: {{ node_name }}\nbad: {{ nope }}\n").unwrap();
        let renderer = Renderer::with_overrides(dir.path()).unwrap();
        let err = renderer
            .render(K3S_CONFIG, &json!({"node_name": "pi-01"}))
            .unwrap_err();
        assert_eq!(err.file, path.display().to_string());
        assert_eq!(err.line, Some(2));
        assert!(
            err.to_string()
                .starts_with(&format!("{}:2: undefined value", path.display())),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_in_overrides_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("gitlab")).unwrap();
        let path = dir.path().join(GITLAB_AGENT_VALUES);
        std::fs::write(&path, "config:\n  token: x\n{% if %}\n").unwrap();
        let renderer = Renderer::with_overrides(dir.path()).unwrap();
        let err = renderer
            .render(GITLAB_AGENT_VALUES, &json!({}))
            .unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(
            err.to_string()
                .starts_with(&format!("{}:3: syntax error", path.display())),
            "{err}"
        );
    }

    #[test]
    fn overrides_replace_single_files_and_others_stay_built_in() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("gitlab")).unwrap();
        std::fs::write(
            dir.path().join(GITLAB_AGENT_CONFIG),
            "# mine\n{% if user_access %}user_access: {}\n{% endif %}",
        )
        .unwrap();
        let renderer = Renderer::with_overrides(dir.path()).unwrap();
        let out = renderer
            .render(GITLAB_AGENT_CONFIG, &json!({"user_access": null}))
            .unwrap();
        assert_eq!(out, "# mine\n");
        assert_eq!(
            renderer.origin(GITLAB_AGENT_CONFIG),
            dir.path().join(GITLAB_AGENT_CONFIG).display().to_string()
        );
        assert_eq!(
            renderer.origin(K3S_CONFIG),
            "templates/k3s/config.yaml.j2 (built-in)"
        );
        assert!(renderer.unknown_overrides().is_empty());
        std::fs::write(dir.path().join("gitlab/runner-value.yaml.j2"), "typo").unwrap();
        std::fs::write(dir.path().join("README.md"), "not a template").unwrap();
        assert_eq!(
            renderer.unknown_overrides(),
            [dir.path().join("gitlab/runner-value.yaml.j2")]
        );
    }

    #[test]
    fn trailing_newline_is_kept_and_block_lines_leave_no_blank_lines() {
        let renderer = Renderer::builtin();
        let out = render_str(
            &renderer,
            "a:\n{% for x in xs %}\n  - {{ x }}\n{% endfor %}\nb: 1\n",
            json!({"xs": [1, 2]}),
        )
        .unwrap();
        assert_eq!(out, "a:\n  - 1\n  - 2\nb: 1\n");
    }

    #[test]
    fn a_missing_override_folder_is_an_error() {
        let err = Renderer::with_overrides(Path::new("/nonexistent/edgeops-templates"))
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "/nonexistent/edgeops-templates: the template override folder does not exist or is not a folder"
        );
    }

    #[test]
    fn built_in_templates_parse() {
        let renderer = Renderer::builtin();
        for (name, _) in BUILTIN_TEMPLATES {
            renderer.env.get_template(name).unwrap();
        }
    }
}

//! `[registries]`: private registries and mirrors for k3s's `/etc/rancher/k3s/registries.yaml`
//! (docs.k3s.io "Private Registry Configuration"): the raw TOML shape, and its validation into
//! [`Registries`]. Credentials come from an environment variable or a file, never inline.

use toml::Spanned;

use super::diagnostics::{Ctx, secret_source};
use super::error::ErrorKind;
pub use super::model::{Mirror, Registries, RegistryConfig};
pub use super::raw::{RawMirror, RawRegistries, RawRegistryConfig};

pub(super) fn validate(ctx: &mut Ctx, raw: Spanned<RawRegistries>) -> Registries {
    let table_span = raw.span();
    let raw = raw.into_inner();
    if raw.mirrors.is_empty() && raw.configs.is_empty() {
        ctx.report(
            ErrorKind::MissingKey,
            Some(table_span),
            "`[registries]` has neither `mirrors` nor `configs`",
            "add `[registries.mirrors.\"docker.io\"]` with `endpoints = [\"https://registry.example.com:5000\"]`, or leave `[registries]` out",
        );
    }
    let mut registries = Registries::default();
    for (name, mirror) in raw.mirrors {
        let span = mirror.span();
        let mirror = mirror.into_inner();
        check_registry_name(ctx, &name, span.clone(), "mirrors");
        if mirror.endpoints.is_empty() {
            ctx.report(
                ErrorKind::MissingKey,
                Some(span),
                format!("mirror `{name}` in `[registries]` has no `endpoints`"),
                "list where to pull from, e.g. `endpoints = [\"https://registry.example.com:5000\"]`",
            );
        }
        let mut endpoints = Vec::new();
        for endpoint in mirror.endpoints {
            let text = endpoint.get_ref().trim();
            if !(text.starts_with("https://") || text.starts_with("http://"))
                || text.len() <= "https://".len()
            {
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(endpoint.span()),
                    format!("mirror `{name}` endpoint `{text}` is not an http(s) URL"),
                    "write `https://HOST[:PORT]` (or `http://` for a registry without TLS)",
                );
            }
            endpoints.push(text.to_owned());
        }
        registries.mirrors.insert(
            name,
            Mirror {
                endpoints,
                rewrites: mirror.rewrites,
            },
        );
    }
    for (name, config) in raw.configs {
        let span = config.span();
        let config = config.into_inner();
        check_registry_name(ctx, &name, span, "configs");
        let table = format!("[registries.configs.\"{name}\"]");
        let password = secret_source(
            ctx,
            &table,
            "password",
            &config.password,
            &config.password_env,
            &config.password_file,
            "",
        );
        let auth = secret_source(
            ctx,
            &table,
            "auth",
            &config.auth,
            &config.auth_env,
            &config.auth_file,
            "",
        );
        let identity_token = secret_source(
            ctx,
            &table,
            "identity_token",
            &config.identity_token,
            &config.identity_token_env,
            &config.identity_token_file,
            "",
        );
        if password.is_some() && config.username.is_none() {
            let span = config
                .password_env
                .as_ref()
                .or(config.password_file.as_ref())
                .map(|v| v.span());
            ctx.report(
                ErrorKind::MissingKey,
                span,
                format!("`{table}` has a password but no `username`"),
                "add `username = \"...\"` next to `password_env` / `password_file`",
            );
        }
        let file = |ctx: &mut Ctx, key: &str, value: &Option<Spanned<String>>| {
            value.as_ref().map(|value| {
                let path = ctx.resolve_path(value.get_ref());
                if !path.is_file() {
                    ctx.report(
                        ErrorKind::MissingFile,
                        Some(value.span()),
                        format!("{key} `{}` in `{table}` does not exist", path.display()),
                        "give a PEM file on this machine (relative paths start at the inventory's folder); edgeops uploads it to every host",
                    );
                }
                path
            })
        };
        let ca_file = file(ctx, "ca_file", &config.ca_file);
        let cert_file = file(ctx, "cert_file", &config.cert_file);
        let key_file = file(ctx, "key_file", &config.key_file);
        if cert_file.is_some() != key_file.is_some() {
            let span = config
                .cert_file
                .as_ref()
                .or(config.key_file.as_ref())
                .map(|v| v.span());
            ctx.report(
                ErrorKind::Conflict,
                span,
                format!("`{table}` needs both `cert_file` and `key_file` (a client certificate and its key), or neither"),
                "give the client certificate and its private key together",
            );
        }
        registries.configs.insert(
            name,
            RegistryConfig {
                username: config.username.map(Spanned::into_inner),
                password,
                auth,
                identity_token,
                ca_file,
                cert_file,
                key_file,
                insecure_skip_verify: config.insecure_skip_verify.unwrap_or(false),
            },
        );
    }
    registries
}

/// A registry name as containerd matches it: `host[:port]`, or `*` (every registry).
fn check_registry_name(ctx: &mut Ctx, name: &str, span: std::ops::Range<usize>, table: &str) {
    let ok = name == "*"
        || (!name.is_empty()
            && !name.contains("://")
            && !name.contains('/')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_')));
    if !ok {
        ctx.report(
            ErrorKind::InvalidValue,
            Some(span),
            format!("`{name}` in `[registries.{table}]` is not a registry name"),
            "name the registry as images do, `host[:port]` without a scheme or path (`docker.io`, `registry.example.com:5000`), or `*` for every registry",
        );
    }
}

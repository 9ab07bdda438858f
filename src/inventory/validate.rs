//! The validation stage: raw TOML structs in, a `model::Inventory` out (defaults applied, groups
//! and overrides merged, ranges expanded), or every problem found with its location.

use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::diagnostics::{Ctx, secret_source};
use super::error::{ErrorKind, InventoryError};
use super::formats;
use super::hosts::{self, HostEntry};
use super::layers::{self, SshLayer};
use super::model::{Cluster, GitLab, Inventory, Role, RunnerSettings, RunnerType, SecretSource};
use super::raw::{RawCluster, RawGitLab, RawInventory};

pub const DEFAULT_CHANNEL: &str = "stable";
pub const DEFAULT_INSTALL_URL: &str = "https://get.k3s.io";
pub const DEFAULT_CHANNEL_URL: &str = "https://update.k3s.io/v1-release/channels";
pub const DEFAULT_CONCURRENCY: usize = 64;
pub const DEFAULT_GITLAB_TOKEN_ENV: &str = "GITLAB_TOKEN";
pub const DEFAULT_RUNNER_CONCURRENT: u32 = 4;

/// Components k3s can be told to skip with `--disable` (docs.k3s.io, "Packaged Components").
const K3S_COMPONENTS: &[&str] = &[
    "coredns",
    "servicelb",
    "traefik",
    "local-storage",
    "metrics-server",
    "runtimes",
];

/// Validate a parsed inventory.
pub(super) fn validate(
    raw: RawInventory,
    path: &Path,
    text: &str,
) -> Result<(Inventory, Vec<HostEntry>), InventoryError> {
    let mut ctx = Ctx::new(path, text);
    let cluster_span = raw.cluster.as_ref().map(|c| c.span());
    let cluster = cluster(&mut ctx, raw.cluster);

    let (defaults, concurrency) = match &raw.ssh {
        Some(ssh) => {
            let layer = layers::ssh_layer(&mut ctx, ssh.get_ref(), "[ssh]");
            let concurrency = match &ssh.get_ref().concurrency {
                Some(c)
                    if usize::try_from(*c.get_ref())
                        .is_ok_and(|c| super::CONCURRENCY_RANGE.contains(&c)) =>
                {
                    *c.get_ref() as usize
                }
                Some(c) => {
                    ctx.report(
                        ErrorKind::InvalidValue,
                        Some(c.span()),
                        format!("concurrency {} is out of range", c.get_ref()),
                        "`concurrency` is how many hosts are worked on at once: 1 to 10000 (default 64)",
                    );
                    DEFAULT_CONCURRENCY
                }
                None => DEFAULT_CONCURRENCY,
            };
            (layer, concurrency)
        }
        None => (SshLayer::default(), DEFAULT_CONCURRENCY),
    };

    let groups = layers::groups(&mut ctx, &raw.groups);
    let (hosts, entries) = hosts::expand(&mut ctx, &raw.hosts, &defaults, &groups);
    // Dropped entries would make server counts wrong; their own errors come first.
    let all_entries_valid = entries.len() == raw.hosts.len();
    if let Some(cluster) = cluster.as_ref().filter(|_| all_entries_valid) {
        topology(&mut ctx, cluster, cluster_span, &hosts, &entries);
    }
    let gitlab = raw.gitlab.map(|g| {
        gitlab(
            &mut ctx,
            g,
            cluster.as_ref().map(|c| c.cluster.name.as_str()),
        )
    });

    let ci = super::ci::settings(&mut ctx, raw.ci);

    let registries = raw
        .registries
        .map(|r| super::registries::validate(&mut ctx, r));
    let inventory = cluster.map(|cluster| Inventory {
        path: path.to_path_buf(),
        cluster: cluster.cluster,
        concurrency,
        hosts,
        gitlab: gitlab.flatten(),
        ci,
        registries,
    });
    ctx.finish(inventory).map(|inv| (inv, entries))
}

/// The validated cluster, and where `ha` was set so topology errors can point at it.
struct ValidCluster {
    cluster: Cluster,
    ha_span: Option<Range<usize>>,
}

fn cluster(ctx: &mut Ctx, raw: Option<Spanned<RawCluster>>) -> Option<ValidCluster> {
    let Some(raw) = raw else {
        // Located at 1:1: a missing table has no place of its own, but every error has one.
        ctx.report(
            ErrorKind::MissingKey,
            Some(0..0),
            "missing `[cluster]` table",
            "every inventory has a `[cluster]` table with at least `name = \"my-cluster\"`",
        );
        return None;
    };
    let table_span = raw.span();
    let raw = raw.into_inner();

    let name = match &raw.name {
        None => {
            ctx.report(
                ErrorKind::MissingKey,
                Some(table_span),
                "`[cluster]` has no `name`",
                "add `name = \"pi-lab\"` (a DNS label: lowercase letters, digits and `-`)",
            );
            String::new()
        }
        Some(name) => {
            if !formats::is_dns_label(name.get_ref()) {
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(name.span()),
                    format!("cluster name `{}` is not a DNS label", name.get_ref()),
                    "use 1-63 lowercase letters, digits and `-`, starting and ending with a letter or digit, e.g. `pi-lab`",
                );
            }
            name.get_ref().clone()
        }
    };

    if let (Some(_), Some(version)) = (&raw.channel, &raw.version) {
        ctx.report(
            ErrorKind::Conflict,
            Some(version.span()),
            "both `channel` and `version` are set",
            "set `version` to pin one release, or `channel` to follow a channel, not both",
        );
    }
    if let Some(version) = &raw.version
        && let Err(mut e) = formats::k3s_version(version.get_ref())
    {
        // `version = "v1.31"` usually means "the newest v1.31": that is a channel.
        if formats::channel(version.get_ref()).is_ok() && version.get_ref().starts_with('v') {
            e.help = format!(
                "{}; to follow the newest {v} release write `channel = \"{v}\"`",
                e.help,
                v = version.get_ref()
            );
        }
        ctx.invalid(ErrorKind::InvalidValue, version.span(), e);
    }
    if let Some(channel) = &raw.channel
        && let Err(e) = formats::channel(channel.get_ref())
    {
        ctx.invalid(ErrorKind::InvalidValue, channel.span(), e);
    }

    let token = token_source(
        ctx,
        "[cluster]",
        &raw.token,
        &raw.token_env,
        &raw.token_file,
        SecretSource::Generate,
        "or leave both out to have edgeops read the token back from the first server",
    );

    if let Some(endpoint) = &raw.api_endpoint {
        check_address(ctx, "api_endpoint", endpoint);
    }
    for san in &raw.tls_san {
        check_address(ctx, "tls_san", san);
    }
    for component in &raw.disable {
        let value = component.get_ref();
        if !K3S_COMPONENTS.contains(&value.as_str()) {
            let hint = formats::closest(value, K3S_COMPONENTS.iter().copied())
                .map(|c| format!("did you mean `{c}`? "))
                .unwrap_or_default();
            ctx.report(
                ErrorKind::InvalidValue,
                Some(component.span()),
                format!("`{value}` is not a k3s component that can be disabled"),
                format!("{hint}expected one of: {}", K3S_COMPONENTS.join(", ")),
            );
        }
    }
    let url = |ctx: &mut Ctx, value: &Option<Spanned<String>>| -> Option<String> {
        let value = value.as_ref()?;
        if let Err(e) = formats::http_url(value.get_ref()) {
            ctx.invalid(ErrorKind::InvalidValue, value.span(), e);
        }
        Some(value.get_ref().trim_end_matches('/').to_string())
    };
    let install_url = url(ctx, &raw.install_url).unwrap_or_else(|| DEFAULT_INSTALL_URL.into());
    let channel_url = url(ctx, &raw.channel_url).unwrap_or_else(|| DEFAULT_CHANNEL_URL.into());
    let download_url = url(ctx, &raw.download_url);

    let artifacts_dir = raw.artifacts_dir.as_ref().map(|dir| {
        let path = ctx.resolve_path(dir.get_ref());
        if !path.is_dir() {
            ctx.report(
                ErrorKind::MissingFile,
                Some(dir.span()),
                format!("artifacts_dir `{}` is not a folder", path.display()),
                "point `artifacts_dir` at the folder holding the k3s binary, images and install script (relative paths start at the inventory's folder)",
            );
        }
        path
    });
    // `artifacts_dir` alone means air-gapped; `airgap = true` alone downloads on the workstation.
    let airgap = raw
        .airgap
        .as_ref()
        .map_or(artifacts_dir.is_some(), |a| *a.get_ref());
    if let (Some(flag), Some(dir)) = (&raw.airgap, &raw.artifacts_dir)
        && !*flag.get_ref()
    {
        ctx.report(
            ErrorKind::Conflict,
            Some(dir.span()),
            "`artifacts_dir` is set but `airgap = false`",
            "artifacts are only used by air-gapped installs: remove `airgap = false`, or remove `artifacts_dir`",
        );
    }
    let images = raw
        .images
        .iter()
        .map(|image| {
            let path = ctx.resolve_path(image.get_ref());
            if !path.is_file() {
                ctx.report(
                    ErrorKind::MissingFile,
                    Some(image.span()),
                    format!("images file `{}` does not exist", path.display()),
                    "list image tarballs (e.g. k3s-airgap-images-arm64.tar.zst) that exist on the workstation (relative paths start at the inventory's folder)",
                );
            } else if !formats::is_image_tarball(image.get_ref()) {
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(image.span()),
                    format!("images file `{}` is not an image tarball", path.display()),
                    format!("k3s imports {} files", formats::IMAGE_TARBALL_SUFFIXES.join(", ")),
                );
            }
            path
        })
        .collect::<Vec<_>>();
    if let (Some(first), false) = (raw.images.first(), airgap) {
        ctx.report(
            ErrorKind::Conflict,
            Some(first.span()),
            "`images` is set but the cluster is not air-gapped",
            "image tarballs are uploaded by air-gapped installs only: set `airgap = true` (or `artifacts_dir`)",
        );
    }

    if let Some(mode) = &raw.kubeconfig_mode {
        let m = mode.get_ref();
        let octal = (3..=4).contains(&m.len()) && m.bytes().all(|b| (b'0'..=b'7').contains(&b));
        if !octal {
            ctx.report(
                ErrorKind::InvalidValue,
                Some(mode.span()),
                format!("kubeconfig_mode `{m}` is not an octal file mode"),
                "write the mode as a quoted octal string, e.g. `\"0600\"` or `\"0644\"`",
            );
        }
    }

    let lock_expiry = match &raw.lock_expiry {
        None => super::model::DEFAULT_LOCK_EXPIRY,
        Some(value) => match formats::duration(value.get_ref()) {
            Ok(expiry) if !expiry.is_zero() => expiry,
            Ok(_) => {
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(value.span()),
                    "lock_expiry: `0s` would let every run take the lock from a running one",
                    "give an age such as `\"10m\"` (the default is 30m)",
                );
                super::model::DEFAULT_LOCK_EXPIRY
            }
            Err(mut e) => {
                e.message = format!("lock_expiry: {}", e.message);
                ctx.invalid(ErrorKind::InvalidValue, value.span(), e);
                super::model::DEFAULT_LOCK_EXPIRY
            }
        },
    };

    super::secret_args::check(ctx, &raw.server_args, "`[cluster] server_args`");
    super::secret_args::check(ctx, &raw.agent_args, "`[cluster] agent_args`");
    let join_timeout = raw
        .join_timeout
        .as_ref()
        .and_then(|v| match formats::duration(v.get_ref()) {
            Ok(d) => Some(d),
            Err(mut e) => {
                e.message = format!("join_timeout: {}", e.message);
                ctx.invalid(ErrorKind::InvalidValue, v.span(), e);
                None
            }
        })
        .unwrap_or(super::model::DEFAULT_JOIN_TIMEOUT);

    let string_list = |list: &[Spanned<String>]| list.iter().map(|s| s.get_ref().clone()).collect();
    let cluster = Cluster {
        name,
        channel: raw
            .channel
            .as_ref()
            .map_or_else(|| DEFAULT_CHANNEL.to_string(), |c| c.get_ref().clone()),
        version: raw.version.as_ref().map(|v| v.get_ref().clone()),
        token,
        api_endpoint: raw.api_endpoint.as_ref().map(|e| e.get_ref().clone()),
        tls_san: string_list(&raw.tls_san),
        server_args: string_list(&raw.server_args),
        agent_args: string_list(&raw.agent_args),
        disable: string_list(&raw.disable),
        install_url,
        channel_url,
        download_url,
        ha: raw.ha.as_ref().is_some_and(|h| *h.get_ref()),
        airgap,
        artifacts_dir,
        images,
        kubeconfig_mode: raw.kubeconfig_mode.as_ref().map(|m| m.get_ref().clone()),
        lock_expiry,
        join_timeout,
        extras: super::cluster_extras::validate(ctx, &raw),
    };
    Some(ValidCluster {
        cluster,
        ha_span: raw.ha.as_ref().map(|h| h.span()),
    })
}

fn check_address(ctx: &mut Ctx, field: &str, value: &Spanned<String>) {
    let text = value.get_ref();
    if text.contains("://") {
        ctx.report(
            ErrorKind::InvalidValue,
            Some(value.span()),
            format!("`{field}` `{text}` is a URL"),
            format!("`{field}` is a bare address or DNS name, e.g. `10.0.0.10` or `k3s.example.com`; edgeops adds `https://` and `:6443`"),
        );
    } else if let Err(e) = formats::address(text) {
        ctx.invalid(ErrorKind::InvalidValue, value.span(), e);
    }
}

/// `token` (rejected), `token_env`, `token_file` → where the secret comes from.
fn token_source(
    ctx: &mut Ctx,
    table: &str,
    inline: &Option<Spanned<toml::Value>>,
    env: &Option<Spanned<String>>,
    file: &Option<Spanned<String>>,
    absent: SecretSource,
    absent_help: &str,
) -> SecretSource {
    secret_source(
        ctx,
        table,
        "token",
        inline,
        env,
        file,
        &format!(", {absent_help}"),
    )
    .unwrap_or(absent)
}

/// Server count against `ha`: at least one server; HA needs an odd count ≥ 3; without HA, one.
fn topology(
    ctx: &mut Ctx,
    cluster: &ValidCluster,
    cluster_span: Option<Range<usize>>,
    hosts: &[super::model::Host],
    entries: &[HostEntry],
) {
    if ctx.has_errors() && hosts.is_empty() {
        return;
    }
    let servers = hosts.iter().filter(|h| h.role == Role::Server).count();
    if servers == 0 {
        let span = entries
            .first()
            .map(|e| e.role_span.clone())
            .or(cluster_span);
        let what = if hosts.is_empty() {
            "the inventory has no hosts".to_string()
        } else {
            format!("no server among the {} hosts", hosts.len())
        };
        ctx.report(
            ErrorKind::Topology,
            span,
            what,
            "a cluster needs at least one host with `role = \"server\"` (add a `[[hosts]]` entry)",
        );
        return;
    }
    if cluster.cluster.ha {
        if servers < 3 || servers % 2 == 0 {
            ctx.report(
                ErrorKind::Topology,
                cluster.ha_span.clone(),
                format!("`ha = true` needs an odd number of servers, at least 3; this inventory has {servers}"),
                "embedded etcd keeps quorum with 3 or 5 servers: add or remove a server, or set `ha = false` for a single server",
            );
        }
    } else if servers > 1 {
        let second = entries
            .iter()
            .filter(|e| e.role == Role::Server)
            .flat_map(|e| std::iter::repeat_n(e, e.hosts.len()))
            .nth(1)
            .expect("more than one server");
        ctx.report(
            ErrorKind::Topology,
            Some(second.role_span.clone()),
            format!("{servers} servers but `ha` is not set"),
            "several servers need embedded etcd: set `ha = true` in `[cluster]` (with an odd number of servers, at least 3), or make all but one of them agents",
        );
    }
}

fn gitlab(ctx: &mut Ctx, raw: Spanned<RawGitLab>, cluster_name: Option<&str>) -> Option<GitLab> {
    let table_span = raw.span();
    let raw = raw.into_inner();
    let required =
        |ctx: &mut Ctx, value: &Option<Spanned<String>>, key: &str, example: &str| match value {
            Some(v) if !v.get_ref().trim().is_empty() => Some(v.get_ref().clone()),
            Some(v) => {
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(v.span()),
                    format!("`[gitlab]` `{key}` is empty"),
                    format!("set `{key} = {example}`"),
                );
                None
            }
            None => {
                ctx.report(
                    ErrorKind::MissingKey,
                    Some(table_span.clone()),
                    format!("`[gitlab]` has no `{key}`"),
                    format!("add `{key} = {example}`"),
                );
                None
            }
        };
    let url = required(ctx, &raw.url, "url", "\"https://gitlab.example.com\"");
    if let (Some(_), Some(value)) = (&url, &raw.url)
        && let Err(e) = formats::http_url(value.get_ref())
    {
        ctx.invalid(ErrorKind::InvalidValue, value.span(), e);
    }
    let project = required(
        ctx,
        &raw.project,
        "project",
        "\"group/project\" (path or numeric id)",
    );

    let agent_name = match &raw.agent_name {
        Some(name) => {
            if !formats::is_dns_label(name.get_ref()) {
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(name.span()),
                    format!("agent_name `{}` is not a valid GitLab agent name", name.get_ref()),
                    "an agent name is 1-63 lowercase letters, digits and `-`, starting and ending with a letter or digit",
                );
            }
            name.get_ref().clone()
        }
        None => cluster_name.unwrap_or_default().to_string(),
    };
    let token = token_source(
        ctx,
        "[gitlab]",
        &raw.token,
        &raw.token_env,
        &raw.token_file,
        SecretSource::Env(DEFAULT_GITLAB_TOKEN_ENV.into()),
        "or leave both out to read `GITLAB_TOKEN`",
    );
    if let Some(kas) = &raw.kas_address {
        let ok = ["wss://", "ws://", "grpcs://", "grpc://"]
            .iter()
            .any(|scheme| {
                kas.get_ref()
                    .strip_prefix(scheme)
                    .is_some_and(|r| !r.is_empty())
            });
        if !ok {
            ctx.report(
                ErrorKind::InvalidValue,
                Some(kas.span()),
                format!("kas_address `{}` is not a KAS URL", kas.get_ref()),
                "write `wss://kas.gitlab.com` or `wss://HOST/-/kubernetes-agent/` (leave it out to derive it from `url`)",
            );
        }
    }
    let templates_dir = raw.templates_dir.as_ref().map(|dir| ctx.templates_dir(dir));
    let runner = runner(ctx, &raw);
    Some(GitLab {
        url: url?.trim_end_matches('/').to_string(),
        project: project?,
        group: raw.group.as_ref().map(|g| g.get_ref().clone()),
        agent_name,
        token,
        runner,
        templates_dir,
        kas_address: raw.kas_address.as_ref().map(|k| k.get_ref().clone()),
    })
}

fn runner(ctx: &mut Ctx, raw: &RawGitLab) -> RunnerSettings {
    let Some(runner) = &raw.runner else {
        return RunnerSettings {
            enabled: true,
            runner_type: RunnerType::Project,
            tags: Vec::new(),
            run_untagged: true,
            concurrent: DEFAULT_RUNNER_CONCURRENT,
            privileged: false,
        };
    };
    let runner_span = runner.span();
    let runner = runner.get_ref();
    if let Some(token) = &runner.token {
        ctx.report_secret(
            token.span(),
            "inline secret `token` in `[gitlab.runner]`".into(),
            "secrets never go in the inventory: edgeops creates the runner through the API with the `[gitlab]` token (`token_env` / `token_file`)".into(),
        );
    }
    let runner_type = match &runner.runner_type {
        None => RunnerType::Project,
        Some(t) => match t.get_ref().as_str() {
            "project" => RunnerType::Project,
            "group" => RunnerType::Group,
            "instance" => RunnerType::Instance,
            other => {
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(t.span()),
                    format!("unknown runner type `{other}`"),
                    "`type` is one of `project` (default), `group`, `instance`",
                );
                RunnerType::Project
            }
        },
    };
    if runner_type == RunnerType::Group && raw.group.is_none() {
        ctx.report(
            ErrorKind::MissingKey,
            Some(
                runner
                    .runner_type
                    .as_ref()
                    .map_or(runner_span, |t| t.span()),
            ),
            "a group runner needs `[gitlab]` `group`",
            "add `group = \"my-group\"` to `[gitlab]`, or use `type = \"project\"`",
        );
    }
    for tag in &runner.tags {
        let t = tag.get_ref();
        if t.trim().is_empty() || t.contains(',') {
            ctx.report(
                ErrorKind::InvalidValue,
                Some(tag.span()),
                format!("runner tag `{t}` is not a tag"),
                "tags are non-empty words without commas, e.g. `tags = [\"arm64\", \"edge\"]`",
            );
        }
    }
    let concurrent = match &runner.concurrent {
        None => DEFAULT_RUNNER_CONCURRENT,
        Some(c) if (1..=1000).contains(c.get_ref()) => *c.get_ref() as u32,
        Some(c) => {
            ctx.report(
                ErrorKind::InvalidValue,
                Some(c.span()),
                format!("runner concurrent {} is out of range", c.get_ref()),
                "`concurrent` is how many jobs the runner runs at once: 1 to 1000 (default 4)",
            );
            DEFAULT_RUNNER_CONCURRENT
        }
    };
    RunnerSettings {
        enabled: runner.enabled.unwrap_or(true),
        runner_type,
        tags: runner.tags.iter().map(|t| t.get_ref().clone()).collect(),
        run_untagged: runner.run_untagged.unwrap_or(runner.tags.is_empty()),
        concurrent,
        privileged: runner.privileged.unwrap_or(false),
    }
}

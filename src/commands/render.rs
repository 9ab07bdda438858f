//! `edgeops render INVENTORY --out DIR [--with-secrets]`: every file edgeops would write for the
//! cluster (k3s config and installer env per host, GitLab agent config, chart values, HelmChart
//! manifests), rendered into a folder without touching hosts or GitLab.
//!
//! Secrets are placeholders unless `--with-secrets`; even then only what the inventory's secret
//! sources hold can be filled (the join token). GitLab agent and runner tokens exist only after
//! `up` registers them, so they stay placeholders here.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat, RenderArgs};
use crate::inventory::{Inventory, SecretSource};
use crate::k3s::install::{InstallSpec, Join};
use crate::k3s::kubeconfig::write_private_atomic;
use crate::k3s::token::read_join_token;
use crate::k3s::{Channel, K3sVersion};
use crate::render::engine::{
    GITLAB_AGENT_CONFIG, GITLAB_AGENT_VALUES, GITLAB_HELMCHART_AGENT, GITLAB_HELMCHART_RUNNER,
    GITLAB_RUNNER_VALUES, K3S_CONFIG,
};
use crate::render::gitlab::{ClusterFacts, GitLabTokens, render_gitlab};
use crate::render::renderer_for;

/// Stands in for the join token in `k3s/token` without `--with-secrets`.
pub const JOIN_TOKEN_PLACEHOLDER: &str = "<k3s-join-token>";

/// What to render beyond the inventory.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Fill secrets the inventory's sources provide (the join token) instead of placeholders.
    pub with_secrets: bool,
    /// Live facts `render` cannot gather offline; `up` knows them (e.g. the nodes' arch).
    pub facts: ClusterFacts,
}

/// One rendered file, relative to the output folder.
#[derive(Clone, Serialize)]
pub struct OutputFile {
    pub path: PathBuf,
    #[serde(skip)]
    pub contents: String,
    /// The template it came from (override path or built-in name); `None` for generated files.
    pub template: Option<String>,
    /// Holds a real secret: written 0600.
    pub secret: bool,
}

impl fmt::Debug for OutputFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("OutputFile");
        debug.field("path", &self.path);
        if self.secret {
            debug.field("contents", &"[redacted]");
        } else {
            debug.field("contents", &self.contents);
        }
        debug
            .field("template", &self.template)
            .field("secret", &self.secret)
            .finish()
    }
}

/// Everything rendered for one inventory, and what the user should know about it.
#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    pub files: Vec<OutputFile>,
    pub notes: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: &RenderArgs) -> anyhow::Result<ExitCode> {
    let inventory = crate::inventory::load(&args.inventory)?;
    let options = RenderOptions {
        with_secrets: args.with_secrets,
        facts: ClusterFacts::default(),
    };
    let bundle = render_bundle(&inventory, &options)?;
    write_bundle(&bundle, &args.out)?;
    let mut out = std::io::stdout().lock();
    match global.output {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&bundle)?)?,
        OutputFormat::Text => {
            for file in &bundle.files {
                let from = file.template.as_deref().unwrap_or("generated");
                let secret = if file.secret { ", secret, 0600" } else { "" };
                writeln!(
                    out,
                    "wrote {} ({from}{secret})",
                    args.out.join(&file.path).display()
                )?;
            }
            for note in &bundle.notes {
                writeln!(out, "note: {note}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Render every file for `inventory`. Pure apart from reading secret sources and override
/// templates.
pub fn render_bundle(inventory: &Inventory, options: &RenderOptions) -> anyhow::Result<Bundle> {
    let renderer = renderer_for(inventory)?;
    let mut files = Vec::new();
    let mut notes: Vec<String> = renderer
        .unknown_overrides()
        .iter()
        .map(|path| {
            format!(
                "{} matches no built-in template and is not used",
                path.display()
            )
        })
        .collect();

    let pinned = match &inventory.cluster.version {
        Some(version) => Some(version.parse::<K3sVersion>().context("[cluster] version")?),
        None => None,
    };
    if pinned.is_none() {
        let channel: Channel = inventory
            .cluster
            .channel
            .parse()
            .context("[cluster] channel")?;
        notes.push(format!(
            "INSTALL_K3S_VERSION is a placeholder: `up` resolves channel {channel} once and pins it for every node"
        ));
    }
    let unresolved = format!("<k3s version from channel {}>", inventory.cluster.channel);

    for host in &inventory.hosts {
        let join = Join::for_host(inventory, host)?;
        // Always the offline spec: secrets (registry credentials) stay placeholders here.
        let version_text = match &pinned {
            Some(version) => version.to_string(),
            None => unresolved.clone(),
        };
        let spec = InstallSpec::unresolved(inventory, host, join, &version_text, &renderer)?;
        let dir = PathBuf::from("k3s").join(&host.name);
        files.push(OutputFile {
            path: dir.join("config.yaml"),
            contents: spec.config_yaml.clone(),
            template: Some(renderer.origin(K3S_CONFIG)),
            secret: false,
        });
        files.push(OutputFile {
            path: dir.join("install.env"),
            contents: spec.env_file(),
            template: None,
            secret: false,
        });
        files.push(OutputFile {
            path: dir.join("install.sh"),
            contents: spec.install_script(),
            template: None,
            secret: false,
        });
    }

    files.push(join_token_file(inventory, options, &mut notes)?);
    if let Some(registries) = &inventory.registries {
        files.push(registries_file(registries, options)?);
    }

    if let Some(gitlab) = &inventory.gitlab {
        if options.with_secrets {
            notes.push(
                "the GitLab agent and runner tokens stay placeholders: they are created when `up` registers the agent and runner"
                    .to_owned(),
            );
        }
        if gitlab.runner.enabled && options.facts.node_arch.is_none() {
            notes.push(
                "the runner's kubernetes.io/arch node selector is left out: `up` sets it from the nodes' architecture"
                    .to_owned(),
            );
        }
        let rendered = render_gitlab(
            &renderer,
            &inventory.cluster.name,
            gitlab,
            &GitLabTokens::default(),
            &options.facts,
            None,
        )?;
        let secret = rendered.holds_secrets;
        let file = |path: String, contents: String, template: &str| OutputFile {
            path: PathBuf::from(path),
            contents,
            template: Some(renderer.origin(template)),
            secret,
        };
        files.push(OutputFile {
            secret: false,
            ..file(
                format!("repo/{}", rendered.agent_config_path),
                rendered.agent_config,
                GITLAB_AGENT_CONFIG,
            )
        });
        files.push(file(
            "values/gitlab-agent.yaml".to_owned(),
            rendered.agent_values,
            GITLAB_AGENT_VALUES,
        ));
        files.push(file(
            format!(
                "manifests/{}.yaml",
                crate::render::gitlab::agent_release(&gitlab.agent_name)
            ),
            rendered.agent_helmchart,
            GITLAB_HELMCHART_AGENT,
        ));
        if let Some(runner) = rendered.runner {
            files.push(file(
                "values/gitlab-runner.yaml".to_owned(),
                runner.values,
                GITLAB_RUNNER_VALUES,
            ));
            files.push(file(
                format!("manifests/{}.yaml", crate::render::gitlab::RUNNER_RELEASE),
                runner.helmchart,
                GITLAB_HELMCHART_RUNNER,
            ));
        }
    }
    Ok(Bundle { files, notes })
}

/// `k3s/registries.yaml`: the same file on every host; credentials as placeholders unless
/// `--with-secrets` (then written 0600). The TLS files are the inventory's own files.
fn registries_file(
    registries: &crate::inventory::registries::Registries,
    options: &RenderOptions,
) -> anyhow::Result<OutputFile> {
    use crate::k3s::registries::{Secrets, files};
    let secrets = if options.with_secrets {
        Secrets::Resolve
    } else {
        Secrets::Masked
    };
    let file = files(registries, secrets)?.swap_remove(0);
    Ok(OutputFile {
        path: PathBuf::from("k3s/registries.yaml"),
        contents: String::from_utf8_lossy(&file.contents).into_owned(),
        template: None,
        secret: options.with_secrets,
    })
}

fn join_token_file(
    inventory: &Inventory,
    options: &RenderOptions,
    notes: &mut Vec<String>,
) -> anyhow::Result<OutputFile> {
    let placeholder = |notes: &mut Vec<String>, why: &str| {
        notes.push(format!("k3s/token holds a placeholder: {why}"));
        OutputFile {
            path: PathBuf::from("k3s/token"),
            contents: format!("{JOIN_TOKEN_PLACEHOLDER}\n"),
            template: None,
            secret: false,
        }
    };
    if !options.with_secrets {
        return Ok(placeholder(notes, "pass --with-secrets to fill it"));
    }
    if inventory.cluster.token == SecretSource::Generate {
        return Ok(placeholder(
            notes,
            "the inventory sets no token source; `up` generates one on the first server",
        ));
    }
    let token = read_join_token(&inventory.cluster.token)?
        .expect("a source other than Generate yields a token or an error");
    Ok(OutputFile {
        path: PathBuf::from("k3s/token"),
        contents: token.file_contents(),
        template: None,
        secret: true,
    })
}

/// Write the bundle under `out`; secret files are written 0600 (atomically, never readable by
/// others even briefly).
pub fn write_bundle(bundle: &Bundle, out: &Path) -> anyhow::Result<()> {
    for file in &bundle.files {
        let path = out.join(&file.path);
        if file.secret {
            write_private_atomic(&path, file.contents.as_bytes())?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

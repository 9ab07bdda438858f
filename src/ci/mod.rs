//! `edgeops ci`: the GitLab CI pipeline of a repository of site inventories. Reads each
//! inventory (offline), works out per cluster its jobs' inputs (repository-relative inventory
//! path, runner tag, the CI/CD variables its secrets come from, the files whose change calls for
//! a plan) and renders `gitlab-ci.yml.j2`, the template beside this file, with minijinja.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use minijinja::value::{Serde, Value};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::inventory::{self, Inventory, SecretSource, Sudo};

/// The pipeline template, compiled into the binary.
const TEMPLATE: &str = include_str!("gitlab-ci.yml.j2");

/// GitLab makes at most this many jobs from one `parallel:matrix`; more clusters get further
/// `up` jobs.
pub const MAX_MATRIX_JOBS: usize = 200;

/// What the pipeline needs to know about one cluster.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Site {
    /// `[cluster] name`: job names, environment and resource group.
    pub name: String,
    /// The inventory, relative to the repository root, `/`-separated.
    pub inventory: String,
    pub runner_tag: Option<String>,
    /// Environment variables the inventory reads secrets from, sorted.
    pub secret_variables: Vec<String>,
    /// What each of those variables holds, for the file's header.
    pub secret_uses: BTreeMap<String, String>,
    /// Secret files the inventory names (`token_file`, ...): they must exist on the runner.
    pub secret_files: Vec<String>,
    /// Repository paths (globs) whose change makes a merge request plan this cluster.
    pub changes: Vec<String>,
}

/// One `up` job: a matrix over at most `MAX_MATRIX_JOBS` clusters.
#[derive(Debug, Clone, Serialize)]
pub struct UpJob {
    pub name: String,
    /// Its clusters carry `[ci] runner_tag` (the job selects the runner by it).
    pub tagged: bool,
    pub sites: Vec<Site>,
}

/// How the pipeline is written.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `up` waits on the default branch until someone starts it.
    pub manual: bool,
    /// The inventory arguments as given, repeated in the file's header.
    pub inventories_arg: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CiError {
    #[error(
        "{file}: the inventory is outside the repository {repo} (the pipeline runs from the repository's root)"
    )]
    OutsideRepo { file: String, repo: String },
    #[error(
        "cluster `{name}` is named by both {first} and {second}: each site needs its own cluster name (it names the jobs, environment and resource group)"
    )]
    DuplicateCluster {
        name: String,
        first: String,
        second: String,
    },
    #[error(
        "{file}: `{var}` cannot be a GitLab CI/CD variable name (letters, digits and `_`, not starting with a digit)"
    )]
    BadVariable { file: String, var: String },
    #[error("cannot read the repository folder {repo}: {reason}")]
    Repo { repo: String, reason: String },
    #[error("the pipeline template: {0}")]
    Template(String),
}

/// The sites of `inventories` (already loaded), in the order given.
pub fn sites(repo: &Path, inventories: &[Inventory]) -> Result<Vec<Site>, CiError> {
    let repo = repo.canonicalize().map_err(|e| CiError::Repo {
        repo: repo.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut sites: Vec<Site> = Vec::new();
    for inv in inventories {
        let site = site(&repo, inv)?;
        if let Some(first) = sites.iter().find(|s| s.name == site.name) {
            return Err(CiError::DuplicateCluster {
                name: site.name,
                first: first.inventory.clone(),
                second: site.inventory,
            });
        }
        sites.push(site);
    }
    Ok(sites)
}

fn site(repo: &Path, inv: &Inventory) -> Result<Site, CiError> {
    let file = inv.path.display().to_string();
    let inventory = repo_relative(repo, &inv.path).ok_or_else(|| CiError::OutsideRepo {
        file: file.clone(),
        repo: repo.display().to_string(),
    })?;
    let mut uses: BTreeMap<String, String> = BTreeMap::new();
    let mut secret_files = Vec::new();
    let mut source = |s: &SecretSource, what: &str| match s {
        SecretSource::Env(var) => {
            uses.entry(var.clone()).or_insert_with(|| what.to_owned());
        }
        SecretSource::File(path) => {
            let shown = format!("{} ({what})", path.display());
            if !secret_files.contains(&shown) {
                secret_files.push(shown);
            }
        }
        SecretSource::Generate => {}
    };
    source(&inv.cluster.token, "join token");
    if let Some(gitlab) = &inv.gitlab {
        source(&gitlab.token, "GitLab API token");
    }
    for host in &inv.hosts {
        if let Sudo::Password { env } = &host.ssh.sudo {
            source(&SecretSource::Env(env.clone()), "sudo password");
        }
        if let Some(env) = &host.ssh.passphrase_env {
            source(&SecretSource::Env(env.clone()), "SSH key passphrase");
        }
    }
    if let Some(var) = uses.keys().find(|v| !is_variable_name(v)) {
        return Err(CiError::BadVariable {
            file,
            var: var.clone(),
        });
    }
    let mut changes = vec![inventory.clone()];
    let mut add = |path: &Path, tree: bool| {
        if let Some(rel) = repo_relative(repo, path) {
            let pattern = if tree { format!("{rel}/**/*") } else { rel };
            if !changes.contains(&pattern) {
                changes.push(pattern);
            }
        }
    };
    if let Some(shared) = inventory::included_file(&inv.path) {
        add(&shared, false);
    }
    for host in &inv.hosts {
        if let Some(known) = &host.ssh.known_hosts {
            add(known, false);
        }
    }
    if let Some(dir) = inv.gitlab.as_ref().and_then(|g| g.templates_dir.as_ref()) {
        add(dir, true);
    }
    if let Some(dir) = &inv.cluster.artifacts_dir {
        add(dir, true);
    }
    for image in &inv.cluster.images {
        add(image, false);
    }
    Ok(Site {
        name: inv.cluster.name.clone(),
        inventory,
        runner_tag: inv.ci.runner_tag.clone(),
        secret_variables: uses.keys().cloned().collect(),
        secret_uses: uses,
        secret_files,
        changes,
    })
}

/// `up` jobs: clusters with a runner tag, then those without, `MAX_MATRIX_JOBS` per job.
pub fn up_jobs(sites: &[Site]) -> Vec<UpJob> {
    let (tagged, untagged): (Vec<&Site>, Vec<&Site>) =
        sites.iter().partition(|s| s.runner_tag.is_some());
    let mut jobs = Vec::new();
    for (group, is_tagged, base) in [
        (tagged, true, "up"),
        (
            untagged,
            false,
            if sites.iter().any(|s| s.runner_tag.is_some()) {
                "up:any-runner"
            } else {
                "up"
            },
        ),
    ] {
        for (i, chunk) in group.chunks(MAX_MATRIX_JOBS).enumerate() {
            jobs.push(UpJob {
                name: if i == 0 {
                    base.to_owned()
                } else {
                    format!("{base}-{}", i + 1)
                },
                tagged: is_tagged,
                sites: chunk.iter().map(|s| (*s).clone()).collect(),
            });
        }
    }
    jobs
}

/// The `.gitlab-ci.yml` text for `sites`.
pub fn render(sites: &[Site], options: &Options) -> Result<String, CiError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // A YAML file, not HTML: never escape.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        // Block tags on their own line leave no blank line behind, so the template reads like
        // the YAML it produces.
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| CiError::Template(e.to_string()))?;
    env.set_syntax(syntax);
    env.add_filter("yaml", yaml_string);
    env.add_filter("shell", shell_word);
    env.add_template("gitlab-ci.yml.j2", TEMPLATE)
        .map_err(|e| CiError::Template(e.to_string()))?;
    let template = env
        .get_template("gitlab-ci.yml.j2")
        .map_err(|e| CiError::Template(e.to_string()))?;
    template
        .render(minijinja::context! {
            sites => Value::from(Serde(sites)),
            up_jobs => Value::from(Serde(up_jobs(sites))),
            manual => options.manual,
            inventories_arg => options.inventories_arg.as_str(),
        })
        .map_err(|e| CiError::Template(format!("{e:#}")))
}

/// A YAML scalar that stays a string whatever it holds (`on`, `1.0`, `a: b`): JSON's quoting,
/// which YAML reads the same.
fn yaml_string(value: String) -> String {
    serde_json::Value::String(value).to_string()
}

/// One shell word: left bare when it is plain, else single-quoted.
fn shell_word(value: String) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./+=:@".contains(c));
    if plain {
        value
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `path` relative to `repo` (canonical), `/`-separated, or `None` outside it. A path that
/// does not exist yet is resolved lexically from the current folder.
fn repo_relative(repo: &Path, path: &Path) -> Option<String> {
    let absolute = match path.canonicalize() {
        Ok(p) => p,
        Err(_) => normalize(&std::env::current_dir().ok()?.join(path)),
    };
    let rel = absolute.strip_prefix(repo).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Load every inventory of the set, reporting each one's problems before giving up.
pub fn load_all(files: &[PathBuf]) -> Result<Vec<Inventory>, Vec<inventory::InventoryError>> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        match inventory::load(file) {
            Ok(inv) => loaded.push(inv),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;

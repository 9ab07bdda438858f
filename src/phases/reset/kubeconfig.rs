//! The cluster's entry in the user's kubeconfig (scope `Cluster`): whether it is there, and its
//! removal once the first server is reset ([`RemoveKubeconfig`]); other entries stay.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::engine::{Applied, Flow, HostId, same_line};
use crate::k3s::kubeconfig::{Kubeconfig, write_private_atomic};

use super::outcome::Scope;
use super::state::ResetRun;

/// Where `up` merged the cluster's kubeconfig, and the context name.
#[derive(Debug, Clone)]
pub struct KubeconfigEntry {
    pub path: PathBuf,
    pub context: String,
}

impl KubeconfigEntry {
    /// Whether the context is in the file.
    pub fn present(&self) -> anyhow::Result<bool> {
        Ok(read_kubeconfig(&self.path)?.is_some_and(|mut config| config.remove(&self.context)))
    }
}

/// The first server, whose reset it follows (scope `Cluster` only: a cluster that stays
/// keeps its context).
pub(super) fn first_if_cluster(cx: &ResetRun) -> Vec<HostId> {
    if cx.scope == Scope::Cluster {
        vec![cx.core.first]
    } else {
        Vec::new()
    }
}

pub(super) fn plan_kubeconfig(cx: &mut ResetRun, hosts: &[HostId]) -> Vec<(HostId, String)> {
    let entry = &cx.options.kubeconfig;
    let line = match entry.present() {
        Ok(true) => format!(
            "remove context {} (its cluster and user too) from {}",
            entry.context,
            entry.path.display()
        ),
        Ok(false) => format!(
            "nothing of context {} in {}",
            entry.context,
            entry.path.display()
        ),
        Err(e) => format!("cannot read {}: {e:#}", entry.path.display()),
    };
    same_line(hosts, &line)
}

/// Remove the context after the first server's reset (a local file, no host); when the first
/// server was not reset, the context stays and a note says so.
pub(super) fn remove_context<'a>(cx: &'a mut ResetRun, _: &'a [HostId]) -> Applied<'a> {
    Box::pin(async move {
        let entry = cx.options.kubeconfig.clone();
        if !cx.first_reset() {
            let first = cx.core.first_name().to_owned();
            cx.core.message(format!(
                "first server {first} was not reset: context {} left in {}",
                entry.context,
                entry.path.display()
            ));
            return Ok(Flow::Continue);
        }
        match remove_kubeconfig(&entry) {
            Ok(text) => cx.kubeconfig = Some(text),
            Err(e) => {
                cx.kubeconfig_failed = true;
                cx.core.message(format!("kubeconfig: {e:#}"));
            }
        }
        Ok(Flow::Continue)
    })
}

fn read_kubeconfig(path: &Path) -> anyhow::Result<Option<Kubeconfig>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Kubeconfig::parse(&text, &path.display().to_string())?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Remove the cluster's cluster, context and user from the kubeconfig `up` merged into; other
/// entries stay. A file left with nothing in it (edgeops created it) is deleted. Says what it did.
pub fn remove_kubeconfig(entry: &KubeconfigEntry) -> anyhow::Result<String> {
    let path = entry.path.display();
    let Some(mut config) = read_kubeconfig(&entry.path)? else {
        return Ok(format!(
            "{path}: no such file (context {}, already gone)",
            entry.context
        ));
    };
    if !config.remove(&entry.context) {
        return Ok(format!(
            "{path}: no context {} (already gone)",
            entry.context
        ));
    }
    if config.is_empty() {
        std::fs::remove_file(&entry.path).with_context(|| format!("removing {path}"))?;
        return Ok(format!(
            "{path}: context {} removed, and the file with it (nothing else was in it)",
            entry.context
        ));
    }
    write_private_atomic(&entry.path, config.to_yaml().as_bytes())?;
    Ok(format!(
        "{path}: context {} removed (other contexts kept)",
        entry.context
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_removal_keeps_other_contexts_and_drops_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let entry = KubeconfigEntry {
            path: path.clone(),
            context: "lab".into(),
        };
        let two = "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://10.0.0.1:6443\n\
                   - name: other\n  cluster:\n    server: https://other:6443\n\
                   contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n\
                   - name: other\n  context:\n    cluster: other\n    user: other\n\
                   users:\n- name: lab\n  user:\n    token: x\n- name: other\n  user:\n    token: y\n\
                   current-context: lab\n";
        std::fs::write(&path, two).unwrap();
        assert!(entry.present().unwrap());
        let said = remove_kubeconfig(&entry).unwrap();
        assert!(said.contains("other contexts kept"), "{said}");
        assert!(!entry.present().unwrap());
        let left = std::fs::read_to_string(&path).unwrap();
        assert!(!left.contains("name: lab"), "{left}");
        assert!(left.contains("name: other"), "{left}");
        assert!(remove_kubeconfig(&entry).unwrap().contains("already gone"));

        let only = "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://10.0.0.1:6443\n\
                    contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n\
                    users:\n- name: lab\n  user:\n    token: x\ncurrent-context: lab\n";
        std::fs::write(&path, only).unwrap();
        let said = remove_kubeconfig(&entry).unwrap();
        assert!(said.contains("and the file with it"), "{said}");
        assert!(!path.exists());
        assert!(!entry.present().unwrap());
        assert!(remove_kubeconfig(&entry).unwrap().contains("no such file"));
    }
}

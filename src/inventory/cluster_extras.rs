//! The `[cluster]` keys k3s-ansible users expect beyond the typed ones: free-form k3s
//! configuration (`[cluster.k3s_config]`, checked against the known k3s flags), extra manifests
//! deployed with the cluster, the k3s service's environment (proxy settings) and a cluster-level
//! `templates_dir`. Validated here into [`ClusterExtras`].

use toml::Spanned;

use super::diagnostics::Ctx;
use super::error::ErrorKind;
use super::formats;
use super::k3s_flags::{self as flags, FlagScope};
pub use super::model::ClusterExtras;
use super::raw::RawCluster;
use super::raw::RawK3sConfig;

/// Variables the installer copies into the service env file besides `K3S_*` (which edgeops sets).
const PROXY_VARS: &[&str] = &["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"];

pub(super) fn validate(ctx: &mut Ctx, raw: &RawCluster) -> ClusterExtras {
    let mut extras = ClusterExtras {
        forwarding_sysctls: raw.forwarding_sysctls.unwrap_or(false),
        user_kubeconfig: raw.user_kubeconfig.unwrap_or(false),
        open_firewall: raw.open_firewall.unwrap_or(true),
        ..ClusterExtras::default()
    };
    if let Some(table) = &raw.k3s_config {
        extras.k3s_config = k3s_config_flags(ctx, table.get_ref(), "[cluster.k3s_config]");
    }
    for manifest in &raw.manifests {
        let path = ctx.resolve_path(manifest.get_ref());
        let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if !path.is_file() {
            ctx.report(
                ErrorKind::MissingFile,
                Some(manifest.span()),
                format!("manifest `{}` does not exist", path.display()),
                "list YAML files on this machine (relative paths start at the inventory's folder); they are copied to every server's auto-deploy folder",
            );
        } else if !is_yaml {
            ctx.report(
                ErrorKind::InvalidValue,
                Some(manifest.span()),
                format!("manifest `{}` is not a .yaml or .yml file", path.display()),
                "k3s auto-deploys only .yaml, .yml and .json files; name YAML manifests `*.yaml`",
            );
        }
        extras.manifests.push(path);
    }
    if let Some(env) = &raw.service_env {
        for (key, value) in env.get_ref() {
            let name = key.get_ref();
            let allowed = PROXY_VARS.contains(&name.as_str()) || name.starts_with("CONTAINERD_");
            if !allowed {
                let help = match formats::closest(name, PROXY_VARS.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`? the installer keeps only HTTP_PROXY, HTTPS_PROXY, NO_PROXY and CONTAINERD_* (edgeops sets the K3S_* ones itself)"),
                    None => "the installer keeps only HTTP_PROXY, HTTPS_PROXY, NO_PROXY and CONTAINERD_* in the service env file (edgeops sets the K3S_* ones itself)".to_owned(),
                };
                ctx.report(
                    ErrorKind::UnknownKey,
                    Some(key.span()),
                    format!("`{name}` in `[cluster.service_env]` is not kept by the k3s installer"),
                    help,
                );
            }
            if value.get_ref().contains('@') && value.get_ref().contains("://") {
                ctx.report_masked(
                    ErrorKind::InlineSecret,
                    value.span(),
                    format!("`{name}` holds credentials (`user:password@`)"),
                    "the service env travels on the installer's command line: use a proxy without credentials in the URL".to_owned(),
                );
            }
            extras
                .service_env
                .push((name.clone(), value.get_ref().clone()));
        }
    }
    extras.templates_dir = raw.templates_dir.as_ref().map(|dir| ctx.templates_dir(dir));
    extras
}

/// A `k3s_config` table (`table` names it in errors) → k3s flags with their scope.
pub(super) fn k3s_config_flags(
    ctx: &mut Ctx,
    raw: &RawK3sConfig,
    table: &str,
) -> Vec<(FlagScope, String)> {
    let mut out = Vec::new();
    for (key, value) in raw {
        k3s_config_entry(ctx, key, value, table, &mut out);
    }
    out
}

/// One `k3s_config` entry → k3s flags, or a located error.
fn k3s_config_entry(
    ctx: &mut Ctx,
    key: &Spanned<String>,
    value: &Spanned<toml::Value>,
    table: &str,
    out: &mut Vec<(FlagScope, String)>,
) {
    let name = key.get_ref();
    if flags::SECRET_FLAGS.contains(&name.as_str()) {
        ctx.report_masked(
            ErrorKind::InlineSecret,
            value.span(),
            format!("`{name}` in `{table}` is a secret"),
            "config.yaml is world-readable and secrets never go in the inventory: the join token comes from `[cluster] token_env` / `token_file`".to_owned(),
        );
        return;
    }
    let Some(scope) = flags::scope(name) else {
        let help = match formats::closest(name, flags::all()) {
            Some(close) => format!("did you mean `{close}`? keys are k3s flags without `--`"),
            None => "keys are k3s flags without `--` (see `k3s server --help` / `k3s agent --help`); pass a flag edgeops does not know yet with `server_args` / `agent_args`".to_owned(),
        };
        ctx.report(
            ErrorKind::UnknownKey,
            Some(key.span()),
            format!("`{name}` in `{table}` is not a k3s flag edgeops knows"),
            help,
        );
        return;
    };
    let scalar = |value: &toml::Value| -> Option<String> {
        match value {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let bad_type = |ctx: &mut Ctx| {
        ctx.report(
            ErrorKind::InvalidValue,
            Some(value.span()),
            format!("`{name}` in `{table}` has a value k3s cannot take"),
            "give a string, number, boolean, or a list of strings or numbers (repeated flag)",
        );
    };
    match value.get_ref() {
        toml::Value::Boolean(true) => out.push((scope, format!("--{name}"))),
        toml::Value::Array(items) => {
            for item in items {
                match scalar(item) {
                    Some(text) => out.push((scope, format!("--{name}={text}"))),
                    None => return bad_type(ctx),
                }
            }
        }
        other => match scalar(other) {
            Some(text) => out.push((scope, format!("--{name}={text}"))),
            None => bad_type(ctx),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn parse(cluster_extra: &str) -> Result<crate::inventory::Inventory, String> {
        crate::inventory::parse(
            &format!(
                "[cluster]\nname = \"t\"\n{cluster_extra}\n[[hosts]]\nname = \"s\"\nrole = \"server\"\n\
                 [[hosts]]\nname = \"a\"\nrole = \"agent\"\n"
            ),
            Path::new("t.toml"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_k3s_flag_suggests_the_closest() {
        let err = parse("[cluster.k3s_config]\ncluster-cdir = \"10.42.0.0/16\"\n").unwrap_err();
        assert!(
            err.contains("`cluster-cdir` in `[cluster.k3s_config]` is not a k3s flag"),
            "{err}"
        );
        assert!(err.contains("did you mean `cluster-cidr`?"), "{err}");
        assert!(err.contains("t.toml:4:1"), "{err}");
    }

    #[test]
    fn secrets_bad_env_and_missing_files_are_refused() {
        let err = parse(
            "manifests = [\"nope.yaml\"]\n[cluster.service_env]\nHTTP_PROXI = \"http://p:3128\"\n\
             HTTPS_PROXY = \"http://u:hunter22@p:3128\"\n\
             [cluster.k3s_config]\netcd-s3-secret-key = \"hunter22\"\nkubelet-arg = [{ a = 1 }]\n",
        )
        .unwrap_err();
        assert!(err.contains("is a secret"), "{err}");
        assert!(err.contains("did you mean `HTTP_PROXY`?"), "{err}");
        assert!(err.contains("holds credentials"), "{err}");
        assert!(err.contains("nope.yaml` does not exist"), "{err}");
        assert!(err.contains("has a value k3s cannot take"), "{err}");
        assert!(!err.contains("hunter22"), "{err}");
    }

    #[test]
    fn group_k3s_config_goes_before_the_groups_extra_args_of_members() {
        let inv = crate::inventory::parse(
            "[cluster]\nname = \"t\"\n[groups.pis]\nextra_args = [\"--kubelet-arg=v=2\"]\n\
             [groups.pis.k3s_config]\nkubelet-arg = [\"max-pods=30\"]\n\
             [[hosts]]\nname = \"s\"\nrole = \"server\"\n\
             [[hosts]]\nname = \"a\"\nrole = \"agent\"\ngroups = [\"pis\"]\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert!(inv.hosts[0].extra_args.is_empty());
        assert_eq!(
            inv.hosts[1].extra_args,
            ["--kubelet-arg=max-pods=30", "--kubelet-arg=v=2"]
        );
        let err = crate::inventory::parse(
            "[cluster]\nname = \"t\"\n[groups.pis.k3s_config]\nnode-lable = [\"a=b\"]\n\
             [[hosts]]\nname = \"s\"\nrole = \"server\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`node-lable` in `[groups.pis.k3s_config]`"),
            "{err}"
        );
        assert!(err.contains("did you mean `node-label`?"), "{err}");
    }

    #[test]
    fn values_become_flags_with_their_scope() {
        use crate::inventory::k3s_flags::FlagScope::*;
        let inv = parse(
            "service_env = { HTTP_PROXY = \"http://proxy:3128\", NO_PROXY = \"10.0.0.0/8\" }\n\
             [cluster.k3s_config]\ncluster-cidr = \"10.42.0.0/16\"\nprotect-kernel-defaults = true\n\
             kubelet-arg = [\"max-pods=50\", \"v=2\"]\n",
        )
        .unwrap();
        let extras = &inv.cluster.extras;
        assert_eq!(
            extras.k3s_config,
            vec![
                (ServersOnly, "--cluster-cidr=10.42.0.0/16".to_owned()),
                (AllNodes, "--kubelet-arg=max-pods=50".to_owned()),
                (AllNodes, "--kubelet-arg=v=2".to_owned()),
                (AllNodes, "--protect-kernel-defaults".to_owned()),
            ]
        );
        assert_eq!(
            extras.service_env,
            vec![
                ("HTTP_PROXY".to_owned(), "http://proxy:3128".to_owned()),
                ("NO_PROXY".to_owned(), "10.0.0.0/8".to_owned()),
            ]
        );
    }
}

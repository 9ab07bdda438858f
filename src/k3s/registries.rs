//! k3s's `/etc/rancher/k3s/registries.yaml` from the inventory's `[registries]`, and the TLS files
//! it points at, as files for the install step to write on every host. The YAML follows
//! docs.k3s.io "Private Registry Configuration": `mirrors.NAME.endpoint` / `rewrite` and
//! `configs.HOST.auth` (`username`, `password`, `auth`, `identity_token`) / `tls` (`ca_file`,
//! `cert_file`, `key_file`, `insecure_skip_verify`). k3s reads the file only when it starts, so
//! a changed file means one restart of the service (the install step does it).

use std::collections::BTreeMap;
use std::fmt;

use secrecy::ExposeSecret;
use serde::Serialize;

use crate::inventory::SecretSource;
use crate::inventory::registries::Registries;

use super::token::{TokenError, read_secret};

/// Where k3s reads its registry configuration.
pub const REGISTRIES_PATH: &str = "/etc/rancher/k3s/registries.yaml";
/// Where edgeops uploads the registries' CA, client certificate and key (one folder per
/// registry). Inside `/etc/rancher/k3s`, so the k3s uninstall scripts remove it.
pub const TLS_DIR: &str = "/etc/rancher/k3s/edgeops-registries";
/// First line of a `registries.yaml` edgeops wrote: only such a file is removed when the
/// inventory drops `[registries]` (a file written by hand is left alone).
pub const HEADER: &str =
    "# Written by edgeops from the inventory's [registries]; edits are overwritten.\n";

/// Fill secrets from their sources (`up`, `upgrade`) or show where they come from (`render`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Resolve,
    Masked,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    #[error("[registries]: {0}")]
    Secret(#[from] TokenError),
    #[error("[registries]: cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("[registries]: cannot render registries.yaml: {0}")]
    Yaml(String),
}

/// A file the install step writes on a host, root-only (0600): it may hold a credential or a
/// private key, so its contents never show in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct ManagedFile {
    /// Absolute path on the host.
    pub path: String,
    pub contents: Vec<u8>,
    /// k3s reads it only at start: a change restarts the service (registries). Auto-deploy
    /// manifests are picked up live and need none.
    pub restart: bool,
    /// Run (as root) after the file was written, e.g. `sysctl -p FILE`.
    pub after_write: Option<&'static str>,
}

impl fmt::Debug for ManagedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedFile")
            .field("path", &self.path)
            .field("bytes", &self.contents.len())
            .finish()
    }
}

#[derive(Serialize)]
struct File<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    mirrors: BTreeMap<&'a str, MirrorYaml<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    configs: BTreeMap<&'a str, ConfigYaml>,
}

#[derive(Serialize)]
struct MirrorYaml<'a> {
    endpoint: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    rewrite: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ConfigYaml {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    auth: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tls: BTreeMap<&'static str, serde_yaml_ng::Value>,
}

/// The folder on the host for one registry's TLS files (`*` and `:` are not path-friendly).
fn tls_folder(registry: &str) -> String {
    let name: String = registry
        .chars()
        .map(|c| match c {
            ':' => '_',
            '*' => '_',
            c => c,
        })
        .collect();
    let name = if registry == "*" {
        "_all".to_owned()
    } else {
        name
    };
    format!("{TLS_DIR}/{name}")
}

/// `registries.yaml` first, then the TLS files it names.
pub fn files(
    registries: &Registries,
    secrets: Secrets,
) -> Result<Vec<ManagedFile>, RegistriesError> {
    let mut tls_files = Vec::new();
    let mut configs = BTreeMap::new();
    for (name, config) in &registries.configs {
        let mut auth = BTreeMap::new();
        if let Some(username) = &config.username {
            auth.insert("username", username.clone());
        }
        for (key, source) in [
            ("password", &config.password),
            ("auth", &config.auth),
            ("identity_token", &config.identity_token),
        ] {
            if let Some(source) = source {
                auth.insert(key, secret_value(source, secrets)?);
            }
        }
        let mut tls = BTreeMap::new();
        let folder = tls_folder(name);
        for (key, local, remote) in [
            ("ca_file", &config.ca_file, "ca.crt"),
            ("cert_file", &config.cert_file, "client.crt"),
            ("key_file", &config.key_file, "client.key"),
        ] {
            if let Some(local) = local {
                let path = format!("{folder}/{remote}");
                let contents = std::fs::read(local).map_err(|err| RegistriesError::File {
                    path: local.display().to_string(),
                    reason: err.to_string(),
                })?;
                tls.insert(key, serde_yaml_ng::Value::String(path.clone()));
                tls_files.push(ManagedFile {
                    path,
                    contents,
                    restart: true,
                    after_write: None,
                });
            }
        }
        if config.insecure_skip_verify {
            tls.insert("insecure_skip_verify", serde_yaml_ng::Value::Bool(true));
        }
        configs.insert(name.as_str(), ConfigYaml { auth, tls });
    }
    let file = File {
        mirrors: registries
            .mirrors
            .iter()
            .map(|(name, mirror)| {
                (
                    name.as_str(),
                    MirrorYaml {
                        endpoint: &mirror.endpoints,
                        rewrite: &mirror.rewrites,
                    },
                )
            })
            .collect(),
        configs,
    };
    let yaml =
        serde_yaml_ng::to_string(&file).map_err(|err| RegistriesError::Yaml(err.to_string()))?;
    let mut out = vec![ManagedFile {
        path: REGISTRIES_PATH.to_owned(),
        contents: format!("{HEADER}{yaml}").into_bytes(),
        restart: true,
        after_write: None,
    }];
    out.extend(tls_files);
    Ok(out)
}

/// Every registry credential's value, read from its source: for the run log's redactor, and so
/// a missing variable or file is bad input reported before any host is touched.
pub fn secret_values(registries: &Registries) -> Result<Vec<String>, RegistriesError> {
    let mut values = Vec::new();
    for config in registries.configs.values() {
        for source in [&config.password, &config.auth, &config.identity_token]
            .into_iter()
            .flatten()
        {
            values.push(secret_value(source, Secrets::Resolve)?);
        }
    }
    Ok(values)
}

fn secret_value(source: &SecretSource, secrets: Secrets) -> Result<String, RegistriesError> {
    match secrets {
        Secrets::Masked => Ok(match source {
            SecretSource::Env(var) => format!("<from env {var}>"),
            SecretSource::File(path) => format!("<from file {}>", path.display()),
            SecretSource::Generate => "<generated>".to_owned(),
        }),
        Secrets::Resolve => {
            let secret = read_secret(source, "registry credential")?
                .expect("registry credentials always have a source");
            Ok(secret.expose_secret().to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn registries(text: &str) -> Registries {
        let inventory = crate::inventory::parse(
            &format!("[cluster]\nname = \"t\"\n[[hosts]]\nname = \"s\"\nrole = \"server\"\n{text}"),
            Path::new("t.toml"),
        )
        .unwrap();
        inventory.registries.unwrap()
    }

    #[test]
    fn renders_mirrors_and_configs_as_k3s_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "CA PEM\n").unwrap();
        std::fs::write(dir.path().join("reg.pass"), "s3cret-pass\n").unwrap();
        let text = format!(
            "[registries.mirrors.\"docker.io\"]\n\
             endpoints = [\"https://registry.site:5000\"]\n\
             rewrites = {{ \"^rancher/(.*)\" = \"mirror/rancher/$1\" }}\n\
             [registries.mirrors.\"*\"]\nendpoints = [\"https://registry.site:5000\"]\n\
             [registries.configs.\"registry.site:5000\"]\nusername = \"edge\"\n\
             password_file = \"{}\"\nca_file = \"{}\"\n",
            dir.path().join("reg.pass").display(),
            dir.path().join("ca.pem").display(),
        );
        let regs = registries(&text);
        let files = files(&regs, Secrets::Resolve).unwrap();
        assert_eq!(files.len(), 2);
        let yaml = String::from_utf8(files[0].contents.clone()).unwrap();
        assert!(yaml.starts_with(HEADER), "{yaml}");
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(
            parsed["mirrors"]["docker.io"]["endpoint"][0],
            "https://registry.site:5000"
        );
        assert_eq!(
            parsed["mirrors"]["docker.io"]["rewrite"]["^rancher/(.*)"],
            "mirror/rancher/$1"
        );
        assert_eq!(
            parsed["mirrors"]["*"]["endpoint"][0],
            "https://registry.site:5000"
        );
        let config = &parsed["configs"]["registry.site:5000"];
        assert_eq!(config["auth"]["username"], "edge");
        assert_eq!(config["auth"]["password"], "s3cret-pass");
        let ca = "/etc/rancher/k3s/edgeops-registries/registry.site_5000/ca.crt";
        assert_eq!(config["tls"]["ca_file"], ca);
        assert_eq!(files[1].path, ca);
        assert_eq!(files[1].contents, b"CA PEM\n");
        // Debug never shows contents.
        assert!(!format!("{:?}", files[0]).contains("s3cret"));

        let masked = files_masked(&regs);
        assert!(!masked.contains("s3cret"), "{masked}");
        assert!(masked.contains("<from file "), "{masked}");
    }

    fn files_masked(regs: &Registries) -> String {
        String::from_utf8(files(regs, Secrets::Masked).unwrap()[0].contents.clone()).unwrap()
    }

    #[test]
    fn rejects_inline_secrets_bad_names_and_missing_endpoints() {
        let err = crate::inventory::parse(
            "[cluster]\nname = \"t\"\n[[hosts]]\nname = \"s\"\nrole = \"server\"\n\
             [registries.mirrors.\"https://docker.io\"]\nendpoints = [\"ftp://x\"]\n\
             [registries.mirrors.\"quay.io\"]\n\
             [registries.configs.\"r:5000\"]\nusername = \"u\"\npassword = \"hunter2\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not a registry name"), "{err}");
        assert!(err.contains("is not an http(s) URL"), "{err}");
        assert!(
            err.contains("mirror `quay.io` in `[registries]` has no `endpoints`"),
            "{err}"
        );
        assert!(err.contains("inline secret `password`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn missing_env_secret_is_an_error_naming_the_variable() {
        let regs = registries(
            "[registries.configs.\"r:5000\"]\nusername = \"u\"\n\
             password_env = \"EDGEOPS_TEST_UNSET_REGISTRY_PASSWORD\"\n",
        );
        let err = files(&regs, Secrets::Resolve).unwrap_err().to_string();
        assert!(
            err.contains("EDGEOPS_TEST_UNSET_REGISTRY_PASSWORD"),
            "{err}"
        );
    }
}

//! The cluster's kubeconfig: take the one k3s writes (`/etc/rancher/k3s/k3s.yaml`, everything
//! named `default`, server `https://127.0.0.1:6443`), point it at the API endpoint, name it after
//! the cluster, merge it into the user's kubeconfig, and write that 0600 atomically; and the
//! cluster's entry there found and removed again (`reset`), other entries kept.
//!
//! Entries of the user's own kubeconfig are kept as YAML mappings, not typed structs, so fields
//! edgeops does not know (exec plugins, extensions, proxy-url...) survive a merge untouched. The
//! k3s.yaml from a host is the opposite: untrusted, reduced to its credentials (`k3s_yaml`).

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use crate::inventory::Inventory;
use crate::k3s::install::{api_endpoint, server_url};
use crate::k3s::k3s_yaml::{UserCredential, read_k3s_yaml};

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("{origin} is not a kubeconfig: {source}")]
    Yaml {
        origin: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("{origin} does not look like a k3s kubeconfig: {reason}")]
    NotK3s { origin: String, reason: String },
    /// The k3s.yaml read back from a host holds something k3s does not write.
    #[error(
        "{origin}: {refused}; nothing was merged (a server's kubeconfig may only carry what k3s writes)"
    )]
    Untrusted {
        origin: String,
        refused: crate::k3s::k3s_yaml::Refused,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A kubeconfig document. `Debug` shows only entry names: user entries hold client keys.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion", default = "default_api_version")]
    pub api_version: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    // `Option` because kubectl writes `clusters: null` for an empty list.
    #[serde(default)]
    clusters: Option<Vec<NamedEntry>>,
    #[serde(default)]
    contexts: Option<Vec<NamedEntry>>,
    #[serde(default)]
    users: Option<Vec<NamedEntry>>,
    #[serde(rename = "current-context", default)]
    pub current_context: Option<String>,
    /// `preferences`, `extensions` and anything else, kept as found.
    #[serde(flatten)]
    rest: Mapping,
}

/// `{name: ..., cluster|user|context: {...}}`; the body is kept whole.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
struct NamedEntry {
    name: String,
    #[serde(flatten)]
    body: Mapping,
}

fn default_api_version() -> String {
    "v1".to_owned()
}

fn default_kind() -> String {
    "Config".to_owned()
}

impl fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("clusters", &self.names(Section::Clusters))
            .field("contexts", &self.names(Section::Contexts))
            .field("users", &self.names(Section::Users))
            .field("current_context", &self.current_context)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
enum Section {
    Clusters,
    Contexts,
    Users,
}

impl Kubeconfig {
    /// An empty kubeconfig (what a missing or empty file means).
    pub fn empty() -> Kubeconfig {
        Kubeconfig {
            api_version: default_api_version(),
            kind: default_kind(),
            clusters: Some(vec![]),
            contexts: Some(vec![]),
            users: Some(vec![]),
            current_context: None,
            rest: Mapping::new(),
        }
    }

    /// Parse a kubeconfig; `origin` names it in errors (a path, or "the k3s kubeconfig of pi-01").
    pub fn parse(text: &str, origin: &str) -> Result<Kubeconfig, KubeconfigError> {
        if text.trim().is_empty() {
            return Ok(Kubeconfig::empty());
        }
        serde_yaml_ng::from_str(text).map_err(|source| KubeconfigError::Yaml {
            origin: origin.to_owned(),
            source,
        })
    }

    /// The k3s kubeconfig, renamed to `name` (cluster, user and context alike) and pointed at
    /// `server_url` (e.g. `https://10.0.0.11:6443`). The current context becomes `name`.
    ///
    /// The text comes from a host and is untrusted: only the credentials k3s writes are taken
    /// from it (see [`read_k3s_yaml`]); anything else refuses the whole file, naming the field.
    pub fn from_k3s(
        text: &str,
        origin: &str,
        name: &str,
        server_url: &str,
    ) -> Result<Kubeconfig, KubeconfigError> {
        let parsed = Kubeconfig::parse(text, origin)?;
        for section in [Section::Clusters, Section::Contexts, Section::Users] {
            let count = parsed.entries(section).len();
            if count != 1 {
                return Err(KubeconfigError::NotK3s {
                    origin: origin.to_owned(),
                    reason: format!("it has {count} {section:?} (k3s writes exactly one)")
                        .to_lowercase(),
                });
            }
        }
        let credentials = read_k3s_yaml(text).map_err(|refused| KubeconfigError::Untrusted {
            origin: origin.to_owned(),
            refused,
        })?;
        let mut cluster = Mapping::new();
        cluster.insert(
            "certificate-authority-data".into(),
            credentials.ca_data.into(),
        );
        cluster.insert("server".into(), server_url.into());
        let mut context = Mapping::new();
        context.insert("cluster".into(), name.into());
        context.insert("user".into(), name.into());
        let mut user = Mapping::new();
        match credentials.user {
            UserCredential::ClientCertificate {
                cert_data,
                key_data,
            } => {
                user.insert("client-certificate-data".into(), cert_data.into());
                user.insert("client-key-data".into(), key_data.into());
            }
            UserCredential::Token(token) => {
                user.insert("token".into(), token.into());
            }
        }
        let entry = |key: &str, body: Mapping| {
            let mut entry = Mapping::new();
            entry.insert(key.into(), Value::Mapping(body));
            NamedEntry {
                name: name.to_owned(),
                body: entry,
            }
        };
        let mut rest = Mapping::new();
        rest.insert("preferences".into(), Value::Mapping(Mapping::new()));
        Ok(Kubeconfig {
            api_version: default_api_version(),
            kind: default_kind(),
            clusters: Some(vec![entry("cluster", cluster)]),
            contexts: Some(vec![entry("context", context)]),
            users: Some(vec![entry("user", user)]),
            current_context: Some(name.to_owned()),
            rest,
        })
    }

    /// Merge `other` into `self`: entries with the same name are replaced, others kept, new
    /// ones appended. The current context becomes `other`'s when `set_current`, or when `self`
    /// had none.
    pub fn merge(&mut self, other: &Kubeconfig, set_current: bool) {
        for section in [Section::Clusters, Section::Contexts, Section::Users] {
            for entry in other.entries(section).to_vec() {
                let entries = self.entries_mut(section);
                match entries
                    .iter_mut()
                    .find(|existing| existing.name == entry.name)
                {
                    Some(existing) => *existing = entry,
                    None => entries.push(entry),
                }
            }
        }
        let has_current = self
            .current_context
            .as_deref()
            .is_some_and(|name| !name.is_empty());
        if (set_current || !has_current)
            && let Some(name) = &other.current_context
        {
            self.current_context = Some(name.clone());
        }
    }

    /// Remove the cluster, context and user named `name` (what [`Kubeconfig::from_k3s`] adds);
    /// entries of other names stay. A current context of that name is cleared (`""`, as kubectl
    /// leaves it). Returns whether anything was removed.
    pub fn remove(&mut self, name: &str) -> bool {
        let mut removed = false;
        for section in [Section::Clusters, Section::Contexts, Section::Users] {
            let entries = self.entries_mut(section);
            let before = entries.len();
            entries.retain(|entry| entry.name != name);
            removed |= entries.len() != before;
        }
        if self.current_context.as_deref() == Some(name) {
            self.current_context = Some(String::new());
            removed = true;
        }
        removed
    }

    /// No cluster, context or user, and nothing else but `apiVersion`, `kind`, an empty current
    /// context and empty `preferences`: a file holding this carries no information.
    pub fn is_empty(&self) -> bool {
        let no_entries = [Section::Clusters, Section::Contexts, Section::Users]
            .into_iter()
            .all(|section| self.entries(section).is_empty());
        let no_current = self.current_context.as_deref().is_none_or(str::is_empty);
        let no_rest = self.rest.iter().all(|(key, value)| {
            key.as_str() == Some("preferences")
                && (value.is_null() || value.as_mapping().is_some_and(Mapping::is_empty))
        });
        no_entries && no_current && no_rest
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("a kubeconfig built from YAML serialises back")
    }

    /// The server URL of cluster `name`, if present.
    pub fn server(&self, name: &str) -> Option<&str> {
        self.entries(Section::Clusters)
            .iter()
            .find(|entry| entry.name == name)?
            .body
            .get("cluster")?
            .get("server")?
            .as_str()
    }

    pub fn context_names(&self) -> Vec<&str> {
        self.names(Section::Contexts)
    }

    fn names(&self, section: Section) -> Vec<&str> {
        self.entries(section)
            .iter()
            .map(|entry| entry.name.as_str())
            .collect()
    }

    fn entries(&self, section: Section) -> &[NamedEntry] {
        let list = match section {
            Section::Clusters => &self.clusters,
            Section::Contexts => &self.contexts,
            Section::Users => &self.users,
        };
        list.as_deref().unwrap_or(&[])
    }

    fn entries_mut(&mut self, section: Section) -> &mut Vec<NamedEntry> {
        let list = match section {
            Section::Clusters => &mut self.clusters,
            Section::Contexts => &mut self.contexts,
            Section::Users => &mut self.users,
        };
        list.get_or_insert_with(Vec::new)
    }
}

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

/// The k3s kubeconfig `text` of the first server `first`, named `context` and pointed at the
/// inventory's API endpoint (`[cluster] api_endpoint`, else the first server).
pub fn for_endpoint(
    inventory: &Inventory,
    first: &str,
    text: &str,
    context: &str,
) -> anyhow::Result<Kubeconfig> {
    let url = server_url(api_endpoint(inventory)?);
    let origin = format!("the k3s kubeconfig of {first}");
    Ok(Kubeconfig::from_k3s(text, &origin, context, &url)?)
}

/// Merge `ours` into the kubeconfig at `path` (0600, its folder made when missing by
/// [`write_private_atomic`]), made the current context, writing only when the merged file
/// differs. Returns whether it wrote.
pub fn merge_if_changed(path: &Path, ours: &Kubeconfig) -> anyhow::Result<bool> {
    let existing_text = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut merged = match &existing_text {
        Some(t) => Kubeconfig::parse(t, &path.display().to_string())?,
        None => Kubeconfig::empty(),
    };
    merged.merge(ours, true);
    let yaml = merged.to_yaml();
    if existing_text.as_deref() == Some(yaml.as_str()) {
        return Ok(false);
    }
    write_private_atomic(path, yaml.as_bytes())?;
    Ok(true)
}

/// Write `contents` to `path` with mode 0600: into a temporary file in the same folder, synced,
/// then renamed over `path`, so a crash never leaves a half-written kubeconfig and the secret
/// is never readable by others, not even briefly.
pub fn write_private_atomic(path: &Path, contents: &[u8]) -> Result<(), KubeconfigError> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| KubeconfigError::Io {
            action,
            path,
            source,
        }
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io("create the folder", &dir))?;
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kubeconfig".to_owned());
    let temp = dir.join(format!(".{file_name}.edgeops-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io("create", &temp))?;
        file.write_all(contents).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("sync", &temp))?;
        std::fs::rename(&temp, path).map_err(io("replace", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// As k3s writes it (certificate data shortened).
    fn k3s_yaml() -> String {
        crate::k3s::k3s_yaml::written_by_k3s(
            "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJkekNDQVIyZ0F3SUJBZ0lCQURBS0JnZ3Foa2pPUFFRREFqQWpNU0V3SHdZRFZRUUREQmhyTTNNdGMyVnkKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=",
            "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJrVENDQVRlZ0F3SUJBZ0lJYzJWeWRtVnkKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=",
            "LS0tLS1CRUdJTiBFQyBQUklWQVRFIEtFWS0tLS0tCk1IY0NBUUVFSUFTRUNSRVRLRVlEQVRBCi0tLS0tRU5EIEVDIFBSSVZBVEUgS0VZLS0tLS0K",
        )
    }

    /// A user's existing kubeconfig: another cluster with an exec plugin, and a stale entry for
    /// the same cluster name that the merge must replace.
    const EXISTING: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.example.com:6443
    certificate-authority-data: UFJPRC1DQQ==
    proxy-url: socks5://localhost:1080
- name: pi-lab
  cluster:
    server: https://10.0.0.99:6443
contexts:
- name: prod
  context:
    cluster: prod
    user: prod-admin
    namespace: apps
- name: pi-lab
  context:
    cluster: pi-lab
    user: pi-lab
users:
- name: prod-admin
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: [eks, get-token, --cluster-name, prod]
- name: pi-lab
  user:
    token: stale
current-context: prod
preferences:
  colors: true
";

    fn pi_lab() -> Kubeconfig {
        Kubeconfig::from_k3s(
            &k3s_yaml(),
            "k3s.yaml of pi-01",
            "pi-lab",
            "https://10.0.0.11:6443",
        )
        .unwrap()
    }

    #[test]
    fn renames_everything_and_points_at_the_api_endpoint() {
        let config = pi_lab();
        assert_eq!(config.server("pi-lab"), Some("https://10.0.0.11:6443"));
        assert_eq!(config.context_names(), ["pi-lab"]);
        assert_eq!(config.current_context.as_deref(), Some("pi-lab"));
        let yaml: Value = serde_yaml_ng::from_str(&config.to_yaml()).unwrap();
        assert_eq!(yaml["contexts"][0]["context"]["cluster"], "pi-lab");
        assert_eq!(yaml["contexts"][0]["context"]["user"], "pi-lab");
        assert_eq!(yaml["users"][0]["name"], "pi-lab");
        assert!(
            yaml["users"][0]["user"]["client-key-data"]
                .as_str()
                .unwrap()
                .starts_with("LS0t")
        );
        assert!(
            yaml["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .is_some()
        );
        assert_eq!(yaml["preferences"], Value::Mapping(Mapping::new()));
    }

    #[test]
    fn debug_shows_names_only() {
        let debug = format!("{:?}", pi_lab());
        assert!(!debug.contains("LS0t"), "{debug}");
        assert!(debug.contains("pi-lab"));
    }

    #[test]
    fn merge_replaces_same_names_keeps_others_and_optionally_switches_context() {
        let mut existing = Kubeconfig::parse(EXISTING, "config").unwrap();
        existing.merge(&pi_lab(), false);
        assert_eq!(existing.context_names(), ["prod", "pi-lab"]);
        assert_eq!(existing.server("pi-lab"), Some("https://10.0.0.11:6443"));
        assert_eq!(existing.current_context.as_deref(), Some("prod"));
        let yaml: Value = serde_yaml_ng::from_str(&existing.to_yaml()).unwrap();
        assert_eq!(
            yaml["users"][1]["user"].get("token"),
            None,
            "stale user replaced"
        );
        assert_eq!(yaml["users"][0]["user"]["exec"]["command"], "aws");
        assert_eq!(
            yaml["clusters"][0]["cluster"]["proxy-url"],
            "socks5://localhost:1080"
        );
        assert_eq!(yaml["contexts"][0]["context"]["namespace"], "apps");
        assert_eq!(yaml["preferences"]["colors"], true);

        existing.merge(&pi_lab(), true);
        assert_eq!(existing.current_context.as_deref(), Some("pi-lab"));
        assert_eq!(
            existing.context_names(),
            ["prod", "pi-lab"],
            "no duplicates on re-merge"
        );
    }

    #[test]
    fn remove_takes_out_only_the_named_entries() {
        let mut existing = Kubeconfig::parse(EXISTING, "config").unwrap();
        existing.merge(&pi_lab(), true);
        assert!(existing.remove("pi-lab"));
        assert_eq!(existing.context_names(), ["prod"]);
        assert_eq!(existing.server("pi-lab"), None);
        assert_eq!(existing.current_context.as_deref(), Some(""));
        let yaml: Value = serde_yaml_ng::from_str(&existing.to_yaml()).unwrap();
        assert_eq!(yaml["users"].as_sequence().unwrap().len(), 1);
        assert_eq!(yaml["users"][0]["user"]["exec"]["command"], "aws");
        assert_eq!(yaml["preferences"]["colors"], true);
        assert!(!existing.is_empty());
        assert!(!existing.remove("pi-lab"), "a second removal finds nothing");

        let mut ours = Kubeconfig::empty();
        ours.merge(&pi_lab(), true);
        assert!(!ours.is_empty());
        assert!(ours.remove("pi-lab"));
        assert!(ours.is_empty(), "{:?}", ours);
    }

    #[test]
    fn kubectl_style_empty_kubeconfig_takes_the_new_context_as_current() {
        let mut empty = Kubeconfig::parse(
            "apiVersion: v1\nclusters: null\ncontexts: null\ncurrent-context: \"\"\nkind: Config\nusers: null\n",
            "config",
        )
        .unwrap();
        empty.merge(&pi_lab(), false);
        assert_eq!(empty.current_context.as_deref(), Some("pi-lab"));
    }

    #[test]
    fn a_poisoned_k3s_yaml_is_refused_naming_the_host_and_the_field() {
        let poisoned = k3s_yaml().replace(
            "  user:\n",
            "  user:\n    exec: {command: /bin/sh, args: [-c, touch /tmp/pwned]}\n",
        );
        let err = Kubeconfig::from_k3s(
            &poisoned,
            "the k3s kubeconfig of pi-01",
            "x",
            "https://a:6443",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("the k3s kubeconfig of pi-01: refused `users[0].user.exec`: a credential plugin would run a command"),
            "{text}"
        );
        assert!(text.contains("nothing was merged"), "{text}");
        // A server address of the host's choosing never survives: edgeops's own is used.
        let elsewhere = k3s_yaml().replace("https://127.0.0.1:6443", "https://evil.example:6443");
        let config = Kubeconfig::from_k3s(&elsewhere, "k3s.yaml", "x", "https://a:6443").unwrap();
        assert_eq!(config.server("x"), Some("https://a:6443"));
        assert!(!config.to_yaml().contains("evil"));
    }

    #[test]
    fn refuses_what_is_not_a_single_cluster_kubeconfig() {
        let err =
            Kubeconfig::from_k3s(EXISTING, "k3s.yaml of pi-01", "x", "https://a:6443").unwrap_err();
        assert_eq!(
            err.to_string(),
            "k3s.yaml of pi-01 does not look like a k3s kubeconfig: it has 2 clusters (k3s writes exactly one)"
        );
        let err = Kubeconfig::parse("clusters: [", "k3s.yaml of pi-01").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("k3s.yaml of pi-01 is not a kubeconfig: "),
            "{err}"
        );
    }

    #[test]
    fn merges_into_a_file_written_0600_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".kube").join("config");
        assert!(merge_if_changed(&path, &pi_lab()).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let written = Kubeconfig::parse(&std::fs::read_to_string(&path).unwrap(), "x").unwrap();
        assert_eq!(written.current_context.as_deref(), Some("pi-lab"));

        // An existing, world-readable file: the merge keeps its entries and tightens the mode.
        std::fs::write(&path, EXISTING).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(merge_if_changed(&path, &pi_lab()).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let written = Kubeconfig::parse(&std::fs::read_to_string(&path).unwrap(), "x").unwrap();
        assert_eq!(written.context_names(), ["prod", "pi-lab"]);
        assert_eq!(written.current_context.as_deref(), Some("pi-lab"));
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["config"], "no temporary file left behind");
    }

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

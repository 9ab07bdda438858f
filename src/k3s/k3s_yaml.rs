//! The k3s.yaml read back from the first server, treated as untrusted input: a board is less
//! trusted than the workstation, and a kubeconfig can make kubectl run commands (`exec`,
//! `auth-provider`), read local files, use a proxy or skip TLS checks. Only what k3s itself writes
//! is accepted: the cluster's CA data and the client certificate and key (or a token); anything
//! else is refused, naming the field. The server address and every name come from edgeops.

use serde_yaml_ng::{Mapping, Value};

/// The credentials of a k3s.yaml, validated; nothing else of the file is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct K3sCredentials {
    /// `clusters[0].cluster.certificate-authority-data` (base64 PEM).
    pub ca_data: String,
    pub user: UserCredential,
}

/// How the client authenticates, as k3s writes it.
#[derive(Clone, PartialEq, Eq)]
pub enum UserCredential {
    /// `client-certificate-data` and `client-key-data` (base64 PEM).
    ClientCertificate { cert_data: String, key_data: String },
    /// `token` (a bearer token).
    Token(String),
}

/// A field of the k3s.yaml that edgeops refuses to carry to the workstation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused `{field}`: {reason}")]
pub struct Refused {
    /// Where in the file, e.g. `users[0].user.exec`.
    pub field: String,
    pub reason: String,
}

/// Why each known-dangerous field is refused (all other unknown fields: "k3s does not write it").
fn danger(key: &str) -> Option<&'static str> {
    Some(match key {
        "exec" => "a credential plugin would run a command on the workstation",
        "auth-provider" => "an auth provider plugin would run on the workstation",
        "proxy-url" => {
            "it would send the workstation's API traffic through a proxy the server chooses"
        }
        "insecure-skip-tls-verify" => "it turns off the check of the API server's certificate",
        "certificate-authority" | "client-certificate" | "client-key" | "tokenFile" => {
            "it names a file on the workstation to read"
        }
        "username" | "password" => "k3s does not write basic-auth credentials",
        "as" | "as-uid" | "as-groups" | "as-user-extra" => "it impersonates another user",
        _ => return None,
    })
}

fn refused(field: impl Into<String>, key: &str) -> Refused {
    Refused {
        field: field.into(),
        reason: danger(key)
            .unwrap_or("k3s does not write it, and only what k3s writes is accepted")
            .to_owned(),
    }
}

/// Read and validate a k3s.yaml's text.
pub fn read_k3s_yaml(text: &str) -> Result<K3sCredentials, Refused> {
    let not = |field: &str, reason: &str| Refused {
        field: field.to_owned(),
        reason: reason.to_owned(),
    };
    let root: Value =
        serde_yaml_ng::from_str(text).map_err(|e| not("(document)", &format!("not YAML: {e}")))?;
    let root = root
        .as_mapping()
        .ok_or_else(|| not("(document)", "not a mapping"))?;
    only_keys(
        root,
        "",
        &[
            "apiVersion",
            "kind",
            "clusters",
            "contexts",
            "users",
            "current-context",
            "preferences",
        ],
    )?;
    if let Some(preferences) = root.get("preferences")
        && !(preferences.is_null() || preferences.as_mapping().is_some_and(Mapping::is_empty))
    {
        return Err(not("preferences", "k3s writes it empty"));
    }

    let cluster = single_entry(root, "clusters", "cluster")?;
    only_keys(
        cluster,
        "clusters[0].cluster.",
        &["server", "certificate-authority-data"],
    )?;
    let ca_data = base64_field(
        cluster,
        "clusters[0].cluster.",
        "certificate-authority-data",
    )?
    .ok_or_else(|| {
        not(
            "clusters[0].cluster.certificate-authority-data",
            "missing: the API server's certificate could not be checked",
        )
    })?;

    let context = single_entry(root, "contexts", "context")?;
    only_keys(context, "contexts[0].context.", &["cluster", "user"])?;

    let user = single_entry(root, "users", "user")?;
    only_keys(
        user,
        "users[0].user.",
        &["client-certificate-data", "client-key-data", "token"],
    )?;
    let cert = base64_field(user, "users[0].user.", "client-certificate-data")?;
    let key = base64_field(user, "users[0].user.", "client-key-data")?;
    let token = match user.get("token") {
        None => None,
        Some(Value::String(token)) if is_token(token) => Some(token.clone()),
        Some(_) => return Err(not("users[0].user.token", "not a bearer token")),
    };
    let user = match (cert, key, token) {
        (Some(cert_data), Some(key_data), None) => UserCredential::ClientCertificate {
            cert_data,
            key_data,
        },
        (None, None, Some(token)) => UserCredential::Token(token),
        _ => {
            return Err(not(
                "users[0].user",
                "k3s writes a client certificate and key, or a token: not both, not half",
            ));
        }
    };
    Ok(K3sCredentials { ca_data, user })
}

/// Every key of `map` must be in `allowed`; `prefix` names the place in messages.
fn only_keys(map: &Mapping, prefix: &str, allowed: &[&str]) -> Result<(), Refused> {
    for key in map.keys() {
        let name = key.as_str().unwrap_or("(non-string key)");
        if !allowed.contains(&name) {
            return Err(refused(format!("{prefix}{name}"), name));
        }
    }
    Ok(())
}

/// `root[list]` holds exactly one `{name, BODY: {...}}` entry; its body.
fn single_entry<'a>(root: &'a Mapping, list: &str, body: &str) -> Result<&'a Mapping, Refused> {
    let entries = root
        .get(list)
        .and_then(Value::as_sequence)
        .filter(|entries| entries.len() == 1)
        .ok_or_else(|| Refused {
            field: list.to_owned(),
            reason: "k3s writes exactly one entry".to_owned(),
        })?;
    let entry = entries[0].as_mapping().ok_or_else(|| Refused {
        field: format!("{list}[0]"),
        reason: "not a mapping".to_owned(),
    })?;
    only_keys(entry, &format!("{list}[0]."), &["name", body])?;
    entry
        .get(body)
        .and_then(Value::as_mapping)
        .ok_or_else(|| Refused {
            field: format!("{list}[0].{body}"),
            reason: "missing or not a mapping".to_owned(),
        })
}

fn base64_field(map: &Mapping, prefix: &str, key: &str) -> Result<Option<String>, Refused> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(data)) if is_base64(data) => Ok(Some(data.clone())),
        Some(_) => Err(Refused {
            field: format!("{prefix}{key}"),
            reason: "not base64 data".to_owned(),
        }),
    }
}

fn is_base64(data: &str) -> bool {
    !data.is_empty()
        && data.len().is_multiple_of(4)
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

/// A bearer token is printable ASCII without spaces (k3s: `K10...::user:secret` or a JWT).
fn is_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

impl std::fmt::Debug for K3sCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("K3sCredentials(..)")
    }
}

/// k3s.yaml as k3s writes it, with these base64 certificate and key fields: the fixture of the
/// tests here and in `kubeconfig`.
#[cfg(test)]
pub(crate) fn written_by_k3s(ca: &str, cert: &str, key: &str) -> String {
    format!(
        "\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k3s_yaml() -> String {
        written_by_k3s("Q0EtREFUQQ==", "Q0VSVA==", "S0VZIQ==")
    }

    fn poisoned(from: &str, to: &str) -> Refused {
        assert!(k3s_yaml().contains(from), "{from}");
        read_k3s_yaml(&k3s_yaml().replacen(from, to, 1)).unwrap_err()
    }

    #[test]
    fn what_k3s_writes_is_accepted() {
        let credentials = read_k3s_yaml(&k3s_yaml()).unwrap();
        assert_eq!(credentials.ca_data, "Q0EtREFUQQ==");
        // No `Debug` on credentials (they are secrets): compare without printing them.
        assert!(
            credentials.user
                == UserCredential::ClientCertificate {
                    cert_data: "Q0VSVA==".into(),
                    key_data: "S0VZIQ==".into()
                }
        );
        let token = k3s_yaml().replace(
            "    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZIQ==\n",
            "    token: K10abc::server:secret\n",
        );
        assert!(
            read_k3s_yaml(&token).unwrap().user
                == UserCredential::Token("K10abc::server:secret".into())
        );
    }

    #[test]
    fn code_running_and_file_reading_fields_are_refused_by_name() {
        let user = "  user:\n";
        for (to, field, why) in [
            (
                "  user:\n    exec: {command: /bin/sh, args: [-c, id], apiVersion: client.authentication.k8s.io/v1}\n",
                "users[0].user.exec",
                "run a command",
            ),
            (
                "  user:\n    auth-provider: {name: oidc}\n",
                "users[0].user.auth-provider",
                "plugin",
            ),
            (
                "  user:\n    tokenFile: /home/me/.token\n",
                "users[0].user.tokenFile",
                "names a file",
            ),
            (
                "  user:\n    client-key: /etc/key\n",
                "users[0].user.client-key",
                "names a file",
            ),
        ] {
            let err = poisoned(user, to);
            assert_eq!(err.field, field, "{err}");
            assert!(err.reason.contains(why), "{err}");
        }
        let err = poisoned(
            "    server:",
            "    proxy-url: http://evil:3128\n    server:",
        );
        assert_eq!(err.field, "clusters[0].cluster.proxy-url");
        let err = poisoned(
            "    server:",
            "    insecure-skip-tls-verify: true\n    server:",
        );
        assert_eq!(err.field, "clusters[0].cluster.insecure-skip-tls-verify");
        let err = poisoned(
            "    server:",
            "    certificate-authority: /etc/ca.pem\n    server:",
        );
        assert!(err.reason.contains("names a file"), "{err}");
    }

    #[test]
    fn unknown_fields_anywhere_are_refused() {
        for (from, to, field) in [
            (
                "kind: Config\n",
                "kind: Config\nextensions: []\n",
                "extensions",
            ),
            (
                "    user: default\n",
                "    user: default\n    namespace: x\n",
                "contexts[0].context.namespace",
            ),
            (
                "  name: default\ncontexts",
                "  name: default\n  extra: 1\ncontexts",
                "clusters[0].extra",
            ),
            (
                "preferences: {}",
                "preferences: {colors: true}",
                "preferences",
            ),
        ] {
            assert_eq!(poisoned(from, to).field, field);
        }
        let two_users = format!("{}- name: other\n  user: {{token: abc}}\n", k3s_yaml());
        assert_eq!(read_k3s_yaml(&two_users).unwrap_err().field, "users");
    }

    #[test]
    fn half_credentials_and_bad_data_are_refused() {
        assert_eq!(
            poisoned("    client-key-data: S0VZIQ==\n", "").field,
            "users[0].user"
        );
        assert_eq!(
            poisoned("Q0EtREFUQQ==", "not base64!").field,
            "clusters[0].cluster.certificate-authority-data"
        );
        assert_eq!(
            poisoned("    certificate-authority-data: Q0EtREFUQQ==\n", "").field,
            "clusters[0].cluster.certificate-authority-data"
        );
    }
}

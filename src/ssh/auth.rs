//! Client credentials: private keys loaded once per run (shared by every host through `Arc`),
//! passphrases from an env var or a terminal prompt, and public-key auth with keys or ssh-agent.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::{Certificate, PrivateKey, PrivateKeyWithHashAlg};
use secrecy::{ExposeSecret, SecretString};

use super::SshError;

/// Where the passphrase of an encrypted key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// Read this environment variable.
    Env(String),
    /// Ask on the controlling terminal (only if there is one).
    Prompt,
}

/// One loaded private key, the file it came from (for messages), and the OpenSSH user
/// certificate beside it (`KEY-cert.pub`), if there is one.
#[derive(Debug, Clone)]
pub struct Identity {
    pub path: PathBuf,
    pub key: Arc<PrivateKey>,
    pub cert: Option<Arc<Certificate>>,
}

/// Keys are loaded (and passphrases asked) once per run, however many hosts use them.
#[derive(Debug, Default)]
pub struct KeyStore {
    loaded: HashMap<PathBuf, (Arc<PrivateKey>, Option<Arc<Certificate>>)>,
}

/// `KEY-cert.pub` beside `KEY`, as ssh(1) looks for it. A certificate that cannot be read is an
/// error (it was clearly meant to be used); a missing one is normal.
fn certificate_beside(path: &Path) -> Result<Option<Arc<Certificate>>, SshError> {
    let mut name = path.as_os_str().to_owned();
    name.push("-cert.pub");
    let cert_path = PathBuf::from(name);
    if !cert_path.exists() {
        return Ok(None);
    }
    russh::keys::load_openssh_certificate(&cert_path)
        .map(|c| Some(Arc::new(c)))
        .map_err(|e| SshError::Key {
            path: cert_path.display().to_string(),
            reason: format!("not an OpenSSH certificate: {e}"),
        })
}

impl KeyStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Load `path` (or return the copy already loaded). Encrypted keys take their passphrase
    /// from `passphrase`, tried in order.
    pub fn load(
        &mut self,
        path: &Path,
        passphrase: &[PassphraseSource],
    ) -> Result<Identity, SshError> {
        if let Some((key, cert)) = self.loaded.get(path) {
            return Ok(Identity {
                path: path.to_path_buf(),
                key: key.clone(),
                cert: cert.clone(),
            });
        }
        let key_error = |reason: String| SshError::Key {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| key_error(e.to_string()))?;
        let key = match russh::keys::decode_secret_key(&text, None) {
            Ok(key) => key,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                let pass = passphrase_for(path, passphrase)?;
                russh::keys::decode_secret_key(&text, Some(pass.expose_secret()))
                    .map_err(|e| key_error(format!("wrong passphrase or damaged key ({e})")))?
            }
            Err(e) => return Err(key_error(e.to_string())),
        };
        let key = Arc::new(key);
        let cert = certificate_beside(path)?;
        self.loaded
            .insert(path.to_path_buf(), (key.clone(), cert.clone()));
        Ok(Identity {
            path: path.to_path_buf(),
            key,
            cert,
        })
    }
}

fn passphrase_for(path: &Path, sources: &[PassphraseSource]) -> Result<SecretString, SshError> {
    let key_error = |reason: String| SshError::Key {
        path: path.display().to_string(),
        reason,
    };
    for source in sources {
        match source {
            PassphraseSource::Env(var) => {
                if let Ok(value) = std::env::var(var) {
                    return Ok(SecretString::from(value));
                }
            }
            PassphraseSource::Prompt => {
                if let Some(pass) =
                    prompt_on_tty(&format!("Passphrase for {}: ", path.display()))
                        .map_err(|e| key_error(format!("cannot ask for the passphrase: {e}")))?
                {
                    return Ok(pass);
                }
            }
        }
    }
    let hint = sources
        .iter()
        .find_map(|s| match s {
            PassphraseSource::Env(var) => Some(format!("set {var}")),
            PassphraseSource::Prompt => None,
        })
        .unwrap_or_else(|| "run on a terminal or set passphrase_env".to_string());
    Err(key_error(format!(
        "the key is encrypted and no passphrase is available ({hint})"
    )))
}

/// Read a line from /dev/tty with echo off. `Ok(None)` when there is no terminal.
fn prompt_on_tty(prompt: &str) -> std::io::Result<Option<SecretString>> {
    use std::os::fd::AsRawFd;
    let Ok(tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    else {
        return Ok(None);
    };
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it for a valid fd we own.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Ok(None);
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // SAFETY: same fd, a termios derived from the one the kernel gave us.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let mut writer = &tty;
    let result = writer.write_all(prompt.as_bytes()).and_then(|_| {
        let mut line = String::new();
        std::io::BufReader::new(&tty).read_line(&mut line)?;
        Ok(line)
    });
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    let line = result?;
    Ok(Some(SecretString::from(
        line.trim_end_matches(['\r', '\n']).to_string(),
    )))
}

/// How one host authenticates: its keys, whether to also ask ssh-agent, and (only for
/// `edgeops bootstrap`, fresh boards without a key yet) a login password.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub identities: Vec<Identity>,
    pub use_agent: bool,
    /// Tried last, after every key: a board that already has the key never sees the password.
    pub password: Option<SecretString>,
}

/// Try each key, then the agent's identities, then the password; stop at the first success.
pub(crate) async fn authenticate<H: russh::client::Handler>(
    handle: &mut Handle<H>,
    host: &str,
    user: &str,
    credentials: &Credentials,
) -> Result<(), SshError> {
    let proto = |e: russh::Error| SshError::Disconnected {
        host: host.to_string(),
        reason: format!("during authentication: {e}"),
    };
    let mut tried = Vec::new();
    // Only asked when an RSA key is actually offered: it may wait for the server's EXT_INFO.
    let mut rsa_hash = None;
    for identity in &credentials.identities {
        // The certificate first: it is what a CA-trusting server (TrustedUserCAKeys) accepts.
        if let Some(cert) = &identity.cert {
            let result = handle
                .authenticate_openssh_cert(user, identity.key.clone(), (**cert).clone())
                .await
                .map_err(proto)?;
            if result.success() {
                return Ok(());
            }
            tried.push(format!("certificate {}-cert.pub", identity.path.display()));
        }
        let hash = if identity.key.algorithm().is_rsa() {
            if rsa_hash.is_none() {
                rsa_hash = Some(
                    handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(proto)?
                        .flatten(),
                );
            }
            rsa_hash.flatten()
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(identity.key.clone(), hash);
        let result = handle
            .authenticate_publickey(user, key)
            .await
            .map_err(proto)?;
        if result.success() {
            return Ok(());
        }
        tried.push(format!("key {}", identity.path.display()));
    }
    if credentials.use_agent {
        match agent_auth(handle, user, &mut rsa_hash).await {
            Ok(true) => return Ok(()),
            Ok(false) => tried.push("ssh-agent identities".to_string()),
            Err(reason) => tried.push(format!("ssh-agent unusable: {reason}")),
        }
    }
    if let Some(password) = &credentials.password {
        let result = handle
            .authenticate_password(user, password.expose_secret())
            .await
            .map_err(proto)?;
        if result.success() {
            return Ok(());
        }
        tried.push("password".to_string());
    }
    if tried.is_empty() {
        tried.push("no keys configured and ssh-agent not enabled".to_string());
    }
    Err(SshError::Auth {
        host: host.to_string(),
        user: user.to_string(),
        tried: tried.join(", "),
    })
}

async fn agent_auth<H: russh::client::Handler>(
    handle: &mut Handle<H>,
    user: &str,
    rsa_hash: &mut Option<Option<russh::keys::HashAlg>>,
) -> Result<bool, String> {
    // One agent connection per host: the agent serializes requests per connection, so sharing
    // one would make all hosts wait on each other's signatures.
    let mut agent = russh::keys::agent::client::AgentClient::connect_env()
        .await
        .map_err(|e| e.to_string())?;
    let identities = agent
        .request_identities()
        .await
        .map_err(|e| e.to_string())?;
    for identity in identities {
        let key = identity.public_key().into_owned();
        let hash = if key.algorithm().is_rsa() {
            if rsa_hash.is_none() {
                *rsa_hash = Some(
                    handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| e.to_string())?
                        .flatten(),
                );
            }
            rsa_hash.flatten()
        } else {
            None
        };
        // A certificate the agent holds signs with its key, like `ssh` does with it.
        let attempt = match identity {
            russh::keys::agent::AgentIdentity::Certificate { certificate, .. } => {
                handle
                    .authenticate_certificate_with(user, certificate, hash, &mut agent)
                    .await
            }
            _ => {
                handle
                    .authenticate_publickey_with(user, key, hash, &mut agent)
                    .await
            }
        };
        match attempt {
            Ok(result) if result.success() => return Ok(true),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(false)
}

//! Host-key scanning for first contact (`edgeops hostkeys`): one handshake per key family, like
//! `ssh-keyscan`, collecting the keys a server offers without trusting or authenticating to it.

use std::sync::{Arc, Mutex};

use russh::client;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PublicKey, PublicKeyOrCertificate};

use super::{ConnectOptions, SshContext, SshError, session};

/// The key families asked for, one handshake each (a server offers one key per handshake).
fn families() -> Vec<(&'static str, Vec<Algorithm>)> {
    vec![
        ("ed25519", vec![Algorithm::Ed25519]),
        (
            "ecdsa",
            vec![
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP256,
                },
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP384,
                },
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP521,
                },
            ],
        ),
        (
            "rsa",
            vec![
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512),
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256),
                },
            ],
        ),
    ]
}

/// The host-key algorithms whose certificate variants are asked for when a CA is trusted.
pub(crate) fn certificate_algorithms() -> Vec<Algorithm> {
    families()
        .into_iter()
        .flat_map(|(_, algorithms)| algorithms)
        .collect()
}

/// Records the offered key and lets the handshake finish (the key exchange then proves the
/// server holds the private half); nothing is trusted or written.
struct Collector {
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Collector {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let PublicKeyOrCertificate::PublicKey { key, .. } = offered {
            *self.seen.lock().expect("scan lock") = Some(key.clone());
        }
        Ok(true)
    }
}

/// Every host key `opts`'s server offers (ed25519, ecdsa, rsa; whichever it has), within the
/// connect timeout for each handshake. Behind a jump host, the jump host itself is verified
/// strictly and authenticated to, as for any connection. Fails only when no key at all was
/// obtained.
pub async fn scan_host_keys(
    opts: &ConnectOptions,
    ctx: &SshContext,
) -> Result<Vec<PublicKey>, SshError> {
    let mut keys = Vec::new();
    let mut first_error = None;
    for (_family, algorithms) in families() {
        let mut config = super::client_config();
        config.preferred.key = algorithms.into();
        config.preferred.host_key_certificates = Vec::new().into();
        let seen = Arc::new(Mutex::new(None));
        let attempt = async {
            let transport = session::open_transport(opts, ctx).await?;
            let collector = Collector { seen: seen.clone() };
            let config = Arc::new(config);
            let handshake = match transport {
                session::Transport::Tcp(stream) => {
                    client::connect_stream(config, stream, collector).await
                }
                session::Transport::Tunnel(stream, _holds) => {
                    client::connect_stream(config, stream, collector).await
                }
                session::Transport::Command(stream, _holds) => {
                    client::connect_stream(config, stream, collector).await
                }
            };
            match handshake {
                Ok(handle) => {
                    let _ = handle
                        .disconnect(russh::Disconnect::ByApplication, "", "en")
                        .await;
                    Ok(())
                }
                Err(err) => Err(ScanError::Handshake(err)),
            }
        };
        match tokio::time::timeout(opts.connect_timeout, attempt).await {
            Ok(Ok(())) => {}
            // This family is not among the server's host keys: try the next one.
            Ok(Err(ScanError::Handshake(russh::Error::NoCommonAlgo { .. }))) => {}
            Ok(Err(ScanError::Handshake(err))) => {
                first_error.get_or_insert(SshError::Connect {
                    host: opts.name.clone(),
                    address: format!("{}:{}", opts.address, opts.port),
                    reason: format!("SSH handshake failed: {err}"),
                });
            }
            Ok(Err(ScanError::Ssh(err))) => {
                first_error.get_or_insert(err);
            }
            Err(_) => {
                first_error.get_or_insert(SshError::ConnectTimeout {
                    host: opts.name.clone(),
                    address: format!("{}:{}", opts.address, opts.port),
                    after: opts.connect_timeout,
                });
            }
        }
        if let Some(key) = seen.lock().expect("scan lock").take() {
            keys.push(key);
        }
        // A host that cannot be reached at all will not answer the next family either.
        if keys.is_empty() && first_error.is_some() {
            break;
        }
    }
    match (keys.is_empty(), first_error) {
        (true, Some(err)) => Err(err),
        (true, None) => Err(SshError::Connect {
            host: opts.name.clone(),
            address: format!("{}:{}", opts.address, opts.port),
            reason: "the server offered no ed25519, ecdsa or rsa host key".into(),
        }),
        (false, _) => Ok(keys),
    }
}

/// Why one scan handshake gave no key: reaching the host (or its jump host) failed, or the
/// handshake itself did.
enum ScanError {
    Ssh(SshError),
    Handshake(russh::Error),
}

impl From<SshError> for ScanError {
    fn from(e: SshError) -> Self {
        ScanError::Ssh(e)
    }
}

impl From<russh::Error> for ScanError {
    fn from(e: russh::Error) -> Self {
        ScanError::Handshake(e)
    }
}

/// The key's size in bits, as `ssh-keygen -l` prints it.
pub fn key_bits(key: &PublicKey) -> u32 {
    let data = key.key_data();
    if let Some(rsa) = data.rsa() {
        return rsa.key_size();
    }
    if let Some(ecdsa) = data.ecdsa() {
        return match ecdsa.curve() {
            EcdsaCurve::NistP256 => 256,
            EcdsaCurve::NistP384 => 384,
            EcdsaCurve::NistP521 => 521,
        };
    }
    256
}

/// The key type as `ssh-keygen -l` shows it in parentheses (`ED25519`, `ECDSA`, `RSA`).
pub fn key_label(key: &PublicKey) -> &'static str {
    match key.algorithm() {
        Algorithm::Ed25519 => "ED25519",
        Algorithm::Ecdsa { .. } => "ECDSA",
        Algorithm::Rsa { .. } => "RSA",
        Algorithm::Dsa => "DSA",
        _ => "OTHER",
    }
}

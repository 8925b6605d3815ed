//! The remote server's pinned host key (`source.remote.known_host_key`): parsing it, the
//! host key algorithms to offer, and the russh client handler that accepts that key only.

use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use russh::client;
use russh::keys::{Algorithm, HashAlg, PublicKey, PublicKeyOrCertificate};

/// The russh client handler: accepts exactly the pinned host key.
pub(super) struct PinnedHostKey {
    expected: PublicKey,
    /// Set to the presented key's fingerprint when it did not match.
    mismatch: Arc<Mutex<Option<String>>>,
}

impl PinnedHostKey {
    /// A handler accepting `expected` only, and where it reports the fingerprint of a key
    /// presented instead.
    pub(super) fn new(expected: PublicKey) -> (PinnedHostKey, Arc<Mutex<Option<String>>>) {
        let mismatch = Arc::new(Mutex::new(None));
        let handler = PinnedHostKey {
            expected,
            mismatch: mismatch.clone(),
        };
        (handler, mismatch)
    }
}

impl client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. }
                if key.key_data() == self.expected.key_data() =>
            {
                Ok(true)
            }
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                *lock(&self.mismatch) = Some(fingerprint(key));
                Ok(false)
            }
            PublicKeyOrCertificate::Certificate(cert) => {
                // Only plain keys are pinned; a certificate is not the pinned key.
                let key = PublicKey::new(cert.public_key().clone(), "");
                *lock(&self.mismatch) = Some(format!("certificate for {}", fingerprint(&key)));
                Ok(false)
            }
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(super) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Parses `known_host_key` (an OpenSSH public key line; a leading known_hosts host field
/// is tolerated).
pub(super) fn parse_pinned_key(line: &str) -> anyhow::Result<PublicKey> {
    let line = line.trim();
    if let Ok(key) = PublicKey::from_openssh(line) {
        return Ok(key);
    }
    // `host ssh-ed25519 AAAA...` as copied from a known_hosts file or ssh-keyscan.
    if let Some((_, rest)) = line.split_once(char::is_whitespace)
        && let Ok(key) = PublicKey::from_openssh(rest.trim())
    {
        return Ok(key);
    }
    Err(anyhow!(
        "source.remote.known_host_key is not an OpenSSH public key line \
         (expected e.g. \"ssh-ed25519 AAAA...\")"
    ))
}

/// Host key algorithms to offer: the pinned key's first (RSA: rsa-sha2 only), so a server
/// with several host keys presents the pinned one; then the other defaults, so a server
/// that lacks the pinned kind presents another key and fails loudly as a mismatch rather
/// than as an obscure negotiation error. SHA-1 `ssh-rsa` is never offered.
pub(super) fn host_key_algorithms(key: &PublicKey) -> Vec<Algorithm> {
    let mut algs = match key.algorithm() {
        Algorithm::Rsa { .. } => vec![
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        ],
        other => vec![other],
    };
    for alg in russh::Preferred::DEFAULT.key.iter() {
        if !algs.contains(alg) && *alg != (Algorithm::Rsa { hash: None }) {
            algs.push(alg.clone());
        }
    }
    algs
}

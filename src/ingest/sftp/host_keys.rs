//! SSH host keys of the built-in SFTP server: created on first start, kept across restarts.
//!
//! Keys live in OpenSSH format (`ssh_host_ed25519_key`, and `ssh_host_rsa_key` only when the
//! RSA host key is enabled, each with a `.pub` beside it) so that an operator can read their
//! fingerprints with `ssh-keygen -l`.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use russh::keys::ssh_key::private::{KeypairData, RsaKeypair};
use russh::keys::ssh_key::{self, LineEnding};
use russh::keys::{Algorithm, HashAlg, PrivateKey};

/// File name of the ed25519 host key inside the host key directory.
pub const ED25519_FILE: &str = "ssh_host_ed25519_key";
/// File name of the RSA host key inside the host key directory (`source.rsa_host_key` only).
pub const RSA_FILE: &str = "ssh_host_rsa_key";
/// Size of a newly generated RSA host key; ssh-audit and SPEC §8 want at least 3072.
pub const RSA_BITS: usize = 3072;

/// Loads the host keys from `dir`, creating missing ones (mode 0600).
///
/// ed25519 always; RSA (≥ 3072 bits) only when `rsa` is set (`source.rsa_host_key`, SPEC §8):
/// signing with the `rsa` crate has an unfixed timing side channel (RUSTSEC-2023-0071), so
/// without `rsa` the RSA key file is neither created nor read. One left over from an
/// earlier run is kept, not deleted, and a warning says it is not offered. Logs each loaded
/// key's SHA-256 fingerprint at info level.
pub fn load_or_create(dir: &Path, rsa: bool) -> anyhow::Result<Vec<PrivateKey>> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("while creating the host key directory {}", dir.display()))?;

    let mut keys = vec![load_or_create_one(dir, KeyKind::Ed25519)?];
    let rsa_path = dir.join(RSA_FILE);
    if rsa {
        keys.push(load_or_create_one(dir, KeyKind::Rsa)?);
    } else if fs::symlink_metadata(&rsa_path).is_ok() {
        // Only its presence is checked: the file is not opened.
        tracing::warn!(path = %rsa_path.display(),
            "RSA host key file not used: source.rsa_host_key is off, so only the ed25519 \
             host key is offered (a client that pinned only the RSA key must accept the \
             ed25519 one, or set source.rsa_host_key = true)");
    }
    Ok(keys)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Ed25519,
    Rsa,
}

impl KeyKind {
    fn file_name(self) -> &'static str {
        match self {
            KeyKind::Ed25519 => ED25519_FILE,
            KeyKind::Rsa => RSA_FILE,
        }
    }
}

fn load_or_create_one(dir: &Path, kind: KeyKind) -> anyhow::Result<PrivateKey> {
    let path = dir.join(kind.file_name());
    let (key, created) = match fs::metadata(&path) {
        Ok(_) => (load(&path, kind)?, false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (create(dir, &path, kind)?, true),
        Err(e) => {
            return Err(e).with_context(|| format!("while reading host key {}", path.display()));
        }
    };
    tracing::info!(
        path = %path.display(),
        algorithm = %key.algorithm(),
        fingerprint = %key.fingerprint(HashAlg::Sha256),
        created,
        "SSH host key"
    );
    Ok(key)
}

fn load(path: &Path, kind: KeyKind) -> anyhow::Result<PrivateKey> {
    let meta =
        fs::metadata(path).with_context(|| format!("while reading host key {}", path.display()))?;
    if !meta.is_file() {
        bail!("host key {} is not a regular file", path.display());
    }
    // sshd refuses group/world-readable keys; we repair them instead of refusing to start,
    // and say so loudly.
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "host key was readable by others; setting mode 0600");
        fs::set_permissions(path, Permissions::from_mode(0o600))
            .with_context(|| format!("while restricting permissions of {}", path.display()))?;
    }
    let text = fs::read_to_string(path)
        .with_context(|| format!("while reading host key {}", path.display()))?;
    let key = PrivateKey::from_openssh(&text)
        .with_context(|| format!("host key {} is not an OpenSSH private key", path.display()))?;
    if key.is_encrypted() {
        bail!(
            "host key {} is protected by a passphrase; the server needs an unencrypted key",
            path.display()
        );
    }
    match (kind, key.key_data()) {
        (KeyKind::Ed25519, KeypairData::Ed25519(_)) => {}
        (KeyKind::Rsa, KeypairData::Rsa(rsa)) => {
            let bits = rsa.key_size();
            if (bits as usize) < RSA_BITS {
                bail!(
                    "RSA host key {} has {bits} bits; at least {RSA_BITS} are required \
                     (delete it to have a new one generated)",
                    path.display()
                );
            }
        }
        _ => bail!(
            "host key {} holds a {} key, expected {}",
            path.display(),
            key.algorithm(),
            match kind {
                KeyKind::Ed25519 => "ssh-ed25519",
                KeyKind::Rsa => "RSA",
            }
        ),
    }
    Ok(key)
}

fn create(dir: &Path, path: &Path, kind: KeyKind) -> anyhow::Result<PrivateKey> {
    let mut rng = russh::keys::key::safe_rng();
    let mut key = match kind {
        KeyKind::Ed25519 => PrivateKey::random(&mut rng, Algorithm::Ed25519)
            .context("while generating the ed25519 host key")?,
        KeyKind::Rsa => {
            let pair = RsaKeypair::random(&mut rng, RSA_BITS)
                .context("while generating the RSA host key")?;
            PrivateKey::new(KeypairData::Rsa(pair), "")
                .context("while generating the RSA host key")?
        }
    };
    key.set_comment("autoprov host key");
    let private = key
        .to_openssh(LineEnding::LF)
        .context("while encoding the host key")?;
    let public = key
        .public_key()
        .to_openssh()
        .context("while encoding the host public key")?;

    write_new_file(dir, path, private.as_bytes(), 0o600)?;
    let pub_path = PathBuf::from(format!("{}.pub", path.display()));
    // Public, but inside a 0700 folder: 0644 would grant nothing, and no file autoprov
    // writes is readable by others.
    write_new_file(dir, &pub_path, format!("{public}\n").as_bytes(), 0o640)?;
    sync_dir(dir)?;
    Ok(key)
}

/// Writes `bytes` to `path` via a temporary file and a rename, so that a crash never
/// leaves a half-written key behind.
fn write_new_file(dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // The mode given to open() is filtered by the umask; set it exactly.
        f.set_permissions(Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("while writing {}", path.display()))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("while syncing directory {}", dir.display()))
}

/// The SHA-256 fingerprint of a key as OpenSSH prints it (`SHA256:...`).
pub fn fingerprint(key: &PrivateKey) -> ssh_key::Fingerprint {
    key.fingerprint(HashAlg::Sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn without_rsa_only_ed25519_is_created_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), false).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].algorithm(), Algorithm::Ed25519);
        assert_eq!(mode(&dir.path().join(ED25519_FILE)), 0o600);
        assert_eq!(mode(&dir.path().join(format!("{ED25519_FILE}.pub"))), 0o640);
        assert!(!dir.path().join(RSA_FILE).exists());

        let second = load_or_create(dir.path(), false).unwrap();
        assert_eq!(fingerprint(&first[0]), fingerprint(&second[0]));
        assert!(!dir.path().join(RSA_FILE).exists());
    }

    #[test]
    fn without_rsa_an_rsa_key_file_is_not_read() {
        // Garbage would be refused if it were read: it is left alone, unread.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(RSA_FILE), "not a key").unwrap();
        let keys = load_or_create(dir.path(), false).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].algorithm(), Algorithm::Ed25519);
        assert_eq!(
            fs::read_to_string(dir.path().join(RSA_FILE)).unwrap(),
            "not a key"
        );
        assert!(load_or_create(dir.path(), true).is_err());
    }

    #[test]
    fn with_rsa_adds_a_3072_bit_key_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let keys = load_or_create(dir.path(), true).unwrap();
        assert_eq!(keys.len(), 2);
        match keys[1].key_data() {
            KeypairData::Rsa(rsa) => assert!(rsa.key_size() >= 3072),
            other => panic!("expected RSA, got {other:?}"),
        }
        assert_eq!(mode(&dir.path().join(RSA_FILE)), 0o600);
        let again = load_or_create(dir.path(), true).unwrap();
        assert_eq!(fingerprint(&keys[0]), fingerprint(&again[0]));
        assert_eq!(fingerprint(&keys[1]), fingerprint(&again[1]));
    }

    #[test]
    fn loose_permissions_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path(), false).unwrap();
        let p = dir.path().join(ED25519_FILE);
        fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        load_or_create(dir.path(), false).unwrap();
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn a_key_of_the_wrong_type_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path(), false).unwrap();
        fs::copy(dir.path().join(ED25519_FILE), dir.path().join(RSA_FILE)).unwrap();
        let err = load_or_create(dir.path(), true).unwrap_err();
        assert!(format!("{err:#}").contains("expected RSA"), "{err:#}");
    }

    #[test]
    fn garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(ED25519_FILE), "not a key").unwrap();
        assert!(load_or_create(dir.path(), false).is_err());
    }
}

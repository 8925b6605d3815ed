//! The algorithm lists the SFTP server offers, per `source.ssh_profile` (SPEC §8).

use std::borrow::Cow;

use russh::keys::{Algorithm, HashAlg};
use russh::{Preferred, cipher, compression, kex, mac};

use crate::config::SshProfile;

/// Host key and user signature algorithms of both profiles (see [`preferred`]).
static KEY_ALGORITHMS: [Algorithm; 3] = [
    Algorithm::Ed25519,
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// The algorithm lists of a profile (SPEC §8). Compression is always off.
///
/// russh uses `key` twice: as the host key algorithms, of which it offers only those it
/// holds a key for (so rsa-sha2 only with an RSA host key, see
/// [`load_or_create`](super::host_keys::load_or_create)),
/// and as the `server-sig-algs` the client may sign with, where rsa-sha2 must stay in every
/// profile so that users' RSA keys work. SHA-1 `ssh-rsa` is in neither.
pub fn preferred(profile: SshProfile) -> Preferred {
    // The ext-info and strict-kex markers are pseudo-algorithms russh must see in the kex
    // list to send server-sig-algs and to enable strict key exchange (Terrapin).
    const MARKERS: [kex::Name; 2] = [
        kex::EXTENSION_SUPPORT_AS_SERVER,
        kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
    ];
    match profile {
        SshProfile::Compatible => Preferred {
            kex: Cow::Owned(
                [
                    kex::MLKEM768X25519_SHA256,
                    kex::CURVE25519,
                    kex::CURVE25519_PRE_RFC_8731,
                ]
                .into_iter()
                .chain(MARKERS)
                .collect(),
            ),
            key: Cow::Borrowed(&KEY_ALGORITHMS),
            host_key_certificates: Cow::Borrowed(&[]),
            cipher: Cow::Owned(vec![
                cipher::CHACHA20_POLY1305,
                cipher::AES_256_GCM,
                cipher::AES_128_GCM,
                cipher::AES_256_CTR,
                cipher::AES_192_CTR,
                cipher::AES_128_CTR,
            ]),
            mac: Cow::Owned(vec![
                mac::HMAC_SHA512_ETM,
                mac::HMAC_SHA256_ETM,
                mac::HMAC_SHA512,
                mac::HMAC_SHA256,
            ]),
            compression: Cow::Owned(vec![compression::NONE]),
        },
        SshProfile::Strict => Preferred {
            kex: Cow::Owned(
                [kex::MLKEM768X25519_SHA256]
                    .into_iter()
                    .chain(MARKERS)
                    .collect(),
            ),
            key: Cow::Borrowed(&KEY_ALGORITHMS),
            host_key_certificates: Cow::Borrowed(&[]),
            cipher: Cow::Owned(vec![
                cipher::CHACHA20_POLY1305,
                cipher::AES_256_GCM,
                cipher::AES_128_GCM,
            ]),
            mac: Cow::Owned(vec![mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM]),
            compression: Cow::Owned(vec![compression::NONE]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_offer_no_weak_algorithms() {
        for profile in [SshProfile::Compatible, SshProfile::Strict] {
            let p = preferred(profile);
            let kex: Vec<&str> = p.kex.iter().map(|k| k.as_ref()).collect();
            assert!(
                kex.iter()
                    .all(|k| !k.contains("nistp") && !k.contains("sha1")),
                "{kex:?}"
            );
            assert!(
                p.key
                    .iter()
                    .all(|a| !matches!(a, Algorithm::Ecdsa { .. } | Algorithm::Dsa))
            );
            assert!(!p.key.contains(&Algorithm::Rsa { hash: None }));
            assert_eq!(p.compression.len(), 1);
            assert!(kex.contains(&"kex-strict-s-v00@openssh.com"));
        }
        let strict = preferred(SshProfile::Strict);
        let kex: Vec<&str> = strict.kex.iter().map(|k| k.as_ref()).collect();
        assert_eq!(kex[0], "mlkem768x25519-sha256");
        assert!(!kex.iter().any(|k| k.starts_with("curve25519")));
        // Host keys offered follow the keys held; rsa-sha2 stays for users' RSA keys.
        assert_eq!(strict.key.as_ref(), &KEY_ALGORITHMS);
        assert!(strict.mac.iter().all(|m| m.as_ref().contains("-etm@")));
        assert!(strict.cipher.iter().all(|c| {
            let c: &str = c.as_ref();
            c.contains("gcm") || c.contains("chacha20")
        }));
    }
}

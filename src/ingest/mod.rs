//! Where files come from: the SFTP server (host mode), the watchers, the HRIS fetcher, and
//! what they share.

pub mod hris;
pub mod poll;
pub mod sftp;
pub mod watch;

use crate::api::error::{Error, Result};
use std::sync::Arc;

/// Called with the message of a failed fetch (HRIS), of polls failing again and again, or
/// of a source that stopped fetching for good (poll: the host key or the login refused);
/// the daemon wires notifications to it.
pub type OnFetchFailed = Arc<dyn Fn(&str) + Send + Sync>;
use crate::config::Config;
use crate::layout::Paths;
use sftp::{SftpSettings, SftpUser};

/// What `run` would refuse at its start that [`Config::validate`] cannot check: checked by
/// `status`, so that it is the config check the example config promises (it had passed
/// configs `run` refused). Host mode: the users' keys and password hashes (read by the SSH
/// library; a config without users serves the commands alone, and `run` says what host
/// mode needs); poll mode: the pinned host key; watch mode: `watch_dir` exists; HRIS mode:
/// `ca_file` holds certificates. Not `[sso] enabled` (read commands work without it, and
/// `status` shows it DISABLED), nor the
/// secret files (the HRIS credentials, poll's private key): the daemon reads them, and may
/// be the only user that can (systemd's `LoadCredential=`); `run` refuses one it cannot
/// read.
pub fn check_config(cfg: &Config) -> anyhow::Result<()> {
    use crate::config::Mode;
    match cfg.source.mode {
        Mode::Host if cfg.source.users.is_empty() => Ok(()),
        Mode::Host => sftp::auth::check_users(&sftp_users(cfg))
            .map_err(|e| anyhow::anyhow!("source.users: {e:#}")),
        Mode::Poll => match &cfg.source.remote {
            Some(remote) => poll::check_remote(remote),
            None => Ok(()),
        },
        Mode::Watch => match cfg.source.watch_dir.try_exists() {
            Ok(false) => anyhow::bail!(
                "source.watch_dir = {:?} does not exist",
                cfg.source.watch_dir
            ),
            _ => Ok(()),
        },
        // A CA file this user may not read is not checkable from here (systemd's
        // credentials, a daemon-only file): `run` checks it, as for watch_dir.
        Mode::Hris => match &cfg.source.hris {
            Some(hris) if readable(&hris.ca_file) => hris::http::ca_certs(hris).map(drop),
            _ => Ok(()),
        },
    }
}

/// Whether `path` can be opened by this user, or is missing (which is an error to show).
fn readable(path: &std::path::Path) -> bool {
    match std::fs::File::open(path) {
        Err(e) => e.kind() != std::io::ErrorKind::PermissionDenied,
        Ok(_) => true,
    }
}

/// The configured SFTP users.
fn sftp_users(cfg: &Config) -> Vec<SftpUser> {
    cfg.source
        .users
        .iter()
        .map(|u| SftpUser {
            name: u.name.clone(),
            authorized_keys: u.authorized_keys.clone(),
            password_hash: u.password_hash.clone(),
        })
        .collect()
}

/// The SFTP server's settings from the config.
pub fn sftp_settings(cfg: &Config, paths: &Paths) -> Result<SftpSettings> {
    if cfg.source.users.is_empty() {
        return Err(Error::usage(format!(
            "invalid config {}: source.mode = \"host\" needs at least one [[source.users]] \
             entry with authorized_keys",
            cfg.file.display()
        )));
    }
    Ok(SftpSettings {
        listen: cfg.source.listen,
        profile: cfg.source.ssh_profile,
        rsa_host_key: cfg.source.rsa_host_key,
        users: sftp_users(cfg),
        max_upload_bytes: cfg.source.max_upload_bytes,
        host_key_dir: paths.host_keys.clone(),
        drop_root: paths.drop.clone(),
        auth_deadline: cfg.source.auth_deadline,
        idle_timeout: cfg.source.idle_timeout,
        max_connections_per_ip: cfg.source.max_connections_per_ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        Config::load(Some(f.path())).unwrap()
    }

    #[test]
    fn the_users_the_server_would_refuse_are_a_config_error_before_it_starts() {
        let user = |keys: &str| {
            format!("[source]\nmode = \"host\"\n[[source.users]]\nname = \"hr\"\n{keys}\n")
        };
        for (keys, says) in [
            (
                "authorized_keys = [\"ssh-ed25519 GARBAGE hr\"]",
                "authorized_keys entry 1",
            ),
            (
                "password_hash = \"plaintext\"",
                "password_hash is not a PHC string",
            ),
            (
                "authorized_keys = []",
                "neither authorized_keys nor password_hash",
            ),
        ] {
            let err = format!("{:#}", check_config(&config(&user(keys))).unwrap_err());
            assert!(err.starts_with("source.users: "), "{err}");
            assert!(err.contains(says), "{keys}: {err}");
        }
        let key = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/keys/hris_ed25519.pub"
        ))
        .unwrap();
        let good = user(&format!("authorized_keys = [{:?}]", key.trim()));
        check_config(&config(&good)).unwrap();
        // Not host mode: the users are not the server's.
        let poll = user("authorized_keys = [\"ssh-ed25519 GARBAGE hr\"]")
            .replace("mode = \"host\"", "mode = \"watch\"\nwatch_dir = \"/tmp\"");
        check_config(&config(&poll)).unwrap();
    }

    /// `status`, the config check, refuses what `run` would in poll and watch mode: a
    /// pinned host key that is not one, a watch_dir that does not exist (both had passed).
    #[test]
    fn status_checks_poll_and_watch_settings_as_run_does() {
        let dir = tempfile::tempdir().unwrap();
        let remote = |key: &str| {
            format!(
                "[source]\nmode = \"poll\"\n[source.remote]\nhost = \"h\"\nuser = \"u\"\n\
                 private_key = \"/nonexistent/id\"\nknown_host_key = {key:?}\ninbox = \"i\"\n\
                 processed = \"p\"\nrejected = \"r\"\n"
            )
        };
        let err = format!(
            "{:#}",
            check_config(&config(&remote("garbage"))).unwrap_err()
        );
        assert!(err.contains("known_host_key"), "{err}");
        let host_key = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/keys/hris_ed25519.pub"
        ))
        .unwrap();
        // The private key is not read: the daemon may be the only user that can.
        check_config(&config(&remote(host_key.trim()))).unwrap();
        let watch = |path: &std::path::Path| {
            format!(
                "[source]\nmode = \"watch\"\nwatch_dir = {:?}\n",
                path.display().to_string()
            )
        };
        let missing = dir.path().join("missing");
        let err = format!("{:#}", check_config(&config(&watch(&missing))).unwrap_err());
        assert!(err.contains("does not exist"), "{err}");
        check_config(&config(&watch(dir.path()))).unwrap();
        // Host mode without users serves the commands alone.
        check_config(&config("[source]\nmode = \"host\"\n")).unwrap();
        // HRIS mode: a CA file that cannot be read, or holds no certificate (not a secret).
        let hris = |ca: &str| {
            format!(
                "[source]\nmode = \"hris\"\n[source.hris]\nprovider = \"csv_url\"\n\
                 ca_file = {ca:?}\n[source.hris.csv_url]\nurl = \"https://x/r.csv\"\n"
            )
        };
        let err = format!(
            "{:#}",
            check_config(&config(&hris("/nonexistent.pem"))).unwrap_err()
        );
        assert!(err.contains("source.hris.ca_file"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = format!(
            "{:#}",
            check_config(&config(&hris(empty.to_str().unwrap()))).unwrap_err()
        );
        assert!(err.contains("no PEM certificate"), "{err}");
        check_config(&config(&hris(""))).unwrap();
    }
}

//! `[source.remote]`: the SFTP server poll mode fetches from.

use anyhow::bail;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `[source.remote]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remote {
    /// Host name or address. Required, as are `user`, `private_key`, `known_host_key` and
    /// the three folders: checked once the environment's overrides are read (a key missing
    /// from the file had left the rest of the file's keys unchecked).
    #[serde(default)]
    pub host: String,
    /// Port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Login name.
    #[serde(default)]
    pub user: String,
    /// Path of the private key file.
    #[serde(default)]
    pub private_key: PathBuf,
    /// The server's pinned host key (OpenSSH public key line).
    #[serde(default)]
    pub known_host_key: String,
    /// Remote folder to take files from.
    #[serde(default)]
    pub inbox: String,
    /// Remote folder for processed files.
    #[serde(default)]
    pub processed: String,
    /// Remote folder for rejected files.
    #[serde(default)]
    pub rejected: String,
    /// How often to look.
    #[serde(
        default = "default_poll_interval",
        deserialize_with = "super::duration"
    )]
    pub poll_interval: Duration,
    /// Time allowed for each network step (connect, list, read, write).
    #[serde(
        default = "default_remote_timeout",
        deserialize_with = "super::duration"
    )]
    pub timeout: Duration,
}

impl Remote {
    /// `processed` and `rejected` are other folders than `inbox`: a file moved into the
    /// inbox it was listed in (under a new name) was fetched and applied again at every
    /// poll, an older roster after a newer one, and its reports fetched as rosters.
    pub(super) fn check_folders(&self) -> anyhow::Result<()> {
        let given = [
            ("host", self.host.as_str()),
            ("user", &self.user),
            ("known_host_key", &self.known_host_key),
            ("inbox", &self.inbox),
            ("processed", &self.processed),
            ("rejected", &self.rejected),
        ];
        for (key, value) in given {
            if value.trim().is_empty() {
                bail!("source.remote.{key} is missing or empty: [source.remote] needs it");
            }
        }
        if self.private_key.as_os_str().is_empty() {
            bail!("source.remote.private_key is missing or empty: [source.remote] needs it");
        }
        // As written, `.` and `..` resolved (`in/processed/..` is `in`); the server's own view
        // (symlinks, a relative path against an absolute one) is checked at every poll.
        let folder = |path: &str| -> Vec<String> {
            let mut parts: Vec<String> = Vec::new();
            for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
                match part {
                    ".." if parts.last().is_some_and(|last| last != "..") => {
                        parts.pop();
                    }
                    part => parts.push(part.to_string()),
                }
            }
            parts
        };
        let inbox = folder(&self.inbox);
        for (key, path) in [("processed", &self.processed), ("rejected", &self.rejected)] {
            if folder(path) == inbox {
                bail!(
                    "source.remote.{key} = {path:?} is the remote inbox ({:?}): files moved there would be fetched again; name another folder (e.g. \"{}/{key}\")",
                    self.inbox,
                    self.inbox.trim_end_matches('/')
                );
            }
        }
        Ok(())
    }
}

fn default_remote_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_ssh_port() -> u16 {
    22
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(300)
}

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

/// The SFTP server's settings from the config.
pub fn sftp_settings(cfg: &Config, paths: &Paths) -> Result<SftpSettings> {
    if cfg.source.users.is_empty() {
        return Err(Error::usage(
            "source.mode = \"host\" needs at least one [[source.users]] entry with authorized_keys",
        ));
    }
    Ok(SftpSettings {
        listen: cfg.source.listen,
        profile: cfg.source.ssh_profile,
        rsa_host_key: cfg.source.rsa_host_key,
        users: cfg
            .source
            .users
            .iter()
            .map(|u| SftpUser {
                name: u.name.clone(),
                authorized_keys: u.authorized_keys.clone(),
                password_hash: u.password_hash.clone(),
            })
            .collect(),
        max_upload_bytes: cfg.source.max_upload_bytes,
        host_key_dir: paths.host_keys.clone(),
        drop_root: paths.drop.clone(),
        auth_deadline: cfg.source.auth_deadline,
        idle_timeout: cfg.source.idle_timeout,
        max_connections_per_ip: cfg.source.max_connections_per_ip,
    })
}

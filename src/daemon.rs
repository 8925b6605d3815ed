//! The long-running service: wires the SFTP server, the watcher, the pipeline worker and
//! the control socket together, and stops cleanly on SIGTERM.

use crate::config::Config;
use anyhow::{Result, bail};

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<()> {
    if !cfg.sso.enabled {
        bail!("[sso] enabled = true is not set: autoprov refuses to provision without SSO");
    }
    bail!("the daemon is not built yet (issue 3); use `autoprov process FILE`")
}

//! Where the paths of a config lead: relative ones are its file's folder's.

use super::Config;
use std::path::{Path, PathBuf};

impl Config {
    /// Makes the relative paths of the config relative to the folder of its file
    /// `config_file` (absolute), not to the working directory of whoever runs a command: a
    /// `rules add` run from another folder with the quick-start config had made a new,
    /// empty store there, answered "added", and the daemon never saw the rule. An empty
    /// path stays empty (not set).
    pub(super) fn anchor_paths(&mut self, config_file: &Path) {
        let base = config_file.parent().unwrap_or(Path::new("/"));
        let anchor = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = crate::util::lexical(&base.join(&*p));
            }
        };
        anchor(&mut self.data_dir);
        anchor(&mut self.control.socket);
        anchor(&mut self.source.watch_dir);
        if let Some(remote) = self.source.remote.as_mut() {
            anchor(&mut remote.private_key);
        }
        if let Some(hris) = self.source.hris.as_mut() {
            anchor(&mut hris.ca_file);
            if let Some(b) = hris.bamboohr.as_mut() {
                anchor(&mut b.api_key_file);
            }
            if let Some(w) = hris.workday.as_mut() {
                anchor(&mut w.password_file);
                anchor(&mut w.client_secret_file);
                anchor(&mut w.refresh_token_file);
            }
            if let Some(c) = hris.csv_url.as_mut() {
                anchor(&mut c.bearer_token_file);
                anchor(&mut c.password_file);
            }
        }
        if let Some(tokens) = self.web.api_tokens_file.as_mut() {
            anchor(tokens);
        }
        if let Some(hook) = self.notify.webhook_url_file.as_mut() {
            anchor(hook);
        }
    }
}

/// `path` with its symlinks resolved when it exists (a `watch_dir` linked to a folder of
/// `data_dir` is that folder), else made absolute against the working folder, `.` and `..`
/// taken away by name (the folders need not exist yet).
pub(super) fn resolved(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| {
        crate::util::lexical(&std::env::current_dir().unwrap_or_default().join(path))
    })
}

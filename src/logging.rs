//! tracing to stderr, as text or JSON (journald picks it up).

use crate::config::{Config, LogFormat};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber; `RUST_LOG` wins over `log.level`.
pub fn init(cfg: &Config, format_override: Option<LogFormat>) {
    // russh logs every connection step at info; keep it at warn unless asked for.
    let level = if cfg.log.level.contains("russh") {
        cfg.log.level.clone()
    } else {
        format!("{},russh=warn,russh_sftp=warn", cfg.log.level)
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // A log line that cannot be written is lost, never a panic: tracing-subscriber
        // reports such a failure with `eprintln!`, which panics when stderr is gone (a
        // closed pipe, journald restarted), in whatever thread logged, e.g. one of sled's
        // writers, after which a flush waits for it forever.
        .log_internal_errors(false);
    let result = match format_override.unwrap_or(cfg.log.format) {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    let _ = result;
}

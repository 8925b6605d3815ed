//! tracing to stderr, as text or JSON (journald picks it up).

use crate::config::{Config, LogFormat};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
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
    let format = format_override.unwrap_or(cfg.log.format);
    JSON.store(matches!(format, LogFormat::Json), Ordering::Relaxed);
    let result = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    let _ = result;
}

/// Whether the log is JSON ([`init`]).
static JSON: AtomicBool = AtomicBool::new(false);

/// Text a client gave (a user name, a file name, a path), as a log field's value: quoted,
/// its quotes and control characters escaped, in the text format, where a bare ` key=…` in
/// it had read as a field of its own (a failed login's line had named another key); as it
/// is in JSON, whose values are quoted and escaped already (quoted twice, they no longer
/// matched the same names elsewhere).
pub struct ClientText<'a>(pub &'a str);

impl std::fmt::Display for ClientText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match JSON.load(Ordering::Relaxed) {
            true => f.write_str(self.0),
            false => write!(f, "{:?}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quoted in text, where a space and `=` in a name had added a field; as it is in JSON.
    #[test]
    fn client_text_is_quoted_in_text_only() {
        let name = "hris key=SHA256:x \"y\"";
        assert_eq!(ClientText(name).to_string(), r#""hris key=SHA256:x \"y\"""#);
        JSON.store(true, Ordering::Relaxed);
        let raw = ClientText(name).to_string();
        JSON.store(false, Ordering::Relaxed);
        assert_eq!(raw, name);
    }
}

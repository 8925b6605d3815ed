//! The last fetch's outcome kept across restarts (`data_dir/hris-state`): `status` and
//! `/healthz` say after a restart what they said before it. Kept in memory only, a restart
//! (an upgrade, a reboot) had shown a source whose credentials were refused as healthy
//! until the next scheduled fetch, up to a day later, and "last success never" after one.

use super::HrisState;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::SystemTime;

/// What is kept: the provider it is about, and the outcomes `status` shows.
#[derive(Serialize, Deserialize)]
struct Kept {
    provider: String,
    last_success: Option<SystemTime>,
    last_file: Option<String>,
    last_error: Option<(SystemTime, String)>,
    /// Whether the latest fetch failed (a state kept by an earlier build has none: then
    /// the error newer than the success).
    #[serde(default)]
    latest_failed: Option<bool>,
}

/// The state kept at `path` for `provider`: empty when there is none, when it is about
/// another provider (the config changed: its failures say nothing of this one), or when
/// it cannot be read (logged).
pub fn load(path: &Path, provider: &str) -> HrisState {
    let kept = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Kept>(&bytes).map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HrisState::default(),
        Err(e) => Err(e.to_string()),
    };
    match kept {
        Ok(kept) if kept.provider == provider => {
            let latest_failed =
                kept.latest_failed
                    .unwrap_or(match (&kept.last_error, kept.last_success) {
                        (Some((failed, _)), Some(succeeded)) => *failed > succeeded,
                        (failed, _) => failed.is_some(),
                    });
            HrisState {
                last_success: kept.last_success,
                last_file: kept.last_file,
                last_error: kept.last_error,
                latest_failed,
                ..HrisState::default()
            }
        }
        Ok(_) => HrisState::default(),
        Err(e) => {
            tracing::warn!(
                "{}: {e}: the last fetch's outcome is not known",
                path.display()
            );
            HrisState::default()
        }
    }
}

/// Keeps `state`'s outcomes at `path` (logged when it cannot: `status` is then right until
/// the next restart).
pub fn save(path: &Path, provider: &str, state: &HrisState) {
    let kept = Kept {
        provider: provider.to_string(),
        last_success: state.last_success,
        last_file: state.last_file.clone(),
        last_error: state.last_error.clone(),
        latest_failed: Some(state.latest_failed),
    };
    let written = crate::util::write_atomic_with(path, |w| {
        serde_json::to_writer(&mut *w, &kept).map_err(std::io::Error::other)
    });
    if let Err(e) = written {
        tracing::warn!(
            "{}: {e}: the last fetch's outcome is not kept across a restart",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_known_again_after_a_restart_for_the_same_provider_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hris-state");
        assert!(!load(&path, "workday").failing(), "nothing kept yet");
        let state = HrisState {
            last_success: Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10)),
            last_file: Some("hris-workday-x.csv".into()),
            last_error: Some((
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(20),
                "credentials refused".into(),
            )),
            latest_failed: true,
            ..HrisState::default()
        };
        save(&path, "workday", &state);
        let again = load(&path, "workday");
        assert!(again.failing());
        assert_eq!(again.last_success, state.last_success);
        assert_eq!(again.last_file, state.last_file);
        assert_eq!(again.last_error, state.last_error);
        assert!(!load(&path, "bamboohr").failing(), "another provider's");
        // An error stamped later than a success that came after it (the clock ran ahead
        // then): the order of the outcomes says it is over.
        let ahead = HrisState {
            latest_failed: false,
            ..state.clone()
        };
        save(&path, "workday", &ahead);
        assert!(!load(&path, "workday").failing());
        // A state an earlier build kept (no order): the times say.
        std::fs::write(
            &path,
            br#"{"provider":"workday","last_success":{"secs_since_epoch":10,"nanos_since_epoch":0},"last_file":null,"last_error":[{"secs_since_epoch":20,"nanos_since_epoch":0},"x"]}"#,
        )
        .unwrap();
        assert!(load(&path, "workday").failing());
        std::fs::write(&path, b"{not json").unwrap();
        assert!(!load(&path, "workday").failing(), "unreadable: unknown");
    }
}

//! The events of SPEC §10 and the JSON object posted for each:
//! `{"event": E, "file": name or null, "summary": "...", "text": "..."}`, where `text` is
//! one sentence for a person (Slack and Teams incoming webhooks show it as is).

use crate::api::Error;
use crate::core::report::{Report, ReportStatus};
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// Which event (the `event` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A file exceeded a safety limit and waits for `files approve|reject`.
    FileHeld,
    /// A file was invalid and changed nothing.
    FileRejected,
    /// Processing a file failed (I/O or store); it is retried.
    FileFailed,
    /// Fetching from the HRIS failed.
    FetchFailed,
    /// No file was applied for `notify.stale_after`.
    Stale,
}

impl EventKind {
    /// The name in the JSON and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::FileHeld => "file_held",
            EventKind::FileRejected => "file_rejected",
            EventKind::FileFailed => "file_failed",
            EventKind::FetchFailed => "fetch_failed",
            EventKind::Stale => "stale",
        }
    }
}

/// One event, serialized as the body of one POST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Which event.
    pub event: EventKind,
    /// The file's name as it arrived (`null` for `fetch_failed` and `stale`).
    pub file: Option<String>,
    /// A short machine-friendly summary (counts, error count, cause).
    pub summary: String,
    /// One line for a person.
    pub text: String,
    /// Written once the event is delivered (not posted): the `stale` event's marker, so
    /// that a quiet spell whose notice was never delivered is reported again after a
    /// restart.
    #[serde(skip)]
    pub once_delivered: Option<(std::path::PathBuf, String)>,
}

/// Longest `summary` and `text`: a long error chain or many safety reasons are cut (the
/// report and `autoprov status` have them whole).
const MAX_SUMMARY: usize = 300;
const MAX_TEXT: usize = 1000;

impl Event {
    fn new(event: EventKind, file: Option<&str>, summary: String, text: String) -> Event {
        Event {
            event,
            file: file.map(str::to_string),
            summary: one_line(&summary, MAX_SUMMARY),
            text: one_line(&literal(&text), MAX_TEXT),
            once_delivered: None,
        }
    }

    /// A file the engine held: why, and the commands that decide it.
    pub fn file_held(id: u64, report: &Report) -> Event {
        let why = if report.held_because.is_empty() {
            "it exceeds a safety limit".to_string()
        } else {
            report.held_because.join("; ")
        };
        Event::new(
            EventKind::FileHeld,
            Some(&report.file),
            format!("held: {}", crate::store::summary(report)),
            format!(
                "autoprov held {} (file {id}){} and changed nothing: {why}. Later files wait until \
                 someone runs `autoprov files approve {id}` or `autoprov files reject {id}`.",
                report.file,
                filed_as("held", report),
            ),
        )
    }

    /// A file the engine rejected: how many errors, and the first.
    pub fn file_rejected(id: u64, report: &Report) -> Event {
        let count = report.errors.len() + report.more_errors;
        let first = report
            .errors
            .first()
            .map(|e| format!(", the first: {e}"))
            .unwrap_or_default();
        Event::new(
            EventKind::FileRejected,
            Some(&report.file),
            format!("rejected: {}", crate::store::summary(report)),
            format!(
                "autoprov rejected {} (file {id}){} and changed nothing: {count} {}{first}.",
                report.file,
                filed_as("rejected", report),
                if count == 1 { "error" } else { "errors" },
            ),
        )
    }

    /// Processing `inbox/<name>` failed; what failed, and what happens next (`next`, for a
    /// file that never reached inbox/).
    pub fn file_failed(name: &str, error: &Error, next: Option<&str>) -> Event {
        let cause = error.cause();
        let next = match error.committed() {
            Some(c) if c.applied => {
                "Its changes were recorded; the filing is finished at the next scan once the cause is fixed"
            }
            // Rejected, held or a dry run: "changes" had read as a broken roster applied.
            Some(_) => {
                "Its outcome was recorded and changed no admin; the filing is finished at the next scan once the cause is fixed"
            }
            None => next.unwrap_or(
                "Nothing was changed; it stays in inbox/ and is retried at the next scan",
            ),
        };
        Event::new(
            EventKind::FileFailed,
            Some(name),
            format!("failed: {cause}"),
            format!(
                "autoprov could not process {name}: {}. {next}; see `autoprov status`.",
                error.detail()
            ),
        )
    }

    /// Fetching the roster failed (`message` says why; it never holds a secret).
    pub fn fetch_failed(message: &str) -> Event {
        Event::new(
            EventKind::FetchFailed,
            None,
            format!("fetch failed: {message}"),
            format!(
                "autoprov could not fetch the roster from the HR system: {message}. This failure \
                 changed nothing; the next scheduled fetch tries again."
            ),
        )
    }

    /// The remote SFTP server's host key was not the pinned one, or it refused our key:
    /// fetching stopped until the config is fixed and the daemon restarted (`message` says
    /// which; it never holds a secret).
    pub fn fetch_stopped(message: &str) -> Event {
        Event::new(
            EventKind::FetchFailed,
            None,
            format!("fetch stopped: {message}"),
            format!(
                "autoprov STOPPED fetching rosters from the remote SFTP server: {message}. \
                 Nothing was changed; verify the server's host key (or the key it authorizes) \
                 with the vendor out of band, fix the config and restart the daemon."
            ),
        )
    }

    /// No file applied for `quiet` (at least `stale_after`), counted from `since`.
    pub fn stale(since: Since, quiet: Duration, stale_after: Duration) -> Event {
        let quiet = humantime::format_duration(Duration::from_secs(quiet.as_secs()));
        let after = humantime::format_duration(stale_after);
        let since = match since {
            Since::LastApplied(at) => format!("the last applied file, at {}", rfc3339(at)),
            Since::StartUp(at) => format!("the daemon started at {} with none", rfc3339(at)),
        };
        Event::new(
            EventKind::Stale,
            None,
            format!("no file applied for {quiet}"),
            format!(
                "autoprov has applied no roster for {quiet} (since {since}; notify.stale_after = \
                 {after}): is the HR export still running?"
            ),
        )
    }

    /// The event a person should hear of for a file the engine filed, if any: held and
    /// rejected files; not applied files, dry runs (rejected ones too: an admin trying a
    /// file had alerted the channel), nor a person's own decision.
    pub fn of_filed(id: u64, report: &Report, decided_by: Option<&str>) -> Option<Event> {
        if decided_by.is_some() || crate::layout::is_dry_run(&report.file) {
            return None;
        }
        match report.status {
            ReportStatus::Held => Some(Event::file_held(id, report)),
            ReportStatus::Rejected => Some(Event::file_rejected(id, report)),
            ReportStatus::Applied | ReportStatus::DryRun => None,
        }
    }
}

/// Where the staleness clock started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// When the last applied file was processed (from the ledger, or applied since).
    LastApplied(SystemTime),
    /// When the daemon started, with no applied file in the ledger.
    StartUp(SystemTime),
}

fn filed_as(folder: &str, report: &Report) -> String {
    report
        .stored_as
        .as_ref()
        .map(|s| format!(", filed as {folder}/{s},"))
        .unwrap_or_default()
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `text` on one line (line breaks and tabs become spaces, and so do Unicode's line and
/// paragraph separators and its format characters, whose direction overrides could turn
/// an alert's text around), at most `max` bytes (cut at a character boundary, never
/// inside an `&…;` that [`literal`] wrote, marked with "…").
pub fn one_line(text: &str, max: usize) -> String {
    let mut line: String = text
        .chars()
        .map(|c| match crate::util::breaks_a_line(c) {
            true => ' ',
            false => c,
        })
        .collect();
    if line.len() > max {
        let mut cut = max.saturating_sub('…'.len_utf8());
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        // By bytes: `&` and `;` are ASCII, never inside a character, so a cut at the `&` is
        // at a boundary; the four bytes before `cut` may begin inside one (a panic in the
        // HRIS loop had stopped every later fetch).
        let tail = &line.as_bytes()[cut.saturating_sub(4)..cut];
        if let Some(amp) = tail.iter().rposition(|&b| b == b'&')
            && !tail[amp..].contains(&b';')
        {
            cut = cut.saturating_sub(4) + amp;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

/// `text` as a Slack- or Teams-compatible hook shows it literally: `&`, `<` and `>` written
/// as `&amp;`, `&lt;` and `&gt;`. A roster cell or a file name quoted in a message could
/// otherwise be read as markup: `<!channel>` notifies a whole channel, `<https://…|Approve>`
/// is a link that shows another text. A Markdown link (`[Approve](https://…)`, which Teams
/// renders) is broken apart the same way: `](` becomes `] (`.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '(' if out.ends_with(']') => out.push_str(" ("),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Finding;
    use serde_json::json;

    fn report(status: ReportStatus) -> Report {
        let mut r = Report::new(
            "roster.csv",
            "ab",
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:06Z",
        );
        r.status = status;
        r.stored_as = Some("20260102T030406Z_roster.csv".into());
        r
    }

    #[test]
    fn a_held_file_names_the_file_the_limit_and_the_commands() {
        let mut r = report(ReportStatus::Held);
        r.counts.deactivated = 12;
        r.held_because =
            vec!["12 deactivations exceed safety.max_deactivations (more than 10)".into()];
        let e = Event::of_filed(7, &r, None).unwrap();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({
                "event": "file_held",
                "file": "roster.csv",
                "summary": "held: created 0, reassigned 0, reactivated 0, role_changed 0, deactivated 12, skipped_manual 0, unchanged 0",
                "text": "autoprov held roster.csv (file 7), filed as held/20260102T030406Z_roster.csv, and changed nothing: 12 deactivations exceed safety.max_deactivations (more than 10). Later files wait until someone runs `autoprov files approve 7` or `autoprov files reject 7`."
            })
        );
    }

    #[test]
    fn a_rejected_file_counts_its_errors_and_shows_the_first() {
        let mut r = report(ReportStatus::Rejected);
        r.errors = vec![
            Finding::at(3, "Work Email", "\"x\" is not an email address"),
            Finding::line(5, "a duplicate employee ID"),
        ];
        r.more_errors = 1;
        let v = serde_json::to_value(Event::of_filed(8, &r, None).unwrap()).unwrap();
        assert_eq!(v["event"], "file_rejected");
        assert_eq!(v["file"], "roster.csv");
        assert_eq!(v["summary"], "rejected: 3 errors");
        assert_eq!(
            v["text"],
            "autoprov rejected roster.csv (file 8), filed as rejected/20260102T030406Z_roster.csv, and changed nothing: 3 errors, the first: line 3, column \"Work Email\": \"x\" is not an email address."
        );
        r.errors.truncate(1);
        r.more_errors = 0;
        let e = Event::file_rejected(8, &r);
        assert!(e.text.contains(": 1 error, the first"), "{}", e.text);
    }

    #[test]
    fn applied_files_dry_runs_and_decisions_by_a_person_are_not_events() {
        assert_eq!(
            Event::of_filed(1, &report(ReportStatus::Applied), None),
            None
        );
        assert_eq!(
            Event::of_filed(1, &report(ReportStatus::DryRun), None),
            None
        );
        assert_eq!(
            Event::of_filed(1, &report(ReportStatus::Rejected), Some("alice")),
            None
        );
        // A dry run rejected is a dry run: an admin trying a file had alerted the channel.
        let mut tried = report(ReportStatus::Rejected);
        tried.file = "roster.DryRun.csv".into();
        assert_eq!(Event::of_filed(1, &tried, None), None);
    }

    #[test]
    fn a_failed_file_says_what_failed_and_whether_anything_changed() {
        let io = || Error::from(std::io::Error::from_raw_os_error(28));
        let e = Event::file_failed(
            "r.csv",
            &io().context("writing the reports of r.csv\nin x"),
            None,
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "file_failed");
        assert_eq!(v["file"], "r.csv");
        assert_eq!(
            v["summary"],
            "failed: No space left on device (os error 28)"
        );
        assert_eq!(
            v["text"],
            "autoprov could not process r.csv: writing the reports of r.csv in x: No space left on device (os error 28). Nothing was changed; it stays in inbox/ and is retried at the next scan; see `autoprov status`."
        );
        let after = io().after_commit(4, "r.csv", true);
        let e = Event::file_failed("r.csv", &after, None);
        assert!(e.text.contains("Its changes were recorded"), "{}", e.text);
        assert!(!e.text.contains("Nothing was changed"), "{}", e.text);
        // A rejected or held file committed changed nothing: not "its changes".
        let e = Event::file_failed("r.csv", &io().after_commit(4, "r.csv", false), None);
        assert!(e.text.contains("changed no admin"), "{}", e.text);
        assert!(!e.text.contains("Its changes"), "{}", e.text);
        // A file that never reached inbox/ says what becomes of it, not "retried".
        let lost = crate::api::Error::failed("the upload of inbox/r.csv could not be written");
        let next = "Nothing was changed; the HR system must send it again";
        let e = Event::file_failed("r.csv", &lost, Some(next));
        assert!(
            e.text.contains(next) && !e.text.contains("retried"),
            "{}",
            e.text
        );
        // A commit made before the failure is said whatever became of the copy.
        let e = Event::file_failed("r.csv", &io().after_commit(4, "r.csv", true), Some(next));
        assert!(e.text.contains("Its changes were recorded") && !e.text.contains(next));
    }

    #[test]
    fn fetch_failed_and_stale_have_no_file() {
        let v =
            serde_json::to_value(Event::fetch_failed("credentials refused (HTTP 401)")).unwrap();
        assert_eq!(
            v,
            json!({
                "event": "fetch_failed",
                "file": null,
                "summary": "fetch failed: credentials refused (HTTP 401)",
                "text": "autoprov could not fetch the roster from the HR system: credentials refused (HTTP 401). This failure changed nothing; the next scheduled fetch tries again."
            })
        );
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let h = |n: u64| Duration::from_secs(n * 3600);
        let v = serde_json::to_value(Event::stale(Since::LastApplied(at), h(37), h(36))).unwrap();
        assert_eq!(
            v,
            json!({
                "event": "stale",
                "file": null,
                "summary": "no file applied for 1day 13h",
                "text": "autoprov has applied no roster for 1day 13h (since the last applied file, at 2026-01-01T00:00:00Z; notify.stale_after = 1day 12h): is the HR export still running?"
            })
        );
        let e = Event::stale(Since::StartUp(at), h(2), h(2));
        assert!(
            e.text
                .contains("since the daemon started at 2026-01-01T00:00:00Z with none"),
            "{}",
            e.text
        );
        let stopped = Event::fetch_stopped("polling h:22: host key mismatch");
        assert_eq!(
            (stopped.event, &stopped.file),
            (EventKind::FetchFailed, &None)
        );
        assert!(stopped.text.contains("STOPPED") && stopped.text.contains("restart"));
        assert!(!stopped.text.contains("tries again"), "{}", stopped.text);
    }

    #[test]
    fn text_is_one_bounded_line() {
        assert_eq!(one_line("a\nb\r\tc", 100), "a b  c");
        assert_eq!(
            one_line("a\u{2028}b\u{2029}c\u{202e}d\u{2066}e\u{200b}f", 100),
            "a b c d e f"
        );
        let long = "é".repeat(600);
        let cut = one_line(&long, 1000);
        assert!(cut.len() <= 1000 && cut.ends_with('…'), "{}", cut.len());
        let e = Event::fetch_failed(&"x".repeat(5000));
        assert!(e.text.len() <= MAX_TEXT && e.summary.len() <= MAX_SUMMARY);
        assert!(!e.text.contains('\n'));
        // Escaped, and cut before an escape rather than inside one.
        let e = Event::fetch_failed(&"<".repeat(5000));
        assert!(e.text.len() <= MAX_TEXT, "{}", e.text.len());
        assert!(e.text.trim_end_matches('…').ends_with("&lt;"), "{}", e.text);
    }

    /// Cut anywhere in text of 2- and 3-byte characters, mixed with ASCII: the four bytes
    /// looked at for an escape may begin inside a character (it had panicked).
    #[test]
    fn a_cut_inside_characters_of_several_bytes_does_not_panic() {
        for text in [
            "漢".repeat(700),
            "Jürgen.Müller;".repeat(200),
            "aé漢".repeat(300),
        ] {
            for max in 990..1010 {
                let cut = one_line(&text, max);
                assert!(
                    cut.len() <= max && cut.ends_with('…'),
                    "{max}: {}",
                    cut.len()
                );
            }
        }
        let e = Event::fetch_failed(&"システムエラー：".repeat(100));
        assert!(e.summary.len() <= MAX_SUMMARY && e.text.len() <= MAX_TEXT);
    }

    /// A roster's cell or a file name quoted in the text is shown as it is, not as markup
    /// of the chat the hook posts to.
    #[test]
    fn markup_in_the_text_is_shown_literally() {
        let e = Event::fetch_failed("bad cell <!channel> & <https://evil.example|Approve>");
        assert!(
            e.text
                .contains("bad cell &lt;!channel&gt; &amp; &lt;https://evil.example|Approve&gt;"),
            "{}",
            e.text
        );
        assert!(!e.text.contains('<') && !e.text.contains('>'));
        // A Markdown link, which Teams renders, is broken apart.
        let e = Event::fetch_failed("cell [Approve the held file](https://evil.example/approve)");
        assert!(
            e.text
                .contains("[Approve the held file] (https://evil.example/approve)"),
            "{}",
            e.text
        );
    }
}

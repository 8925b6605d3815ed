//! `/status`: the daemon's state (mode, last file, waiting, held, last error).

use super::parts::{badge, time};
use super::{Nav, PageCtx, layout};
use maud::{Markup, html};
use serde_json::Value;

/// `/status`: the answer of `status --json`. Fields it lacks are left out, so an answer
/// with more (or fewer) sections still renders.
pub fn status(ctx: &PageCtx, status: &Value) -> Markup {
    let daemon = &status["daemon"];
    let held = status["held"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let waiting = status["waiting"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let body = html! {
        @if let Some(e) = daemon["last_error"].as_str() {
            div.notice.error role="alert" { p { strong { "Last error: " } (e) } }
        }
        @if daemon["hris"]["failing"].as_bool() == Some(true) {
            div.notice.error role="alert" { p {
                strong { "The HR system's fetch is failing: " } (text(&daemon["hris"]["last_error"]))
            } }
        }
        @if let Some(e) = daemon["poll"]["last_error"].as_str() {
            div.notice.error role="alert" { p { strong { "Polling failed: " } (e) } }
        }
        @if let Some(e) = daemon["status_error"].as_str() {
            div.notice.warn { p { "Part of the state could not be read: " (e) } }
        }
        @for f in held {
            div.notice.warn { p {
                "File " a href={ "/files/" (text(&f["id"])) } { (text(&f["id"])) } " (" (text(&f["name"])) ") is held and blocks later files: approve or reject it on the "
                a href="/files" { "Files" } " page."
            } }
        }
        dl.fields {
            // The SFTP server's address where one runs (host mode), as the daemon bound it.
            dt { "Mode" } dd { (text(&status["mode"])) @if let Some(l) = daemon["listen"].as_str() { " on " code { (l) } } }
            @if daemon["hris"].is_object() { dt { "HR system" } dd { (hris(&daemon["hris"])) } }
            @if daemon["poll"].is_object() { dt { "Polling" } dd { (poll(&daemon["poll"])) } }
            dt { "SSO" } dd { (sso(&status["sso"])) }
            dt { "Daemon" } dd { (daemon_state(daemon)) }
            dt { "Last file" } dd { (last_file(&status["last_file"])) }
            dt { "Waiting" } dd {
                (waiting.len()) @if waiting.len() == 1 { " file" } @else { " files" }
                @if !waiting.is_empty() { ul.plain { @for w in waiting { li {
                    code { (text(w)) }
                    @if w.as_str().is_some() && w.as_str() == status["processing"]["name"].as_str() {
                        " — being processed since " (time(status["processing"]["since"].as_str().unwrap_or_default()))
                    }
                } } } }
            }
            dt { "Held" } dd { (held.len()) @if held.len() == 1 { " file" } @else { " files" } }
            @if status["rules"].is_object() {
                dt { "Rules" } dd { (status["rules"]["total"]) " (" (status["rules"]["enabled"]) " enabled)" }
            }
            @if let Some(accounts) = status["accounts"].as_object() {
                dt { "Accounts" } dd { ul.plain {
                    @for (k, v) in accounts { li { (v) " " (k.replace('_', " ")) } }
                } }
            }
        }
    };
    layout(ctx, "Status", Some(Nav::Status), body)
}

/// A JSON string as text; anything else as JSON (numbers), null as a dash.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => other.to_string(),
    }
}

fn sso(sso: &Value) -> Markup {
    html! {
        @match sso["enabled"].as_bool() {
            Some(true) => { (badge("enabled")) @if let Some(p) = sso["provider"].as_str() { " " (p) } }
            Some(false) => span.badge.bad { "disabled: provisioning refuses to run" },
            None => "—",
        }
    }
}

fn daemon_state(daemon: &Value) -> Markup {
    html! {
        @if daemon["running"].as_bool() == Some(true) {
            (badge("active")) " running"
            @if let Some(t) = daemon["started_at"].as_str() { " since " (time(t)) }
            @if let Some(q) = daemon["quiet_for_seconds"].as_u64() {
                br; span.muted { "no file for " (duration(q)) }
                @if daemon["stale"].as_bool() == Some(true) { " " span.badge.warn { "stale" } }
            }
        } @else {
            span.muted { "not running (answered from the store)" }
        }
    }
}

/// HRIS mode's part (SPEC §10: the provider, last success, last error and next fetch).
fn hris(h: &Value) -> Markup {
    html! {
        (text(&h["provider"]))
        @if h["failing"].as_bool() == Some(true) { " " span.badge.bad { "failing" } }
        br; span.muted.small {
            "last success " @match h["last_success"].as_str() { Some(t) => (time(t)), None => "never" }
            ", next fetch " @match h["next_fetch"].as_str() { Some(t) => (time(t)), None => "now" }
            @if let (Some(t), false) = (h["last_error_at"].as_str(), h["failing"].as_bool() == Some(true)) {
                ", last error at " (time(t)) " (fetched since)"
            }
        }
    }
}

/// Poll mode's part: its last success, and whether it stopped.
fn poll(p: &Value) -> Markup {
    html! {
        "last success " @match p["last_success"].as_str() { Some(t) => (time(t)), None => "never" }
        @if p["stopped"].as_bool() == Some(true) { " " span.badge.bad { "stopped" } }
    }
}

fn last_file(f: &Value) -> Markup {
    html! {
        @if f.is_object() {
            a href={ "/files/" (text(&f["id"])) } { (text(&f["name"])) } " "
            (badge(f["status"].as_str().unwrap_or_default()))
            @if let Some(t) = f["processed_at"].as_str() { " at " (time(t)) }
            @if let Some(s) = f["summary"].as_str() { br; span.muted.small { (s) } }
        } @else {
            span.muted { "none yet" }
        }
    }
}

/// Seconds for reading: `2 d 3 h`, `3 h 12 min`, `4 min`, `12 s`.
fn duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn duration_reads_at_a_glance() {
        assert_eq!(super::duration(12), "12 s");
        assert_eq!(super::duration(240), "4 min");
        assert_eq!(super::duration(3 * 3600 + 12 * 60 + 5), "3 h 12 min");
        assert_eq!(super::duration(2 * 86_400 + 3 * 3600), "2 d 3 h");
    }
}

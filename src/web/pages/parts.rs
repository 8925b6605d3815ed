//! Small pieces shared by the pages: the CSRF field, POST buttons, badges, times, URL
//! encoding.

use super::PageCtx;
use maud::{Markup, html};

/// The hidden field every POST form carries.
pub(super) fn csrf(ctx: &PageCtx) -> Markup {
    html! { input type="hidden" name="csrf" value=(ctx.csrf); }
}

/// A form of one button that POSTs to `action` (with the CSRF token and `seen`, the version
/// of its thing as the page shows it: see [`crate::api::seen`]).
pub(super) fn post_button(
    ctx: &PageCtx,
    action: &str,
    label: &str,
    class: &str,
    seen: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(ctx))
            (seen_field(seen))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// The hidden field of a change's form that says what the page showed of its thing.
pub(super) fn seen_field(seen: &str) -> Markup {
    html! { input type="hidden" name="seen" value=(seen); }
}

/// Percent-encodes a path segment or a query value: everything but RFC 3986's unreserved
/// characters, so an employee ID such as `a/b?c` stays one segment.
pub(super) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `/admins/{employee_id}`, the ID encoded.
pub(super) fn admin_href(employee_id: &str) -> String {
    format!("/admins/{}", encode(employee_id))
}

/// A timestamp of the engine (RFC 3339, UTC) for reading: `2026-12-03 23:52:17 UTC`.
pub(super) fn time(ts: &str) -> Markup {
    let shown = match ts.strip_suffix('Z') {
        Some(t) if t.len() >= 19 && t.as_bytes()[10] == b'T' => {
            format!("{} {} UTC", &t[..10], &t[11..19])
        }
        _ => ts.to_string(),
    };
    html! {
        @if ts.is_empty() { span.muted { "—" } } @else { time datetime=(ts) { (shown) } }
    }
}

/// A coloured label for a known status word; other words get a neutral one.
pub(super) fn badge(word: &str) -> Markup {
    let class = match word {
        "active" | "applied" | "enabled" | "approved" => "badge ok",
        "inactive" | "disabled" | "dry_run" => "badge muted",
        "held" => "badge warn",
        "rejected" | "error" => "badge bad",
        _ => "badge",
    };
    html! { span class=(class) { (word.replace('_', " ")) } }
}

/// `<option>`s for `values`, `selected` marked, with `current` added first when it is not
/// among them (a role no longer configured stays visible on what holds it).
/// With nothing `selected` (an Add form), a first "Choose a role" that cannot be sent: the
/// browser had shown the first configured role (Super Admin) chosen, and a form sent without
/// a look had granted it.
pub(super) fn options(values: &[String], selected: &str) -> Markup {
    let extra = (!selected.is_empty() && !values.iter().any(|v| v == selected)).then_some(selected);
    html! {
        @if selected.is_empty() { option value="" disabled selected { "Choose a role" } }
        @if let Some(extra) = extra { option value=(extra) selected { (extra) } }
        @for v in values { option value=(v) selected[v == selected] { (v) } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_add_form_starts_on_no_role() {
        let roles = ["Super Admin".to_string(), "IT Admin".to_string()];
        let add = options(&roles, "").into_string();
        assert!(
            add.starts_with(r#"<option value="" disabled selected>Choose a role</option>"#),
            "{add}"
        );
        assert!(!add.contains(r#"value="Super Admin" selected"#), "{add}");
        let set = options(&roles, "IT Admin").into_string();
        assert!(!set.contains("Choose a role") && set.contains(r#"value="IT Admin" selected"#));
    }

    #[test]
    fn encode_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(encode("E00001"), "E00001");
        assert_eq!(encode("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(encode("é&=#%"), "%C3%A9%26%3D%23%25");
        assert_eq!(admin_href("../x"), "/admins/..%2Fx");
    }

    #[test]
    fn time_reads_rfc3339_and_passes_anything_else() {
        let t = time("2026-12-03T23:52:17Z").into_string();
        assert!(t.contains(r#"datetime="2026-12-03T23:52:17Z""#), "{t}");
        assert!(t.contains(">2026-12-03 23:52:17 UTC<"), "{t}");
        assert!(time("yesterday").into_string().contains(">yesterday<"));
        assert!(time("").into_string().contains("—"));
    }

    #[test]
    fn options_keep_a_role_no_longer_configured() {
        let roles = vec!["IT Admin".to_string(), "HR Admin".to_string()];
        let o = options(&roles, "Old Role").into_string();
        assert!(
            o.starts_with(r#"<option value="Old Role" selected>"#),
            "{o}"
        );
        let o = options(&roles, "HR Admin").into_string();
        assert!(o.contains(r#"<option value="HR Admin" selected>"#), "{o}");
        assert!(!o.contains(r#"<option value="IT Admin" selected"#), "{o}");
    }
}

//! The HTML of the Auto-Provisioning section (SPEC §11): pure functions from the engine's
//! `--json` answers (SPEC §7) to pages. No I/O and no HTTP here: the server calls these and
//! sends what they return.
//!
//! Every value from a roster or a rule goes through maud's escaping (never `PreEscaped`);
//! pages carry no inline style or script, so they work under
//! `Content-Security-Policy: default-src 'self'` with the stylesheet at [`STYLE_PATH`].

mod admins;
mod files;
mod parts;
mod rules;
mod status;

pub use admins::{AccountRow, AdminsQuery, PER_PAGE, Selection, Tab, admin, admins, select};
pub use files::{file, files};
pub use rules::{RuleForm, condition_lines, confirmation, rules, rules_saved};
pub use status::status;

use maud::{DOCTYPE, Markup, html};

/// The stylesheet every page links to; the server answers it at [`STYLE_PATH`].
pub const STYLE_CSS: &str = include_str!("style.css");

/// Where pages expect [`STYLE_CSS`].
pub const STYLE_PATH: &str = "/static/style.css";

/// Who is looking, and what the page may offer them.
#[derive(Debug, Clone, Copy)]
pub struct PageCtx<'a> {
    /// The signed-in person's email, as the SSO proxy passed it.
    pub email: &'a str,
    /// The CSRF token every form posts back (tied to the person by the server).
    pub csrf: &'a str,
    /// Whether the person may change rules, manual admins and held files: only then do
    /// pages show the forms that change them.
    pub can_change: bool,
    /// Whether a development setting stands in for the SSO proxy: a banner says so.
    pub dev_mode: bool,
}

/// The sections of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/`: the admin list.
    Admins,
    /// `/rules`.
    Rules,
    /// `/files`.
    Files,
    /// `/status`.
    Status,
}

impl Nav {
    /// Every section, in the order of the bar.
    pub const ALL: [Nav; 4] = [Nav::Admins, Nav::Rules, Nav::Files, Nav::Status];

    /// The section's path.
    pub fn href(self) -> &'static str {
        match self {
            Nav::Admins => "/",
            Nav::Rules => "/rules",
            Nav::Files => "/files",
            Nav::Status => "/status",
        }
    }

    /// The section's name in the bar.
    pub fn label(self) -> &'static str {
        match self {
            Nav::Admins => "Admins",
            Nav::Rules => "Rules",
            Nav::Files => "Files",
            Nav::Status => "Status",
        }
    }
}

/// The document around every page: head, navigation (with `active` marked), the signed-in
/// email, the development banner when `ctx.dev_mode`, then `title` as the heading and `body`.
pub fn layout(ctx: &PageCtx, title: &str, active: Option<Nav>, body: Markup) -> Markup {
    let header = html! {
        @if ctx.dev_mode {
            div.dev-banner role="alert" {
                strong { "Development mode." }
                " No SSO proxy checks who is asking: everyone who reaches this address is \
                  signed in as " (ctx.email) ". Never use it on a shared network."
            }
        }
        header.top {
            a.brand href="/" { "autoprov" span.sub { "Auto-Provisioning" } }
            nav.main aria-label="Sections" {
                @for n in Nav::ALL {
                    a href=(n.href()) aria-current=[(Some(n) == active).then_some("page")] {
                        (n.label())
                    }
                }
            }
            p.who {
                span.label { "Signed in as " }
                strong { (ctx.email) }
                @if !ctx.can_change { " " span.badge.muted { "read only" } }
            }
        }
    };
    document(title, header, body)
}

/// A page for a failure: `code` and `message`, inside the layout when the person is known.
pub fn error_page(ctx: Option<&PageCtx>, code: u16, message: &str) -> Markup {
    let title = format!("{code} {}", reason(code));
    let body = html! {
        div.notice.error role="alert" { p { (message) } }
        @if ctx.is_some() { p { a href="/" { "Back to the admin list" } } }
    };
    match ctx {
        Some(ctx) => layout(ctx, &title, None, body),
        None => document(&title, html! {}, body),
    }
}

/// The words for a status code on an error page.
fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad request",
        401 => "Not signed in",
        403 => "Not allowed",
        404 => "Not found",
        405 => "Method not allowed",
        409 => "Conflict",
        422 => "Not accepted",
        500 => "Internal error",
        503 => "Unavailable",
        _ => "Error",
    }
}

/// The HTML document: head with the stylesheet, `header`, then `title` and `body` in main.
fn document(title: &str, header: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · autoprov" }
                link rel="stylesheet" href=(STYLE_PATH);
            }
            body {
                (header)
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

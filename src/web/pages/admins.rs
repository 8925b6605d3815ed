//! `/`: the admin list, its filters, search, tabs and pages; `/admins/{id}`: one account.

use super::parts::{admin_href, badge, csrf, encode, options, post_button, seen_field, time};
use super::{Nav, PageCtx, layout};
use crate::api::seen::account_version;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Rows on one page of the list.
pub const PER_PAGE: usize = 100;

/// Which accounts the list shows: those of the rules, or those added by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    /// `origin = auto` (the default tab).
    #[default]
    Auto,
    /// `origin = manual`.
    Manual,
}

impl Tab {
    /// The value in the query string.
    pub fn as_str(self) -> &'static str {
        match self {
            Tab::Auto => "auto",
            Tab::Manual => "manual",
        }
    }

    fn holds(self, origin: &str) -> bool {
        (origin == "manual") == (self == Tab::Manual)
    }
}

/// The list's query string: `?tab=&status=&rule=&role=&q=&page=`. Empty values mean "any";
/// a page that is not a positive number means the first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(from = "RawQuery")]
pub struct AdminsQuery {
    /// `active` or `inactive`.
    pub status: Option<String>,
    /// A rule ID.
    pub rule: Option<String>,
    /// A role name.
    pub role: Option<String>,
    /// Part of an email or an employee ID, compared case-insensitively.
    pub q: Option<String>,
    /// Auto-provisioned or manual accounts.
    pub tab: Tab,
    /// 1-based page number.
    pub page: usize,
}

/// The query string as sent: every field optional text, so no value makes it unreadable.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawQuery {
    status: Option<String>,
    rule: Option<String>,
    role: Option<String>,
    q: Option<String>,
    tab: Option<String>,
    page: Option<String>,
}

impl From<RawQuery> for AdminsQuery {
    fn from(raw: RawQuery) -> Self {
        let given = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        AdminsQuery {
            status: given(raw.status),
            rule: given(raw.rule),
            role: given(raw.role),
            q: given(raw.q),
            tab: match raw.tab.as_deref().map(str::trim) {
                Some("manual") => Tab::Manual,
                _ => Tab::Auto,
            },
            page: raw
                .page
                .and_then(|p| p.trim().parse().ok())
                .filter(|p| *p > 0)
                .unwrap_or(1),
        }
    }
}

impl AdminsQuery {
    /// Reads decoded `(name, value)` pairs of a query string; unknown names are ignored.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut raw = RawQuery::default();
        for (k, v) in pairs {
            let v = Some(v.as_ref().to_string());
            match k.as_ref() {
                "status" => raw.status = v,
                "rule" => raw.rule = v,
                "role" => raw.role = v,
                "q" => raw.q = v,
                "tab" => raw.tab = v,
                "page" => raw.page = v,
                _ => {}
            }
        }
        raw.into()
    }

    /// This query's URL with another page (or tab, filters kept only within a tab).
    fn href(&self, page: usize) -> String {
        let mut parts = vec![format!("tab={}", self.tab.as_str())];
        for (name, value) in [
            ("status", &self.status),
            ("rule", &self.rule),
            ("role", &self.role),
            ("q", &self.q),
        ] {
            if let Some(v) = value {
                parts.push(format!("{name}={}", encode(v)));
            }
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        format!("/?{}", parts.join("&"))
    }

    fn matches(&self, account: &Value) -> bool {
        let field = |name: &str| account[name].as_str().unwrap_or_default();
        let rule_id = account["rule_id"].as_u64().map(|id| id.to_string());
        self.tab.holds(field("origin"))
            && self
                .status
                .as_deref()
                .is_none_or(|s| field("status").eq_ignore_ascii_case(s))
            && self.role.as_deref().is_none_or(|r| field("role") == r)
            && self
                .rule
                .as_deref()
                .is_none_or(|r| rule_id.as_deref() == Some(r))
            && self.q.as_deref().is_none_or(|q| {
                let q = q.to_lowercase();
                field("employee_id").to_lowercase().contains(&q)
                    || field("email").to_lowercase().contains(&q)
            })
    }
}

/// One account of `admins list` as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct AccountRow {
    /// The employee, the account's key.
    pub employee_id: String,
    /// The SSO login.
    pub email: String,
    /// The role granted.
    pub role: String,
    /// `active` or `inactive`.
    pub status: String,
    /// `auto` or `manual`.
    pub origin: String,
    /// For auto accounts, the rule that controls it.
    pub rule_id: Option<u64>,
    /// That rule's name (none when it was deleted).
    pub rule: Option<String>,
}

/// One page of the accounts a query selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The accounts on this page, in the engine's order.
    pub rows: Vec<AccountRow>,
    /// How many accounts match, on all pages.
    pub total: usize,
    /// This page (1-based; a page past the end shows the last).
    pub page: usize,
    /// How many pages there are (at least 1).
    pub pages: usize,
}

/// Filters the `admins list` array by `q` and cuts out its page of [`PER_PAGE`] rows.
pub fn select(accounts: &Value, q: &AdminsQuery) -> Selection {
    let all = accounts.as_array().map(Vec::as_slice).unwrap_or_default();
    let matching: Vec<&Value> = all.iter().filter(|a| q.matches(a)).collect();
    let total = matching.len();
    let pages = total.div_ceil(PER_PAGE).max(1);
    let page = q.page.clamp(1, pages);
    let rows = matching
        .into_iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .filter_map(|a| AccountRow::deserialize(a).ok())
        .collect();
    Selection {
        rows,
        total,
        page,
        pages,
    }
}

/// What the filter menus offer: values present on the tab, plus the configured roles.
struct Facets {
    rules: BTreeMap<u64, Option<String>>,
    roles: Vec<String>,
    auto: usize,
    manual: usize,
}

impl Facets {
    fn of(accounts: &Value, tab: Tab, configured: &[String]) -> Facets {
        let mut rules = BTreeMap::new();
        let mut present = BTreeSet::new();
        let (mut auto, mut manual) = (0, 0);
        for a in accounts.as_array().map(Vec::as_slice).unwrap_or_default() {
            let origin = a["origin"].as_str().unwrap_or_default();
            match Tab::Manual.holds(origin) {
                true => manual += 1,
                false => auto += 1,
            }
            if !tab.holds(origin) {
                continue;
            }
            if let Some(id) = a["rule_id"].as_u64() {
                rules.insert(id, a["rule"].as_str().map(str::to_string));
            }
            if let Some(role) = a["role"].as_str() {
                present.insert(role);
            }
        }
        let mut roles = configured.to_vec();
        roles.extend(
            present
                .into_iter()
                .filter(|r| !configured.iter().any(|c| c == r))
                .map(str::to_string),
        );
        Facets {
            rules,
            roles,
            auto,
            manual,
        }
    }
}

/// `/`: the accounts of one tab, filtered and paged by `q`; on the manual tab, when
/// `ctx.can_change`, the forms to add, change and remove manual admins (`roles` are the
/// configured ones).
pub fn admins(ctx: &PageCtx, accounts: &Value, roles: &[String], q: &AdminsQuery) -> Markup {
    let facets = Facets::of(accounts, q.tab, roles);
    let sel = select(accounts, q);
    let manual_forms = q.tab == Tab::Manual && ctx.can_change;
    let body = html! {
        nav.tabs aria-label="Origin" {
            @for (tab, label, n) in [(Tab::Auto, "Auto-provisioned", facets.auto), (Tab::Manual, "Manual", facets.manual)] {
                a href={ "/?tab=" (tab.as_str()) } aria-current=[(tab == q.tab).then_some("page")] {
                    (label) " " span.count { (n) }
                }
            }
        }
        @match q.tab {
            Tab::Auto => p.hint { "Accounts created by the provisioning rules. To change one, change or delete its rule on the " a href="/rules" { "Rules" } " page." },
            Tab::Manual => p.hint { "Accounts added by hand. Provisioning never creates, changes or deactivates them." },
        }
        (filters(q, &facets))
        (summary(&sel))
        (table(ctx, &sel, roles, manual_forms))
        (pager(q, &sel))
        @if manual_forms { (add_form(ctx, roles)) }
    };
    layout(ctx, "Admins", Some(Nav::Admins), body)
}

/// The GET form of search and filters.
fn filters(q: &AdminsQuery, facets: &Facets) -> Markup {
    let status = q.status.as_deref().unwrap_or_default();
    let rule = q.rule.as_deref().unwrap_or_default();
    let role = q.role.as_deref().unwrap_or_default();
    html! {
        form.filters method="get" action="/" role="search" {
            input type="hidden" name="tab" value=(q.tab.as_str());
            label { span { "Search" } input type="search" name="q" value=[q.q.as_deref()] placeholder="Email or employee ID"; }
            label { span { "Status" }
                select name="status" {
                    option value="" { "Any" }
                    @for s in ["active", "inactive"] { option value=(s) selected[s == status] { (s) } }
                }
            }
            @if q.tab == Tab::Auto {
                label { span { "Rule" }
                    select name="rule" {
                        option value="" { "Any" }
                        @for (id, name) in &facets.rules {
                            @let value = id.to_string();
                            option value=(value) selected[value == rule] {
                                @match name { Some(n) => (n), None => { "rule " (id) " (deleted)" } }
                            }
                        }
                    }
                }
            }
            label { span { "Role" }
                select name="role" {
                    option value="" { "Any" }
                    @for r in &facets.roles { option value=(r) selected[r == role] { (r) } }
                }
            }
            div.actions {
                button type="submit" { "Apply" }
                a.button.secondary href={ "/?tab=" (q.tab.as_str()) } { "Clear" }
            }
        }
    }
}

fn summary(sel: &Selection) -> Markup {
    let first = (sel.page - 1) * PER_PAGE + 1;
    html! {
        p.summary {
            @match sel.total {
                0 => "No accounts match.",
                1 => "1 account.",
                n if n <= PER_PAGE => { (n) " accounts." }
                n => { "Accounts " (first) "–" (first + sel.rows.len() - 1) " of " (n) "." }
            }
        }
    }
}

fn table(ctx: &PageCtx, sel: &Selection, roles: &[String], manual_forms: bool) -> Markup {
    html! {
        @if !sel.rows.is_empty() {
            div.table-wrap {
                table.stack {
                    thead { tr {
                        th { "Employee ID" } th { "Email" } th { "Rule" } th { "Role" } th { "Status" }
                        @if manual_forms { th { "Change" } }
                    } }
                    tbody {
                        @for a in &sel.rows {
                            tr {
                                td data-label="Employee ID" { a href=(admin_href(&a.employee_id)) { (a.employee_id) } }
                                td data-label="Email" { span.email { (a.email) } }
                                td data-label="Rule" { (rule_cell(a)) }
                                td data-label="Role" { (a.role) }
                                td data-label="Status" { (badge(&a.status)) }
                                @if manual_forms { td data-label="Change" { (change_forms(ctx, a, roles)) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn rule_cell(a: &AccountRow) -> Markup {
    html! {
        @match (a.rule_id, &a.rule) {
            (Some(id), Some(name)) => a href={ "/rules#rule-" (id) } { (name) },
            (Some(id), None) => span.muted { "rule " (id) " (deleted)" },
            (None, _) => span.muted { "manual" },
        }
    }
}

/// The role/status form and the remove button of one manual account.
fn change_forms(ctx: &PageCtx, a: &AccountRow, roles: &[String]) -> Markup {
    let href = admin_href(&a.employee_id);
    let seen = account_version(&a.email, &a.role, &a.status);
    html! {
        div.row-forms {
            form.inline method="post" action=(href) {
                (csrf(ctx))
                (seen_field(&seen))
                select name="role" aria-label={ "Role of " (a.employee_id) } { (options(roles, &a.role)) }
                select name="status" aria-label={ "Status of " (a.employee_id) } {
                    @for s in ["active", "inactive"] { option value=(s) selected[s == a.status] { (s) } }
                }
                button type="submit" { "Save" }
            }
            (post_button(ctx, &format!("{href}/remove"), "Remove", "danger", &seen))
        }
    }
}

fn pager(q: &AdminsQuery, sel: &Selection) -> Markup {
    html! {
        @if sel.pages > 1 {
            nav.pager aria-label="Pages" {
                @if sel.page > 1 { a href=(q.href(sel.page - 1)) rel="prev" { "← Previous" } }
                span { "Page " (sel.page) " of " (sel.pages) }
                @if sel.page < sel.pages { a href=(q.href(sel.page + 1)) rel="next" { "Next →" } }
            }
        }
    }
}

fn add_form(ctx: &PageCtx, roles: &[String]) -> Markup {
    html! {
        section.panel {
            h2 { "Add a manual admin" }
            form.stacked method="post" action="/admins" {
                (csrf(ctx))
                label { span { "Employee ID" } input type="text" name="employee_id" required; }
                label { span { "Email" } input type="email" name="email" required; }
                label { span { "Role" } select name="role" required { (options(roles, "")) } }
                div.actions { button type="submit" { "Add admin" } }
            }
        }
    }
}

/// One entry of an account's history.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HistoryRow {
    at: String,
    source: String,
    status: String,
    role: String,
    reason: String,
}

/// One account of `admins show`, history included.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AccountView {
    #[serde(flatten)]
    row: AccountRow,
    created_at: String,
    updated_at: String,
    history: Vec<HistoryRow>,
}

/// `/admins/{employee_id}`: the account of `admins show` and its history, newest first.
pub fn admin(ctx: &PageCtx, account: &Value) -> Markup {
    let v = AccountView::deserialize(account).unwrap_or_default();
    let a = &v.row;
    let title = format!("Admin {}", a.employee_id);
    let body = html! {
        dl.fields {
            dt { "Employee ID" } dd { (a.employee_id) }
            dt { "Email" } dd { (a.email) }
            dt { "Role" } dd { (a.role) }
            dt { "Status" } dd { (badge(&a.status)) }
            dt { "Origin" } dd { (a.origin) }
            dt { "Rule" } dd { (rule_cell(a)) }
            dt { "Created" } dd { (time(&v.created_at)) }
            dt { "Updated" } dd { (time(&v.updated_at)) }
        }
        @if a.origin == "manual" {
            @if ctx.can_change {
                p { a href={ "/?tab=manual&q=" (encode(&a.employee_id)) } { "Change or remove this manual admin" } }
            }
        } @else {
            p.hint { "This account is controlled by its rule: change or delete the rule to change it." }
        }
        h2 { "History" }
        @if v.history.is_empty() { p.muted { "No changes recorded." } } @else {
            div.table-wrap {
                table.stack {
                    thead { tr { th { "When" } th { "Status" } th { "Role" } th { "Reason" } th { "By" } } }
                    tbody {
                        @for h in v.history.iter().rev() {
                            tr {
                                td data-label="When" { (time(&h.at)) }
                                td data-label="Status" { (badge(&h.status)) }
                                td data-label="Role" { (h.role) }
                                td data-label="Reason" { (h.reason) }
                                td data-label="By" { (h.source) }
                            }
                        }
                    }
                }
            }
        }
        p { a href={ "/?tab=" (if a.origin == "manual" { "manual" } else { "auto" }) } { "← All admins" } }
    };
    layout(ctx, &title, Some(Nav::Admins), body)
}

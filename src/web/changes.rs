//! The POST endpoints behind the pages' forms: each takes a [`Change`] (signed in, same
//! site, the person's CSRF token in the field `csrf`, may change), sends the request the CLI
//! sends, audited with the person's email, and answers 303 to the page to show next, or the
//! engine's refusal as JSON with the status of its exit code.

use super::WebState;
use super::api::json_response;
use super::identity::Change;
use super::pages;
use super::path_id::PathId;
use crate::api::seen::Seen;
use crate::api::{Output, Request, Response, exit};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use serde::Deserialize;
use std::sync::Arc;

type Answer = axum::response::Response;

/// The routes of the forms.
pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/rules", post(rule_add))
        .route("/rules/{id}", post(rule_edit))
        .route("/rules/{id}/enable", post(rule_enable))
        .route("/rules/{id}/disable", post(rule_disable))
        .route("/rules/{id}/delete", post(rule_delete))
        .route("/admins", post(admin_add))
        .route("/admins/{id}", post(admin_set))
        .route("/admins/{id}/remove", post(admin_remove))
        .route("/files/{id}/approve", post(file_approve))
        .route("/files/{id}/reject", post(file_reject))
}

/// The form of `POST /rules` and `POST /rules/{id}`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RuleForm {
    /// The rule's name (on edit: empty keeps it).
    #[serde(default)]
    pub name: String,
    /// Its role (on edit: empty keeps it).
    #[serde(default)]
    pub role: String,
    /// Conditions in the `--when` syntax, one per line (on edit: empty keeps them).
    #[serde(default)]
    pub when: String,
    /// The [`pages::confirmation`] of these fields, shown with their conflicts: saves despite
    /// them; otherwise (or when the fields were changed since) a conflicting rule is refused
    /// (409, with the conflicts and the confirmation) and nothing is saved.
    #[serde(default)]
    pub confirm: String,
    /// On edit: the rule's version as the form showed it ([`crate::api::seen`]).
    #[serde(default)]
    pub seen: String,
}

impl RuleForm {
    fn conditions(&self) -> Vec<String> {
        pages::condition_lines(&self.when)
    }

    /// Whether every conflict refuses the rule: unless `confirm` is these fields'
    /// confirmation (`id`: the rule edited), with the conflicts accepted.
    fn strict(&self, id: Option<u64>) -> bool {
        self.accepted(id).is_none()
    }

    /// The conflicts `confirm` accepts (their version), when it confirms these fields:
    /// other conflicts than those shown still refuse the rule.
    fn accepted(&self, id: Option<u64>) -> Option<String> {
        let (fields, conflicts) = self.confirm.trim().split_once('.')?;
        let confirmed = fields == pages::confirmation(id, &self.name, &self.role, &self.when);
        confirmed.then(|| conflicts.to_string())
    }
}

/// The form of `POST /admins` (a manual account).
#[derive(Debug, Default, Deserialize)]
pub struct AdminForm {
    /// Employee id.
    #[serde(default)]
    pub employee_id: String,
    /// SSO login email.
    #[serde(default)]
    pub email: String,
    /// A configured role.
    #[serde(default)]
    pub role: String,
}

/// The form of `POST /admins/{id}`: what to change (empty = unchanged).
#[derive(Debug, Default, Deserialize)]
pub struct AdminSetForm {
    /// New role.
    #[serde(default)]
    pub role: String,
    /// `active` or `inactive`.
    #[serde(default)]
    pub status: String,
    /// The account's version as the form showed it ([`crate::api::seen`]).
    #[serde(default)]
    pub seen: String,
}

/// A form of one button: the version of its thing as the page showed it (empty from a
/// client that did not draw it: the change is then done as the CLI does it).
#[derive(Debug, Default, Deserialize)]
pub struct SeenForm {
    /// See [`crate::api::seen`].
    #[serde(default)]
    pub seen: String,
    /// Enable: the [`pages::RuleForm::confirmation`] of the conflicts shown ("Enable
    /// anyway"); without it, a rule that would conflict is refused (409) and stays disabled.
    #[serde(default)]
    pub confirm: String,
}

/// What the form said its page showed, when it said.
fn seen(version: &str, of: impl FnOnce(String) -> Seen) -> Option<Seen> {
    let version = version.trim();
    (!version.is_empty()).then(|| of(version.to_string()))
}

fn some(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// `/path/segment` with the segment percent-encoded.
fn page(prefix: &str, segment: &str) -> String {
    let mut out = String::from(prefix);
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A number from the path, or the usage error (400) naming it.
fn id_of(text: &str, what: &str) -> Result<u64, Response> {
    text.parse()
        .map_err(|_| Response::fail(exit::USAGE, format!("\"{text}\" is not a {what} id")))
}

/// Sends `request` as the person who posted; 303 to `next` when it was done. `seen`: what
/// the page showed of the thing it acts on, when the form said.
async fn send<T>(
    state: &WebState,
    change: &Change<T>,
    request: Request,
    seen: Option<Seen>,
    next: String,
) -> Answer {
    send_rule(state, change, request, seen, next, None).await
}

/// [`send`], with the rule form to show again when a browser's rule conflicts.
async fn send_rule<T>(
    state: &WebState,
    change: &Change<T>,
    request: Request,
    seen: Option<Seen>,
    next: String,
    rule: Option<pages::RuleForm>,
) -> Answer {
    let caller = change.person.caller();
    let answer = match seen {
        Some(seen) => state.engine.ask_seen(request, caller, seen).await,
        None => {
            state
                .engine
                .ask_as(request, caller, None, Output::Json)
                .await
        }
    }
    .response;
    if answer.exit != exit::OK {
        if change.html {
            return super::html::form_refused(state, &change.person, answer, rule).await;
        }
        let mut answer = answer;
        // What a client posts again as `confirm` to save the rule despite its conflicts.
        if let (Some(rule), Some(json)) = (&rule, answer.json.as_object_mut())
            && json
                .get("conflicts")
                .is_some_and(|c| c.as_array().is_some_and(|c| !c.is_empty()))
        {
            let shown = pages::RuleForm {
                conflicts: json["conflicts"].clone(),
                ..rule.clone()
            };
            json.insert("confirm".into(), shown.confirmation().into());
        }
        return json_response(answer);
    }
    // A rule saved or enabled with warnings (a column the last roster lacks, which rejects
    // every later file; conditions that can never all hold): the rules page shows them
    // first, as the CLI prints them. A bare redirect had said nothing.
    let warned = answer.json["warnings"]
        .as_array()
        .is_some_and(|w| !w.is_empty());
    let next = match (rule.is_some() && warned, answer.json["id"].as_u64()) {
        (true, Some(id)) => format!("/rules?saved={id}#saved"),
        _ => next,
    };
    (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response()
}

impl RuleForm {
    /// The form as the rules page shows it again (`id` = the rule edited).
    fn shown(&self, id: Option<u64>) -> pages::RuleForm {
        pages::RuleForm {
            id,
            name: self.name.clone(),
            role: self.role.clone(),
            when: self.when.clone(),
            conflicts: serde_json::Value::Null,
            error: None,
            seen: self.seen.clone(),
            enable: false,
        }
    }
}

async fn rule_add(State(state): State<Arc<WebState>>, change: Change<RuleForm>) -> Answer {
    let f = &change.form;
    let request = Request::RulesAdd {
        name: f.name.clone(),
        role: f.role.clone(),
        when: f.conditions(),
        strict: f.strict(None),
        accept: f.accepted(None),
    };
    let shown = f.shown(None);
    send_rule(&state, &change, request, None, "/rules".into(), Some(shown)).await
}

async fn rule_edit(
    State(state): State<Arc<WebState>>,
    PathId(id): PathId,
    change: Change<RuleForm>,
) -> Answer {
    let id = match id_of(&id, "rule") {
        Ok(id) => id,
        Err(answer) => return json_response(answer),
    };
    let f = &change.form;
    let request = Request::RulesEdit {
        id,
        name: some(&f.name),
        role: some(&f.role),
        when: f.conditions(),
        strict: f.strict(Some(id)),
        accept: f.accepted(Some(id)),
    };
    let shown = f.shown(Some(id));
    let seen = seen(&f.seen, |v| Seen::Rule(id, v));
    send_rule(&state, &change, request, seen, "/rules".into(), Some(shown)).await
}

/// `enable`, `disable` or `delete` of rule `id`.
async fn rule_switch(state: &WebState, id: &str, change: Change<SeenForm>, verb: &str) -> Answer {
    let id = match id_of(id, "rule") {
        Ok(id) => id,
        Err(answer) => return json_response(answer),
    };
    let accept = some(&change.form.confirm);
    let request = match verb {
        "delete" => Request::RulesDelete { id },
        verb => Request::RulesEnable {
            id,
            enabled: verb == "enable",
            strict: accept.is_none(),
            accept,
        },
    };
    // Enabling a rule puts it in effect as saving one does (SPEC §11): its conflicts are
    // shown first, and it is enabled only when they are confirmed.
    let shown = (verb == "enable").then(|| pages::RuleForm {
        id: Some(id),
        seen: change.form.seen.clone(),
        enable: true,
        ..Default::default()
    });
    let seen = seen(&change.form.seen, |v| Seen::Rule(id, v));
    send_rule(state, &change, request, seen, "/rules".into(), shown).await
}

async fn rule_enable(
    State(state): State<Arc<WebState>>,
    PathId(id): PathId,
    change: Change<SeenForm>,
) -> Answer {
    rule_switch(&state, &id, change, "enable").await
}

async fn rule_disable(
    State(state): State<Arc<WebState>>,
    PathId(id): PathId,
    change: Change<SeenForm>,
) -> Answer {
    rule_switch(&state, &id, change, "disable").await
}

async fn rule_delete(
    State(state): State<Arc<WebState>>,
    PathId(id): PathId,
    change: Change<SeenForm>,
) -> Answer {
    rule_switch(&state, &id, change, "delete").await
}

async fn admin_add(State(state): State<Arc<WebState>>, change: Change<AdminForm>) -> Answer {
    let f = &change.form;
    let next = page("/admins/", f.employee_id.trim());
    let request = Request::AdminsAdd {
        employee_id: f.employee_id.clone(),
        email: f.email.clone(),
        role: f.role.clone(),
    };
    send(&state, &change, request, None, next).await
}

async fn admin_set(
    State(state): State<Arc<WebState>>,
    PathId(id): PathId,
    change: Change<AdminSetForm>,
) -> Answer {
    let request = Request::AdminsSet {
        id: id.clone(),
        role: some(&change.form.role),
        status: some(&change.form.status),
    };
    let seen = seen(&change.form.seen, |v| Seen::Account(id.clone(), v));
    send(&state, &change, request, seen, page("/admins/", &id)).await
}

async fn admin_remove(
    State(state): State<Arc<WebState>>,
    PathId(id): PathId,
    change: Change<SeenForm>,
) -> Answer {
    let seen = seen(&change.form.seen, |v| Seen::Account(id.clone(), v));
    let request = Request::AdminsRemove { id };
    send(&state, &change, request, seen, "/?tab=manual".into()).await
}

async fn file_decide(
    state: &WebState,
    id: &str,
    change: Change<SeenForm>,
    approve: bool,
) -> Answer {
    let id = match id_of(id, "file") {
        Ok(id) => id,
        Err(answer) => return json_response(answer),
    };
    let request = Request::FilesDecide { id, approve };
    let seen = seen(&change.form.seen, |v| Seen::Held(id, v));
    send(state, &change, request, seen, format!("/files/{id}")).await
}

async fn file_approve(
    State(state): State<Arc<WebState>>,
    PathId(id): PathId,
    change: Change<SeenForm>,
) -> Answer {
    file_decide(&state, &id, change, true).await
}

async fn file_reject(
    State(state): State<Arc<WebState>>,
    PathId(id): PathId,
    change: Change<SeenForm>,
) -> Answer {
    file_decide(&state, &id, change, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Conditions whose values or fields hold line breaks (a roster cell may) come back
    /// from the edit form as they were drawn, a browser's CR LF included: such a value had
    /// been split into two conditions (`title = Engineer` and `department = IT`), widening
    /// the rule at its next save from the page.
    #[test]
    fn conditions_with_line_breaks_come_back_from_the_form_as_drawn() {
        use crate::core::rules::Condition;
        let conditions: Vec<Condition> = [
            "title = \"Engineer\ndepartment = IT\"",
            "title in (\"Senior\nEngineer\", CFO)",
            "\"Cost\nCenter\" != \"4\r\"",
            "department = Finance",
        ]
        .iter()
        .map(|text| Condition::parse(text).unwrap())
        .collect();
        let drawn: Vec<String> = conditions.iter().map(|c| c.to_string()).collect();
        assert!(
            drawn[0].contains("\"Engineer\ndepartment = IT\""),
            "{drawn:?}"
        );
        // As a browser posts a textarea: every line break, a lone CR too, as CR LF.
        let posted = drawn.join("\n").replace('\r', "\n").replace('\n', "\r\n");
        let f = RuleForm {
            when: posted,
            ..RuleForm::default()
        };
        let back: Vec<Condition> = f
            .conditions()
            .iter()
            .map(|text| Condition::parse(text).unwrap())
            .collect();
        // The third value's lone CR is posted as CR LF by a browser and read as LF.
        let mut expected = conditions.clone();
        expected[2] = Condition::parse("\"Cost\nCenter\" != \"4\n\"").unwrap();
        assert_eq!(back, expected);
    }

    #[test]
    fn conditions_are_one_per_line_and_confirm_lifts_strictness() {
        let f = RuleForm {
            when: "department = Finance\r\n\r\n  is_manager = true  \n".into(),
            ..RuleForm::default()
        };
        assert_eq!(
            f.conditions(),
            vec!["department = Finance", "is_manager = true"]
        );
        assert!(f.strict(None));
        // Confirmed: the confirmation of exactly these fields (line ends and blank lines
        // aside), for this rule.
        let shown = RuleForm {
            name: "Finance leads".into(),
            role: "Billing Admin".into(),
            when: "department = Finance\nis_manager = true".into(),
            ..RuleForm::default()
        };
        let confirm = shown.shown(Some(7)).confirmation();
        let posted = RuleForm {
            when: "department = Finance\r\n\r\nis_manager = true\r\n".into(),
            confirm: confirm.clone(),
            ..shown
        };
        assert!(!posted.strict(Some(7)));
        assert!(posted.strict(None), "another rule's confirmation");
        let old_style = RuleForm {
            confirm: "1".into(),
            ..RuleForm::default()
        };
        assert!(old_style.strict(None), "a bare confirm=1 confirms nothing");
        // Changed after the conflicts were shown: not confirmed.
        for changed in [
            RuleForm {
                name: "Finance heads".into(),
                ..posted.clone()
            },
            RuleForm {
                role: "Super Admin".into(),
                ..posted.clone()
            },
            RuleForm {
                when: "department = Finance".into(),
                ..posted.clone()
            },
        ] {
            assert!(changed.strict(Some(7)), "{changed:?}");
        }
    }

    #[test]
    fn pages_are_addressed_with_escaped_ids() {
        assert_eq!(page("/admins/", "E00228"), "/admins/E00228");
        assert_eq!(page("/admins/", "a/b c?"), "/admins/a%2Fb%20c%3F");
    }
}

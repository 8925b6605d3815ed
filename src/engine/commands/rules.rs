//! `rules list | show | add | edit | delete | enable | disable | check`.

use super::last_roster::{Both, LastRoster};
use super::{configured_role, no_rule, note};
use crate::api::render::{quoted_name, rule_json, rule_line, rule_text};
use crate::api::seen::conflicts_version;
use crate::api::{Request, Response, exit};
use crate::core::model::escape_controls;
use crate::core::rules::{Condition, Rule, RuleId};
use crate::engine::pipeline::Pipeline;
use crate::store::Store;
use crate::util::now_rfc3339;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// What conflicts refuse a rule: all (`--strict`), others than those accepted, or none.
struct Conflicts {
    strict: bool,
    accept: Option<String>,
}

impl Conflicts {
    /// Whether `found` (not empty) refuses the rule.
    fn refuse(&self, found: &[Value]) -> bool {
        self.strict
            || self.accept.as_ref().is_some_and(|accepted| {
                *accepted != conflicts_version(&Value::Array(found.to_vec()))
            })
    }
}

/// A rule's fields as `rules add` or `rules edit` gives them.
struct Fields {
    name: Option<String>,
    role: Option<String>,
    when: Vec<String>,
    /// Posted from the rule's page as the page drew them: a browser's form cannot give back
    /// a CR in a condition value nor a line break in a name, so what differs only so is the
    /// rule's own ([`edit_rule`]). From the CLI or the API it is what was asked.
    drawn: bool,
}

/// `rules add` and `rules edit`: validation, conflict detection, save.
fn rules_save<S: Store>(
    p: &Pipeline<S>,
    caller: &str,
    id: Option<u64>,
    fields: Fields,
    refusing: Conflicts,
) -> crate::api::Result<Response> {
    let all = p.store.rules()?;
    let mut rule = match id {
        Some(id) => match all.iter().find(|r| r.id == RuleId(id)) {
            Some(r) => r.clone(),
            None => return Ok(no_rule(id)),
        },
        None => Rule {
            id: RuleId(u64::MAX),
            name: String::new(),
            role: String::new(),
            conditions: Vec::new(),
            enabled: true,
            created_at: now_rfc3339(),
            created_by: caller.to_string(),
        },
    };
    if let Err(refusal) = edit_rule(p, &all, &mut rule, fields) {
        return Ok(refusal);
    }
    let (mut found, mut last) = conflicts_of(p, &rule, &all)?;
    let warnings = last.warnings(&rule);
    let mut text = String::new();
    said(&mut text, &found, &warnings);
    // An edit that leaves the rule as it is: no change, none audited, the accounts' token
    // kept (a Save of an unchanged rule in the web section had read as an edit someone made,
    // and had the next upload read in full).
    if id.is_some() && all.contains(&rule) {
        let mut j = rule_json(&rule);
        j["conflicts"] = conflicts_json(found, rule.id);
        j["warnings"] = json!(warnings);
        j["changed"] = json!(false);
        let out = format!("no change: rule {} is as asked already\n{text}", rule.id);
        return Ok(Response::ok(j, out));
    }
    if !found.is_empty() && refusing.refuse(&found) {
        return Ok(refused(text, found, "nothing was saved"));
    }
    let action = if id.is_some() {
        "rules edit"
    } else {
        "rules add"
    };
    if id.is_none() {
        let placeholder = std::mem::replace(&mut rule.id, p.store.next_rule_id()?);
        // Said again with the id it now has ("rule new" until now), from what was found
        // for it under its placeholder (not evaluated again).
        last.renamed(placeholder, rule.id);
        if !found.is_empty() {
            found = conflicts(&mut last, &rule, &grantable(p, &all));
            text.clear();
            said(&mut text, &found, &warnings);
        }
    }
    // An edit's entry says what the rule was too: the new rule alone had not said whether
    // it was widened or narrowed, nor its old name.
    let was = all.iter().find(|r| id == Some(r.id.0));
    let detail = match was {
        Some(was) => format!("{}; was {}", rule_line(&rule), rule_line(was).trim_start()),
        None => rule_line(&rule),
    };
    p.store.put_rule(&rule, note(caller, action, detail))?;
    let verb = if id.is_some() { "saved" } else { "added" };
    let mut out = format!(
        "{verb} rule {}: {} -> {}; takes effect at the next sync\n",
        rule.id,
        quoted_name(&rule.name),
        rule.role
    );
    out.push_str(&text);
    let mut j = rule_json(&rule);
    j["conflicts"] = conflicts_json(found, rule.id);
    j["warnings"] = json!(warnings);
    // `changed` says in JSON what "no change" says in text.
    j["changed"] = json!(true);
    Ok(Response::ok(j, out))
}

/// `rules show`: the rule and its conflicts with the other enabled rules on the last
/// applied roster, as `rules add|edit` print them (SPEC §7).
fn rule_shown<S: Store>(
    p: &Pipeline<S>,
    rule: &Rule,
    all: &[Rule],
) -> crate::api::Result<Response> {
    let (conflicts, warnings) = conflicts_and_warnings(p, rule, all)?;
    let mut text = rule_text(rule);
    said(&mut text, &conflicts, &warnings);
    let mut j = rule_json(rule);
    j["conflicts"] = conflicts_json(conflicts, rule.id);
    j["warnings"] = json!(warnings);
    Ok(Response::ok(j, text))
}

/// The conflicts of `rule` (saved or not yet) with the enabled rules of `all` on the last
/// applied roster, and that roster as read for them.
fn conflicts_of<S: Store>(
    p: &Pipeline<S>,
    rule: &Rule,
    all: &[Rule],
) -> crate::api::Result<(Vec<Value>, LastRoster)> {
    let candidates = grantable(p, all);
    let involved: Vec<&Rule> = std::iter::once(rule)
        .chain(
            candidates
                .iter()
                .copied()
                .filter(|o| o.enabled && o.id != rule.id),
        )
        .collect();
    let mut last = LastRoster::load(p, &involved)?;
    // A rule whose role is no longer granted is left out at sync: it conflicts with none.
    let found = match p.cfg.role(&rule.role) {
        Some(_) => conflicts(&mut last, rule, &candidates),
        None => Vec::new(),
    };
    Ok((found, last))
}

/// The rules of `all` whose role may be granted (a rule whose role was taken out of
/// `provisioning.roles` is left out at sync, as if disabled: it wins nothing).
fn grantable<'a, S: Store>(p: &Pipeline<S>, all: &'a [Rule]) -> Vec<&'a Rule> {
    all.iter()
        .filter(|r| p.cfg.role(&r.role).is_some())
        .collect()
}

/// The conflicts of `rule` with the enabled rules of `all`, and the fields it reads that
/// the last applied roster lacks (warnings).
fn conflicts_and_warnings<S: Store>(
    p: &Pipeline<S>,
    rule: &Rule,
    all: &[Rule],
) -> crate::api::Result<(Vec<Value>, Vec<String>)> {
    let (conflicts, last) = conflicts_of(p, rule, all)?;
    let warnings = last.warnings(rule);
    Ok((conflicts, warnings))
}

/// The conflicts' sentences and the warnings, a line each.
fn said(text: &mut String, conflicts: &[Value], warnings: &[String]) {
    for c in conflicts {
        line(text, c["message"].as_str().unwrap_or_default());
    }
    for w in warnings {
        line(text, &format!("warning: {w}"));
    }
}

/// `sentence` on a line of its own, its control characters escaped: the employee IDs of a
/// conflict come from a roster, and one with a quoted line break in it had printed a line
/// of its own that read like another conflict.
fn line(text: &mut String, sentence: &str) {
    text.push_str(&escape_controls(sentence));
    text.push('\n');
}

/// Conflicts as the JSON of a rule shows them: without their sentence, a new rule's
/// placeholder id as `id`.
fn conflicts_json(conflicts: Vec<Value>, id: RuleId) -> Value {
    json!(
        conflicts
            .into_iter()
            .map(|mut c| {
                if c["winner"] == json!(u64::MAX) {
                    c["winner"] = json!(id);
                }
                c.as_object_mut().map(|o| o.remove("message"));
                c
            })
            .collect::<Vec<_>>()
    )
}

/// How a message names a rule: the rule being added has no id yet.
fn label(id: RuleId) -> String {
    if id == RuleId(u64::MAX) {
        "rule new".to_string()
    } else {
        format!("rule {id}")
    }
}

/// Conflicts of `rule` with every other enabled rule of `candidates` of a different role.
fn conflicts(last: &mut LastRoster, rule: &Rule, candidates: &[&Rule]) -> Vec<Value> {
    let mut out = Vec::new();
    for other in candidates {
        if other.id == rule.id
            || !other.enabled
            || other.role == rule.role
            || !last.can_overlap(rule, other)
        {
            continue;
        }
        let (count, ids, who) = match last.both(rule, other) {
            Both::Counted(count, ids) => {
                let who = format!(
                    "{count} employees of the last applied roster match both{}",
                    if ids.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", ids.join(", "))
                    }
                );
                (Some(count), ids, who)
            }
            // Not counted: null, not 0 (which had read as "no employee matches both").
            Both::NoRoster => (
                None,
                Vec::new(),
                match &last.unread {
                    Some(why) => format!("matching employees not counted: {why}"),
                    None => "no roster applied yet to count matching employees".to_string(),
                },
            ),
            Both::Uncounted(id, field) => (
                None,
                Vec::new(),
                format!(
                    "matching employees not counted: {} reads \"{field}\", which the last applied roster has no column for",
                    label(id)
                ),
            ),
        };
        let winner = rule.id.min(other.id);
        // Precedence decides a new account only: an account stays with the rule that gave it
        // while that rule matches (SPEC §4), whichever id is lower (it had read as if the
        // lower rule took every employee who matches both).
        let kept = "an account either rule gave stays with it while that rule matches";
        // A disabled rule wins nothing: what it would win once enabled.
        let wins = match rule.enabled {
            true => format!(
                "{} wins by precedence (lowest id) where neither gave the employee's account; {kept}",
                label(winner)
            ),
            false => format!(
                "{} is disabled; enabled, {} would win by precedence (lowest id) where neither \
                 gave the employee's account; {kept}",
                label(rule.id),
                label(winner)
            ),
        };
        let message = format!(
            "conflict: {} {} ({}) and rule {} {} ({}) can both match one employee; {who}; {wins}",
            label(rule.id),
            quoted_name(&rule.name),
            rule.role,
            other.id,
            quoted_name(&other.name),
            other.role,
        );
        out.push(json!({
            "rule_id": other.id, "rule": other.name, "role": other.role,
            "employees": count, "employee_ids": ids, "winner": winner, "message": message,
        }));
    }
    out
}

fn rules_check<S: Store>(p: &Pipeline<S>) -> crate::api::Result<Response> {
    let all = p.store.rules()?;
    let enabled: Vec<&Rule> = all.iter().filter(|r| r.enabled).collect();
    let mut last = LastRoster::load(p, &enabled)?;
    let mut found = Vec::new();
    let mut text = String::new();
    // Not "no problems found" when the roster to check them against could not be read.
    if let Some(why) = last.unread.as_ref().filter(|_| !enabled.is_empty()) {
        let m = format!("{why}: the rules' columns and the employees they match were not checked");
        line(&mut text, &m);
        found.push(json!({"rule_id": null, "message": m}));
    }
    for rule in &enabled {
        if p.cfg.role(&rule.role).is_none() {
            let m = format!(
                "rule {} {}: role \"{}\" is no longer in provisioning.roles",
                rule.id,
                quoted_name(&rule.name),
                rule.role
            );
            line(&mut text, &m);
            found.push(json!({"rule_id": rule.id, "message": m}));
        }
        for w in last.warnings(rule) {
            let m = format!("rule {} {}: {w}", rule.id, quoted_name(&rule.name));
            line(&mut text, &m);
            found.push(json!({"rule_id": rule.id, "message": m}));
        }
        if let Some(m) = rule.ambiguity() {
            line(&mut text, &m);
            found.push(json!({"rule_id": rule.id, "message": m}));
        }
        // Each pair once, from its lower id; a rule left out for its role wins nothing.
        if p.cfg.role(&rule.role).is_none() {
            continue;
        }
        let later: Vec<&Rule> = enabled
            .iter()
            .copied()
            .filter(|o| o.id > rule.id && p.cfg.role(&o.role).is_some())
            .collect();
        for c in conflicts(&mut last, rule, &later) {
            line(&mut text, c["message"].as_str().unwrap_or_default());
            found.push(c);
        }
    }
    if found.is_empty() {
        text.push_str("rules check: no conflicts or problems found\n");
    }
    Ok(Response {
        exit: if found.is_empty() { exit::OK } else { exit::NO },
        json: json!({ "problems": found }),
        text,
    })
}

/// Runs a `rules` request.
/// `drawn`: an edit posted from the rule's page, with the fields as the page drew them
/// (see [`edit_rule`]).
pub(super) fn run<S: Store>(
    p: &Pipeline<S>,
    req: Request,
    caller: &str,
    drawn: bool,
) -> crate::api::Result<Response> {
    Ok(match req {
        Request::RulesList {} => {
            let rules = p.store.rules()?;
            let mut text = String::new();
            for r in &rules {
                let _ = writeln!(text, "{}", rule_line(r));
            }
            if rules.is_empty() {
                text.push_str("no rules yet: add one with `autoprov rules add`\n");
            }
            Response::ok(json!(rules.iter().map(rule_json).collect::<Vec<_>>()), text)
        }
        Request::RulesShow { id } => {
            let all = p.store.rules()?;
            match all.iter().find(|r| r.id == RuleId(id)) {
                Some(r) => rule_shown(p, r, &all)?,
                None => no_rule(id),
            }
        }
        Request::RulesAdd {
            name,
            role,
            when,
            strict,
            accept,
        } => {
            let refusing = Conflicts { strict, accept };
            let fields = Fields {
                name: Some(name),
                role: Some(role),
                when,
                drawn: false,
            };
            rules_save(p, caller, None, fields, refusing)?
        }
        Request::RulesEdit {
            name: None,
            role: None,
            ref when,
            ..
        } if when.is_empty() => Response::fail(
            exit::USAGE,
            "rules edit needs --name, --role or --when (nothing to change)",
        ),
        Request::RulesEdit {
            id,
            name,
            role,
            when,
            strict,
            accept,
        } => {
            let refusing = Conflicts { strict, accept };
            let fields = Fields {
                name,
                role,
                when,
                drawn,
            };
            rules_save(p, caller, Some(id), fields, refusing)?
        }
        Request::RulesDelete { id } => delete(p, caller, id)?,
        Request::RulesEnable {
            id,
            enabled,
            strict,
            accept,
        } => enable(p, caller, id, enabled, Conflicts { strict, accept })?,
        Request::RulesCheck {} => rules_check(p)?,
        _ => unreachable!("not a rules request"),
    })
}

fn delete<S: Store>(p: &Pipeline<S>, caller: &str, id: u64) -> crate::api::Result<Response> {
    let Some(rule) = p.store.rule(RuleId(id))? else {
        return Ok(no_rule(id));
    };
    p.store.delete_rule(
        rule.id,
        note(
            caller,
            "rules delete",
            format!("deleted {}", rule_line(&rule)),
        ),
    )?;
    Ok(Response::ok(
        rule_json(&rule),
        format!(
            "deleted rule {id}; its accounts move to the next matching rule or are deactivated at the next sync\n"
        ),
    ))
}

fn enable<S: Store>(
    p: &Pipeline<S>,
    caller: &str,
    id: u64,
    enabled: bool,
    refusing: Conflicts,
) -> crate::api::Result<Response> {
    let Some(mut rule) = p.store.rule(RuleId(id))? else {
        return Ok(no_rule(id));
    };
    // SPEC §2: a rule naming a role not in provisioning.roles is refused; enabled, it
    // would be left out at every sync while it looked as if it applied. (One enabled
    // already is no change: answered so below, not refused as if it were enabled now.)
    if enabled
        && !rule.enabled
        && let Err(refusal) = configured_role(p, &rule.role)
    {
        return Ok(with_role_hint(refusal, id));
    }
    let was_enabled = std::mem::replace(&mut rule.enabled, enabled);
    // Enabled, it may conflict, or read a column the last roster lacks, as an added rule
    // may: said as `rules add|edit` say it, and refused as they refuse (`--strict`, or
    // other conflicts than the web section showed) unless it was enabled already.
    let mut found = match enabled {
        true => Some(conflicts_and_warnings(p, &rule, &p.store.rules()?)?),
        false => None,
    };
    // Enabled already with a role taken out of the config: said, as the sync leaves it out.
    if let Some((_, warnings)) = &mut found
        && configured_role(p, &rule.role).is_err()
    {
        warnings.insert(
            0,
            format!(
                "its role \"{}\" is not in provisioning.roles: it is left out at every sync, as \
                 if disabled; give it a role that is (rules edit {id} --role ...) or add the role back",
                rule.role
            ),
        );
    }
    let mut text = String::new();
    if let Some((conflicts, warnings)) = &found {
        said(&mut text, conflicts, warnings);
        if !was_enabled && !conflicts.is_empty() && refusing.refuse(conflicts) {
            return Ok(refused(text, conflicts.clone(), "the rule stays disabled"));
        }
    }
    let verb = if enabled { "enable" } else { "disable" };
    // Already so: no change, none audited (three `rules disable` had read as three changes).
    let text = match was_enabled == enabled {
        true => format!("no change: rule {id} is {verb}d already\n{text}"),
        false => {
            p.store.put_rule(
                &rule,
                note(caller, &format!("rules {verb}"), rule_line(&rule)),
            )?;
            format!("rule {id} {verb}d; takes effect at the next sync\n{text}")
        }
    };
    let mut j = rule_json(&rule);
    if let Some((conflicts, warnings)) = found {
        j["conflicts"] = conflicts_json(conflicts, rule.id);
        j["warnings"] = json!(warnings);
    }
    j["changed"] = json!(was_enabled != enabled);
    Ok(Response::ok(j, text))
}

/// The refusal of a rule that conflicts (`--strict`, or other conflicts than those
/// accepted): `text` says the conflicts, then that it was refused and what `stays`.
fn refused(mut text: String, conflicts: Vec<Value>, stays: &str) -> Response {
    text.push_str(&format!(
        "refused (--strict): the rule conflicts with the rules above; {stays}\n"
    ));
    Response {
        exit: exit::REFUSED,
        json: json!({"error": "conflicts", "conflicts": conflicts}),
        text,
    }
}

/// A refusal of a stored rule's role, with what to do about it.
fn with_role_hint(mut refusal: Response, id: u64) -> Response {
    let hint = format!(
        "; give rule {id} a role that is (rules edit {id} --role ...), or leave it disabled"
    );
    refusal.text = format!("{}{hint}", refusal.text.trim_end());
    refusal
}

/// `new`, or the rule's own condition that it differs from only by its line breaks' CRs:
/// a browser posts every line break of a form's text as CR LF and draws a lone CR as a line
/// break, so a value holding `\r\n` or `\r` came back from the page holding `\n`, and a
/// save that changed nothing had changed what the rule matches.
fn kept_condition(own: &[Condition], new: Condition) -> Condition {
    let lf = |c: &Condition| c.to_string().replace("\r\n", "\n").replace('\r', "\n");
    let new_text = lf(&new);
    own.iter()
        .find(|old| **old != new && lf(old) == new_text)
        .cloned()
        .unwrap_or(new)
}

/// Applies `--name`, `--role` and `--when` to `rule`, or the answer refusing them.
fn edit_rule<S: Store>(
    p: &Pipeline<S>,
    all: &[Rule],
    rule: &mut Rule,
    fields: Fields,
) -> Result<(), Response> {
    let Fields {
        name,
        role,
        when,
        drawn,
    } = fields;
    // From the page, the rule's own name as a one-line field shows and posts it back (line
    // breaks gone) is no change: a name saved before control characters were refused is
    // kept. The same name asked for is no change either way.
    let own = |n: &String| *n == rule.name || (drawn && *n == rule.name.replace(['\r', '\n'], ""));
    let name = name.filter(|n| rule.name.is_empty() || !own(n));
    if let Some(name) = name {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(Response::fail(
                exit::USAGE,
                "a rule needs a non-empty --name",
            ));
        }
        // A line break in a name could not be kept by the web's one-line field (a save
        // from the page renamed the rule), and would break the lines of `rules list`.
        if let Some(why) = crate::core::model::disguises(&name) {
            return Err(Response::fail(
                exit::USAGE,
                format!("a rule's --name may not hold {why}"),
            ));
        }
        // Compared as shown: letter case, composed or decomposed accents and characters that
        // show as nothing aside ("José" twice had been two names).
        // A space of any kind (a no-break one, a Braille blank) as a plain one.
        let shown = |n: &str| {
            let spaced: String = (n.chars())
                .map(|c| match c.is_whitespace() || c == '\u{2800}' {
                    true => ' ',
                    false => c,
                })
                .collect();
            crate::core::columns::fold_cell(&spaced)
        };
        if let Some(other) = all
            .iter()
            .find(|r| r.id != rule.id && shown(&r.name) == shown(&name))
        {
            return Err(Response::fail(
                exit::REFUSED,
                format!(
                    "refused: rule {} is already named {}; rule names are unique",
                    other.id,
                    quoted_name(&other.name)
                ),
            ));
        }
        rule.name = name;
    }
    match role {
        Some(role) => rule.role = configured_role(p, &role)?,
        // Saved enabled, a rule whose role was taken out of provisioning.roles would look
        // as if it applied: refused as a new rule naming that role is.
        None if rule.enabled => {
            configured_role(p, &rule.role).map_err(|r| with_role_hint(r, rule.id.0))?;
        }
        None => {}
    }
    if !when.is_empty() {
        let mut conditions = Vec::new();
        for text in &when {
            match Condition::parse(text) {
                Ok(c) if drawn => conditions.push(kept_condition(&rule.conditions, c)),
                Ok(c) => conditions.push(c),
                Err(e) => return Err(Response::fail(exit::USAGE, format!("--when {e}"))),
            }
        }
        rule.conditions = conditions;
    }
    if rule.conditions.is_empty() {
        return Err(Response::fail(
            exit::USAGE,
            "a rule needs at least one --when condition, e.g. --when \"department = Finance\"",
        ));
    }
    Ok(())
}

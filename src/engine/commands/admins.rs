//! `admins list | show | add | set | remove` and `auth check`.

use super::listing::{Filter, Listing};
use super::{configured_role, note};
use crate::api::render::{account_json, account_text};
use crate::api::{Request, Response, exit};
use crate::core::accounts::{Account, Origin, Status};
use crate::core::columns::{is_plain_identity, is_well_formed_email};
use crate::core::rules::RuleId;
use crate::engine::pipeline::Pipeline;
use crate::store::Store;
use crate::util::now_rfc3339;
use serde_json::json;

/// The accounts `admins list` shows, read for writing out; or the refusal of a bad filter.
pub(super) fn listing<S: Store>(
    p: &Pipeline<S>,
    status: Option<String>,
    origin: Option<String>,
    rule: Option<u64>,
) -> crate::api::Result<Result<Listing, Response>> {
    let status = match status.as_deref().map(Status::parse) {
        Some(None) => {
            return Ok(Err(Response::fail(
                exit::USAGE,
                "--status takes active or inactive",
            )));
        }
        Some(s) => s,
        None => None,
    };
    let origin = match origin.as_deref().map(Origin::parse) {
        Some(None) => {
            return Ok(Err(Response::fail(
                exit::USAGE,
                "--origin takes auto or manual",
            )));
        }
        Some(o) => o,
        None => None,
    };
    let filter = Filter {
        status,
        origin,
        rule: rule.map(RuleId),
    };
    // Read in place and kept without history: a listing of a million accounts.
    Ok(Ok(Listing::read(&p.store, filter)?))
}

fn admins_add<S: Store>(
    p: &Pipeline<S>,
    caller: &str,
    employee_id: String,
    email: String,
    role: String,
) -> crate::api::Result<Response> {
    let employee_id = employee_id.trim().to_string();
    let email = email.trim().to_string();
    if employee_id.is_empty() {
        return Ok(Response::fail(exit::USAGE, "--employee-id is empty"));
    }
    // Shown one to a line (`admins list`, the audit log): a line break in it could make a
    // line of its own there, such as a forged audit entry, and spaces push the rest away.
    if let Some(why) = crate::core::model::disguises(&employee_id) {
        return Ok(Response::fail(
            exit::USAGE,
            format!("--employee-id may not hold {why}"),
        ));
    }
    // `/admins/{employee_id}` cannot name them: browsers (and curl) resolve `.` and `..` in
    // a path, `%2e` too, so such a manual admin could not be changed or removed on its page.
    if matches!(employee_id.as_str(), "." | "..") {
        return Ok(Response::fail(
            exit::USAGE,
            format!(
                "--employee-id \"{employee_id}\" cannot be used: the web section and the API \
                 address an account as /admins/{{employee_id}}, which cannot name it"
            ),
        ));
    }
    if !is_well_formed_email(&email) {
        return Ok(Response::fail(
            exit::USAGE,
            format!("--email \"{email}\" is not a well-formed address"),
        ));
    }
    // One nobody could sign in as (`auth check` denies it): refused, not added unusable.
    if !is_plain_identity(&email) {
        return Ok(Response::fail(
            exit::USAGE,
            format!(
                "--email {email:?} is not one address: {}, so no sign-in would match it",
                crate::core::columns::NOT_ONE_ADDRESS
            ),
        ));
    }
    let role = match configured_role(p, &role) {
        Ok(r) => r,
        Err(refusal) => return Ok(refusal),
    };
    if let Some(existing) = p.store.account(&employee_id)? {
        return Ok(Response::fail(
            exit::REFUSED,
            format!(
                "refused: employee {employee_id} already has an {} account ({}, {}); use `admins show {employee_id}`",
                existing.origin, existing.role, existing.status
            ),
        ));
    }
    if let Some(refusal) = email_taken(p, &email, &employee_id)? {
        return Ok(refusal);
    }
    let now = now_rfc3339();
    let mut account = Account {
        employee_id: employee_id.clone(),
        email,
        role: role.to_string(),
        status: Status::Active,
        origin: Origin::Manual,
        rule_id: None,
        created_at: now.clone(),
        updated_at: now.clone(),
        history: Vec::new(),
    };
    account.record(
        &now,
        "admins add",
        format!("manual account added by {caller}"),
    );
    p.store.put_account(
        &account,
        false,
        note(
            caller,
            "admins add",
            format!(
                "manual account {employee_id} ({}, {})",
                account.email, account.role
            ),
        ),
    )?;
    let rules = p.store.rules()?;
    Ok(Response::ok(
        account_json(&account, &rules),
        format!("added manual account {employee_id}\n"),
    ))
}

/// The manual account `id`, or the refusal to print.
fn manual_account<S: Store>(
    p: &Pipeline<S>,
    id: &str,
) -> crate::api::Result<Result<Account, Response>> {
    match p.store.account(id)? {
        None => Ok(Err(Response::fail(
            exit::NO,
            format!("no account for employee {id}"),
        ))),
        Some(a) if a.origin == Origin::Auto => Ok(Err(Response::fail(
            exit::REFUSED,
            format!(
                "refused: account {id} is provisioned automatically by rule {}; change or delete the rule instead (`autoprov rules edit|disable|delete {}`)",
                a.rule_id.map_or("-".into(), |r| r.to_string()),
                a.rule_id.map_or("ID".into(), |r| r.to_string()),
            ),
        ))),
        Some(a) => Ok(Ok(a)),
    }
}

fn admins_set<S: Store>(
    p: &Pipeline<S>,
    caller: &str,
    id: &str,
    role: Option<String>,
    status: Option<String>,
) -> crate::api::Result<Response> {
    let mut account = match manual_account(p, id)? {
        Ok(a) => a,
        Err(r) => return Ok(r),
    };
    let before = account.clone();
    if role.is_none() && status.is_none() {
        return Ok(Response::fail(
            exit::USAGE,
            "admins set needs --role or --status",
        ));
    }
    // The account's own role, as it is, is no change: one since taken out of
    // provisioning.roles must not keep the account from being suspended (the web's row
    // form posts the role with the status).
    // In any letter case, as roles are matched (`it admin` had been refused for a role
    // since taken out of provisioning.roles, and the suspension with it).
    if let Some(role) = role.filter(|r| r.trim().to_lowercase() != account.role.to_lowercase()) {
        match configured_role(p, &role) {
            Ok(r) => account.role = r,
            Err(refusal) => return Ok(refusal),
        }
    }
    if let Some(status) = status {
        match Status::parse(&status) {
            Some(Status::Active) if !account.is_active() => {
                if let Some(refusal) = email_taken(p, &account.email, &account.employee_id)? {
                    return Ok(refusal);
                }
                account.status = Status::Active;
            }
            Some(s) => account.status = s,
            None => {
                return Ok(Response::fail(
                    exit::USAGE,
                    "--status takes active or inactive",
                ));
            }
        }
    }
    let rules = p.store.rules()?;
    // The same role and status again is no change: not recorded in its history or the
    // audit (a second `--status inactive` had read as a change someone made).
    if (&account.role, account.status) == (&before.role, before.status) {
        let mut text = account_text(&account, &rules);
        text.insert_str(
            0,
            "no change: the account already has this role and status\n",
        );
        let mut j = account_json(&account, &rules);
        j["changed"] = json!(false);
        return Ok(Response::ok(j, text));
    }
    let now = now_rfc3339();
    account.record(&now, "admins set", format!("changed by {caller}"));
    p.store.put_account(
        &account,
        false,
        note(
            caller,
            "admins set",
            // What it was too, as a rule edit's entry says: a grant could not be told from
            // a status change without reading back through older entries.
            format!(
                "manual account {id}: role {}, {}; was {}, {}",
                account.role, account.status, before.role, before.status
            ),
        ),
    )?;
    // `changed` says in JSON what "no change" says in text.
    let mut j = account_json(&account, &rules);
    j["changed"] = json!(true);
    Ok(Response::ok(j, account_text(&account, &rules)))
}

/// The refusal when an active account of another employee than `employee_id` holds
/// `email` (SPEC §3: an email is one person's identity).
fn email_taken<S: Store>(
    p: &Pipeline<S>,
    email: &str,
    employee_id: &str,
) -> crate::api::Result<Option<Response>> {
    let taken = active_with_email(p, email)?;
    Ok(taken.iter().find(|a| a.employee_id != employee_id).map(|holder| {
        Response::fail(
            exit::REFUSED,
            format!(
                "refused: the email {email} is held by the active {} account of employee {}; an email is one person's SSO identity",
                holder.origin, holder.employee_id
            ),
        )
    }))
}

/// The active accounts whose email is `email` (case-insensitive), without history.
fn active_with_email<S: Store>(p: &Pipeline<S>, email: &str) -> crate::api::Result<Vec<Account>> {
    // Through the store's email index: this answers every SSO sign-in.
    let mut active = p.store.accounts_by_email(email)?;
    active.retain(Account::is_active);
    active.iter_mut().for_each(|a| a.history.clear());
    Ok(active)
}

/// The role of the one active account holding `email`, as `auth check` grants it; None
/// when no account or several hold it, or its role is no longer in `provisioning.roles`.
pub(super) fn active_role<S: Store>(
    p: &Pipeline<S>,
    email: &str,
) -> crate::api::Result<Option<String>> {
    Ok(match signing_in(p, email)?.as_slice() {
        [a] if p.cfg.role(&a.role).is_some() => Some(a.role.clone()),
        _ => None,
    })
}

/// The active accounts a person signing in as `email` may be: none unless it is one
/// address ([`is_plain_identity`]), and only those whose email is one too.
fn signing_in<S: Store>(p: &Pipeline<S>, email: &str) -> crate::api::Result<Vec<Account>> {
    if !is_plain_identity(email) {
        return Ok(Vec::new());
    }
    let mut active = active_with_email(p, email)?;
    active.retain(|a| is_plain_identity(&a.email));
    Ok(active)
}

fn auth_check<S: Store>(p: &Pipeline<S>, email: &str) -> crate::api::Result<Response> {
    // Deny by default: an address only one spelling of which is an identity (see
    // `is_plain_identity`), asked about or held by the account it finds. ASCII spaces
    // around it are trimmed, as SPEC §1 compares (HTTP denies them: `web::api`).
    if !is_plain_identity(email) {
        return Ok(Response {
            exit: exit::NO,
            json: json!({"allowed": false, "email": email, "active": false, "not_an_address": true}),
            text: match is_well_formed_email(email.trim_matches(|c: char| c.is_ascii_whitespace()))
            {
                false => format!(
                    "denied: {email:?} is not a well-formed email address (one @, a local \
                     part, a domain with a dot, no spaces)\n"
                ),
                true => format!(
                    "denied: {email:?} is a second spelling of an address ({})\n",
                    crate::core::columns::NOT_ONE_ADDRESS
                ),
            },
        });
    }
    let active = signing_in(p, email)?;
    Ok(match active.as_slice() {
        // `allowed` in every answer, as the HTTP API's `auth/check` (SPEC §11); `active`
        // kept for scripts that read it.
        // A role taken out of provisioning.roles is no longer granted (SPEC §2): its
        // accounts are denied from the moment the config says so, not from the next sync.
        [a] if p.cfg.role(&a.role).is_none() => Response {
            exit: exit::NO,
            json: json!({"allowed": false, "email": email, "active": true, "role": a.role, "role_not_configured": true}),
            text: format!(
                "denied: the account of {email} has role \"{}\", which is not in provisioning.roles\n",
                a.role
            ),
        },
        [a] => Response::ok(
            json!({"allowed": true, "active": true, "email": a.email, "employee_id": a.employee_id, "role": a.role, "origin": a.origin}),
            format!("{}\n", a.role),
        ),
        [] => Response {
            exit: exit::NO,
            json: json!({"allowed": false, "email": email, "active": false}),
            text: format!("no active admin account for {email}\n"),
        },
        many => Response {
            exit: exit::NO,
            json: json!({"allowed": false, "email": email, "active": false, "ambiguous": many.len()}),
            text: format!(
                "denied: {} active accounts share the email {email}; fix the roster or the manual accounts\n",
                many.len()
            ),
        },
    })
}

/// Runs an `admins` or `auth` request (`admins list` is a [`listing`]).
pub(super) fn run<S: Store>(
    p: &Pipeline<S>,
    req: Request,
    caller: &str,
) -> crate::api::Result<Response> {
    Ok(match req {
        Request::AdminsShow { id } => match p.store.account(&id)? {
            Some(a) => {
                let rules = p.store.rules()?;
                Response::ok(account_json(&a, &rules), account_text(&a, &rules))
            }
            None => Response::fail(exit::NO, format!("no account for employee {id}")),
        },
        Request::AdminsAdd {
            employee_id,
            email,
            role,
        } => admins_add(p, caller, employee_id, email, role)?,
        Request::AdminsSet { id, role, status } => admins_set(p, caller, &id, role, status)?,
        Request::AdminsRemove { id } => remove(p, caller, &id)?,
        Request::AuthCheck { email } => auth_check(p, &email)?,
        _ => unreachable!("not an admins request"),
    })
}

fn remove<S: Store>(p: &Pipeline<S>, caller: &str, id: &str) -> crate::api::Result<Response> {
    let account = match manual_account(p, id)? {
        Ok(a) => a,
        Err(r) => return Ok(r),
    };
    p.store.put_account(
        &account,
        true,
        note(
            caller,
            "admins remove",
            format!(
                "removed manual account {id} ({}, {})",
                account.email, account.role
            ),
        ),
    )?;
    Ok(Response::ok(
        json!({"removed": id}),
        format!("removed manual account {id}\n"),
    ))
}

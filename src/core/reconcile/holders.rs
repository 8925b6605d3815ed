//! Who holds which email as a sync plans it (SPEC §3: no two active accounts share an
//! email): the active manual accounts' emails and, when one of them is an employee's roster
//! email, every employee's; and the warnings for a row that one of them blocks.

use super::groups::Manual;
use crate::core::columns::fold;
use crate::core::model::{Employee, Finding, Roster};
use std::collections::HashMap;

/// Whether an employee's email is held by another employee's active manual account
/// (`manual`: their employee IDs by folded email): whether [`super::plan`] plans again.
pub(super) fn any_email_taken(roster: &Roster, manual: &Manual) -> bool {
    !manual.is_empty()
        && roster.employees.iter().any(|e| {
            taken_by_other(manual, e.email(), e.id()).is_some() && e.has_well_formed_email()
        })
}

/// The warning for an employee whose account is kept inactive: its email is `holder`'s.
pub(super) fn not_active(
    roster: &Roster,
    employee: &Employee,
    email: &str,
    holder: &str,
) -> Finding {
    Finding::at(
        employee.line(),
        roster.email_column.as_str(),
        format!(
            "the account of employee \"{}\" is not left or made active: its email \"{email}\" is \
             held by employee \"{holder}\" (no two active accounts share an email)",
            employee.id()
        ),
    )
}

/// Who holds which email (SPEC §3), as [`super::plan`] asks each row.
pub(super) struct Holders<'h> {
    /// The active manual accounts' employee IDs by folded email.
    pub(super) manual: &'h Manual,
    /// In [`super::plan`]'s second pass (some employee's roster email is a manual account's): the
    /// active employees with a well-formed roster email, by that email folded.
    rows: HashMap<String, &'h str>,
}

impl<'h> Holders<'h> {
    pub(super) fn manual(manual: &'h Manual) -> Holders<'h> {
        Holders {
            manual,
            rows: HashMap::new(),
        }
    }

    /// With the active employees whose roster email is well formed and held by no other
    /// employee's manual account, whether or not they get an account: the email is the SSO
    /// identity (SPEC §3), so another employee's auto account that keeps it is not left
    /// active, whoever signs in with it now. (An employee who got no account had taken
    /// nobody's place, and signed in with the kept address, had the other's rights.)
    pub(super) fn with_rows(manual: &'h Manual, roster: &'h Roster) -> Holders<'h> {
        let rows = (roster.employees.iter())
            .filter(|e| {
                !e.inactive
                    && e.has_well_formed_email()
                    && taken_by_other(manual, e.email(), e.id()).is_none()
            })
            .map(|e| (fold(e.email()).into_owned(), e.id()))
            .collect();
        Holders { manual, rows }
    }

    /// The employee other than `employee_id` whose roster email is `email`, if known.
    pub(super) fn row_of_other(&self, email: &str, employee_id: &str) -> Option<&'h str> {
        if self.rows.is_empty() {
            return None;
        }
        (self.rows.get(&*fold(email)).copied()).filter(|holder| *holder != employee_id)
    }
}

/// The employee ID of the active manual account of another employee holding `email`.
pub(super) fn taken_by_other<'m>(
    manual: &'m Manual,
    email: &str,
    employee_id: &str,
) -> Option<&'m str> {
    if manual.is_empty() {
        return None;
    }
    manual
        .get(&*fold(email))
        .map(String::as_str)
        .filter(|holder| *holder != employee_id)
}

/// The warning for an employee whose roster email a manual account of `holder` holds.
pub(super) fn email_taken(roster: &Roster, employee: &Employee, holder: &str) -> Finding {
    Finding::at(
        employee.line(),
        roster.email_column.as_str(),
        format!(
            "email \"{}\" of employee \"{}\" is held by the active manual account of employee \
             \"{holder}\"; \"{}\" gets no new account and no email change until one of them changes",
            employee.email(),
            employee.id(),
            employee.id()
        ),
    )
}

/// The warning for an employee the rules give an account whose roster email nobody can
/// sign in as (see [`crate::core::columns::is_plain_identity`]): `auth check` gives that
/// account to nobody.
pub(super) fn not_one_address(roster: &Roster, employee: &Employee) -> Finding {
    Finding::at(
        employee.line(),
        roster.email_column.as_str(),
        format!(
            "email {:?} of employee \"{}\" is not one address: {}, so no sign-in matches \
             it and its admin account is given to nobody; correct the email in the HR system",
            employee.email(),
            employee.id(),
            crate::core::columns::NOT_ONE_ADDRESS
        ),
    )
}

/// The warning for an employee whose active auto account's email (the address they sign
/// in with) moves from `old` to `new` with this roster: no action in SPEC §4's table, and
/// no safety limit counts it, but whoever holds `new` holds the admin rights from now on.
pub(super) fn sign_in_moved(roster: &Roster, employee: &Employee, old: &str, new: &str) -> Finding {
    Finding::at(
        employee.line(),
        roster.email_column.as_str(),
        format!(
            "the admin account of employee \"{}\" now signs in as \"{new}\" instead of \"{old}\"",
            employee.id()
        ),
    )
}

/// The warning for an inactive employee (a leaver) who holds an active manual account,
/// which no roster changes (SPEC §3).
pub(super) fn manual_of_leaver(employee: &Employee) -> Finding {
    Finding::line(
        employee.line(),
        format!(
            "employee \"{}\" is inactive but holds an active manual admin account, which a \
             roster never changes; remove it with `autoprov admins remove {}` if they left",
            employee.id(),
            employee.id()
        ),
    )
}

/// Whether an account's email moves from `old` to `new`: not when only its letter case
/// changes (compared exactly first: a re-sync asks this of every account it keeps).
pub(super) fn email_moved(new: &str, old: &str) -> bool {
    new != old && fold(new) != fold(old)
}

/// At most `MAX_WARNINGS` warnings, in file order, and a count of the rest (as the roster's)
/// with a digest of them all: these warnings depend on the accounts (sign-in moves, emails
/// manual accounts hold), and approval compares them with the held report's. With the rest
/// only counted, a manual account removed meanwhile had let an approval move sign-ins
/// among those not listed (a domain move of over a thousand admins).
pub(super) fn cap_warnings(warnings: &mut Vec<Finding>) {
    use crate::core::roster::MAX_WARNINGS;
    use sha2::Digest;
    warnings.sort_by(|a, b| (a.line, &a.column, &a.message).cmp(&(b.line, &b.column, &b.message)));
    if warnings.len() > MAX_WARNINGS {
        let mut all = sha2::Sha256::new();
        for w in warnings.iter() {
            let line = w.line.map_or(String::new(), |l| l.to_string());
            let column = w.column.as_deref().unwrap_or("");
            all.update(format!("{line}\t{column}\t{}\n", w.message).as_bytes());
        }
        let digest: String = all.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let (total, more) = (warnings.len(), warnings.len() - MAX_WARNINGS);
        warnings.truncate(MAX_WARNINGS);
        let digest = format!("the {total} warnings' digest {digest}");
        warnings.push(Finding::not_listed(more, "warnings", &digest));
    }
}

//! The header row: which column holds each field of interest, and what is wrong with it.

use std::collections::HashMap;

use csv::ByteRecord;

use super::{Capped, RosterOptions};
use crate::core::columns;
use crate::core::model::{Finding, column_shown};

/// The field key of the derived `is_manager` field.
const IS_MANAGER_KEY: &str = "ismanager";

/// What the header row says: where each column of interest is and how it is written.
pub(super) struct Header {
    /// Each column's header as written (trimmed), for findings.
    pub(super) written: Vec<String>,
    pub(super) employee_id: Option<usize>,
    pub(super) email: Option<usize>,
    pub(super) manager_id: Option<usize>,
    pub(super) status: Option<usize>,
    /// Column of each kept field (`Roster::fields` order); `None` when missing (an error).
    pub(super) fields: Vec<Option<usize>>,
    /// The key of each kept field: `Roster::fields`.
    pub(super) field_keys: Vec<String>,
    /// The key of each column with a header name, in file order: `Roster::present`.
    pub(super) present: Vec<String>,
}

impl Header {
    /// Reads the header row on `line`, pushing what is wrong with it to `errors` and
    /// `warnings` (in column order, then missing required columns, then missing fields).
    pub(super) fn read(
        record: &ByteRecord,
        line: u64,
        opts: &RosterOptions,
        errors: &mut Capped,
        warnings: &mut Capped,
    ) -> Header {
        let mut h = Header {
            written: Vec::with_capacity(record.len()),
            employee_id: None,
            email: None,
            manager_id: None,
            status: None,
            fields: Vec::new(),
            field_keys: Vec::new(),
            present: Vec::new(),
        };
        let by_key = h.columns(record, line, opts, errors, warnings);
        let column_of = |canonical: &str| by_key.get(&columns::canonical_key(canonical)).copied();
        h.employee_id = column_of(columns::EMPLOYEE_ID);
        h.email = column_of(columns::EMAIL);
        h.manager_id = column_of(columns::MANAGER_ID);
        h.status = column_of(columns::EMPLOYMENT_STATUS);
        h.required_columns(line, errors);
        h.needed_fields(line, opts, &by_key, errors);
        h
    }

    /// The header as written of `column`.
    pub(super) fn name(&self, column: usize) -> &str {
        &self.written[column]
    }

    /// Reads each column's name: field key -> first column that has it.
    fn columns(
        &mut self,
        record: &ByteRecord,
        line: u64,
        opts: &RosterOptions,
        errors: &mut Capped,
        warnings: &mut Capped,
    ) -> HashMap<String, usize> {
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for (column, raw) in record.iter().enumerate() {
            let written = String::from_utf8_lossy(raw).trim().to_owned();
            let key = opts.columns.key(&written);
            self.written.push(written);
            if key.is_empty() {
                warnings.push(Finding::line(
                    line,
                    format!(
                        "column {} has no header name; its values are ignored",
                        column + 1
                    ),
                ));
                continue;
            }
            if let Some(&first) = by_key.get(&key) {
                // Each header named at most `MAX_COLUMN_SHOWN` characters long: a thousand
                // columns repeating one long header had each named it in full (600 MB).
                let name = column_shown(display_name(&key).unwrap_or(&self.written[first]));
                errors.push(Finding::at(
                    line,
                    name.as_ref(),
                    format!(
                        "columns \"{}\" and \"{}\" both mean {name}; remove or rename one of them",
                        column_shown(&self.written[first]),
                        column_shown(&self.written[column]),
                    ),
                ));
                continue;
            }
            by_key.insert(key.clone(), column);
            if key == IS_MANAGER_KEY {
                warnings.push(Finding::at(
                    line,
                    self.written[column].clone(),
                    format!(
                        "column \"{}\" is ignored: is_manager is derived from manager_id, never \
                         read from the file",
                        column_shown(&self.written[column])
                    ),
                ));
            }
            self.present.push(key);
        }
        by_key
    }

    /// An error for each required column (employee_id, email) the header lacks.
    fn required_columns(&self, line: u64, errors: &mut Capped) {
        for (canonical, found) in [
            (columns::EMPLOYEE_ID, self.employee_id),
            (columns::EMAIL, self.email),
        ] {
            if found.is_none() {
                let aliases = aliases_of(canonical);
                errors.push(Finding::at(
                    line,
                    canonical,
                    format!(
                        "the required column {canonical} is missing; add it, with the header \
                         \"{canonical}\" or one of \"{aliases}\""
                    ),
                ));
            }
        }
    }

    /// Finds the column of each field enabled rules need (once per key, is_manager aside),
    /// with an error for each one the header lacks.
    fn needed_fields(
        &mut self,
        line: u64,
        opts: &RosterOptions,
        by_key: &HashMap<String, usize>,
        errors: &mut Capped,
    ) {
        for name in &opts.needed_fields {
            let key = opts.columns.key(name);
            if key == IS_MANAGER_KEY {
                // Derived from manager_id: without that column everyone would be "not a
                // manager", and a rule on it would take managers' accounts away (or grant
                // a "not a manager" role to them) on a file that merely renamed the column.
                if self.manager_id.is_none() {
                    errors.push(Finding::at(
                        line,
                        columns::MANAGER_ID,
                        format!(
                            "column {} is missing, but an enabled rule refers to {name}, which \
                             is derived from it; add it, with the header \"{}\" or one of \
                             \"{}\", or change or disable the rule",
                            columns::MANAGER_ID,
                            columns::MANAGER_ID,
                            aliases_of(columns::MANAGER_ID)
                        ),
                    ));
                }
                continue;
            }
            if self.field_keys.contains(&key) {
                continue;
            }
            let column = by_key.get(&key).copied();
            if column.is_none() {
                errors.push(Finding::at(
                    line,
                    name.clone(),
                    format!(
                        "column \"{name}\" is missing, but an enabled rule refers to it; add the \
                         column to the file, or change or disable the rule"
                    ),
                ));
            }
            self.field_keys.push(key);
            self.fields.push(column);
        }
    }
}

/// The default aliases of a canonical column, as a message lists them.
fn aliases_of(canonical: &str) -> String {
    columns::DEFAULT_ALIASES
        .iter()
        .find(|(c, _)| *c == canonical)
        .map(|(_, a)| a.join("\", \""))
        .unwrap_or_default()
}

/// The canonical name of a field key, when it has one (the name a header finding uses;
/// another column is named as the file first writes it, not by its squashed key).
fn display_name(key: &str) -> Option<&'static str> {
    columns::DEFAULT_ALIASES
        .iter()
        .map(|(canonical, _)| *canonical)
        .find(|canonical| columns::canonical_key(canonical) == key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::columns::Columns;
    use crate::core::roster::tests::{ids, needing, ok, ok_with, places, rejected, rejected_with};
    use std::collections::BTreeMap;

    #[test]
    fn headers_match_ignoring_case_spaces_underscores_dashes_and_dots() {
        for header in [
            "Employee ID,E-Mail,Manager.ID,Employment_Status,Job Title",
            "employee_id,email,manager_id,employment_status,job_title",
            "EMPLOYEEID,EMAIL,MANAGERID,EMPLOYMENTSTATUS,JOBTITLE",
            " emp id ,Work Email,Reports To ID,Worker Status,jobTitle",
        ] {
            let text = format!("{header}\n1,a@example.com,,Active,Chef\n2,,1,Terminated,Cook\n");
            let r = ok_with(text.as_bytes(), &needing(&["Job-Title"]));
            assert_eq!(
                r.present,
                [
                    "employeeid",
                    "email",
                    "managerid",
                    "employmentstatus",
                    "jobtitle"
                ],
                "{header}"
            );
            assert_eq!(r.fields, ["jobtitle"]);
            assert_eq!(r.employees[1].manager_id(), "1");
            assert!(r.employees[1].inactive, "{header}");
            assert_eq!(r.value(0, 0), "chef");
        }
    }

    #[test]
    fn configured_aliases_are_honoured() {
        let mut extra = BTreeMap::new();
        extra.insert("employee_id".to_string(), vec!["Badge Number".to_string()]);
        let opts = RosterOptions {
            columns: Columns::new(&extra),
            ..RosterOptions::default()
        };
        let r = ok_with(b"Badge Number,UPN\n1,a@example.com\n", &opts);
        assert_eq!(ids(&r), ["1"]);
    }

    #[test]
    fn two_headers_with_the_same_key_are_a_duplicate_column() {
        let r = rejected("employee_id,Email,Work Email\n1,a@example.com,b@example.com\n");
        assert_eq!(places(&r.errors), [(Some(1), Some("email"))]);
        assert_eq!(
            r.errors[0].message,
            "columns \"Email\" and \"Work Email\" both mean email; remove or rename one of them"
        );
        let r = rejected("employee_id,email,Job Title,job_title\n1,a@example.com,x,y\n");
        // Named as the file first writes it: "jobtitle" is neither that nor a rule's name.
        assert_eq!(places(&r.errors), [(Some(1), Some("Job Title"))]);
        assert!(
            r.errors[0]
                .message
                .contains("\"Job Title\" and \"job_title\"")
        );
    }

    #[test]
    fn required_columns_missing_are_errors_at_the_header_line() {
        let r = rejected("name,department\nAda,R&D\n");
        assert_eq!(
            places(&r.errors),
            [(Some(1), Some("employee_id")), (Some(1), Some("email"))]
        );
        assert!(
            r.errors[0].message.contains("\"Employee ID\""),
            "{}",
            r.errors[0].message
        );
        let r = rejected("Worker ID,name\n1,Ada\n");
        assert_eq!(places(&r.errors), [(Some(1), Some("email"))]);
    }

    #[test]
    fn header_errors_name_the_header_line_after_skipped_empty_lines() {
        let r = rejected("\n\nemployee_id,name\n1,Ada\n");
        assert_eq!(places(&r.errors), [(Some(3), Some("email"))]);
    }

    #[test]
    fn a_field_an_enabled_rule_needs_must_be_in_the_header() {
        let opts = needing(&["Department", "cost-center", "is_manager", "department"]);
        let r = rejected_with(
            b"employee_id,email,Cost Center\n1,a@example.com,42\n",
            &opts,
        );
        assert_eq!(
            places(&r.errors),
            [(Some(1), Some("Department")), (Some(1), Some("manager_id"))]
        );
        assert!(
            r.errors[0].message.contains("an enabled rule refers to it"),
            "{}",
            r.errors[0].message
        );
        // is_manager is derived from manager_id: without the column it is refused, not
        // false for everyone.
        assert!(
            r.errors[1]
                .message
                .contains("an enabled rule refers to is_manager, which is derived from it"),
            "{}",
            r.errors[1].message
        );
    }

    #[test]
    fn needed_fields_keep_their_folded_values_and_skip_is_manager() {
        let opts = needing(&[
            "Department",
            "is_manager",
            "job_title",
            "DEPARTMENT",
            "Work Email",
        ]);
        let text = "employee_id,email,department,Job Title,other,Manager ID\n\
                    1,Ada@Example.com,  Finance ,ÉCOLE Lead,x,\n\
                    2,b@example.com,finance,,y,1\n";
        let r = ok_with(text.as_bytes(), &opts);
        assert_eq!(r.fields, ["department", "jobtitle", "email"]);
        assert_eq!(
            r.present,
            [
                "employeeid",
                "email",
                "department",
                "jobtitle",
                "other",
                "managerid"
            ]
        );
        assert!(r.employees[0].is_manager);
        let row = |i: usize| -> Vec<&str> { (0..r.fields.len()).map(|f| r.value(i, f)).collect() };
        assert_eq!(row(0), ["finance", "école lead", "ada@example.com"]);
        assert_eq!(row(1), ["finance", "", "b@example.com"]);
        // Equal folded values share one symbol.
        assert_eq!(r.row(0).values[0], r.row(1).values[0]);
        // The email itself is kept trimmed, as written.
        assert_eq!(r.employees[0].email(), "Ada@Example.com");
        // A sync lets the values go once rules are matched; the rest stays.
        let mut r = r;
        r.forget_values();
        assert!(r.fields.is_empty() && r.values.is_empty() && r.row(0).values.is_empty());
        assert_eq!(r.field_index("department"), None);
        assert_eq!(
            (r.employees[1].id(), r.employees[1].email()),
            ("2", "b@example.com")
        );
        assert_eq!(r.rows, 2);
    }

    #[test]
    fn an_is_manager_column_is_ignored_with_a_warning() {
        let text = "employee_id,email,IsManager,manager_id\n1,a@example.com,true,\n2,b@example.com,false,1\n";
        let r = ok_with(text.as_bytes(), &needing(&["is_manager"]));
        assert_eq!(places(&r.warnings), [(Some(1), Some("IsManager"))]);
        // Derived, not read: 1 has a report, 2 has none.
        let managers: Vec<bool> = r.employees.iter().map(|e| e.is_manager).collect();
        assert_eq!(managers, [true, false]);
        assert!(r.fields.is_empty());
    }

    #[test]
    fn a_column_without_a_header_name_is_ignored_with_a_warning() {
        let r = ok("employee_id,email,\n1,a@example.com,\n");
        assert_eq!(places(&r.warnings), [(Some(1), None)]);
        assert!(
            r.warnings[0]
                .message
                .contains("column 3 has no header name")
        );
        assert_eq!(r.present, ["employeeid", "email"]);
    }
}

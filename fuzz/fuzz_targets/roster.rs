//! `roster`: arbitrary bytes -> `autoprov::core::roster::parse`.
//!
//! Parsed twice: with the default options, and with the fields that the rules of
//! testdata/rules.txt-style configs need (`department`, `is_manager`). Parsing must never
//! panic, and what it returns must be consistent:
//! - `Ok`: every employee has a non-empty, trimmed, unique id; an active employee has a
//!   well-formed email; each employee has one value per kept field, and every value
//!   resolves; rows are in file order; `rows` counts the employees.
//! - `Err`: the rejection lists at least one error.
#![no_main]

use std::collections::HashSet;

use autoprov::core::columns::is_well_formed_email;
use autoprov::core::roster::{RosterOptions, parse};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8], opts: &RosterOptions) {
    match parse(bytes, opts) {
        Ok(roster) => {
            assert_eq!(roster.rows, roster.employees.len(), "rows != employees");
            let mut ids = HashSet::new();
            let mut previous_line = 0;
            for e in &roster.employees {
                assert!(!e.id.is_empty(), "employee on line {} has an empty id", e.line);
                assert_eq!(e.id.trim(), &*e.id, "id {:?} is not trimmed", e.id);
                assert!(ids.insert(&*e.id), "id {:?} appears twice", e.id);
                assert!(
                    e.inactive || is_well_formed_email(&e.email),
                    "active employee {:?} has email {:?}",
                    e.id,
                    e.email
                );
                assert!(e.line > previous_line, "rows out of order at line {}", e.line);
                previous_line = e.line;
                assert_eq!(e.values.len(), roster.fields.len(), "values != fields");
                for i in 0..roster.fields.len() {
                    let _ = roster.value(e, i);
                }
            }
        }
        Err(rejection) => {
            assert!(!rejection.errors.is_empty(), "a rejection without errors");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, &RosterOptions::default());
    let needing = RosterOptions {
        needed_fields: vec!["department".to_owned(), "is_manager".to_owned()],
        ..RosterOptions::default()
    };
    check(data, &needing);
});

//! The manager graph (SPEC §1): who is a manager, and what is odd about the reporting lines.
//!
//! Every step is a loop over arrays, never recursion, so a million-deep reporting chain
//! costs the same stack as a flat organization.

use super::model::{Employee, Finding};
use super::parallel::{ROWS_WORTH_A_THREAD, join};

/// At most this many warnings of each kind are listed; the rest are summed up in one more.
pub const MAX_WARNINGS_PER_KIND: usize = 1000;

/// A cycle's message names at most this many of its members.
const CYCLE_NAMES: usize = 10;

/// Marks "no manager" in the parent array.
const NONE: usize = usize::MAX;

/// The row of an employee ID among the employees, when one has it.
pub type RowOf<'a> = &'a (dyn Fn(&[Employee], &str) -> Option<usize> + Sync);

/// Sets `is_manager` on every employee and returns the warnings about the manager graph,
/// and each row's manager's row ([`NO_MANAGER`] for none, for one not in the file, and for
/// the employee themselves; no rows at all when the graph has a cycle).
///
/// `is_manager` is true when at least one *other* employee who is not inactive names this
/// employee's ID as `manager_id`. Warnings: a `manager_id` naming no employee of the file,
/// an employee who is their own manager, and each reporting cycle once (at the line of its
/// member that comes first in the file). `manager_column` is the header the findings name.
/// `row_of` finds the row of a manager's ID (the parser's table of IDs, so that no second
/// index of a million IDs is built here).
pub fn derive(
    employees: &mut [Employee],
    manager_column: &str,
    row_of: RowOf<'_>,
) -> (Vec<Finding>, Vec<u32>) {
    let n = employees.len();
    let mut parent = vec![NONE; n];
    let links = {
        let all: &[Employee] = employees;
        let read = |parent: &mut [usize], start: usize| {
            Links::read(all, start, parent, manager_column, row_of)
        };
        if n < ROWS_WORTH_A_THREAD {
            read(&mut parent, 0)
        } else {
            // Both halves on their own core: each row's manager is a lookup of its own.
            let (head, tail) = parent.split_at_mut(n / 2);
            let (first, second) = join(|| read(head, 0), || read(tail, n / 2));
            first.then(second)
        }
    };
    for (e, is_manager) in employees.iter_mut().zip(links.managers) {
        e.is_manager = is_manager;
    }

    let mut cycles = KindWarnings::default();
    for members in find_cycles(&parent) {
        cycles.push(cycle_warning(employees, &members, manager_column));
    }

    let mut warnings = Vec::new();
    links.dangling.finish(&mut warnings, MORE_NOT_IN_FILE);
    links.own.finish(&mut warnings, MORE_OWN);
    let acyclic = cycles.listed.is_empty();
    cycles.finish(&mut warnings, "more reporting cycles");
    // Rows fit a u32 (`roster.max_bytes`); NONE becomes NO_MANAGER. None kept with a cycle.
    let managers = match acyclic {
        true => parent.into_iter().map(|p| p as u32).collect(),
        false => Vec::new(),
    };
    (warnings, managers)
}

/// The summary of the employees past the listed ones who name a manager not in the file.
const MORE_NOT_IN_FILE: &str = "employees name a manager who is not in this file";
/// The summary of the employees past the listed ones who are their own manager.
const MORE_OWN: &str = "employees are listed as their own manager";

/// The warning for an employee whose manager is not in the file.
pub fn not_in_file(line: u64, manager_column: &str, manager_id: &str, id: &str) -> Finding {
    Finding::at(
        line,
        manager_column,
        format!(
            "manager \"{manager_id}\" of employee \"{id}\" is not in this file; check the ID or \
             add the manager's row"
        ),
    )
}

/// The warning for an employee listed as their own manager.
pub fn own_manager(line: u64, manager_column: &str, id: &str) -> Finding {
    Finding::at(
        line,
        manager_column,
        format!(
            "employee \"{id}\" is listed as their own manager; leave {} empty for someone \
             with no manager",
            crate::core::model::column_shown(manager_column)
        ),
    )
}

/// The warnings of a graph with no cycle whose rows naming a manager not in the file are
/// `not_in_file` of `not_in_file_count`, and those their own manager `own` of `own_count`
/// (each list in file order, the first [`MAX_WARNINGS_PER_KIND`] or all), as [`derive`]
/// lists them.
pub fn warnings_without_cycles(
    not_in_file: Vec<Finding>,
    not_in_file_count: usize,
    own: Vec<Finding>,
    own_count: usize,
) -> Vec<Finding> {
    let mut warnings = Vec::new();
    for (mut listed, count, what) in [
        (not_in_file, not_in_file_count, MORE_NOT_IN_FILE),
        (own, own_count, MORE_OWN),
    ] {
        listed.truncate(MAX_WARNINGS_PER_KIND);
        let more = count - listed.len();
        KindWarnings { listed, more }.finish(&mut warnings, what);
    }
    warnings
}

/// A row's manager's row when it has none in the file.
pub const NO_MANAGER: u32 = u32::MAX;

/// What the `manager_id`s of some consecutive rows say: who manages someone, and the
/// rows whose manager is missing or themselves.
struct Links {
    managers: Vec<bool>,
    dangling: KindWarnings,
    own: KindWarnings,
}

impl Links {
    /// Reads the rows from `start` on, as many as `parent` has room for, writing each
    /// row's manager's row there.
    fn read(
        all: &[Employee],
        start: usize,
        parent: &mut [usize],
        manager_column: &str,
        row_of: RowOf<'_>,
    ) -> Links {
        let mut links = Links {
            managers: vec![false; all.len()],
            dangling: KindWarnings::default(),
            own: KindWarnings::default(),
        };
        for (e, parent) in all[start..].iter().zip(parent) {
            if e.manager_id().is_empty() {
                continue;
            }
            if e.manager_id() == e.id() {
                links
                    .own
                    .push(own_manager(e.line(), manager_column, e.id()));
                continue;
            }
            match row_of(all, e.manager_id()) {
                Some(m) => {
                    *parent = m;
                    if !e.inactive {
                        links.managers[m] = true;
                    }
                }
                None => links.dangling.push(not_in_file(
                    e.line(),
                    manager_column,
                    e.manager_id(),
                    e.id(),
                )),
            }
        }
        links
    }

    /// These links and then those of the rows that follow.
    fn then(mut self, later: Links) -> Links {
        for (mine, theirs) in self.managers.iter_mut().zip(later.managers) {
            *mine |= theirs;
        }
        self.dangling.append(later.dangling);
        self.own.append(later.own);
        self
    }
}

/// Every cycle of the functional graph `parent` (each node has at most one outgoing edge),
/// each once, as its members in reporting order starting from the one reached first.
///
/// Linear: every node is walked once, and every cycle once more to list its members.
fn find_cycles(parent: &[usize]) -> Vec<Vec<usize>> {
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; parent.len()];
    let mut path = Vec::new();
    let mut cycles = Vec::new();
    for start in 0..parent.len() {
        let mut v = start;
        while v != NONE && state[v] == NEW {
            state[v] = ON_PATH;
            path.push(v);
            v = parent[v];
        }
        if v != NONE && state[v] == ON_PATH {
            // The walk came back to a node of this very walk: that node closes a cycle.
            let mut members = vec![v];
            let mut m = parent[v];
            while m != v {
                members.push(m);
                m = parent[m];
            }
            cycles.push(members);
        }
        for p in path.drain(..) {
            state[p] = DONE;
        }
    }
    cycles
}

/// The warning for one cycle, at the line of its member that comes first in the file.
fn cycle_warning(employees: &[Employee], members: &[usize], manager_column: &str) -> Finding {
    let first = (0..members.len())
        .min_by_key(|&k| employees[members[k]].line())
        .unwrap_or(0);
    let mut names: Vec<String> = members
        .iter()
        .cycle()
        .skip(first)
        .take(members.len().min(CYCLE_NAMES))
        .map(|&m| format!("\"{}\"", employees[m].id()))
        .collect();
    if members.len() > CYCLE_NAMES {
        names.push(format!("… ({} employees in all)", members.len()));
    }
    names.push(format!("\"{}\"", employees[members[first]].id()));
    let anchor = &employees[members[first]];
    Finding::at(
        anchor.line(),
        manager_column,
        format!(
            "reporting cycle: {} (each reports to the next), so nobody in it has a manager \
             outside it; fix {} of one of them",
            names.join(" → "),
            crate::core::model::column_shown(manager_column)
        ),
    )
}

/// Warnings of one kind, listed up to `MAX_WARNINGS_PER_KIND` and counted beyond.
#[derive(Default)]
struct KindWarnings {
    listed: Vec<Finding>,
    more: usize,
}

impl KindWarnings {
    fn push(&mut self, finding: Finding) {
        if self.listed.len() < MAX_WARNINGS_PER_KIND {
            self.listed.push(finding);
        } else {
            self.more += 1;
        }
    }

    /// Takes over the warnings found after these, as if pushed here one by one.
    fn append(&mut self, later: KindWarnings) {
        for finding in later.listed {
            self.push(finding);
        }
        self.more += later.more;
    }

    fn finish(self, out: &mut Vec<Finding>, what: &str) {
        out.extend(self.listed);
        if self.more > 0 {
            out.push(Finding::not_listed(self.more, what, ""));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// [`super::derive`] with the IDs found through a map (the first row of each).
    fn derive(employees: &mut [Employee], manager_column: &str) -> Vec<Finding> {
        let mut rows = HashMap::new();
        for (i, e) in employees.iter().enumerate() {
            if !e.id().is_empty() {
                rows.entry(e.id().to_owned()).or_insert(i);
            }
        }
        super::derive(employees, manager_column, &|_, id| rows.get(id).copied()).0
    }

    fn emp(line: u64, id: &str, manager: &str, inactive: bool) -> Employee {
        Employee::new(line, id, &format!("{id}@example.com"), manager, inactive)
    }

    /// Rows `(id, manager_id, inactive)` on lines 2, 3, ...
    fn org(rows: &[(&str, &str, bool)]) -> Vec<Employee> {
        rows.iter()
            .enumerate()
            .map(|(i, (id, m, inactive))| emp(i as u64 + 2, id, m, *inactive))
            .collect()
    }

    fn managers(employees: &[Employee]) -> Vec<&str> {
        employees
            .iter()
            .filter(|e| e.is_manager)
            .map(|e| e.id())
            .collect()
    }

    fn places(warnings: &[Finding]) -> Vec<(Option<u64>, Option<&str>)> {
        warnings
            .iter()
            .map(|w| (w.line, w.column.as_deref()))
            .collect()
    }

    #[test]
    fn is_manager_when_another_active_employee_reports_to_them() {
        let mut e = org(&[("1", "", false), ("2", "1", false), ("3", "2", false)]);
        let w = derive(&mut e, "manager_id");
        assert_eq!(managers(&e), ["1", "2"]);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn reports_who_are_inactive_do_not_make_a_manager() {
        let mut e = org(&[
            ("1", "", false),
            ("2", "1", true),
            ("3", "", false),
            ("4", "3", true),
            ("5", "3", false),
        ]);
        derive(&mut e, "manager_id");
        assert_eq!(managers(&e), ["3"]);
    }

    #[test]
    fn an_inactive_manager_with_active_reports_is_still_a_manager() {
        let mut e = org(&[("1", "", true), ("2", "1", false)]);
        derive(&mut e, "manager_id");
        assert_eq!(managers(&e), ["1"]);
    }

    #[test]
    fn self_reference_does_not_make_a_manager_and_is_a_warning() {
        let mut e = org(&[("1", "1", false), ("2", "", false)]);
        let w = derive(&mut e, "Supervisor ID");
        assert!(managers(&e).is_empty());
        assert_eq!(places(&w), [(Some(2), Some("Supervisor ID"))]);
        assert!(
            w[0].message
                .contains("\"1\" is listed as their own manager"),
            "{}",
            w[0].message
        );
    }

    #[test]
    fn manager_id_naming_no_employee_is_a_warning() {
        let mut e = org(&[("1", "", false), ("2", "99", false), ("3", "1", false)]);
        let w = derive(&mut e, "manager_id");
        assert_eq!(places(&w), [(Some(3), Some("manager_id"))]);
        assert!(w[0].message.contains("manager \"99\""), "{}", w[0].message);
        assert_eq!(managers(&e), ["1"]);
    }

    #[test]
    fn manager_ids_compare_exactly() {
        // "007" is not "7": leading zeros are significant, as for employee_id.
        let mut e = org(&[("7", "", false), ("8", "007", false)]);
        let w = derive(&mut e, "manager_id");
        assert!(managers(&e).is_empty());
        assert_eq!(places(&w), [(Some(3), Some("manager_id"))]);
    }

    #[test]
    fn a_reporting_cycle_is_reported_once_at_its_first_member_in_the_file() {
        // 2 -> 3 -> 4 -> 2 is a cycle; 5 hangs off it and is not part of it.
        let mut e = org(&[
            ("1", "", false),
            ("3", "4", false),
            ("2", "3", false),
            ("4", "2", false),
            ("5", "4", false),
        ]);
        let w = derive(&mut e, "manager_id");
        assert_eq!(places(&w), [(Some(3), Some("manager_id"))]);
        assert!(
            w[0].message
                .starts_with("reporting cycle: \"3\" → \"4\" → \"2\" → \"3\" "),
            "{}",
            w[0].message
        );
        // Members of a cycle do have active reports, so they are managers.
        assert_eq!(managers(&e), ["3", "2", "4"]);
    }

    #[test]
    fn two_cycles_are_two_warnings_and_a_two_person_cycle_counts() {
        let mut e = org(&[
            ("a", "b", false),
            ("b", "a", false),
            ("c", "d", false),
            ("d", "c", false),
        ]);
        let w = derive(&mut e, "manager_id");
        assert_eq!(
            places(&w),
            [(Some(2), Some("manager_id")), (Some(4), Some("manager_id"))]
        );
        assert!(
            w[0].message.contains("\"a\" → \"b\" → \"a\""),
            "{}",
            w[0].message
        );
        assert!(
            w[1].message.contains("\"c\" → \"d\" → \"c\""),
            "{}",
            w[1].message
        );
    }

    #[test]
    fn a_long_cycle_names_only_the_first_members() {
        let n = 25;
        let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let mut e: Vec<Employee> = (0..n)
            .map(|i| emp(i as u64 + 2, &ids[i], &ids[(i + 1) % n], false))
            .collect();
        let w = derive(&mut e, "manager_id");
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].line, Some(2));
        assert!(
            w[0].message.contains("\"0\" → \"1\" → \"2\" → \"3\" → \"4\" → \"5\" → \"6\" → \"7\" → \"8\" → \"9\" → … (25 employees in all) → \"0\""),
            "{}",
            w[0].message
        );
    }

    #[test]
    fn without_a_manager_column_nobody_is_a_manager() {
        let mut e = org(&[("1", "", false), ("2", "", false)]);
        let w = derive(&mut e, "manager_id");
        assert!(managers(&e).is_empty());
        assert!(w.is_empty());
    }

    #[test]
    fn is_manager_from_a_previous_call_is_overwritten() {
        let mut e = org(&[("1", "", false), ("2", "", false)]);
        e[0].is_manager = true;
        derive(&mut e, "manager_id");
        assert!(managers(&e).is_empty());
    }

    #[test]
    fn warnings_of_one_kind_are_capped_with_a_count_of_the_rest() {
        let rows: Vec<(String, String)> = (0..MAX_WARNINGS_PER_KIND + 5)
            .map(|i| (format!("e{i}"), format!("gone{i}")))
            .collect();
        let mut e: Vec<Employee> = rows
            .iter()
            .enumerate()
            .map(|(i, (id, m))| emp(i as u64 + 2, id, m, false))
            .collect();
        let w = derive(&mut e, "manager_id");
        assert_eq!(w.len(), MAX_WARNINGS_PER_KIND + 1);
        assert_eq!(w[MAX_WARNINGS_PER_KIND].line, None);
        assert_eq!(
            w[MAX_WARNINGS_PER_KIND].message,
            "5 more employees name a manager who is not in this file (not listed)"
        );
    }

    #[test]
    fn warnings_found_on_two_cores_are_listed_in_file_order_and_capped() {
        let n = 2 * ROWS_WORTH_A_THREAD;
        // Every 8th row names a missing manager; in the second half, every 8th row after
        // those is its own manager; everyone else reports to row 0.
        let mut e: Vec<Employee> = (0..n)
            .map(|i| {
                let id = i.to_string();
                let manager = match i % 8 {
                    0 => format!("gone{i}"),
                    1 if i >= n / 2 => id.clone(),
                    _ => "0".to_owned(),
                };
                emp(i as u64 + 2, &id, &manager, false)
            })
            .collect();
        let w = derive(&mut e, "manager_id");
        assert_eq!(managers(&e), ["0"]);
        let cap = MAX_WARNINGS_PER_KIND;
        assert_eq!(w.len(), 2 * cap + 2);
        let dangling: Vec<Option<u64>> = w[..cap].iter().map(|w| w.line).collect();
        let expected: Vec<Option<u64>> = (0..cap as u64).map(|k| Some(8 * k + 2)).collect();
        assert_eq!(dangling, expected);
        assert_eq!(
            w[cap].message,
            format!(
                "{} more employees name a manager who is not in this file (not listed)",
                n / 8 - cap
            )
        );
        assert_eq!(w[cap + 1].line, Some(n as u64 / 2 + 1 + 2));
        assert!(w[cap + 1].message.contains("their own manager"));
        assert_eq!(
            w[2 * cap + 1].message,
            format!(
                "{} more employees are listed as their own manager (not listed)",
                n / 16 - cap
            )
        );
    }

    /// Employee i reports to i - 1: a chain `depth` deep.
    fn chain(depth: usize) -> Vec<Employee> {
        (0..depth)
            .map(|i| {
                let manager = if i == 0 {
                    String::new()
                } else {
                    (i - 1).to_string()
                };
                emp(i as u64 + 2, &i.to_string(), &manager, false)
            })
            .collect()
    }

    #[test]
    fn a_million_deep_chain_does_not_overflow_the_stack() {
        let depth = 1_000_000;
        let mut e = chain(depth);
        let w = derive(&mut e, "manager_id");
        assert!(w.is_empty(), "{:?}", &w[..w.len().min(3)]);
        assert!(e[..depth - 1].iter().all(|e| e.is_manager));
        assert!(!e[depth - 1].is_manager);
    }

    #[test]
    fn a_million_member_cycle_is_one_warning() {
        let depth = 1_000_000;
        let mut e = chain(depth);
        e[0].set_manager_id(&(depth - 1).to_string());
        let w = derive(&mut e, "manager_id");
        assert_eq!(places(&w), [(Some(2), Some("manager_id"))]);
        assert!(
            w[0].message.contains("(1000000 employees in all)"),
            "{}",
            w[0].message
        );
        assert!(e.iter().all(|e| e.is_manager));
    }
}

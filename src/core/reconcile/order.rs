//! A plan's changes put in the order its report lists them: by employee ID, which for a
//! roster written in ID order (as most HR exports are) is roster order.

use super::Change;

/// Puts `changes` in roster order, those of absent employees last, then sorts them by ID.
/// A roster written in ID order (as most HR exports are) is then sorted already: checked in
/// one pass instead of moving a million changes through a full sort. In place, so that no
/// second copy of the changes is ever held.
pub(super) fn sort_changes(changes: &mut [Change], rows: &[u32], roster_rows: usize) {
    // A first import's changes come in roster order (see `plan`): nothing to move.
    if !rows.is_sorted() {
        put_in_roster_order(changes, rows, roster_rows);
    }
    let by_id = |a: &Change, b: &Change| a.employee_id.cmp(&b.employee_id);
    if !changes.is_sorted_by(|a, b| by_id(a, b).is_le()) {
        changes.sort_by(by_id);
    }
}

/// Puts `changes` in the order of their `rows` (`u32::MAX`, an absent employee's, last in
/// the order given), moving each once.
fn put_in_roster_order(changes: &mut [Change], rows: &[u32], roster_rows: usize) {
    const DONE: u32 = u32::MAX;
    let mut at = vec![DONE; roster_rows];
    let mut absent = Vec::new();
    for (i, &row) in rows.iter().enumerate() {
        match at.get_mut(row as usize) {
            Some(slot) => *slot = i as u32,
            None => absent.push(i as u32),
        }
    }
    // Change k of the new order is change `order[k]` of the old one.
    let mut order: Vec<u32> = at.into_iter().filter(|&i| i != DONE).collect();
    order.extend(absent);
    // Applied cycle by cycle with swaps.
    for start in 0..order.len() {
        let mut j = start;
        while order[j] != DONE {
            let k = order[j] as usize;
            order[j] = DONE;
            if k == start {
                break;
            }
            changes.swap(j, k);
            j = k;
        }
    }
}

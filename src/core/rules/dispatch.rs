//! Which rules a row matches, found from its values without evaluating any rule.
//!
//! A rule's conditions each read one field of a row (or whether it manages someone), so
//! whether they hold depends only on that field's value. For each field some rule reads,
//! the set of rules whose conditions on it hold is made once for each value a condition
//! names, and once for every other value (they all fare alike). A row's rules are then the
//! intersection of the sets of its values: a few lookups and bitwise ANDs a row, where each
//! row evaluated the rules filed under its values before (a million rows and 60 rules took
//! ~0.15 s of CPU so; BENCHMARKS.md).

use super::RuleId;
use super::eval::CompiledRule;
use crate::core::model::RuleRow;

/// The rules of a roster as sets over their fields' values.
pub(super) struct Dispatch<'r> {
    /// The rules, lowest id first; bit `k` of a set below is `rules[k]`.
    rules: Vec<&'r CompiledRule>,
    /// 64-bit words in a set of rules.
    words: usize,
    /// The rules that may match a row that does not manage anyone (`[0]`) or does (`[1]`).
    manager: [Vec<u64>; 2],
    /// For each field some rule reads: its index among a row's values, and for each symbol
    /// up to the last a condition names, which set of `sets` holds the rules whose
    /// conditions on the field it passes (`default` for a symbol past the end).
    fields: Vec<Field>,
    /// Sets of rules, `words` words each.
    sets: Vec<u64>,
}

/// One field's sets (see [`Dispatch::fields`]).
struct Field {
    index: usize,
    by_sym: Vec<u32>,
    default: u32,
}

impl<'r> Dispatch<'r> {
    /// Makes the sets of `rules`.
    pub(super) fn new(rules: &'r [CompiledRule]) -> Dispatch<'r> {
        let mut ordered: Vec<&CompiledRule> = rules.iter().collect();
        ordered.sort_by_key(|r| r.id());
        let words = ordered.len().div_ceil(64);
        let set_of = |holds: &dyn Fn(&CompiledRule) -> bool| {
            let mut set = vec![0u64; words];
            for (k, rule) in ordered.iter().enumerate() {
                if holds(rule) {
                    set[k / 64] |= 1 << (k % 64);
                }
            }
            set
        };
        let manager = [false, true].map(|m| set_of(&|r| !r.never() && r.holds_as_manager(m)));
        let mut indices: Vec<usize> = ordered
            .iter()
            .flat_map(|r| r.fields())
            .map(|f| f.0)
            .collect();
        indices.sort_unstable();
        indices.dedup();
        let mut sets = Vec::new();
        let mut fields = Vec::with_capacity(indices.len());
        for index in indices {
            let mut add = |set: Vec<u64>| {
                sets.extend(set);
                (sets.len() / words.max(1) - 1) as u32
            };
            let default = add(set_of(&|r| r.holds_on(index, None)));
            let mut named: Vec<_> = ordered
                .iter()
                .flat_map(|r| r.fields())
                .filter(|f| f.0 == index)
                .flat_map(|f| f.1.iter().copied())
                .collect();
            named.sort_unstable();
            named.dedup();
            let end = named.last().map_or(0, |sym| sym.0 as usize + 1);
            let mut by_sym = vec![default; end];
            for sym in named {
                by_sym[sym.0 as usize] = add(set_of(&|r| r.holds_on(index, Some(sym))));
            }
            fields.push(Field {
                index,
                by_sym,
                default,
            });
        }
        Dispatch {
            rules: ordered,
            words,
            manager,
            fields,
            sets,
        }
    }

    /// Fills `set` with the rules `row` matches, bit `k` for the `k`-th lowest id (see
    /// [`Dispatch::ids`]).
    pub(super) fn set_of(&self, row: RuleRow<'_>, set: &mut Vec<u64>) {
        set.clear();
        set.extend_from_slice(&self.manager[usize::from(row.is_manager)]);
        for field in &self.fields {
            let of = row
                .values
                .get(field.index)
                .and_then(|v| field.by_sym.get(v.0 as usize))
                .map_or(field.default, |&of| of) as usize;
            let rules = &self.sets[of * self.words..(of + 1) * self.words];
            for (mine, theirs) in set.iter_mut().zip(rules) {
                *mine &= theirs;
            }
        }
    }

    /// Calls `matched` with the id of each rule in `set` (made by [`Dispatch::set_of`]),
    /// lowest first.
    pub(super) fn ids(&self, set: &[u64], mut matched: impl FnMut(RuleId)) {
        for (w, &word) in set.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                matched(self.rules[w * 64 + bits.trailing_zeros() as usize].id());
                bits &= bits - 1;
            }
        }
    }

    /// 64-bit words in a set of rules.
    pub(super) fn words(&self) -> usize {
        self.words
    }
}

//! Which rules a row can match, found from its values before any rule is evaluated.
//!
//! Most rules require one field to have one of a few values (`department = "Finance"`,
//! `location in (...)`). Such a rule is filed under those values, and a row only evaluates
//! the rules filed under its own values, plus the rules that require no value. At a million
//! rows and 60 rules, a row evaluated every rule before (BENCHMARKS.md).

use super::RuleId;
use super::eval::CompiledRule;
use crate::core::model::RuleRow;

/// The rules of a roster filed by the values they require, and what each row must evaluate.
pub(super) struct Dispatch<'r> {
    /// The rules, lowest id first; bit `k` of a set below is `rules[k]`.
    rules: Vec<&'r CompiledRule>,
    /// 64-bit words in a set of rules.
    words: usize,
    /// The rules that require no value of any field: every row evaluates them.
    always: Vec<u64>,
    /// For each field some rule requires a value of: its index among an employee's values,
    /// and for each symbol, which set of `sets` holds the rules it lets through (0: none).
    fields: Vec<(usize, Vec<u32>)>,
    /// Sets of rules, `words` words each; set 0 is empty.
    sets: Vec<u64>,
}

impl<'r> Dispatch<'r> {
    /// Files `rules`.
    pub(super) fn new(rules: &'r [CompiledRule]) -> Dispatch<'r> {
        let mut ordered: Vec<&CompiledRule> = rules.iter().collect();
        ordered.sort_by_key(|r| r.id());
        let words = ordered.len().div_ceil(64);
        let mut dispatch = Dispatch {
            always: vec![0; words],
            fields: Vec::new(),
            sets: vec![0; words],
            words,
            rules: Vec::with_capacity(ordered.len()),
        };
        for (k, rule) in ordered.into_iter().enumerate() {
            dispatch.rules.push(rule);
            if rule.never() {
                continue;
            }
            let Some((index, syms)) = rule.required() else {
                set_bit(&mut dispatch.always, k);
                continue;
            };
            let slot = match dispatch.fields.iter().position(|(i, _)| *i == index) {
                Some(slot) => slot,
                None => {
                    dispatch.fields.push((index, Vec::new()));
                    dispatch.fields.len() - 1
                }
            };
            for sym in syms {
                let by_sym = &mut dispatch.fields[slot].1;
                let at = sym.0 as usize;
                if by_sym.len() <= at {
                    by_sym.resize(at + 1, 0);
                }
                let set = match by_sym[at] {
                    0 => {
                        let new = (dispatch.sets.len() / words) as u32;
                        by_sym[at] = new;
                        dispatch.sets.resize(dispatch.sets.len() + words, 0);
                        new
                    }
                    set => set,
                } as usize;
                set_bit(&mut dispatch.sets[set * words..(set + 1) * words], k);
            }
        }
        dispatch
    }

    /// Calls `matched` with the id of each rule `row` matches, lowest first; `scratch` is
    /// reused between rows.
    pub(super) fn matching(
        &self,
        row: RuleRow<'_>,
        scratch: &mut Vec<u64>,
        mut matched: impl FnMut(RuleId),
    ) {
        scratch.clear();
        scratch.extend_from_slice(&self.always);
        for (index, by_sym) in &self.fields {
            let set = row
                .values
                .get(*index)
                .and_then(|v| by_sym.get(v.0 as usize))
                .map_or(0, |&set| set as usize);
            if set != 0 {
                let rules = &self.sets[set * self.words..(set + 1) * self.words];
                for (mine, theirs) in scratch.iter_mut().zip(rules) {
                    *mine |= theirs;
                }
            }
        }
        for (w, &word) in scratch.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let rule = self.rules[w * 64 + bits.trailing_zeros() as usize];
                bits &= bits - 1;
                if rule.matches(row) {
                    matched(rule.id());
                }
            }
        }
    }
}

fn set_bit(words: &mut [u64], k: usize) {
    words[k / 64] |= 1 << (k % 64);
}

//! Interned cell values: each distinct folded value stored once and compared as a number.

use hashbrown::HashTable;

/// An interned, folded (trimmed, lower-cased) cell value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sym(pub u32);

/// Interns folded values so that each distinct value is stored once and compared as a number.
///
/// An ASCII cell is looked up as it is written ([`Interner::intern_ascii_folding`]): its
/// hash is taken over its bytes lower-cased eight at a time in a register, and it is
/// compared lower-casing as it goes, so the folded copy is made only for a value not seen
/// before. Copying each cell to lower-case it first was ~14 % of a million-row parse (the
/// copy stalled the hash's reads of it).
///
/// Before that, a cell is looked up as written among the spellings seen so far (up to
/// [`SPELLINGS`] of them), compared as bytes: a roster spells each department or location
/// the same way in every row, so most cells are found there without being folded.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    values: Vec<Box<str>>,
    /// The symbols, placed by [`folded_hash`] of their value.
    index: HashTable<u32>,
    /// Cells as written (ASCII), each with its symbol.
    spellings: Vec<(Box<[u8]>, Sym)>,
    /// Indices into `spellings`, placed by [`folded_hash`] of the bytes as written.
    by_spelling: HashTable<u32>,
}

/// How many spellings an [`Interner`] remembers: enough for the values of the columns rules
/// name in practice; a column of a million distinct values (a name) is then not kept twice.
const SPELLINGS: usize = 4096;

impl PartialEq for Interner {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl Eq for Interner {}

impl Interner {
    /// The symbol of an already folded value, adding it if new.
    pub fn intern(&mut self, folded: &str) -> Sym {
        let hash = folded_hash(folded.as_bytes(), false);
        self.find_or_add(hash, |v| v == folded, || folded.into())
    }

    /// The symbol of ASCII `value` lower-cased (what `intern(&value.to_ascii_lowercase())`
    /// gives), adding it if new.
    pub fn intern_ascii_folding(&mut self, value: &str) -> Sym {
        debug_assert!(value.is_ascii());
        let written = value.as_bytes();
        let spelling_hash = folded_hash(written, false);
        let spellings = &self.spellings;
        if let Some(&i) = self
            .by_spelling
            .find(spelling_hash, |&i| &*spellings[i as usize].0 == written)
        {
            return spellings[i as usize].1;
        }
        let sym = self.intern_ascii_folding_unseen(value);
        if self.spellings.len() < SPELLINGS {
            let spellings = &self.spellings;
            self.by_spelling
                .insert_unique(spelling_hash, spellings.len() as u32, |&i| {
                    folded_hash(&spellings[i as usize].0, false)
                });
            self.spellings.push((written.into(), sym));
        }
        sym
    }

    /// [`Self::intern_ascii_folding`] of a spelling not remembered.
    fn intern_ascii_folding_unseen(&mut self, value: &str) -> Sym {
        let hash = folded_hash(value.as_bytes(), true);
        let same = |v: &str| {
            v.len() == value.len()
                && v.bytes()
                    .zip(value.bytes())
                    .all(|(a, b)| a == b.to_ascii_lowercase())
        };
        self.find_or_add(hash, same, || value.to_ascii_lowercase().into())
    }

    fn find_or_add(
        &mut self,
        hash: u64,
        same: impl Fn(&str) -> bool,
        folded: impl FnOnce() -> Box<str>,
    ) -> Sym {
        let values = &self.values;
        let entry = self.index.entry(
            hash,
            |&s| same(&values[s as usize]),
            |&s| folded_hash(values[s as usize].as_bytes(), false),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(found) => Sym(*found.get()),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                let sym = self.values.len() as u32;
                slot.insert(sym);
                self.values.push(folded());
                Sym(sym)
            }
        }
    }

    /// The symbol of a folded value if any cell had it.
    pub fn get(&self, folded: &str) -> Option<Sym> {
        let hash = folded_hash(folded.as_bytes(), false);
        self.index
            .find(hash, |&s| &*self.values[s as usize] == folded)
            .map(|&s| Sym(s))
    }

    /// The folded text of a symbol.
    pub fn resolve(&self, sym: Sym) -> &str {
        &self.values[sym.0 as usize]
    }

    /// Interns every value of `other`, in its order; returns each of its symbols' new
    /// symbol here (indexed by the old one). Values new here are numbered as if they had
    /// been interned here in `other`'s order.
    pub fn absorb(&mut self, other: &Interner) -> Vec<Sym> {
        other.values.iter().map(|v| self.intern(v)).collect()
    }
}

/// The hash of `bytes`, or of them ASCII-lower-cased when `lower` (for ASCII bytes: a
/// byte that is not ASCII may change). Words are read eight bytes at a time (the last one,
/// and shorter texts, by overlapping or partial reads), mixed by multiplication, and the
/// result spread with a final mix, as the table takes its slot from the low bits and its
/// tags from the high ones. A collision costs a comparison, nothing more.
fn folded_hash(bytes: &[u8], lower: bool) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let word = |w: u64| if lower { ascii_lower(w) } else { w };
    let len = bytes.len();
    let mut h = (len as u64).wrapping_mul(K);
    let mut mix = |w: u64| h = (h ^ word(w)).wrapping_mul(K).rotate_left(29);
    if len >= 8 {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            mix(u64::from_le_bytes(c.try_into().expect("eight bytes")));
        }
        if !chunks.remainder().is_empty() {
            let last = &bytes[len - 8..];
            mix(u64::from_le_bytes(last.try_into().expect("eight bytes")));
        }
    } else if len >= 4 {
        let a = u32::from_le_bytes(bytes[..4].try_into().expect("four bytes"));
        let b = u32::from_le_bytes(bytes[len - 4..].try_into().expect("four bytes"));
        mix(u64::from(a) << 32 | u64::from(b));
    } else if len > 0 {
        let (a, b, c) = (bytes[0], bytes[len / 2], bytes[len - 1]);
        mix(u64::from(a) << 16 | u64::from(b) << 8 | u64::from(c));
    }
    h ^= h >> 32;
    h = h.wrapping_mul(K);
    h ^ (h >> 29)
}

/// The eight bytes of `w`, each ASCII capital made lower-case (bytes of ASCII text only).
fn ascii_lower(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let seven = w & (0x7F * ONES);
    // The top bit of each byte: set when the byte is at least 'A', and when above 'Z'.
    let from_a = seven + (0x80 - u64::from(b'A')) * ONES;
    let above_z = seven + (0x80 - u64::from(b'Z') - 1) * ONES;
    let capital = from_a & !above_z & (0x80 * ONES);
    w | (capital >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ascii_lower_lowers_capitals_only() {
        let all: Vec<u8> = (0u8..128).collect();
        for chunk in all.chunks(8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap());
            let want: Vec<u8> = chunk.iter().map(u8::to_ascii_lowercase).collect();
            assert_eq!(ascii_lower(w).to_le_bytes().to_vec(), want);
        }
    }

    #[test]
    fn spellings_past_the_remembered_ones_intern_as_folded() {
        let (mut written, mut folded) = (Interner::default(), Interner::default());
        for round in 0..2 {
            for n in 0..SPELLINGS + 100 {
                let value = format!("Dept-{n}");
                let sym = written.intern_ascii_folding(&value);
                assert_eq!(
                    sym,
                    folded.intern(&value.to_ascii_lowercase()),
                    "round {round}"
                );
                assert_eq!(
                    written.intern_ascii_folding(&value.to_ascii_uppercase()),
                    sym
                );
            }
        }
        assert_eq!(written.spellings.len(), SPELLINGS);
        assert_eq!(&written, &folded);
    }

    proptest! {
        /// An ASCII value interned as written has the symbol of its lower-cased form, and
        /// the table gives the symbols interning folded values one by one gives.
        #[test]
        fn interning_as_written_is_interning_folded(
            values in proptest::collection::vec("[a-dA-D0-9 ._-]{0,20}", 0..60),
        ) {
            let (mut written, mut folded) = (Interner::default(), Interner::default());
            for v in &values {
                let lower = v.to_ascii_lowercase();
                prop_assert_eq!(written.intern_ascii_folding(v), folded.intern(&lower));
                prop_assert_eq!(written.resolve(folded.intern(&lower)), lower.as_str());
                prop_assert_eq!(written.get(&lower), Some(folded.intern(&lower)));
            }
            prop_assert_eq!(&written, &folded);
            prop_assert_eq!(written.get("never-a-value-here-xyz"), None);
        }
    }
}

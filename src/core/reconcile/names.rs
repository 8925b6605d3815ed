//! The role and rule names of a plan's changes, each held once: a first import of a million
//! rows reports 950k changes that name a few dozen roles and rules (issue 14).

use std::collections::HashSet;
use std::sync::Arc;

/// Names handed out as shared strings: the same name, the same allocation.
#[derive(Debug, Clone, Default)]
pub struct Names(HashSet<Arc<str>, crate::core::model::FastHash>);

impl Names {
    /// `name`, shared with every earlier change that named it.
    pub fn of(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(name) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(name);
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_allocated_once() {
        let mut names = Names::default();
        let (a, b, c) = (
            names.of("IT Admin"),
            names.of("IT Admin"),
            names.of("HR Admin"),
        );
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!((&*a, &*c), ("IT Admin", "HR Admin"));
        assert!(!Arc::ptr_eq(&a, &c));
    }
}

//! The pure core: roster parsing, the manager graph, rules, reconciliation and reports.
//!
//! Nothing in here touches files, sockets, clocks or the store: callers pass bytes,
//! timestamps and state in, and get values back.

pub mod accounts;
pub mod columns;
pub mod interner;
pub mod model;
pub mod org;
pub mod packed;
pub mod parallel;
pub mod reconcile;
pub mod report;
pub mod resync;
pub mod roster;
pub mod rules;
pub mod updates;

pub use model::Finding;

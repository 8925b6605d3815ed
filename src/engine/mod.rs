//! The engine: the one thread that changes state. Files and change requests are handled one
//! at a time in the order they arrive, so nothing is ever applied concurrently; reads are
//! answered beside it. Sources reach it through [`EngineHandle`] (typed jobs, never
//! closures) and hear about commits through the [`SourceLink`] they give it.

mod answer;
pub mod arrivals;
pub(crate) mod asker;
#[cfg(test)]
mod audit_tests;
pub mod commands;
mod decide;
mod filed_reports;
pub mod filing;
#[cfg(test)]
mod filing_tests;
pub mod handle;
pub mod heartbeat;
#[cfg(test)]
mod held_tests;
mod jobs;
mod lost_column;
pub mod observe;
pub mod pipeline;
mod resync;
mod resync_steps;
#[cfg(test)]
mod resync_tests;
pub mod roster_file;
#[cfg(test)]
mod rules_tests;
#[cfg(test)]
mod seen_tests;
#[cfg(test)]
mod sign_in_tests;
mod state;
#[cfg(test)]
mod tests;
mod worker;

pub use handle::EngineHandle;
pub use jobs::SourceFile;
pub use observe::{FileObserver, FileOutcome};
pub use state::{EngineState, FetchNow, SourceLink};
pub use worker::start;

//! The engine: the one thread that changes state. Files and change requests are handled one
//! at a time in the order they arrive, so nothing is ever applied concurrently; reads are
//! answered beside it. Sources reach it through [`EngineHandle`] (typed jobs, never
//! closures) and hear about commits through the [`SourceLink`] they give it.

pub mod handle;
mod worker;

pub use handle::{EngineHandle, SourceFile};
pub use worker::{EngineState, SourceLink, start};

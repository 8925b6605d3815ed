//! autoprov: admin accounts from the HR roster, delivered over SFTP.
#![forbid(unsafe_code)]

pub mod backup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod core;
pub mod daemon;
pub mod engine;
pub mod failure;
pub mod ingest;
pub mod layout;
pub mod local;
pub mod logging;
pub mod pipeline;
pub mod store;
pub mod util;

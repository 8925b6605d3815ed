//! autoprov: admin accounts from the HR roster, delivered over SFTP.
#![forbid(unsafe_code)]

pub mod api;
pub mod backup;
pub mod cli;
pub mod config;
pub mod control;
pub mod core;
pub mod daemon;
pub mod data_owner;
pub mod engine;
pub mod folder_modes;
pub mod ingest;
pub mod interrupts;
pub mod layout;
pub mod local;
pub mod logging;
pub mod notify;
pub mod restore_notes;
pub mod store;
pub mod util;
pub mod web;

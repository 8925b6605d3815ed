//! The browser section and HTTP API (SPEC §11).

pub mod pages;

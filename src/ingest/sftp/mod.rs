//! Host mode (`source.mode = "host"`): the built-in SFTP server and the confined drop
//! filesystem it serves.

pub mod drop_fs;
pub mod host_keys;
pub mod server;

pub use server::{CONNECTION_BURST, CONNECTION_RATE_PER_SEC, SftpServer, SftpSettings, SftpUser};

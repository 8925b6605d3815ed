//! Host mode (`source.mode = "host"`): the built-in SFTP server. russh for SSH, russh-sftp
//! for SFTP, [`drop_fs`] for the confined filesystem.
//!
//! Security policy (SPEC §8): explicit algorithm lists per [`SshProfile`] ([`profile`]),
//! public-key and optional argon2 password authentication with at most
//! [`MAX_AUTH_ATTEMPTS`] attempts per connection and a growing per-IP delay after failed
//! attempts ([`auth`]), a pre-authentication deadline, an idle timeout, and one session
//! channel per connection that may only start the `sftp` subsystem ([`session`]); the
//! connection is closed shortly after its SFTP session ends ([`server`]). Connections are
//! throttled per source and capped per IP and in total before the banner ([`throttle`]).
//!
//! After login, the SFTP stream runs through a packet guard (a packet announced over 256
//! KiB ends the session instead of being misparsed) and a pump (which keeps a client that
//! pipelines thousands of small requests from deadlocking russh's session loop); a
//! connection that moves no bytes for the idle timeout is closed by a watchdog even when
//! russh's own timer is stuck ([`stream`]). Handle and upload limits live in [`drop_fs`].
//!
//! [`SshProfile`]: crate::config::SshProfile

pub mod auth;
pub mod drop_fs;
pub mod host_keys;
mod pipe;
pub mod profile;
pub mod server;
mod session;
mod stream;
pub mod throttle;

pub use auth::{MAX_AUTH_ATTEMPTS, SftpUser};
pub use server::{SftpServer, SftpSettings};
pub use throttle::{
    CONNECTION_BURST, CONNECTION_RATE_PER_SEC, MAX_UNAUTHENTICATED_PER_SOURCE, REFUSAL_LOG_INTERVAL,
};

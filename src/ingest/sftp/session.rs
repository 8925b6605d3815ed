//! The russh handler of one connection: authentication goes to [`ConnAuth`]; of the rest,
//! only one session channel is allowed, and on it only the `sftp` subsystem, served by
//! [`DropFs`] through the [`sftp_pump`] and the [`PacketGuard`].

use std::sync::Arc;

use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Pty};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

use super::auth::{ConnAuth, printable};
use super::drop_fs::{DropFs, DropRoot, MAX_PACKET_LEN};
use super::pipe::sftp_pipe;
use super::stream::{PacketGuard, sftp_pump};

/// What every SFTP session of the server needs.
pub(super) struct SftpContext {
    /// The confined filesystem the sessions serve.
    pub(super) drop_root: Arc<DropRoot>,
    /// Uploads larger than this are cut off and discarded.
    pub(super) max_upload_bytes: u64,
    /// The server's tasks; shutdown waits for them (and for each session's cleanup).
    pub(super) tracker: TaskTracker,
}

/// The russh handler of one connection.
pub(super) struct SshHandler {
    auth: ConnAuth,
    sftp: Arc<SftpContext>,
    span: Span,
    /// Cuts the connection's socket and SFTP stream.
    kill: CancellationToken,
    /// Cancelled when the SFTP session has ended.
    sftp_ended: CancellationToken,
    session_channel: Option<Channel<Msg>>,
    session_opened: bool,
    sftp_started: bool,
}

impl SshHandler {
    /// A connection that has not authenticated yet.
    pub(super) fn new(
        auth: ConnAuth,
        sftp: Arc<SftpContext>,
        span: Span,
        kill: CancellationToken,
        sftp_ended: CancellationToken,
    ) -> SshHandler {
        SshHandler {
            auth,
            sftp,
            span,
            kill,
            sftp_ended,
            session_channel: None,
            session_opened: false,
            sftp_started: false,
        }
    }

    async fn refuse_channel(&self, kind: &str, reply: ChannelOpenHandle) {
        tracing::info!(parent: &self.span, kind, "channel refused");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
    }

    fn refuse_request(
        &self,
        kind: &str,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), anyhow::Error> {
        tracing::info!(parent: &self.span, request = kind, "channel request refused");
        session.channel_failure(channel)?;
        Ok(())
    }
}

impl russh::server::Handler for SshHandler {
    type Error = anyhow::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(self.auth.none())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        self.auth.publickey_offered(user, offer).await
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.auth.publickey(user, key).await
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.auth.password(user, password).await
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        self.auth.refuse("keyboard-interactive", user).await
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        _certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        self.auth.refuse("certificate", user).await
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        self.auth.succeeded();
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.session_opened {
            self.refuse_channel("second session", reply).await;
            return Ok(());
        }
        self.session_opened = true;
        self.session_channel = Some(channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("x11", reply).await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("direct-tcpip", reply).await;
        Ok(())
    }

    async fn channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("forwarded-tcpip", reply).await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_channel("direct-streamlocal", reply).await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The client sends nothing more on the only channel it may use: close it.
        session.close(channel)?;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("pty-req", channel, session)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("x11-req", channel, session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("env", channel, session)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("shell", channel, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("exec", channel, session)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_request("window-change", channel, session)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(parent: &self.span, request = "agent-forwarding", "channel request refused");
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(parent: &self.span, request = "tcpip-forward", "global request refused");
        Ok(false)
    }

    async fn cancel_tcpip_forward(
        &mut self,
        _address: &str,
        _port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(parent: &self.span, request = "streamlocal-forward", "global request refused");
        Ok(false)
    }

    async fn cancel_streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ours = self.session_channel.as_ref().map(Channel::id) == Some(channel_id);
        if name != "sftp" || self.sftp_started || !ours {
            let what = format!("subsystem {}", printable(name));
            return self.refuse_request(&what, channel_id, session);
        }
        let Some(channel) = self.session_channel.take() else {
            return self.refuse_request("subsystem", channel_id, session);
        };
        self.sftp_started = true;
        session.channel_success(channel_id)?;
        let fs = DropFs::new(
            self.sftp.drop_root.clone(),
            self.sftp.max_upload_bytes,
            self.span.clone(),
            Some(self.sftp.tracker.token()),
        );
        let (pump_side, sftp_side) = sftp_pipe();
        self.sftp
            .tracker
            .spawn(sftp_pump(channel, pump_side, self.kill.clone()).instrument(self.span.clone()));
        let stream = PacketGuard::new(sftp_side, self.span.clone())
            .ending(self.sftp_ended.clone().drop_guard());
        let config = russh_sftp::server::Config {
            max_client_packet_len: MAX_PACKET_LEN,
        };
        russh_sftp::server::run_with_config(stream, fs, config).await;
        tracing::debug!(parent: &self.span, "sftp subsystem started");
        Ok(())
    }
}

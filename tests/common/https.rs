//! A local HTTPS server for tests that play an HR vendor: a CA made with rcgen in the test,
//! a certificate for `127.0.0.1`/`localhost` signed by it, and an axum `Router` served over
//! tokio-rustls on a runtime of its own (stopped on drop).
//!
//! ```ignore
//! let ca = TestCa::new();
//! let server = HttpsServer::start(&ca, Router::new().route("/x", get(|| async { "hi" })));
//! let ca_file = ca.write_pem(env.root());          // for source.hris.ca_file
//! let url = server.url("/x");                       // https://127.0.0.1:PORT/x
//! ```

use axum::Router;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;

/// A certificate authority made for one test.
pub struct TestCa {
    /// The CA certificate, PEM.
    pub pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl TestCa {
    /// A new CA with its own key.
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "autoprov test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes the CA certificate as `<dir>/test-ca.pem` (for `source.hris.ca_file`).
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("test-ca.pem");
        std::fs::write(&path, &self.pem).expect("write CA PEM");
        path
    }

    /// A TLS server config with a fresh certificate for 127.0.0.1 and localhost.
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "autoprov test vendor");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).expect("server cert");
        let chain = vec![cert.der().clone(), self.der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Connections whose TLS handshake finished, for `axum::serve`.
struct TlsListener {
    done: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.done.recv().await {
            Some(connection) => connection,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// A runtime of `threads` workers, a TLS acceptor with a certificate of `ca`, and a TCP
/// listener on 127.0.0.1 (port 0) with its address.
fn listening(
    ca: &TestCa,
    threads: usize,
) -> (
    tokio::runtime::Runtime,
    tokio_rustls::TlsAcceptor,
    tokio::net::TcpListener,
    SocketAddr,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("server runtime");
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config());
    let tcp = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = tcp.local_addr().expect("local addr");
    (runtime, acceptor, tcp, addr)
}

/// An HTTPS server on 127.0.0.1 (port 0) answering with a router; stopped on drop.
pub struct HttpsServer {
    /// Where it listens.
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl HttpsServer {
    /// Starts serving `router` with a certificate of `ca`.
    pub fn start(ca: &TestCa, router: Router) -> HttpsServer {
        let (runtime, acceptor, tcp, addr) = listening(ca, 2);
        let (tx, done) = mpsc::channel(16);
        // Handshakes run beside each other: a client that stalls in one holds up nobody.
        runtime.spawn(async move {
            loop {
                let Ok((stream, peer)) = tcp.accept().await else {
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        runtime.spawn(async move {
            let _ = axum::serve(TlsListener { done, addr }, router).await;
        });
        HttpsServer {
            addr,
            runtime: Some(runtime),
        }
    }

    /// Answers the requests with `answers` in turn (the last one again once all were
    /// given), bytes as given (status line, headers and body), each on a connection then
    /// closed cleanly (TLS close_notify): for answers axum would not send, such as an
    /// HTTP/1.1 body whose end is only the connection's close.
    pub fn raw(ca: &TestCa, answers: Vec<Vec<u8>>) -> HttpsServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (runtime, acceptor, tcp, addr) = listening(ca, 1);
        let mut answers = answers
            .into_iter()
            .map(Arc::new)
            .collect::<Vec<_>>()
            .into_iter();
        let mut answer = answers.next().expect("an answer");
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                let (acceptor, this) = (acceptor.clone(), Arc::clone(&answer));
                if let Some(next) = answers.next() {
                    answer = next;
                }
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tls.write_all(&this).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        HttpsServer {
            addr,
            runtime: Some(runtime),
        }
    }

    /// `https://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Standard base64 (with padding), for the `Authorization: Basic` a server expects.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

//! The backend's object store as a cart sees it: an HTTPS endpoint that
//! stands in for S3 pre-signed URLs. A job hands the cart a URL; the cart
//! `PUT`s a diagnostic bundle to it, or `GET`s a file from it (with `Range`
//! for a resumed download). Only URLs the store issued work: each carries a
//! random `token` (as a pre-signed URL carries its signature), bound to one
//! object name and one method; anything else is answered 403.
//!
//! HTTP/1.1 over rustls (the ring provider, as the rest of the project),
//! requests parsed by `httparse`, one request per connection
//! (`Connection: close`). It listens on the loopback; its certificate is the
//! caller's (the test PKI's server certificate, whose names include the
//! QEMU guest's view of the host).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// The largest body the store accepts (above the cart's 64 MiB cap).
pub const MAX_BODY: u64 = 128 * 1024 * 1024;
const MAX_HEAD: usize = 16 * 1024;

/// Why the store did not start.
#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    /// The certificate or key file.
    #[error("{path}: {why}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// TLS configuration.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// The listening socket.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
}

/// An object that was uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Its name (the URL's path without the leading `/`).
    pub name: String,
    /// The body.
    pub body: Vec<u8>,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Put,
    Get,
}

#[derive(Default)]
struct State {
    /// token -> (method, object name)
    grants: HashMap<String, (Method, String)>,
    uploads: Vec<Upload>,
    files: HashMap<String, Arc<Vec<u8>>>,
    /// GET requests answered, with the range start each asked for.
    gets: Vec<(String, u64)>,
    refused: u64,
    /// The next GETs send at most this many body bytes, then close.
    cuts: Vec<u64>,
}

/// The running store. Dropping it stops it.
pub struct ObjectStore {
    addr: SocketAddr,
    host: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pem_err(path: &Path, why: impl std::fmt::Display) -> ObjectStoreError {
    ObjectStoreError::Pem {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

impl ObjectStore {
    /// Starts on `127.0.0.1` (an ephemeral port) with the server
    /// certificate chain and key in `cert`, `key` (PEM). `host` is the name
    /// the URLs it issues carry (`localhost`, or `10.0.2.2` for a QEMU
    /// guest); the certificate must name it.
    pub async fn start(
        cert: &Path,
        key: &Path,
        host: &str,
    ) -> Result<ObjectStore, ObjectStoreError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| pem_err(cert, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| pem_err(cert, e))?;
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(certs, key_der)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let served = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, peer)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = served.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(tls) => {
                            if let Err(e) = serve(tls, &state).await {
                                debug!(%peer, cause = %e, "object store: connection ended");
                            }
                        }
                        Err(e) => warn!(%peer, cause = %e, "object store: TLS handshake failed"),
                    }
                });
            }
        });
        Ok(ObjectStore {
            addr,
            host: host.to_owned(),
            state,
            task,
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    fn grant(&self, method: Method, name: &str) -> String {
        let token = hex::encode(rand::random::<[u8; 16]>());
        self.lock()
            .grants
            .insert(token.clone(), (method, name.to_owned()));
        format!(
            "https://{}:{}/{name}?token={token}",
            self.host,
            self.addr.port()
        )
    }

    /// A pre-signed URL to upload `name` to (PUT).
    pub fn upload_url(&self, name: &str) -> String {
        self.grant(Method::Put, name)
    }

    /// Publishes `body` as `name` and returns a pre-signed URL to fetch it
    /// (GET, `Range` honoured).
    pub fn publish(&self, name: &str, body: Vec<u8>) -> String {
        self.lock().files.insert(name.to_owned(), Arc::new(body));
        self.grant(Method::Get, name)
    }

    /// Everything uploaded so far, oldest first.
    pub fn uploads(&self) -> Vec<Upload> {
        self.lock().uploads.clone()
    }

    /// GET requests answered so far: the object and the first byte asked for.
    pub fn gets(&self) -> Vec<(String, u64)> {
        self.lock().gets.clone()
    }

    /// The next GET answers send at most `bytes[i]` bytes of their body and
    /// then close the connection (the announced length unmet): a dropped
    /// download, one per entry.
    pub fn cut_next_gets(&self, bytes: &[u64]) {
        self.lock().cuts = bytes.iter().rev().copied().collect();
    }

    /// Requests refused (bad token, method or name; malformed).
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Request {
    method: String,
    path: String,
    token: Option<String>,
    content_length: Option<u64>,
    content_type: Option<String>,
    range_from: Option<u64>,
}

fn parse_head(head: &[u8]) -> Result<Option<(Request, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(head).map_err(|e| e.to_string())? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let token = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_owned);
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let content_length = match header("content-length") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| "bad content-length")?),
        None => None,
    };
    let range_from = header("range")
        .and_then(|r| r.strip_prefix("bytes=").map(str::to_owned))
        .and_then(|r| r.split('-').next().and_then(|s| s.parse().ok()));
    Ok(Some((
        Request {
            method: req.method.unwrap_or("").to_owned(),
            path: path.trim_start_matches('/').to_owned(),
            token,
            content_length,
            content_type: header("content-type"),
            range_from,
        },
        used,
    )))
}

async fn respond<S: AsyncWriteExt + Unpin>(
    s: &mut S,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    s.shutdown().await
}

async fn serve<S: AsyncReadExt + AsyncWriteExt + Unpin>(
    mut s: S,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let (req, used) = loop {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Ok(Some(r)) => break r,
            Ok(None) if buf.len() < MAX_HEAD => continue,
            Ok(None) | Err(_) => {
                lock(state).refused += 1;
                return respond(&mut s, "400 Bad Request", &[], b"bad request").await;
            }
        }
    };
    let method = match req.method.as_str() {
        "PUT" => Method::Put,
        "GET" => Method::Get,
        _ => {
            lock(state).refused += 1;
            return respond(&mut s, "405 Method Not Allowed", &[], b"").await;
        }
    };
    // A PUT's body is read before the answer, also a refused one (as S3
    // does): a client still sending would see a broken pipe, not the 403.
    let mut body = Vec::new();
    if method == Method::Put {
        let Some(len) = req.content_length else {
            lock(state).refused += 1;
            return respond(&mut s, "411 Length Required", &[], b"").await;
        };
        if len > MAX_BODY {
            lock(state).refused += 1;
            return respond(&mut s, "413 Payload Too Large", &[], b"").await;
        }
        body = buf[used..].to_vec();
        let mut rest = (&mut s).take(len.saturating_sub(body.len() as u64));
        rest.read_to_end(&mut body).await?;
        if body.len() as u64 != len {
            lock(state).refused += 1;
            return Ok(());
        }
    }
    let granted = req
        .token
        .as_ref()
        .and_then(|t| lock(state).grants.get(t).cloned())
        .is_some_and(|(m, name)| m == method && name == req.path);
    if !granted {
        lock(state).refused += 1;
        return respond(&mut s, "403 Forbidden", &[], b"SignatureDoesNotMatch").await;
    }
    match method {
        Method::Put => {
            let etag = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
            lock(state).uploads.push(Upload {
                name: req.path,
                body,
                content_type: req.content_type,
            });
            respond(&mut s, "200 OK", &[("ETag", format!("\"{etag}\""))], b"").await
        }
        Method::Get => {
            let file = lock(state).files.get(&req.path).cloned();
            let Some(file) = file else {
                return respond(&mut s, "404 Not Found", &[], b"").await;
            };
            let from = req.range_from.unwrap_or(0);
            let cut = {
                let mut st = lock(state);
                st.gets.push((req.path.clone(), from));
                st.cuts.pop()
            };
            if let Some(cut) = cut {
                return respond_cut(&mut s, &file, from, cut).await;
            }
            let total = file.len() as u64;
            if req.range_from.is_none() {
                return respond(
                    &mut s,
                    "200 OK",
                    &[("Accept-Ranges", "bytes".into())],
                    &file,
                )
                .await;
            }
            if from >= total {
                return respond(
                    &mut s,
                    "416 Range Not Satisfiable",
                    &[("Content-Range", format!("bytes */{total}"))],
                    b"",
                )
                .await;
            }
            respond(
                &mut s,
                "206 Partial Content",
                &[(
                    "Content-Range",
                    format!("bytes {from}-{}/{total}", total - 1),
                )],
                &file[from as usize..],
            )
            .await
        }
    }
}

/// A GET answered with its full length announced and only `cut` bytes of
/// the body sent, then the connection closed.
async fn respond_cut<S: AsyncWriteExt + Unpin>(
    s: &mut S,
    file: &[u8],
    from: u64,
    cut: u64,
) -> std::io::Result<()> {
    let total = file.len() as u64;
    let from = from.min(total);
    let body = &file[from as usize..];
    let head = if from == 0 {
        format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 206 Partial Content\r\nConnection: close\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{total}\r\n\r\n",
            body.len(),
            total.saturating_sub(1)
        )
    };
    s.write_all(head.as_bytes()).await?;
    s.write_all(&body[..(cut as usize).min(body.len())]).await?;
    s.flush().await?;
    s.shutdown().await
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

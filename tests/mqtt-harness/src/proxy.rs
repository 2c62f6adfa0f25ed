//! A TCP proxy on loopback that injects network faults between a client and
//! the broker: cut every connection at once (as a Wi-Fi drop does), or go
//! silent while keeping sockets open (a half-open link only keep-alive finds),
//! or refuse everyone for a while (an outage in front of a broker that stays up).
//! It listens on loopback; the broker behind it may be this machine's
//! ([`FaultProxy::start`]) or any host ([`FaultProxy::start_to`]).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How long one connection to the target may take (per address).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

struct Shared {
    target_host: String,
    target_port: u16,
    conns: Mutex<Vec<TcpStream>>,
    blackhole: AtomicBool,
    refusing: AtomicBool,
    stop: AtomicBool,
    accepted: AtomicU64,
}

/// The proxy; dropping it stops accepting and cuts every connection.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on an ephemeral loopback port and forwards to `127.0.0.1:target_port`.
    pub fn start(target_port: u16) -> FaultProxy {
        FaultProxy::start_to("127.0.0.1", target_port)
    }

    /// Listens on an ephemeral loopback port and forwards to
    /// `target_host:target_port` (a name is resolved at each connection;
    /// each address is tried in turn). Clients connect to 127.0.0.1, so a
    /// TLS client must name the target itself (its server name).
    pub fn start_to(target_host: &str, target_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            target_host: target_host.to_owned(),
            target_port,
            conns: Mutex::new(Vec::new()),
            blackhole: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
        });
        let accept_shared = shared.clone();
        thread::spawn(move || accept_loop(listener, accept_shared));
        FaultProxy { port, shared }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Closes every open connection (both sides see the socket shut down).
    pub fn cut_all(&self) {
        let mut conns = self.shared.conns.lock().expect("proxy lock");
        for s in conns.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// While on, bytes in both directions are read and thrown away and
    /// sockets stay open: the link is half-open.
    pub fn set_blackhole(&self, on: bool) {
        self.shared.blackhole.store(on, Ordering::SeqCst);
    }
}

impl FaultProxy {
    /// While on, the network behind the proxy is gone: open connections
    /// are cut and new ones closed at once (as a broker that is down, while
    /// the broker itself and its other clients, the backend, stay up).
    pub fn set_refusing(&self, on: bool) {
        self.shared.refusing.store(on, Ordering::SeqCst);
        if on {
            self.cut_all();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.cut_all();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.refusing.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        // Connecting to a remote target takes a round trip or more: each
        // connection does so on its own thread, so clients are not queued
        // behind each other.
        let shared = shared.clone();
        thread::spawn(move || forward(client, shared));
    }
}

/// The first address of the target that accepts a connection.
fn connect_target(shared: &Shared) -> Option<TcpStream> {
    let addrs = (shared.target_host.as_str(), shared.target_port)
        .to_socket_addrs()
        .ok()?;
    addrs
        .into_iter()
        .find_map(|a| TcpStream::connect_timeout(&a, CONNECT_TIMEOUT).ok())
}

fn forward(client: TcpStream, shared: Arc<Shared>) {
    let Some(upstream) = connect_target(&shared) else {
        // Broker down or unreachable: the client sees its connection
        // closed at once.
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    {
        let mut conns = shared.conns.lock().expect("proxy lock");
        conns.push(c3);
        conns.push(u3);
    }
    // Refused (or stopped) while this connection was being made: it goes
    // too (`cut_all` may have run before it was registered).
    if shared.refusing.load(Ordering::SeqCst) || shared.stop.load(Ordering::SeqCst) {
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
        return;
    }
    let s2 = shared.clone();
    thread::spawn(move || pump(u2, c2, s2));
    pump(client, upstream, shared);
}

fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if shared.blackhole.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

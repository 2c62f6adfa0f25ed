//! A TCP proxy between a TPM client and swtpm that records every byte of
//! the TPM command stream, both ways: what a bus interposer would see. The
//! control port (one above) is forwarded unrecorded.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::{Swtpm, free_port_pair};

/// A running proxy; its threads end with the process (tests only).
#[derive(Debug)]
pub struct TpmProxy {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

fn lock(m: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, seen: Option<Arc<Mutex<Vec<u8>>>>) {
    let mut buf = [0u8; 8192];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(seen) = &seen {
            lock(seen).extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn serve(listener: TcpListener, upstream: u16, seen: Option<Arc<Mutex<Vec<u8>>>>) {
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            let seen2 = seen.clone();
            thread::spawn(move || pump(client, server, seen2));
            let seen3 = seen.clone();
            thread::spawn(move || pump(s2, c2, seen3));
        }
    });
}

impl TpmProxy {
    /// Starts a proxy in front of `tpm` on two fresh consecutive ports.
    pub fn start(tpm: &Swtpm) -> TpmProxy {
        for _ in 0..20 {
            let port = free_port_pair();
            let (Ok(cmd), Ok(ctrl)) = (
                TcpListener::bind(("127.0.0.1", port)),
                TcpListener::bind(("127.0.0.1", port + 1)),
            ) else {
                continue;
            };
            let seen = Arc::new(Mutex::new(Vec::new()));
            serve(cmd, tpm.port(), Some(seen.clone()));
            serve(ctrl, tpm.port() + 1, None);
            return TpmProxy { port, seen };
        }
        panic!("no two consecutive free loopback ports for the TPM proxy");
    }

    /// The TCTI string that goes through the proxy.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Everything recorded so far (commands and responses, in arrival order).
    pub fn seen(&self) -> Vec<u8> {
        lock(&self.seen).clone()
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        lock(&self.seen).clear();
    }

    /// Whether `needle` appears anywhere in what was recorded.
    pub fn saw(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && lock(&self.seen).windows(needle.len()).any(|w| w == needle)
    }
}

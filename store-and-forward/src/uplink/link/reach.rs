//! Knowing early that the broker can be reached again, so that a cart does
//! not sit out a long backoff once its network or its cloud is back:
//!
//! - [`NetworkWatch`]: the kernel's routing messages (a `NETLINK_ROUTE`
//!   socket on the link, address and route groups). Any change (a cable
//!   back, Wi-Fi associated, an address from DHCP, a new default route)
//!   ends the wait.
//! - [`reachable`]: a TCP connect to the broker, closed at once. It is not
//!   an MQTT CONNECT, so a managed broker neither meters nor throttles it;
//!   while the broker is unreachable the driver probes every
//!   `probe_interval_ms` plus up to `probe_jitter_ms`.
//!
//! A return found either way is followed by a random delay of up to
//! `probe_jitter_ms` before connecting: a whole store regains Wi-Fi at
//! once, a whole fleet sees its cloud return at once.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

/// The routing groups watched.
const GROUPS: u32 = (libc::RTMGRP_LINK
    | libc::RTMGRP_IPV4_IFADDR
    | libc::RTMGRP_IPV6_IFADDR
    | libc::RTMGRP_IPV4_ROUTE
    | libc::RTMGRP_IPV6_ROUTE) as u32;

/// The kernel's network changes, as a stream of "something changed".
pub(crate) struct NetworkWatch {
    fd: AsyncFd<OwnedFd>,
}

impl NetworkWatch {
    /// Opens the watch (needs `AF_NETLINK`, which the unit allows; no
    /// privilege). Must be called inside a tokio runtime.
    pub(crate) fn open() -> io::Result<NetworkWatch> {
        // SAFETY: plain socket(2); the result is checked and owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = GROUPS;
        // SAFETY: `addr` is a valid sockaddr_nl of the length given.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: an OwnedFd always returns the descriptor it owns, open
        // until the AsyncFd (which owns the OwnedFd) is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(NetworkWatch { fd })
    }

    /// Reads what is queued without waiting; true when anything was (or
    /// the queue overflowed, which also means changes).
    fn read_queued(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut any = false;
        loop {
            // SAFETY: recv into a buffer of the length given.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOBUFS) => true,
                Some(libc::EINTR) => continue,
                _ => any,
            };
        }
    }

    /// Forgets changes that happened before now (while the link was up).
    pub(crate) fn clear(&self) {
        self.read_queued();
    }

    /// Waits for the next change.
    pub(crate) async fn changed(&self) {
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                // The reactor is gone: never report a change.
                return std::future::pending().await;
            };
            if self.read_queued() {
                return;
            }
            guard.clear_ready();
        }
    }
}

/// Whether a TCP connection to the broker opens within `timeout` (closed at
/// once; nothing is sent).
pub(crate) async fn reachable(host: &str, port: u16, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_probe_tells_an_open_port_from_a_closed_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(reachable("127.0.0.1", port, Duration::from_secs(5)).await);
        drop(listener);
        assert!(!reachable("127.0.0.1", port, Duration::from_secs(5)).await);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_watch_opens_and_clears() {
        // Changes themselves: tests/uplink_network.rs, in a namespace.
        let watch = NetworkWatch::open().expect("a NETLINK_ROUTE socket");
        watch.clear();
    }
}

//! An external signer (as the TPM will be) plugged into the link through
//! `SwappableClientCert`: a slow signature runs on the link's own thread and
//! never blocks the caller's runtime; TLS resumption spares reconnects a
//! signature.

mod uplink_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mqtt_harness::Broker;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use store_and_forward::uplink::{SwappableClientCert, certified_key_from_pem_files, start};
use uplink_support::*;

/// How long one signature takes: a discrete TPM can take tens of ms; this
/// is more, so a blocked caller would be obvious.
const SIGN_TIME: Duration = Duration::from_millis(400);

#[derive(Debug)]
struct SlowKey {
    inner: Arc<dyn SigningKey>,
    signatures: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct SlowSigner {
    inner: Box<dyn Signer>,
    signatures: Arc<AtomicUsize>,
}

impl SigningKey for SlowKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let inner = self.inner.choose_scheme(offered)?;
        Some(Box::new(SlowSigner {
            inner,
            signatures: self.signatures.clone(),
        }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        self.inner.public_key()
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.inner.algorithm()
    }
}

impl Signer for SlowSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        // Synchronous, as rustls calls it inside the handshake.
        std::thread::sleep(SIGN_TIME);
        self.signatures.fetch_add(1, Ordering::SeqCst);
        self.inner.sign(message)
    }

    fn scheme(&self) -> SignatureScheme {
        self.inner.scheme()
    }
}

// A current-thread runtime: if the handshake ran on it, nothing else could.
#[tokio::test(flavor = "current_thread")]
async fn slow_external_signer_does_not_block_the_callers_runtime() {
    let broker = Broker::start();
    let (cert, key) = broker.client_cert("cart-1");
    let file_key = certified_key_from_pem_files(&cert, &key).expect("load");
    let signatures = Arc::new(AtomicUsize::new(0));
    let slow = CertifiedKey::new(
        file_key.cert.clone(),
        Arc::new(SlowKey {
            inner: file_key.key.clone(),
            signatures: signatures.clone(),
        }),
    );
    let id = Arc::new(SwappableClientCert::new(Arc::new(slow)));
    let (link, _rx) = start(config(&broker, "cart-1"), Some(id), vec![]).expect("start");

    // Tick on the caller's runtime while the link signs.
    let mut ticks = 0u32;
    let mut state = link.state();
    let up = tokio::time::timeout(HANG, async {
        loop {
            tokio::select! {
                r = state.wait_for(|s| s.up) => break r.is_ok(),
                _ = tokio::time::sleep(Duration::from_millis(10)) => ticks += 1,
            }
        }
    })
    .await
    .expect("hang guard");
    assert!(up);
    assert_eq!(
        signatures.load(Ordering::SeqCst),
        1,
        "client auth signed once"
    );
    // 400 ms of signing at 10 ms per tick: a blocked runtime would show 0 or 1.
    assert!(ticks >= 5, "caller's runtime stalled: {ticks} ticks");

    // A reconnect resumes the TLS session: no new signature.
    link.reconnect();
    wait_connects(&link, 2).await;
    assert_eq!(
        signatures.load(Ordering::SeqCst),
        1,
        "resumption skips client auth"
    );
    link.shutdown().await;
}

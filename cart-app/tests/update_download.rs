//! The update bundle's download (`cart_app::update::download`) against the
//! emulator's HTTPS object store: resumed with `Range` after dropped
//! connections and after a restart, verified by size and SHA-256, refused
//! when it would take the ledger's space, when the server sends more than
//! the job's size, when the checksum is wrong, and when the server's
//! certificate is not trusted. Nothing is left behind by a refusal.

use std::path::Path;

use backend_emulator::ObjectStore;
use cart_app::update::Refusal;
use cart_app::update::download::{DownloadError, Wanted, download, free_bytes};
use mqtt_harness::Pki;
use sha2::{Digest, Sha256};

struct World {
    rt: tokio::runtime::Runtime,
    store: ObjectStore,
    pki_dir: tempfile::TempDir,
    pki: Pki,
}

fn world() -> World {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let store = rt
        .block_on(ObjectStore::start(
            &pki.server_cert_path(),
            &pki.server_key_path(),
            "localhost",
        ))
        .unwrap();
    World {
        rt,
        store,
        pki_dir,
        pki,
    }
}

fn agent(ca: &Path) -> ureq::Agent {
    let roots = cart_app::diag::trust_store(ca).unwrap();
    cart_app::diag::agent(roots, std::time::Duration::from_secs(20))
}

fn bundle(n: usize) -> (Vec<u8>, String) {
    let body: Vec<u8> = (0..n).map(|i| (i * 7 + i / 251) as u8).collect();
    let sha = hex::encode(Sha256::digest(&body));
    (body, sha)
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_dropped_download_resumes_where_it_stopped_and_is_verified() {
    let w = world();
    let (body, sha) = bundle(3 * 1024 * 1024 + 17);
    let url = w.store.publish("bundles/cart-1.1.0.raucb", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let wanted = Wanted {
        url: &url,
        size: body.len() as u64,
        sha256: &sha,
    };
    let agent = agent(&w.pki.ca_pem_path());

    // Two drops in one run: three requests, each from where the last ended.
    w.store.cut_next_gets(&[1_000_000, 700_000]);
    let mut seen = Vec::new();
    let path = download(&agent, &wanted, dir.path(), 0, 5, &mut |got, size| {
        seen.push((got, size))
    })
    .expect("downloaded");
    assert_eq!(std::fs::read(&path).unwrap(), body);
    let starts: Vec<u64> = w.store.gets().iter().map(|g| g.1).collect();
    assert_eq!(starts, vec![0, 1_000_000, 1_700_000]);
    assert_eq!(seen.last(), Some(&(body.len() as u64, body.len() as u64)));
    assert_eq!(files(dir.path()), vec![format!("{sha}.raucb")]);

    // Asked again: the verified bundle is there, nothing is fetched.
    let again = download(&agent, &wanted, dir.path(), 0, 1, &mut |_, _| {}).unwrap();
    assert_eq!(again, path);
    assert_eq!(w.store.gets().len(), 3);
}

#[test]
fn a_restart_resumes_the_part_it_left() {
    let w = world();
    let (body, sha) = bundle(2 * 1024 * 1024);
    let url = w.store.publish("bundles/b.raucb", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let wanted = Wanted {
        url: &url,
        size: body.len() as u64,
        sha256: &sha,
    };
    let agent = agent(&w.pki.ca_pem_path());
    // One attempt only, cut: the part stays, the error says so.
    w.store.cut_next_gets(&[600_000]);
    match download(&agent, &wanted, dir.path(), 0, 1, &mut |_, _| {}) {
        Err(DownloadError::Transport { attempts: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::metadata(dir.path().join(format!("{sha}.part")))
            .unwrap()
            .len(),
        600_000
    );
    // "After the restart": the next call takes it from there.
    let path = download(&agent, &wanted, dir.path(), 0, 3, &mut |_, _| {}).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), body);
    let starts: Vec<u64> = w.store.gets().iter().map(|g| g.1).collect();
    assert_eq!(starts, vec![0, 600_000]);
}

#[test]
fn refusals_write_nothing_that_stays() {
    let w = world();
    let (body, sha) = bundle(1024 * 1024);
    let url = w.store.publish("bundles/c.raucb", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let agent = agent(&w.pki.ca_pem_path());
    let size = body.len() as u64;
    let fetch = |agent: &ureq::Agent, url: &str, size: u64, sha: &str, keep: u64| {
        download(
            agent,
            &Wanted {
                url,
                size,
                sha256: sha,
            },
            dir.path(),
            keep,
            2,
            &mut |_, _| {},
        )
    };

    // A checksum that is not the bundle's: refused, the part removed.
    let r = fetch(&agent, &url, size, &"0".repeat(64), 0);
    assert!(
        matches!(r, Err(DownloadError::Refused(Refusal::Integrity(_)))),
        "{r:?}"
    );
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));

    // The server sends more than the job's size: refused.
    let r = fetch(&agent, &url, size - 10, &sha, 0);
    assert!(
        matches!(r, Err(DownloadError::Refused(Refusal::Integrity(_)))),
        "{r:?}"
    );
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));

    // It would eat into what the ledger keeps: refused before a request.
    let gets = w.store.gets().len();
    let keep = free_bytes(dir.path()).unwrap() - size / 2;
    let r = fetch(&agent, &url, size, &sha, keep);
    assert!(
        matches!(r, Err(DownloadError::Refused(Refusal::NoSpace { .. }))),
        "{r:?}"
    );
    assert_eq!(w.store.gets().len(), gets, "no request was made");

    // A server the trust store does not know: no transfer.
    match fetch(&agent_for_foreign(&w), &url, size, &sha, 0) {
        Err(DownloadError::Transport { last, .. }) => {
            assert!(last.to_lowercase().contains("certificate"), "{last}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(w.store.gets().len(), gets);

    // A URL the store never signed: the server's answer, not retried.
    let r = fetch(&agent, &url.replace("token=", "token=ff"), size, &sha, 0);
    assert!(matches!(r, Err(DownloadError::Http(403))), "{r:?}");
    let _ = (&w.rt, &w.pki_dir);
}

fn agent_for_foreign(w: &World) -> ureq::Agent {
    agent(&w.pki.foreign_ca_pem_path())
}

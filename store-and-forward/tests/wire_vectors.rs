//! Golden vectors of the wire contract.
//!
//! `tests/vectors/v{N}/` holds one file per message type as it travels
//! (`.json`; `.zst` for compressed ones), listed with their SHA-256 in
//! `tests/vectors/MANIFEST.sha256`. Published vectors are frozen: a test
//! fails when one changes or disappears, every vector ever published must
//! still decode, and today's encoder must still produce the current
//! version's vectors byte for byte.
//!
//! To publish vectors for a new message type: add its sample below and run
//! `WRITE_VECTORS=1 cargo test -p store-and-forward --test wire_vectors`; it
//! writes missing files only and appends them to the manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use store_and_forward::money::{Currency, Money};
use store_and_forward::payment::{BackendOutcome, EntryMode};
use store_and_forward::policy::{Exposure, LimitsConfig};
use store_and_forward::telemetry::TelemetryEvent;
use store_and_forward::wire::down::{
    AuthResponse, CatalogDelta, CatalogItem, DenyListUpdate, ForwardResult, PolicyUpdate,
    ReversalOutcome, ReversalResult, RotationRequest, StaffListUpdate,
};
use store_and_forward::wire::up::{
    Ack, AckBatch, AckResult, AuthRequest, CardData, CartStatus, Forward, Inquiry,
    ProvisioningComplete, ResyncRequest, Reversal, RotationComplete, Versions,
};
use store_and_forward::wire::{self, Kind, decode_down, decode_up, encode, encode_compressed};
use store_and_forward::{Timestamp, ledger::OutboxDepth};

const CART: &str = "cart-0042";
const KEY: &str = "01936d5e-8a3c-7b2e-9f10-3c4d5e6f7a8b";
const CERT_ID: &str = "5c3a0b1e9d8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b";
const ORPHAN_ID: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const NEW_CERT_ID: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
const TS: Timestamp = Timestamp(1_795_000_000_000);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::new("EUR").unwrap())
}

fn card() -> CardData {
    CardData {
        masked_pan: "411111******1111".into(),
        fingerprint: (0u8..32).collect(),
        entry_mode: EntryMode::Contactless,
        emv: vec![0x9F, 0x02, 0x06, 0x00, 0x00, 0x00, 0x00, 0x23, 0x40],
        blob: (0u8..48).map(|b| b.wrapping_mul(37)).collect(),
    }
}

/// The current version's sample of every message type: (file name, bytes).
fn samples() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |kind: Kind, _id: &str, bytes: Vec<u8>| {
        out.push((format!("{}.json", kind.as_str()), bytes));
    };
    add(
        Kind::AuthRequest,
        KEY,
        encode(
            Kind::AuthRequest,
            CART,
            KEY,
            TS,
            &AuthRequest {
                amount: eur(2_340),
                card: card(),
                created: TS,
            },
        ),
    );
    add(
        Kind::PaymentForward,
        KEY,
        encode(
            Kind::PaymentForward,
            CART,
            KEY,
            TS,
            &Forward {
                amount: eur(4_500),
                card: card(),
                created: TS,
                approved_offline_at: Some(Timestamp(TS.0 + 900)),
                counter: Some(7_340_101),
            },
        ),
    );
    add(
        Kind::PaymentInquiry,
        KEY,
        encode(
            Kind::PaymentInquiry,
            CART,
            KEY,
            TS,
            &Inquiry {
                amount: eur(1_999),
                created: TS,
            },
        ),
    );
    add(
        Kind::CartStatus,
        "17",
        encode(
            Kind::CartStatus,
            CART,
            "17",
            TS,
            &CartStatus {
                firmware: "0.1.0".into(),
                integrity: "bound".into(),
                exposure: Exposure {
                    amount: [(Currency::new("EUR").unwrap(), 4_500)].into(),
                    count: 1,
                    oldest_unforwarded: Some(TS),
                },
                outbox: vec![OutboxDepth {
                    class: "payment".into(),
                    pending: 1,
                    pending_bytes: 0,
                    oldest_pending: Some(TS),
                    quarantined: 0,
                }],
                versions: Versions {
                    limits: 3,
                    deny_list: 12,
                    catalog: 40,
                    staff_list: 0,
                },
                telemetry_dropped: 0,
            },
        ),
    );
    add(
        Kind::Ack,
        "policy_update:3",
        encode(
            Kind::Ack,
            CART,
            "policy_update:3",
            TS,
            &Ack {
                of: Kind::PolicyUpdate,
                of_id: "3".into(),
                result: AckResult::Applied,
                current_version: Some(3),
                reason: None,
            },
        ),
    );
    add(
        Kind::AckBatch,
        "forward_result:01936d5e-8a3c-7b2e-9f10-3c4d5e6f7a8b",
        encode(
            Kind::AckBatch,
            CART,
            "forward_result:01936d5e-8a3c-7b2e-9f10-3c4d5e6f7a8b",
            TS,
            &AckBatch {
                acks: vec![
                    Ack {
                        of: Kind::ForwardResult,
                        of_id: KEY.into(),
                        result: AckResult::Applied,
                        current_version: None,
                        reason: None,
                    },
                    Ack {
                        of: Kind::PolicyUpdate,
                        of_id: "2".into(),
                        result: AckResult::Ignored,
                        current_version: Some(3),
                        reason: None,
                    },
                ],
            },
        ),
    );
    add(
        Kind::ProvisioningComplete,
        CERT_ID,
        encode(
            Kind::ProvisioningComplete,
            CART,
            CERT_ID,
            TS,
            &ProvisioningComplete {
                certificate_id: CERT_ID.into(),
                orphans: vec![ORPHAN_ID.into()],
                unanswered_requests: 1,
            },
        ),
    );
    add(
        Kind::RotationComplete,
        NEW_CERT_ID,
        encode(
            Kind::RotationComplete,
            CART,
            NEW_CERT_ID,
            TS,
            &RotationComplete {
                certificate_id: NEW_CERT_ID.into(),
                old_certificate_id: CERT_ID.into(),
                request_id: Some("rot-5".into()),
                reason: "request".into(),
                not_after: Timestamp(TS.0 + 365 * 86_400_000),
                orphans: vec![],
                unanswered_requests: 0,
            },
        ),
    );
    add(
        Kind::PaymentReversal,
        KEY,
        encode(
            Kind::PaymentReversal,
            CART,
            KEY,
            TS,
            &Reversal {
                amount: eur(1_999),
                created: TS,
            },
        ),
    );
    add(
        Kind::ReversalResult,
        KEY,
        encode(
            Kind::ReversalResult,
            CART,
            KEY,
            TS,
            &ReversalResult {
                result: ReversalOutcome::Reversed,
            },
        ),
    );
    add(
        Kind::AuthResponse,
        KEY,
        encode(
            Kind::AuthResponse,
            CART,
            KEY,
            TS,
            &AuthResponse {
                outcome: BackendOutcome::Approved {
                    reference: "AUTH-8812".into(),
                },
            },
        ),
    );
    add(
        Kind::ForwardResult,
        KEY,
        encode(
            Kind::ForwardResult,
            CART,
            KEY,
            TS,
            &ForwardResult {
                outcome: BackendOutcome::Declined {
                    reason: "insufficient funds".into(),
                },
            },
        ),
    );
    add(
        Kind::PolicyUpdate,
        "3",
        encode(
            Kind::PolicyUpdate,
            CART,
            "3",
            TS,
            &PolicyUpdate {
                limits: LimitsConfig {
                    version: 3,
                    per_payment_cap: [("EUR".to_string(), 10_000)].into(),
                    total_outstanding_cap: [("EUR".to_string(), 200_000)].into(),
                    ..LimitsConfig::default()
                },
            },
        ),
    );
    add(
        Kind::DenyListUpdate,
        "12",
        encode(
            Kind::DenyListUpdate,
            CART,
            "12",
            TS,
            &DenyListUpdate {
                version: 12,
                base_version: None,
                replace: false,
                add: vec![vec![0xAB; 32]],
                remove: vec![vec![0xCD; 32]],
            },
        ),
    );
    add(
        Kind::CatalogDelta,
        "40",
        encode(
            Kind::CatalogDelta,
            CART,
            "40",
            TS,
            &CatalogDelta {
                version: 40,
                base_version: Some(39),
                upserts: vec![
                    CatalogItem {
                        gtin: "04006381333931".into(),
                        name: "Stabilo Boss highlighter".into(),
                        price: eur(189),
                        tax_class: "standard".into(),
                        min_age: None,
                        sold_by_weight: false,
                    },
                    CatalogItem {
                        gtin: "02012340000000".into(),
                        name: "Gouda, per kg".into(),
                        price: eur(1_490),
                        tax_class: "reduced".into(),
                        min_age: None,
                        sold_by_weight: true,
                    },
                    CatalogItem {
                        gtin: "05000267024202".into(),
                        name: "Whisky 70 cl".into(),
                        price: eur(2_999),
                        tax_class: "standard".into(),
                        min_age: Some(18),
                        sold_by_weight: false,
                    },
                ],
                removals: vec!["04012345000009".into()],
            },
        ),
    );
    add(
        Kind::RotationRequest,
        "rot-5",
        encode(
            Kind::RotationRequest,
            CART,
            "rot-5",
            TS,
            &RotationRequest {
                reason: "scheduled".into(),
                deadline: Some(Timestamp(TS.0 + 86_400_000)),
            },
        ),
    );
    add(
        Kind::StaffListUpdate,
        "7",
        encode(Kind::StaffListUpdate, CART, "7", TS, &staff_list_sample()),
    );
    // Telemetry travels compressed; the uncompressed form decodes too.
    let events: Vec<TelemetryEvent> = vec![
        TelemetryEvent::Reading {
            at: TS,
            seq: 1,
            temperature_c: 21.5,
            battery_pct: 87,
            rssi_dbm: -61,
            state: "shopping".into(),
            position: Some((12.5, 40.25)),
        },
        TelemetryEvent::SessionStarted {
            at: TS,
            session: "s-1".into(),
        },
        TelemetryEvent::Scan {
            at: TS,
            gtin: "04006381333931".into(),
        },
        TelemetryEvent::Link { at: TS, up: false },
        TelemetryEvent::Fault {
            at: TS,
            device: "reader".into(),
            code: "unplugged".into(),
        },
        TelemetryEvent::SessionEnded {
            at: TS,
            session: "s-1".into(),
            items: 3,
        },
    ];
    let body = serde_json::json!({
        "ledger": "5b1c2d3e-0000-4000-8000-000000000001",
        "seqs": [[100, 105]],
        "events": events,
    });
    let id = "5b1c2d3e-0000-4000-8000-000000000001:100";
    out.push((
        "telemetry_batch.json".into(),
        encode(Kind::TelemetryBatch, CART, id, TS, &body),
    ));
    out.push((
        "telemetry_batch.zst".into(),
        encode_compressed(Kind::TelemetryBatch, CART, id, TS, &body),
    ));
    // A cart asks for the deny-list whole (a delta on version 11 arrived
    // while it held 9); a deny-list delta naming its base version.
    out.push((
        "resync_request.json".into(),
        encode(
            Kind::ResyncRequest,
            CART,
            "deny_list_update:9",
            TS,
            &ResyncRequest {
                of: Kind::DenyListUpdate,
                have_version: 9,
                rejected_version: 12,
            },
        ),
    ));
    out.push((
        "deny_list_update.base.json".into(),
        encode(
            Kind::DenyListUpdate,
            CART,
            "13",
            TS,
            &DenyListUpdate {
                version: 13,
                base_version: Some(12),
                replace: false,
                add: vec![vec![0xEF; 32]],
                remove: vec![],
            },
        ),
    ));
    // New optional fields get vectors of their own (the ones above, without
    // them, stay byte for byte): a sale cleared by a staff badge, and a
    // status naming the staff list held.
    let staff = staff_list_sample();
    let outcome = TelemetryEvent::PaymentOutcome {
        at: TS,
        payment: store_and_forward::PaymentKey::parse(KEY).unwrap(),
        state: store_and_forward::PaymentState::OfflineApproved,
        amount_minor: 2_999,
        currency: Currency::new("EUR").unwrap(),
        age_check: Some(store_and_forward::staff::StaffApproval {
            badge: staff.badges[0],
            list_version: staff.version,
        }),
    };
    let body = serde_json::json!({
        "ledger": "5b1c2d3e-0000-4000-8000-000000000001",
        "seqs": [[106, 106]],
        "events": [outcome],
    });
    let id = "5b1c2d3e-0000-4000-8000-000000000001:106";
    out.push((
        "telemetry_batch.age-check.json".into(),
        encode(Kind::TelemetryBatch, CART, id, TS, &body),
    ));
    out.push((
        "cart_status.staff-list.json".into(),
        encode(
            Kind::CartStatus,
            CART,
            "18",
            TS,
            &CartStatus {
                firmware: "0.1.0".into(),
                integrity: "bound".into(),
                exposure: Exposure::default(),
                outbox: vec![],
                versions: Versions {
                    limits: 3,
                    deny_list: 12,
                    catalog: 40,
                    staff_list: 7,
                },
                telemetry_dropped: 0,
            },
        ),
    ));
    out
}

/// Staff list 7: badges `0042` and `E1234` hashed under a fixed salt.
fn staff_list_sample() -> StaffListUpdate {
    StaffListUpdate::hashing(7, (0u8..16).collect(), &["0042", "E1234"])
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn manifest() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir().join("MANIFEST.sha256")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (hash, path) = l
                .split_once("  ")
                .expect("manifest line: `<sha256>  <path>`");
            (path.to_owned(), hash.to_owned())
        })
        .collect()
}

fn vector_files() -> Vec<String> {
    let mut out = Vec::new();
    for version in std::fs::read_dir(dir()).unwrap() {
        let version = version.unwrap();
        if !version.file_type().unwrap().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(version.path()).unwrap() {
            let f = f.unwrap();
            if f.file_type().unwrap().is_dir() {
                // `v1/jobs/`: AWS's payloads, outside the envelope
                // (tests/jobs_vectors.rs).
                continue;
            }
            out.push(format!(
                "{}/{}",
                version.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn write_missing_vectors_when_asked() {
    if std::env::var_os("WRITE_VECTORS").is_none() {
        return;
    }
    let mut m = manifest();
    for (name, bytes) in samples() {
        let rel = format!("v{}/{name}", wire::WIRE_VERSION);
        let path = dir().join(&rel);
        if !path.exists() {
            std::fs::write(&path, &bytes).unwrap();
            m.insert(rel, sha_hex(&bytes));
        }
    }
    let text: String = m.iter().map(|(p, h)| format!("{h}  {p}\n")).collect();
    std::fs::write(dir().join("MANIFEST.sha256"), text).unwrap();
}

#[test]
fn published_vectors_are_frozen() {
    let m = manifest();
    assert!(m.len() >= 13, "manifest lists {} vectors", m.len());
    for (path, hash) in &m {
        let bytes = std::fs::read(dir().join(path))
            .unwrap_or_else(|e| panic!("published vector {path} is gone: {e}"));
        assert_eq!(&sha_hex(&bytes), hash, "published vector {path} changed");
    }
    for f in vector_files() {
        assert!(m.contains_key(&f), "vector {f} is not in MANIFEST.sha256");
    }
}

#[test]
fn every_kind_has_a_current_vector() {
    let files = vector_files();
    for kind in Kind::ALL {
        let name = format!("v{}/{}.json", wire::WIRE_VERSION, kind.as_str());
        assert!(files.contains(&name), "no vector for {kind:?}");
    }
}

#[test]
fn every_vector_ever_published_still_decodes() {
    for f in vector_files() {
        let bytes = std::fs::read(dir().join(&f)).unwrap();
        let (header, _) = wire::decode(&bytes).unwrap_or_else(|e| panic!("{f}: {e}"));
        if header.kind.is_up() {
            decode_up(&bytes).unwrap_or_else(|e| panic!("{f}: {e}"));
        } else {
            decode_down(&bytes, &header.cart).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }
}

#[test]
fn todays_encoder_reproduces_the_current_vectors() {
    for (name, bytes) in samples() {
        let path = dir().join(format!("v{}/{name}", wire::WIRE_VERSION));
        let published = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if name.ends_with(".zst") {
            // Compressed bytes may differ between zstd versions; the content may not.
            assert_eq!(
                zstd::bulk::decompress(&bytes, 1 << 20).unwrap(),
                zstd::bulk::decompress(&published, 1 << 20).unwrap(),
                "{name}"
            );
        } else {
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                String::from_utf8_lossy(&published),
                "encoder drifted from published vector {name}"
            );
        }
    }
}

#[test]
fn newer_backend_fields_are_ignored() {
    let bytes = std::fs::read(dir().join("v1/policy_update.newer-backend.json")).unwrap();
    let (_, down) = decode_down(&bytes, CART).unwrap();
    let wire::Down::PolicyUpdate(p) = down else {
        panic!("{down:?}")
    };
    assert_eq!(p.limits.version, 4);
    assert_eq!(p.limits.max_outstanding_count, 100);
    let bytes = std::fs::read(dir().join("v1/forward_result.newer-backend.json")).unwrap();
    let (_, down) = decode_down(&bytes, CART).unwrap();
    assert_eq!(
        down,
        wire::Down::ForwardResult(ForwardResult {
            outcome: BackendOutcome::Approved {
                reference: "FWD-77".into()
            }
        })
    );
}

#[test]
fn the_staff_list_vector_holds_hashes_the_cart_recomputes() {
    let bytes = std::fs::read(dir().join("v1/staff_list_update.json")).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let body = &text[text.find("\"body\"").unwrap()..];
    assert!(
        !body.contains("0042") && !body.contains("E1234"),
        "a badge code on the wire: {text}"
    );
    let (header, down) = decode_down(&bytes, CART).unwrap();
    assert_eq!(header.id, "7");
    let wire::Down::StaffListUpdate(list) = down else {
        panic!("{down:?}")
    };
    assert_eq!(list, staff_list_sample());
    assert!(matches!(
        list.check("0042"),
        store_and_forward::staff::BadgeCheck::Approved(_)
    ));
    assert!(matches!(
        list.check("0043"),
        store_and_forward::staff::BadgeCheck::NotOnList { list_version: 7 }
    ));
}

#[test]
fn the_age_check_vectors_carry_the_badge_hash_and_the_list_version() {
    let bytes = std::fs::read(dir().join("v1/telemetry_batch.age-check.json")).unwrap();
    let (_, up) = decode_up(&bytes).unwrap();
    let wire::Up::TelemetryBatch(batch) = up else {
        panic!("{up:?}")
    };
    let events = batch.known_events();
    let [(106, TelemetryEvent::PaymentOutcome { age_check, .. })] = events.as_slice() else {
        panic!("{events:?}")
    };
    let approval = age_check.expect("the approval");
    assert_eq!(approval.list_version, 7);
    assert!(matches!(
        staff_list_sample().check("0042"),
        store_and_forward::staff::BadgeCheck::Approved(a) if a == approval
    ));
    let bytes = std::fs::read(dir().join("v1/cart_status.staff-list.json")).unwrap();
    let (_, up) = decode_up(&bytes).unwrap();
    let wire::Up::CartStatus(st) = up else {
        panic!("{up:?}")
    };
    assert_eq!(st.versions.staff_list, 7);
    // A status from before the field decodes with "no list".
    let bytes = std::fs::read(dir().join("v1/cart_status.json")).unwrap();
    let (_, up) = decode_up(&bytes).unwrap();
    let wire::Up::CartStatus(st) = up else {
        panic!("{up:?}")
    };
    assert_eq!(st.versions.staff_list, 0);
}

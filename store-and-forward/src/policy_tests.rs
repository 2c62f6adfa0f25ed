use super::*;
use crate::time::CLOCK_FLOOR;

fn eur() -> Currency {
    Currency::new("EUR").unwrap()
}

fn config() -> LimitsConfig {
    LimitsConfig {
        version: 1,
        per_payment_cap: [("EUR".to_string(), 10_000)].into(),
        total_outstanding_cap: [("EUR".to_string(), 50_000)].into(),
        max_outstanding_count: 5,
        forwarding_deadline_secs: 24 * 3600,
        velocity_max_per_card: 2,
        velocity_window_secs: 3600,
        stale_after_secs: 3600,
        stale_cap_percent: 50,
        offline_off_after_secs: 7200,
        clock_tolerance_secs: 60,
    }
}

fn limits() -> Limits {
    config().validate("offline").unwrap()
}

fn now() -> Timestamp {
    Timestamp(CLOCK_FLOOR.0 + 1_000_000_000)
}

fn ctx() -> Context {
    Context {
        now: now(),
        clock: ClockTrust::Trusted,
        last_backend_contact: Some(now().minus_secs(60)),
        card_recent_offline: 0,
        card_denied: false,
        integrity: LedgerIntegrity::Bound,
        storage_low: None,
        exposure: Exposure::default(),
    }
}

fn eur_amount(minor: i64) -> Money {
    Money::new(minor, eur())
}

fn only_reason(d: &OfflineDecision) -> &OfflineReason {
    assert!(!d.approved);
    assert_eq!(d.reasons.len(), 1, "{:?}", d.reasons);
    &d.reasons[0]
}

#[test]
fn approves_within_limits() {
    let d = evaluate(&limits(), eur_amount(10_000), false, &ctx());
    assert!(d.approved, "{:?}", d.reasons);
    assert_eq!(d.cap_applied, Some(10_000));
}

#[test]
fn per_payment_cap() {
    let d = evaluate(&limits(), eur_amount(10_001), false, &ctx());
    assert_eq!(
        only_reason(&d),
        &OfflineReason::PerPaymentCap {
            amount: 10_001,
            cap: 10_000
        }
    );
}

#[test]
fn zero_or_negative_amount_is_refused() {
    let d = evaluate(&limits(), eur_amount(0), false, &ctx());
    assert!(matches!(
        only_reason(&d),
        OfflineReason::PerPaymentCap { .. }
    ));
}

#[test]
fn currency_without_cap() {
    let usd = Money::new(100, Currency::new("USD").unwrap());
    let d = evaluate(&limits(), usd, false, &ctx());
    assert!(matches!(
        only_reason(&d),
        OfflineReason::CurrencyNotAllowed { .. }
    ));
}

#[test]
fn outstanding_amount() {
    let mut c = ctx();
    c.exposure.amount.insert(eur(), 45_000);
    c.exposure.count = 3;
    assert!(evaluate(&limits(), eur_amount(5_000), false, &c).approved);
    let d = evaluate(&limits(), eur_amount(5_001), false, &c);
    assert_eq!(
        only_reason(&d),
        &OfflineReason::OutstandingAmount {
            outstanding: 45_000,
            amount: 5_001,
            cap: 50_000
        }
    );
}

#[test]
fn outstanding_count() {
    let mut c = ctx();
    c.exposure.count = 5;
    let d = evaluate(&limits(), eur_amount(100), false, &c);
    assert_eq!(
        only_reason(&d),
        &OfflineReason::OutstandingCount { count: 5, cap: 5 }
    );
}

#[test]
fn forwarding_deadline() {
    let mut c = ctx();
    c.exposure.count = 1;
    c.exposure.oldest_unforwarded = Some(now().minus_secs(24 * 3600 - 1));
    assert!(evaluate(&limits(), eur_amount(100), false, &c).approved);
    c.exposure.oldest_unforwarded = Some(now().minus_secs(24 * 3600));
    assert!(matches!(
        only_reason(&evaluate(&limits(), eur_amount(100), false, &c)),
        OfflineReason::ForwardingDeadline { .. }
    ));
}

#[test]
fn card_velocity() {
    let mut c = ctx();
    c.card_recent_offline = 1;
    assert!(evaluate(&limits(), eur_amount(100), false, &c).approved);
    c.card_recent_offline = 2;
    assert_eq!(
        only_reason(&evaluate(&limits(), eur_amount(100), false, &c)),
        &OfflineReason::CardVelocity {
            count: 2,
            cap: 2,
            window_secs: 3600
        }
    );
}

#[test]
fn deny_list() {
    let mut c = ctx();
    c.card_denied = true;
    assert_eq!(
        only_reason(&evaluate(&limits(), eur_amount(100), false, &c)),
        &OfflineReason::CardDenied
    );
}

#[test]
fn staleness_halves_the_cap_then_stops() {
    let mut c = ctx();
    c.last_backend_contact = Some(now().minus_secs(3600));
    let d = evaluate(&limits(), eur_amount(5_000), false, &c);
    assert!(d.approved);
    assert_eq!(d.cap_applied, Some(5_000));
    let d = evaluate(&limits(), eur_amount(5_001), false, &c);
    assert_eq!(
        only_reason(&d),
        &OfflineReason::PerPaymentCap {
            amount: 5_001,
            cap: 5_000
        }
    );
    c.last_backend_contact = Some(now().minus_secs(7200));
    let d = evaluate(&limits(), eur_amount(100), false, &c);
    assert!(matches!(
        only_reason(&d),
        OfflineReason::BackendStale {
            since_secs: Some(7200),
            ..
        }
    ));
    c.last_backend_contact = None;
    assert!(!evaluate(&limits(), eur_amount(100), false, &c).approved);
}

#[test]
fn untrusted_clock() {
    let mut c = ctx();
    c.clock = ClockTrust::Unset;
    assert!(matches!(
        only_reason(&evaluate(&limits(), eur_amount(100), false, &c)),
        OfflineReason::ClockUntrusted { .. }
    ));
}

#[test]
fn rolled_back_ledger() {
    let mut c = ctx();
    c.integrity = LedgerIntegrity::RolledBack {
        ledger: 5,
        counter: 7,
    };
    assert!(matches!(
        only_reason(&evaluate(&limits(), eur_amount(100), false, &c)),
        OfflineReason::LedgerIntegrity { .. }
    ));
}

#[test]
fn storage_low() {
    let mut c = ctx();
    c.storage_low = Some(StorageLow {
        free_bytes: 10,
        reserve_bytes: 100,
    });
    assert!(matches!(
        only_reason(&evaluate(&limits(), eur_amount(100), false, &c)),
        OfflineReason::StorageLow(_)
    ));
}

#[test]
fn online_required() {
    assert_eq!(
        only_reason(&evaluate(&limits(), eur_amount(100), true, &ctx())),
        &OfflineReason::OnlineRequired
    );
}

#[test]
fn every_failing_limit_is_reported() {
    let mut c = ctx();
    c.card_denied = true;
    c.exposure.count = 5;
    let d = evaluate(&limits(), eur_amount(20_000), true, &c);
    assert_eq!(d.reasons.len(), 4, "{:?}", d.reasons);
}

#[test]
fn reasons_serialize_with_the_limit_name() {
    let r = OfflineReason::PerPaymentCap { amount: 5, cap: 4 };
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(json, r#"{"limit":"per_payment_cap","amount":5,"cap":4}"#);
}

#[test]
fn rejects_negative_cap_naming_the_key() {
    let mut cfg = config();
    cfg.per_payment_cap.insert("EUR".into(), -5);
    let err = cfg.validate("offline").unwrap_err();
    assert_eq!(err.key, "offline.per_payment_cap.EUR");
    assert!(err.to_string().contains("negative"), "{err}");
}

#[test]
fn rejects_unknown_currency_naming_the_key() {
    let mut cfg = config();
    cfg.total_outstanding_cap.insert("XYZ".into(), 5);
    let err = cfg.validate("offline").unwrap_err();
    assert_eq!(err.key, "offline.total_outstanding_cap.XYZ");
    assert!(err.to_string().contains("unknown currency"), "{err}");
}

#[test]
fn rejects_per_payment_cap_above_total_cap() {
    let mut cfg = config();
    cfg.per_payment_cap.insert("EUR".into(), 60_000);
    let err = cfg.validate("offline").unwrap_err();
    assert_eq!(err.key, "offline.per_payment_cap.EUR");
    assert!(err.to_string().contains("above"), "{err}");
}

#[test]
fn rejects_cap_without_total() {
    let mut cfg = config();
    cfg.per_payment_cap.insert("USD".into(), 100);
    let err = cfg.validate("offline").unwrap_err();
    assert_eq!(err.key, "offline.total_outstanding_cap.USD");
}

#[test]
fn rejects_deadline_beyond_72h() {
    let mut cfg = config();
    cfg.forwarding_deadline_secs = 72 * 3600 + 1;
    let err = cfg.validate("offline").unwrap_err();
    assert_eq!(err.key, "offline.forwarding_deadline_secs");
}

#[test]
fn rejects_unknown_keys_in_toml_like_input() {
    let err = serde_json::from_str::<LimitsConfig>(r#"{"per_payment_caps": {}}"#).unwrap_err();
    assert!(err.to_string().contains("per_payment_caps"), "{err}");
}

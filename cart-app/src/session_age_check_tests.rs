//! The age check by a verified staff member: only a badge on the staff
//! list clears it, the line says so, and the payment carries the badge.

use super::*;

/// Regression: any code starting with `STAFF:` cleared an age check. A
/// badge not on the staff list is refused with a notice and the sale
/// stays blocked.
#[test]
fn a_badge_not_on_the_staff_list_is_refused_and_the_sale_stays_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let mut s = session();
    whisky(&mut s, &c);
    let e = s.handle(scan("STAFF:0099"), &c);
    assert_eq!(notices(&e), vec![Some(ScanNotice::StaffBadgeRefused)]);
    assert!(screens(&e).is_empty(), "the age check stays on screen");
    assert!(s.basket().pending_age_check().is_some());
    assert!(!s.cart_view().lines[0].age_checked);
    let e = s.handle(Input::Ui(UiEvent::Pay), &c);
    assert_eq!(started(&e), None, "no payment: {e:?}");
    assert!(matches!(screens(&e)[0], Screen::AgeCheck(_)));
}

/// With no staff list yet, nobody can clear an age check: every badge is
/// refused and the shopper is sent to a till.
#[test]
fn without_a_staff_list_every_badge_is_refused_and_the_shopper_sent_to_a_till() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let mut s = bare_session();
    whisky(&mut s, &c);
    let e = s.handle(scan("STAFF:0042"), &c);
    assert_eq!(notices(&e), vec![Some(ScanNotice::AgeCheckUnavailable)]);
    assert!(s.basket().pending_age_check().is_some());
    assert_eq!(started(&s.handle(Input::Ui(UiEvent::Pay), &c)), None);
    // Removing the item is the way on.
    let line = s.cart_view().lines[0].line_id;
    s.handle(Input::Ui(UiEvent::RemoveLine { line_id: line }), &c);
    s.handle(scan("4006381333931"), &c);
    assert!(started(&s.handle(Input::Ui(UiEvent::Pay), &c)).is_some());
}

/// A badge on the list clears the check: the line is marked checked, the
/// notice goes, and the payment carries the badge's hash (never its code).
#[test]
fn the_approving_badge_is_marked_on_the_line_and_goes_with_the_payment() {
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let mut s = session();
    s.handle(scan("4006381333931"), &c);
    whisky(&mut s, &c);
    let e = s.handle(scan("STAFF:1234"), &c);
    assert_eq!(notices(&e), vec![None]);
    assert_eq!(screens(&e), vec![&Screen::Shopping]);
    let view = s.cart_view();
    assert!(!view.lines[0].age_checked, "the highlighter needs no check");
    assert!(view.lines[1].age_restricted && view.lines[1].age_checked);
    let BadgeCheck::Approved(expected) = staff().check("1234") else {
        panic!("1234 is on the list")
    };
    let e = s.handle(Input::Ui(UiEvent::Pay), &c);
    assert_eq!(started(&e), Some(Some(expected)));
}

/// Revocation through the ledger: a badge that approved under one list
/// version is refused once a newer version without it is stored, and the
/// list held survives a restart (age checks work offline).
#[test]
fn a_revoked_badge_is_refused_with_the_list_from_the_ledger() {
    use std::sync::Mutex;
    use store_and_forward::counter::FileCounter;
    use store_and_forward::datakey::FileDataKey;
    use store_and_forward::policy::Limits;
    use store_and_forward::{Ledger, LedgerConfig, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let c = catalog(&dir);
    let open = || {
        let counter = FileCounter::open(dir.path().join("counter"), 1_000).unwrap();
        let mut key = FileDataKey::new(dir.path().join("data.key"));
        let config = LedgerConfig {
            path: dir.path().join("ledger.sqlite"),
            ..LedgerConfig::default()
        };
        let (ledger, _) = Ledger::open(
            config,
            Limits::none(),
            Box::new(counter),
            &mut key,
            Timestamp::now(),
        )
        .unwrap();
        Arc::new(Mutex::new(ledger))
    };
    let ledger = open();
    ledger
        .lock()
        .unwrap()
        .apply_staff_list(&staff(), Timestamp::now())
        .unwrap();
    drop(ledger);
    let ledger = open();
    let mut s = bare_session().with_staff(ledger.clone());
    whisky(&mut s, &c);
    s.handle(scan("STAFF:0042"), &c);
    assert!(s.basket().pending_age_check().is_none(), "0042 on list 1");
    s.handle(Input::Ui(UiEvent::Pay), &c);
    s.handle(paid(Shown::ApprovedOffline), &c);
    s.handle(Input::Ui(UiEvent::Done), &c);
    let revoked = StaffList::hashing(2, vec![3; 16], &["1234"]);
    ledger
        .lock()
        .unwrap()
        .apply_staff_list(&revoked, Timestamp::now())
        .unwrap();
    whisky(&mut s, &c);
    let e = s.handle(scan("STAFF:0042"), &c);
    assert_eq!(notices(&e), vec![Some(ScanNotice::StaffBadgeRefused)]);
    assert!(s.basket().pending_age_check().is_some());
    s.handle(scan("STAFF:1234"), &c);
    assert!(s.basket().pending_age_check().is_none());
}

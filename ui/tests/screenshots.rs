//! Every screen rendered by the software renderer at 1280x800 and 800x480 and
//! compared with the reference images in `docs/screenshots/`.
//!
//! A missing reference fails the test, naming the file; with
//! `UPDATE_SCREENSHOTS=1` missing references are written, and with
//! `UPDATE_SCREENSHOTS=all` every reference is rewritten. A reference image
//! changes only in a commit that says why (docs/ui.md).

mod common;

use common::reference::{SIZES, check};
use common::{APPLES, BREAD, Daemon, MILK, WINE};
use ui::headless::Headless;
use ui::{
    DeclineReason, FaultView, LinkBanner, ReaderPrompt, Screen, SetupStep, SetupView, ViewUpdate,
};

type Step = fn(&mut Daemon);

fn screens() -> Vec<(&'static str, Step)> {
    vec![
        ("idle", |_| {}),
        ("shopping", |d| {
            d.scan(MILK);
            d.scan(MILK);
            d.scan(BREAD);
            d.scan(APPLES);
        }),
        ("checkout", |d| {
            d.ui.update(ViewUpdate::Screen(Screen::Checkout))
        }),
        ("reader-present-card", |d| {
            d.reader(ReaderPrompt::PresentCard)
        }),
        ("reader-enter-pin", |d| d.reader(ReaderPrompt::EnterPin)),
        ("reader-processing", |d| d.reader(ReaderPrompt::Processing)),
        ("approved", |d| d.approve(false)),
        ("approved-offline", |d| d.approve(true)),
        ("declined", |d| d.decline(DeclineReason::InsufficientFunds)),
        ("offline-banner", |d| {
            d.link(LinkBanner::Offline {
                offline_cap_minor: Some(10_000),
            });
            d.ui.update(ViewUpdate::Screen(Screen::Shopping));
        }),
        ("offline-paused", |d| {
            d.link(LinkBanner::Offline {
                offline_cap_minor: None,
            });
        }),
        ("age-check", |d| {
            d.link(LinkBanner::Online);
            d.scan(WINE);
        }),
        ("age-check-called", |d| {
            d.ui.update(ViewUpdate::Screen(Screen::AgeCheck(ui::AgeCheckView {
                line_id: 5,
                item_name: WINE.name.into(),
                staff_called: true,
            })));
        }),
        ("age-check-refused", |d| {
            d.staff_badge_refused(ui::ScanNotice::StaffBadgeRefused);
        }),
        ("shopping-de", |d| {
            d.staff_badge();
            d.ui.update(ViewUpdate::Language(ui::Language::German));
        }),
        ("approved-de", |d| d.approve(true)),
        ("fault", |d| {
            d.ui.update(ViewUpdate::Language(ui::Language::English));
            d.ui.update(ViewUpdate::Screen(Screen::Fault(FaultView {
                scanner_missing: true,
                reader_missing: true,
            })));
        }),
        ("out-of-service", |d| {
            d.ui.update(ViewUpdate::Screen(Screen::OutOfService))
        }),
        // First-boot setup (the QEMU suite's Wi-Fi onboarding finds these).
        ("setup-scan-network", |d| {
            d.ui.update(ViewUpdate::Screen(Screen::Setup(SetupView {
                step: SetupStep::ScanNetworkCode,
                network: String::new(),
            })))
        }),
        ("setup-wrong-password", |d| {
            d.ui.update(ViewUpdate::Screen(Screen::Setup(SetupView {
                step: SetupStep::WrongPassword,
                network: "shop-carts".into(),
            })))
        }),
    ]
}

#[test]
fn every_screen_matches_its_reference_at_both_sizes() {
    let headless = Headless::install()
        .expect("headless platform (fontconfig must find a font: install fonts-dejavu-core)");
    let mut d = Daemon::new();
    let mut failures = Vec::new();
    for (name, step) in screens() {
        step(&mut d);
        d.pump();
        for (w, h) in SIZES {
            headless.resize(w, h);
            let frame = headless.render();
            if let Some(failure) = check(name, &frame) {
                failures.push(failure);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "screenshots differ:\n{}",
        failures.join("\n")
    );
}

//! The whole cart in QEMU (docs/qemu.md). One cart's life, scenario after
//! scenario, booting as few times as they allow; `QEMU_SCENARIOS=1,7`
//! runs a subset (the first boot, which provisions the cart, always runs:
//! every other scenario needs a provisioned cart).
//!
//! Needs the guest (tests/qemu/build-guest.sh after the image's release
//! build), qemu-system-x86, swtpm, mosquitto: scripts/test.sh prepares all.
//! Scenarios 13-15 (updates between two builds, booted through OVMF and
//! GRUB) are not in a plain run: scripts/qemu-updates.sh runs them.

mod common;
mod updates;

use std::time::{Duration, Instant};

use backend_emulator::CertStatus;
use common::{CART, Cart, tail};
use hal::reader::sim::{SimConfig, spawn_pty};
use qemu_suite::screen::Rgb;
use store_and_forward::PaymentState;
use store_and_forward::money::{Currency, Money};
use store_and_forward::policy::LimitsConfig;
use store_and_forward::wire::down::{CatalogDelta, CatalogItem};
use store_and_forward::wire::jobs::JobExecutionStatus;

/// Sourdough bread, EUR 3.49 (within the offline cap below).
const BREAD: &str = "4006381333931";
/// A coffee machine, EUR 149.00 (above the offline per-payment cap).
const MACHINE: &str = "4000000000006";

/// Where the controls are on the 1280x800 screens (docs/screenshots):
/// Checkout on the basket, Pay on the checkout card, Done on the receipt.
/// Each: where to tap (the middle) and a pixel of the button's own blue,
/// clear of its label, that says the button is drawn.
/// A banner (offline, a notice) moves the content down: the button is
/// found in the probe's column, offset from where its reference has it.
struct Control {
    tap: (u32, u32),
    probe: (u32, u32),
    reference: &'static str,
}
const CHECKOUT: Control = Control {
    tap: (1070, 711),
    probe: (915, 676),
    reference: "shopping-1280x800.png",
};
const PAY: Control = Control {
    tap: (755, 539),
    probe: (652, 503),
    reference: "checkout-1280x800.png",
};
const DONE: Control = Control {
    tap: (1092, 610),
    probe: (958, 586),
    reference: "approved-offline-1280x800.png",
};

/// The first row, from `from` down, where column `x` is the primary blue.
fn first_blue(screen: &Rgb, x: u32, from: u32) -> Option<u32> {
    (from..screen.height).find(|y| is_primary_blue(screen, (x, *y)))
}

/// Where `control` is on `screen`: its probe and tap points, moved by the
/// offset between its top edge here and in its reference screen.
fn locate(screen: &Rgb, control: &Control) -> Option<((u32, u32), (u32, u32))> {
    let reference = Rgb::read_png(
        &qemu_suite::workspace_root()
            .join("docs/screenshots")
            .join(control.reference),
    )
    .ok()?;
    let from = control.probe.1.saturating_sub(60);
    let edge_ref = first_blue(&reference, control.probe.0, from)?;
    let edge = first_blue(screen, control.probe.0, from)?;
    let dy = i64::from(edge) - i64::from(edge_ref);
    let shift = |(x, y): (u32, u32)| (x, (i64::from(y) + dy).max(0) as u32);
    let probe = shift(control.probe);
    is_primary_blue(screen, probe).then(|| (probe, shift(control.tap)))
}

/// The primary buttons' blue (as drawn: #1f5fc1-ish), within a tolerance.
fn is_primary_blue(screen: &Rgb, (x, y): (u32, u32)) -> bool {
    let i = ((y * screen.width + x) * 3) as usize;
    match screen.data.get(i..i + 3) {
        Some([r, g, b]) => *r < 80 && (70..140).contains(g) && *b > 160,
        _ => false,
    }
}

/// Waits until the primary button `control` is drawn, then taps it.
fn tap_when_shown(cart: &mut Cart, name: &str, control: Control, timeout: Duration) {
    let what = format!("{name}: the button of {} never showed", control.reference);
    let screen = wait_screen(cart, name, &what, timeout, |s| {
        locate(s, &control).is_some()
    });
    let (_, (x, y)) = locate(&screen, &control).expect("located on this screen");
    let (w, h) = cart.guest().display;
    cart.guest().qmp.tap(x, y, w, h).expect("tap");
    qemu_suite::step(&format!("tapped {name}"));
}

/// Waits until the display shows what `seen` looks for; the last screen
/// is kept as `<name>.png`. Fails the scenario with `what` on timeout.
fn wait_screen(
    cart: &mut Cart,
    name: &str,
    what: &str,
    timeout: Duration,
    seen: impl Fn(&Rgb) -> bool,
) -> Rgb {
    let dir = cart.art.path().to_owned();
    let deadline = Instant::now() + timeout;
    loop {
        let screen = cart.guest().screen(&dir, name);
        if seen(&screen) {
            return screen;
        }
        if Instant::now() > deadline {
            cart.fail(&format!("{what} (last screen: {name}.png)"));
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
}

/// Scans, checks out and taps Pay through the devices (the reader's
/// simulator presents its card).
fn pay_for(cart: &mut Cart, code: &str, tag: &str) {
    cart.scanner.scan(code);
    tap_when_shown(
        cart,
        &format!("{tag}-basket"),
        CHECKOUT,
        Duration::from_secs(120),
    );
    tap_when_shown(
        cart,
        &format!("{tag}-checkout"),
        PAY,
        Duration::from_secs(60),
    );
}

/// The scenarios a plain run takes (all of them).
const DEFAULT_SCENARIOS: [u32; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

fn wanted(n: u32) -> bool {
    match std::env::var("QEMU_SCENARIOS") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|s| s.trim() == n.to_string()),
        _ => DEFAULT_SCENARIOS.contains(&n),
    }
}

/// The unit's state in the guest: (ActiveState, SubState, MainPID, NRestarts).
fn unit(cart: &mut Cart) -> (String, String, String, String) {
    let out = cart
        .must("systemctl show -p ActiveState -p SubState -p MainPID -p NRestarts cart-app.service");
    let get = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_default()
            .to_owned()
    };
    (
        get("ActiveState"),
        get("SubState"),
        get("MainPID"),
        get("NRestarts"),
    )
}

/// Runs one scenario and records how long it took.
fn timed(cart: &mut Cart, name: &str, scenario: impl FnOnce(&mut Cart)) {
    if let Some(expected) = cart.charged_expected.take() {
        let counts = cart.cloud.emulator.counts();
        assert_eq!(
            counts.charged, expected,
            "charged after the last scenario: {counts:?}"
        );
    }
    let t = Instant::now();
    qemu_suite::step(&format!("{name} begins"));
    scenario(cart);
    let line = format!("{name}: {:.0} s", t.elapsed().as_secs_f64());
    println!("qemu-suite: {line}");
    cart.boots.push(line);
}

#[test]
fn a_cart_in_qemu() {
    let mut cart = Cart::new("cart");
    // Before anything boots: scenarios 13-15 need what their script built.
    let updates = [13, 14, 15]
        .iter()
        .any(|n| wanted(*n))
        .then(|| updates::Builds::from_env(&mut cart));
    timed(&mut cart, "scenarios 1-2", first_boot);
    if [3, 4, 5, 6, 12, 13, 14, 15].iter().any(|n| wanted(*n)) {
        timed(&mut cart, "catalog", stock_the_catalog);
    }
    if wanted(3) {
        timed(&mut cart, "scenario 3", checkout);
    }
    if wanted(4) {
        timed(&mut cart, "scenario 4", cable_pulled);
    }
    if wanted(8) {
        timed(&mut cart, "scenario 8", field_technician);
    }
    if wanted(9) {
        timed(&mut cart, "scenario 9", usb_reader_unplugged);
    }
    if wanted(7) {
        timed(&mut cart, "scenario 7", watchdog);
    }
    if wanted(10) {
        timed(&mut cart, "scenario 10", remote_jobs);
    }
    if wanted(11) {
        timed(&mut cart, "scenario 11", update_refusals);
    }
    if wanted(12) {
        timed(&mut cart, "scenario 12", update_waits_for_a_payment);
    }
    if let Some(builds) = &updates {
        if wanted(13) {
            timed(&mut cart, "scenario 13", |c| {
                updates::newer_build(c, builds)
            });
        }
        if wanted(14) {
            timed(&mut cart, "scenario 14", |c| {
                updates::broken_build(c, builds)
            });
        }
        if wanted(15) {
            timed(&mut cart, "scenario 15", |c| updates::power_cuts(c, builds));
        }
    }
    if wanted(5) || wanted(6) {
        let cuts = if wanted(5) {
            std::env::var("QEMU_POWER_CUTS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(3)
        } else {
            0
        };
        // Last: the rollback leaves the ledger behind the TPM's counter
        // (offline approval off until a technician re-binds it).
        let rollback = wanted(6);
        timed(&mut cart, "scenarios 5-6", move |cart| {
            power_cuts_and_rollback(cart, cuts, rollback)
        });
    }
    if let Some(expected) = cart.charged_expected.take() {
        std::thread::sleep(Duration::from_secs(10));
        let counts = cart.cloud.emulator.counts();
        assert_eq!(counts.charged, expected, "charged at the end: {counts:?}");
    }
    cart.shutdown();
    for line in &cart.boots {
        println!("qemu-suite: {line}");
    }
}

/// Scenarios 1 and 2: a cart fresh from the factory boots, provisions
/// itself by claim (its key made in the guest's TPM), restarts with its own
/// certificate, comes up READY as user `cart` and draws the idle screen.
fn first_boot(cart: &mut Cart) {
    let started = Instant::now();
    cart.boot();
    let agent_at = started.elapsed();
    let joined_by = wifi_onboarding(cart);

    // Provisioned: one active certificate for this cart at the backend.
    let em_active = |cart: &Cart| {
        cart.cloud
            .emulator
            .fleet()
            .expect("fleet responder")
            .with_status(CART, CertStatus::Active)
            .len()
    };
    if !qemu_suite::wait_for(Duration::from_secs(300), || em_active(cart) == 1) {
        let log = cart
            .guest()
            .sh("journalctl -b -u cart-app --no-pager | tail -40")
            .stdout;
        cart.fail(&format!("the cart never provisioned itself:\n{log}"));
    }
    let provisioned_at = started.elapsed();

    // Restarted by systemd with its certificate, READY (Type=notify: active
    // means READY=1 came), online.
    wait_ready(cart, "after its restart");
    let ready_at = started.elapsed();
    let (_, _, pid, _) = unit(cart);
    let user = cart.must(&format!("ps -o user= -p {pid}"));
    assert_eq!(user.trim(), "cart", "the daemon runs as user cart");

    wifi_joined(cart, joined_by);

    // The claim is gone from the factory area; no private key file on any
    // disk: the device key lives in the TPM, fixedTPM|fixedParent.
    let claim = cart.must("ls -A /data/factory/claim");
    assert!(claim.trim().is_empty(), "claim left behind: {claim}");
    // /usr is the image's read-only content: build-guest.sh checks it
    // holds no key when it builds the root.
    let keys = cart.must(
        "grep -rlsI -e 'PRIVATE KEY-----' /etc /var /data /root /home /srv /opt /tmp 2>/dev/null || true",
    );
    if !keys.trim().is_empty() {
        cart.fail(&format!("private key files on the cart's disk:\n{keys}"));
    }
    let public = cart.must("TPM2TOOLS_TCTI=device:/dev/tpmrm0 tpm2_readpublic -c 0x81000100");
    for attr in [
        "fixedtpm",
        "fixedparent",
        "sensitivedataorigin",
        "noda",
        "sign",
    ] {
        assert!(public.contains(attr), "device key lacks {attr}:\n{public}");
    }

    // The idle screen on the guest's own display (bochs-drm, 1280x800),
    // drawn by the daemon through DRM: compared with the UI's reference.
    let dir = cart.art.path().to_owned();
    let mut last = String::new();
    let mut frame_at = None;
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        let screen = cart.guest().screen(&dir, "idle");
        match qemu_suite::screen::matches_reference(&screen, "idle", &dir) {
            Ok(_) => {
                frame_at = Some(started.elapsed());
                break;
            }
            Err(why) => last = why,
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    if frame_at.is_none() {
        cart.fail(&format!(
            "the idle screen never matched its reference: {last}"
        ));
    }

    // Where the boot's time goes (kept in the run folder; the summary line
    // in the suite's output).
    let boot_time = cart.must(
        "systemd-analyze time 2>&1 | head -1; systemd-analyze blame --no-pager 2>&1 | head -15",
    );
    std::fs::write(cart.art.file("boot-blame.txt"), &boot_time).ok();
    println!(
        "qemu-suite: {}",
        boot_time.lines().next().unwrap_or_default()
    );

    // The image's own checks (the same script its oeqa cases run).
    let selftest = cart.guest().sh("cart-selftest --wait 60");
    if !selftest.success() {
        cart.fail(&format!("cart-selftest failed:\n{}", selftest.stdout));
    }

    // What the suite tests is what the image ships: every path of
    // packaging/files.list is in the guest with the mode and owner built.
    let list = std::fs::read_to_string(qemu_suite::workspace_root().join("packaging/files.list"))
        .expect("packaging/files.list");
    let expected: Vec<String> = list
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!(
                "{} {} {} {}",
                f[1],
                f[2].trim_start_matches('0'),
                f[3],
                f[4]
            )
        })
        .collect();
    let paths: Vec<&str> = expected
        .iter()
        .filter_map(|l| l.split(' ').next())
        .collect();
    let got = cart.must(&format!("stat -c '%n %a %U %G' {}", paths.join(" ")));
    assert_eq!(
        got.trim(),
        expected.join("\n"),
        "the booted cart's files differ from packaging/files.list"
    );
    if let Some(files) = cart.image.files.clone() {
        let built = std::fs::read_to_string(&files).expect("files.txt");
        assert_eq!(
            got.trim(),
            built.trim(),
            "the booted cart's files differ from the build's"
        );
    }

    cart.boots.push(format!(
        "first boot: guest agent up {:.1} s, provisioned {:.1} s, READY after the restart {:.1} s, idle screen matched {:.1} s (from QEMU start, TCG)",
        agent_at.as_secs_f64(),
        provisioned_at.as_secs_f64(),
        ready_at.as_secs_f64(),
        frame_at.map_or(0.0, |d| d.as_secs_f64()),
    ));
}

/// The store's Wi-Fi inside the guest (hostapd's WPA2 network on wlan1).
const WIFI_SSID: &str = "shop-carts";
const WIFI_PASSWORD: &str = "Corr3ct-Horse-Battery";
const WIFI_WRONG_PASSWORD: &str = "Wr0ng-Horse-Battery";

/// Waits until the display shows the setup screen `name`: within the
/// reference's tolerance, and closer to it than to the other setup screens
/// (their texts differ in few pixels).
fn wait_setup_screen(cart: &mut Cart, name: &str, timeout: Duration) {
    use qemu_suite::screen::Rgb;
    const SETUP: [&str; 2] = ["setup-scan-network", "setup-wrong-password"];
    let dir = cart.art.path().to_owned();
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let screen = cart.guest().screen(&dir, name);
        let distance = |n: &str| {
            let file = format!(
                "docs/screenshots/{n}-{}x{}.png",
                screen.width, screen.height
            );
            Rgb::read_png(&qemu_suite::workspace_root().join(file))
                .ok()
                .and_then(|r| screen.diff(&r))
                .map_or(1.0, |(f, _)| f)
        };
        match qemu_suite::screen::matches_reference(&screen, name, &dir) {
            Ok(own)
                if SETUP
                    .iter()
                    .filter(|o| **o != name)
                    .all(|o| distance(o) > own) =>
            {
                return;
            }
            Ok(own) => last = format!("as close to another setup screen ({own})"),
            Err(why) => last = why,
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let log = cart.must("journalctl -b -u cart-app --no-pager | tail -30");
    cart.fail(&format!("the {name} screen never showed: {last}\n{log}"));
}

/// Scenario 2's network step, under the unit's sandbox: the cart asks for
/// the store's Wi-Fi code; a wrong password is refused on screen and the
/// cart waits for a new code; the right one, with the daemon killed while
/// NetworkManager waits for an address, resumes after the restart with the
/// connection NetworkManager saved. Returns the PID of the daemon that
/// must finish the join.
fn wifi_onboarding(cart: &mut Cart) -> String {
    // The store's network: WPA2 on the second radio, DHCP.
    cart.must("systemctl start cart-test-dhcp.service");
    if !cart.wait_guest(
        "nmcli -t -f DEVICE,STATE device | grep -q '^wlan0:disconnected'",
        Duration::from_secs(60),
    ) {
        let nm = cart.must("nmcli device; journalctl -b -u NetworkManager --no-pager | tail -20");
        cart.fail(&format!("NetworkManager never saw the cart's radio:\n{nm}"));
    }
    wait_setup_screen(cart, "setup-scan-network", Duration::from_secs(180));
    cart.scanner.scan(&format!(
        "WIFI:S:{WIFI_SSID};T:WPA;P:{WIFI_WRONG_PASSWORD};;"
    ));
    wait_setup_screen(cart, "setup-wrong-password", Duration::from_secs(120));

    // The right code, with no DHCP yet: the passphrase is accepted and
    // NetworkManager waits for an address (state 70) when the daemon dies.
    cart.must("systemctl stop cart-test-dhcp.service");
    cart.scanner
        .scan(&format!("WIFI:S:{WIFI_SSID};T:WPA;P:{WIFI_PASSWORD};;"));
    if !cart.wait_guest(
        "nmcli -g GENERAL.STATE device show wlan0 | grep -q '^70'",
        Duration::from_secs(120),
    ) {
        let nm = cart.must(
            "nmcli device; journalctl -b -u cart-app -u NetworkManager --no-pager | tail -30",
        );
        cart.fail(&format!(
            "the right password never reached address configuration:\n{nm}"
        ));
    }
    cart.must("systemctl kill -s KILL cart-app.service");
    cart.must("systemctl start cart-test-dhcp.service");
    cart.must("systemctl restart cart-app.service");
    cart.must("systemctl show -p MainPID --value cart-app.service")
        .trim()
        .to_owned()
}

/// After provisioning: the daemon started after the kill finished the
/// join; NetworkManager holds one connection for the cart, root's and 0600
/// on the data partition, up; no password in the journal.
fn wifi_joined(cart: &mut Cart, pid: String) {
    let resumed = cart.must(&format!("journalctl _PID={pid} -o cat --no-pager"));
    assert!(
        resumed.contains("Wi-Fi up"),
        "the restarted daemon did not finish the join:\n{resumed}"
    );
    let connections = cart.must("nmcli -t -f NAME,TYPE connection show");
    assert_eq!(
        connections.trim(),
        "cart-wifi:802-11-wireless",
        "NetworkManager's connections"
    );
    let file = cart.must("stat -c '%a %U' /data/network/cart-wifi.nmconnection");
    assert_eq!(
        file.trim(),
        "600 root",
        "the saved connection's mode and owner"
    );
    let saved = cart.must("cat /data/network/cart-wifi.nmconnection");
    assert!(
        saved.contains(&format!("ssid={WIFI_SSID}"))
            && saved.contains(&format!("psk={WIFI_PASSWORD}")),
        "the saved connection:\n{saved}"
    );
    let state = cart.must("nmcli -g GENERAL.STATE device show wlan0");
    assert!(state.starts_with("100"), "wlan0: {state}");
    let leaks = cart.must(&format!(
        "journalctl -u cart-app -u NetworkManager -u wpa_supplicant --no-pager -o cat | grep -c -e '{WIFI_PASSWORD}' -e '{WIFI_WRONG_PASSWORD}' || true"
    ));
    assert_eq!(leaks.trim(), "0", "a Wi-Fi password in the journal");
}

/// The backend stocks the cart's catalog and sets offline limits: EUR 50
/// per payment, EUR 200 outstanding.
fn stock_the_catalog(cart: &mut Cart) {
    let eur = Currency::new("EUR").expect("EUR");
    let item = |gtin: &str, name: &str, minor: i64| CatalogItem {
        gtin: format!("0{gtin}"),
        name: name.into(),
        price: Money::new(minor, eur),
        tax_class: "reduced".into(),
        min_age: None,
        sold_by_weight: false,
    };
    let delta = CatalogDelta {
        version: 1,
        base_version: None,
        upserts: vec![
            item(BREAD, "Sourdough bread", 349),
            item(MACHINE, "Espresso machine", 14900),
        ],
        removals: vec![],
    };
    let mut limits = LimitsConfig {
        version: 1,
        ..LimitsConfig::default()
    };
    limits.per_payment_cap.insert("EUR".into(), 5000);
    limits.total_outstanding_cap.insert("EUR".into(), 20000);
    // The reader simulator has one card: the suite's offline approvals
    // (scenarios 4, 5, 6) are all on it, more than a day's default
    // velocity allows.
    limits.velocity_max_per_card = 50;
    let em = &cart.cloud.emulator;
    cart.cloud.rt.block_on(async {
        em.publish_catalog(CART, delta)
            .await
            .expect("publish catalog");
        em.publish_policy(CART, limits)
            .await
            .expect("publish limits");
    });
    let applied = qemu_suite::wait_for(Duration::from_secs(120), || {
        let acks = cart.cloud.emulator.acks();
        acks.iter().filter(|(c, _)| c == CART).count() >= 2
    });
    if !applied {
        cart.fail("the cart never acknowledged the catalog and the limits");
    }
}

/// Scenario 3: a shopper's checkout, all through the devices: a scan on
/// ttyS1, taps on the screen, a test card on ttyS2; the backend charges
/// once; the receipt on the display.
fn checkout(cart: &mut Cart) {
    let before = cart.cloud.emulator.counts().charged;
    pay_for(cart, BREAD, "s3");
    tap_when_shown(cart, "s3-receipt", DONE, Duration::from_secs(120));
    let charged = qemu_suite::wait_for(Duration::from_secs(60), || {
        cart.cloud.emulator.counts().charged == before + 1
    });
    if !charged {
        cart.fail(&format!(
            "the backend did not charge the payment once: {:?}",
            cart.cloud.emulator.counts()
        ));
    }
    let counts = cart.cloud.emulator.counts();
    assert_eq!(counts.payment_duplicates, 0, "{counts:?}");
    // The receipt's QR code, signed in the guest's TPM: the journal's
    // RECEIPT field, checked as the e-receipt page would (the certificate
    // fleet provisioning issued, the payment charged).
    let (receipt, _) = last_receipt(cart);
    match cart.cloud.emulator.verify_receipt(&receipt) {
        Ok(v) if v.charged => {}
        other => cart.fail(&format!("the receipt {receipt} did not check: {other:?}")),
    }
}

/// The last receipt the journal holds: its RECEIPT and PAYMENT_KEY fields.
fn last_receipt(cart: &mut Cart) -> (String, String) {
    let journal =
        cart.must(r#"journalctl -b -u cart-app -o json --no-pager | grep "\"RECEIPT\"" || true"#);
    let found = journal
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            let field = |k: &str| v.get(k).and_then(|r| r.as_str()).map(str::to_owned);
            Some((field("RECEIPT")?, field("PAYMENT_KEY")?))
        });
    match found {
        Some(r) => r,
        None => {
            cart.fail("no 'receipt made' line with RECEIPT and PAYMENT_KEY fields in the journal")
        }
    }
}

/// Scenario 4: the cable is pulled: an offline approval within the limits,
/// an over-limit decline, the offline banner; the cable returns, the
/// offline approval is forwarded and charged exactly once.
fn cable_pulled(cart: &mut Cart) {
    let charged_before = cart.cloud.emulator.counts().charged;
    cart.guest()
        .qmp
        .set_link(qemu_suite::guest::NIC, false)
        .expect("set_link off");
    // The shopper sees the offline banner over the basket once the cart
    // has noticed (keep-alive), before paying.
    cart.scanner.scan(BREAD);
    wait_screen(
        cart,
        "s4-offline-banner",
        "the offline banner never showed over the basket with the cable out",
        Duration::from_secs(150),
        |s| s.has_banner() && locate(s, &CHECKOUT).is_some(),
    );
    tap_when_shown(cart, "s4-offline-basket", CHECKOUT, Duration::from_secs(60));
    tap_when_shown(cart, "s4-offline-checkout", PAY, Duration::from_secs(60));
    tap_when_shown(cart, "s4-offline-receipt", DONE, Duration::from_secs(180));
    let offline_key = last_receipt(cart).1;
    let status = cart.must("cartctl status --json");
    std::fs::write(cart.art.file("s4-status-offline.json"), &status).ok();
    // Above the per-payment cap while the link is down: refused (before the
    // card is read), never charged.
    cart.scanner.scan(MACHINE);
    tap_when_shown(
        cart,
        "s4-over-limit-basket",
        CHECKOUT,
        Duration::from_secs(120),
    );
    tap_when_shown(cart, "s4-over-limit-checkout", PAY, Duration::from_secs(60));
    // The cart decides before the cable returns: the card read, then the
    // online request times out (auth_timeout_ms) and the offline policy
    // declines. A cable back while it still waits would let the online
    // request through, and the bank would approve it, rightly.
    wait_screen(
        cart,
        "s4-over-limit-decided",
        "the over-limit payment was never declined while the cable was out",
        Duration::from_secs(180),
        |s| s.red_heading_pixels() > 300,
    );
    cart.guest()
        .qmp
        .set_link(qemu_suite::guest::NIC, true)
        .expect("set_link on");
    let drained = qemu_suite::wait_for(Duration::from_secs(180), || {
        cart.cloud.emulator.counts().charged == charged_before + 1
    });
    if !drained {
        cart.fail(&format!(
            "the offline approval was not forwarded and charged once: {:?}",
            cart.cloud.emulator.counts()
        ));
    }
    // The payment followed through the journal by its key, as a field
    // technician does (`journalctl PAYMENT_KEY=`): the ledger's offline
    // approval, the receipt, the backend's outcome applied after the
    // forward; one field name from every module.
    let follow = format!(
        "journalctl -u cart-app PAYMENT_KEY={offline_key} -o cat --no-pager | \
         grep -e 'approved offline' -e 'receipt made' -e 'backend outcome applied' | sort -u | wc -l | grep -qx 3"
    );
    if !cart.wait_guest(&follow, Duration::from_secs(60)) {
        let lines = cart.must(&format!(
            "journalctl -u cart-app PAYMENT_KEY={offline_key} -o cat --no-pager"
        ));
        cart.fail(&format!(
            "journalctl PAYMENT_KEY={offline_key} does not follow the payment:\n{lines}"
        ));
    }
    // An online request sent before the cable went and delivered after it
    // came back reaches the backend under the same key as the forward: a
    // duplicate message, deduplicated, never a second charge. The next
    // scenario starts with that check, giving a wrong charge time to show.
    cart.charged_expected = Some(charged_before + 1);
}

/// Waits until the unit is active (READY) and the cart provisioned.
fn wait_ready(cart: &mut Cart, what: &str) {
    let ready = cart.wait_guest(
        "test \"$(systemctl show -p ActiveState --value cart-app)\" = active && \
         cartctl status --json | grep -q '\"provisioned\": *true'",
        Duration::from_secs(300),
    );
    if !ready {
        let log = cart
            .guest()
            .sh("journalctl -b -u cart-app --no-pager | tail -40")
            .stdout;
        cart.fail(&format!("{what}: the cart is not READY:\n{log}"));
    }
    qemu_suite::step(&format!("ready ({what})"));
}

/// Scenario 9: a USB card reader unplugged and plugged back. The board's
/// udev override (a runtime rule, as a board layer would ship it) names a
/// USB-serial adapter `cart-reader`; a second reader simulator sits behind
/// it. Pulled (`device_del`): the fault screen and the journal say the
/// reader is missing; plugged back (`device_add`): the cart recovers, the
/// same daemon process throughout.
fn usb_reader_unplugged(cart: &mut Cart) {
    const DEV: &str = "usbreader";
    const SERIAL: &str = "cart-usb-reader";
    let sim = spawn_pty(SimConfig::from_fixtures(&common::fixtures()).expect("fixtures"))
        .expect("the USB reader's simulator");
    let tty = sim.path().to_owned();
    cart.usb_reader = Some(sim);
    // The board override: the scanner on its UART, the reader on USB.
    cart.must(&format!(
        "set -e; mkdir -p /run/udev/rules.d; \
         printf '%s\n' 'SUBSYSTEM==\"tty\", KERNEL==\"ttyS1\", SYMLINK+=\"cart-scanner\"' \
           'SUBSYSTEM==\"tty\", SUBSYSTEMS==\"usb\", ATTRS{{serial}}==\"{SERIAL}\", SYMLINK+=\"cart-reader\"' \
           > /run/udev/rules.d/60-cart.rules; \
         udevadm control --reload; udevadm trigger --action=change --subsystem-match=tty --settle"
    ));
    let plug = |cart: &mut Cart| {
        cart.guest()
            .qmp
            .device_add(serde_json::json!({
                "driver": "usb-serial", "id": DEV, "chardev": "usbrd",
                "bus": "xhci.0", "serial": SERIAL,
            }))
            .expect("device_add usb-serial")
    };
    cart.guest()
        .qmp
        .chardev_add_tty("usbrd", &tty)
        .expect("chardev-add");
    plug(cart);
    let named = cart.wait_guest(
        "test \"$(readlink -f /dev/cart-reader)\" = \"$(ls -d /dev/ttyUSB* | head -1)\"",
        Duration::from_secs(60),
    );
    if !named {
        let links = cart.must("ls -l /dev/cart-* /dev/ttyUSB* 2>&1 || true");
        cart.fail(&format!(
            "the USB reader never became /dev/cart-reader:\n{links}"
        ));
    }
    // The daemon moves to the new reader at its next start (a board's
    // wiring is fixed at boot; this stands in for booting that board).
    cart.must("systemctl restart cart-app");
    wait_ready(cart, "with the USB reader");
    let (_, _, pid, restarts) = unit(cart);
    let on_usb = cart.wait_guest(
        &format!("ls -l /proc/{pid}/fd | grep -q ttyUSB"),
        Duration::from_secs(60),
    );
    if !on_usb {
        cart.fail("the daemon never opened the USB reader");
    }
    wait_screen(
        cart,
        "s9-before",
        "the idle screen never showed with the USB reader",
        Duration::from_secs(120),
        |s| s.red_heading_pixels() == 0 && !s.has_banner(),
    );

    // Unplugged.
    let t = Instant::now();
    cart.guest().qmp.device_del(DEV).expect("device_del");
    let gone = qemu_suite::wait_for(Duration::from_secs(30), || {
        cart.guest.as_mut().expect("on").qmp.device_deleted(DEV)
    });
    assert!(gone, "QEMU never removed the USB reader");
    wait_screen(
        cart,
        "s9-unplugged",
        "the fault screen never showed with the reader unplugged",
        Duration::from_secs(120),
        |s| s.red_heading_pixels() > 300,
    );
    let fault_after = t.elapsed();
    let journal = cart.must("journalctl -b -u cart-app --no-pager -n 200");
    assert!(
        journal.contains("card reader missing") || journal.contains("stopped answering"),
        "the journal does not say the reader is missing:\n{}",
        tail(&journal, 20)
    );

    // Plugged back: the same chardev, the same simulator.
    let t = Instant::now();
    plug(cart);
    wait_screen(
        cart,
        "s9-replugged",
        "the cart never recovered from the fault screen after the reader came back",
        Duration::from_secs(120),
        |s| s.red_heading_pixels() == 0,
    );
    let recovered_after = t.elapsed();
    let (_, _, pid_after, restarts_after) = unit(cart);
    assert_eq!(pid, pid_after, "the daemon was restarted");
    assert_eq!(restarts, restarts_after, "the daemon was restarted");
    let connected = cart.must(
        "journalctl -b -u cart-app --no-pager -n 200 | grep -c 'card reader connected' || true",
    );
    assert!(
        connected.trim().parse::<u32>().unwrap_or(0) >= 2,
        "the journal does not show the reader connected again"
    );
    cart.boots.push(format!(
        "USB reader: fault screen {:.1} s after unplugging, recovered {:.1} s after plugging back, same process",
        fault_after.as_secs_f64(),
        recovered_after.as_secs_f64()
    ));
}

/// A small deterministic generator for the power cuts' moments (the seed
/// is printed; `QEMU_SEED` repeats a run).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("QEMU_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!("qemu-suite: power cuts with QEMU_SEED={seed}");
        Rng(seed | 1)
    }

    /// Uniform in 0..n (xorshift64*).
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// The cart's payments by state, from `cartctl status --json`.
fn payment_states(cart: &mut Cart) -> std::collections::BTreeMap<String, u64> {
    let status = cart.must("cartctl status --json");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    serde_json::from_value(v["ledger"]["payments"].clone()).unwrap_or_default()
}

/// Waits for the receipt of the payment under way (its Done button) and
/// reports whether it came. The screen is kept as `<tag>-receipt.png`.
fn receipt_shown(cart: &mut Cart, tag: &str) -> bool {
    let dir = cart.art.path().to_owned();
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        let screen = cart.guest().screen(&dir, &format!("{tag}-receipt"));
        if locate(&screen, &DONE).is_some() {
            qemu_suite::step(&format!("receipt shown ({tag})"));
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

/// Scenarios 5 and 6, on shared boots: power cuts, then a rollback.
///
/// Scenario 5: QEMU is killed (SIGKILL, no shutdown) at a random moment of
/// a payment, offline and online in turn, N times (`QEMU_POWER_CUTS`, 3 by
/// default). The first cut falls just after an offline receipt, the others
/// while the card is read, around the decision, after the receipt. After
/// the last boot and a drain: every payment the shopper saw approved
/// reaches the backend exactly once, nothing declined is charged, the
/// ledger's integrity check passes and no payment stays in doubt. The last
/// boot uses the 800x480 panel: its idle screen is compared with that
/// reference.
///
/// Scenario 6: the data partition is copied while the cart is off after
/// the first cut (an offline approval pending in it), another offline
/// approval is made at the next boot, and once everything has drained the
/// old copy is put back: at boot the cart finds its ledger behind the TPM's
/// NV counter, refuses offline approval, says so in the journal, in
/// `cartctl status` and on the link, and keeps selling online. The restored
/// approval is forwarded again and is not charged twice.
fn power_cuts_and_rollback(cart: &mut Cart, cuts: u32, rollback: bool) {
    // The rollback needs a boot after its copy: two cuts at least.
    let cuts = if rollback { cuts.max(2) } else { cuts.max(1) };
    let mut rng = Rng::new();
    let mut told = 0u32;
    let mut moments = Vec::new();
    let mut copy = None;
    for i in 0..cuts {
        // The first cut offline, then online and offline in turn.
        let online = i % 2 == 1;
        // The boot after the copy starts with the cable out: one more
        // offline approval, so the TPM's counter moves past the copy.
        let after_copy = copy.is_some() && i == 1;
        if cart.guest.is_none() {
            cart.boot_with_cable(online && !after_copy);
            wait_ready(cart, &format!("before power cut {}", i + 1));
        } else {
            cart.guest()
                .qmp
                .set_link(qemu_suite::guest::NIC, online)
                .expect("set_link");
        }
        if after_copy {
            pay_for(cart, BREAD, "s6-after-copy");
            if !receipt_shown(cart, "s6-after-copy") {
                cart.fail("the offline approval after the copy never showed its receipt");
            }
            told += 1;
            tap_when_shown(cart, "s6-after-copy-done", DONE, Duration::from_secs(60));
            cart.guest()
                .qmp
                .set_link(qemu_suite::guest::NIC, online)
                .expect("set_link");
        }
        let tag = format!("s5-{}", i + 1);
        pay_for(cart, BREAD, &tag);
        // A random moment: just after the receipt (the first cut), while
        // the card is read and authorized, around the decision, after the
        // receipt (a payment took 6-8 s from Pay under TCG here).
        let mut approved = false;
        let moment = if i == 0 {
            if !receipt_shown(cart, &tag) {
                cart.fail("the first power cut's offline payment never showed its receipt");
            }
            approved = true;
            let after = Duration::from_millis(rng.below(3_000));
            std::thread::sleep(after);
            format!("{:.1} s after the receipt", after.as_secs_f64())
        } else {
            let (from, to) = [(7_000, 20_000), (500, 5_000), (4_000, 8_000)][i as usize % 3];
            let after = Duration::from_millis(from + rng.below(to - from));
            let cut_at = Instant::now() + after;
            let dir = cart.art.path().to_owned();
            while Instant::now() < cut_at {
                let screen = cart.guest().screen(&dir, &format!("{tag}-before-cut"));
                approved |= locate(&screen, &DONE).is_some();
                std::thread::sleep(Duration::from_millis(300));
            }
            format!("{:.1} s after Pay", after.as_secs_f64())
        };
        cart.power_cut();
        if approved {
            told += 1;
        }
        moments.push(format!(
            "{} {moment}{}",
            if online { "online" } else { "offline" },
            if approved {
                " (approved on screen)"
            } else {
                ""
            }
        ));
        if rollback && i == 0 {
            let file = cart.art.file("data-copy.img");
            cart.disk.save_data(&file);
            copy = Some(file);
        }
    }

    // The last boot: the cable in, the small panel.
    let display = cart.config.display;
    cart.config.display = (800, 480);
    cart.boot_with_cable(true);
    wait_ready(cart, "after the last power cut");
    let dir = cart.art.path().to_owned();
    let mut last = String::new();
    let small = qemu_suite::wait_for(Duration::from_secs(180), || {
        let screen = cart
            .guest
            .as_mut()
            .expect("on")
            .screen(&dir, "s5-idle-800x480");
        match qemu_suite::screen::matches_reference(&screen, "idle", &dir) {
            Ok(_) => true,
            Err(why) => {
                last = why;
                false
            }
        }
    });
    if !small {
        cart.fail(&format!(
            "the 800x480 idle screen never matched its reference: {last}"
        ));
    }
    drain(cart, "after the power cuts");
    cart.shutdown();
    cart.config.display = display;
    let approved_in_ledger = check_ledger(cart, told);
    cart.boots.push(format!(
        "power cuts: {cuts} ({}); {told} approvals seen, {approved_in_ledger} approved in the ledger, all charged once; integrity ok",
        moments.join("; ")
    ));

    if let Some(copy) = copy {
        restored_copy(cart, &copy);
        std::fs::remove_file(&copy).ok();
    }
}

/// `cartctl sync`, then waits until every payment is decided and answered:
/// nothing in doubt, nothing waiting for the bank.
fn drain(cart: &mut Cart, what: &str) {
    let sync = cart.guest().sh("cartctl sync --timeout 240");
    if !sync.success() {
        cart.fail(&format!(
            "{what}: the outbox never drained: {}{}",
            sync.stdout, sync.stderr
        ));
    }
    let mut states = Default::default();
    let settled = qemu_suite::wait_for(Duration::from_secs(180), || {
        states = payment_states(cart);
        [
            "card_read",
            "in_doubt",
            "offline_approved",
            "forwarded",
            "reversal_pending",
        ]
        .iter()
        .all(|s| states.get(*s).copied().unwrap_or(0) == 0)
    });
    if !settled {
        cart.fail(&format!(
            "{what}: payments still unsettled after the drain: {states:?}"
        ));
    }
    qemu_suite::step(&format!("drained ({what})"));
}

/// The ledger itself, read from the data partition of the cart (off):
/// its integrity check passes; every payment approved in it is charged at
/// the backend, nothing else is; at least `told` approvals are in it.
/// Returns how many it has approved.
fn check_ledger(cart: &mut Cart, told: u32) -> u32 {
    let ledger = cart.art.file("s5-ledger.sqlite");
    let wal = cart.art.file("s5-ledger.sqlite-wal");
    assert!(
        cart.disk.pull("cart/ledger.sqlite", &ledger),
        "no ledger on the data partition"
    );
    cart.disk.pull("cart/ledger.sqlite-wal", &wal);
    let db = rusqlite::Connection::open(&ledger).expect("open the pulled ledger");
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok", "the ledger's integrity check");
    let rows: Vec<(Vec<u8>, String)> = db
        .prepare("SELECT key, state FROM payments")
        .and_then(|mut st| {
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()
        })
        .expect("payments");
    let charged: std::collections::BTreeMap<String, bool> = cart
        .cloud
        .emulator
        .payments()
        .into_iter()
        .filter(|p| p.cart == CART)
        .map(|p| {
            // A charge reversed (an approval the shopper never saw, e.g.
            // an in-doubt attempt approved there) was given back.
            let approved = matches!(
                p.outcome,
                Some(store_and_forward::payment::BackendOutcome::Approved { .. })
            ) && !p.reversed;
            (p.key, approved)
        })
        .collect();
    let mut approved_in_ledger = 0u32;
    for (raw, state) in &rows {
        let key = uuid_text(raw);
        let state =
            PaymentState::parse(state).unwrap_or_else(|| panic!("unknown payment state {state}"));
        let at_backend = charged.get(&key).copied().unwrap_or(false);
        // The simulator's card is good: a forward is never declined here.
        assert_ne!(state, PaymentState::DeclinedAfterForward, "payment {key}");
        if state.is_approved() {
            approved_in_ledger += 1;
            assert!(
                at_backend,
                "payment {key} approved at the cart ({state:?}) is not charged"
            );
        } else {
            assert!(
                !at_backend,
                "payment {key} charged though the cart has it {state:?}"
            );
        }
    }
    assert!(
        approved_in_ledger >= told,
        "{told} approvals shown, {approved_in_ledger} approved in the ledger"
    );
    let counts = cart.cloud.emulator.counts();
    assert_eq!(counts.undecryptable, 0, "{counts:?}");
    approved_in_ledger
}

/// Scenario 6's second half: the old copy of the data partition back in a
/// cart whose TPM counter has moved on since.
fn restored_copy(cart: &mut Cart, copy: &std::path::Path) {
    let charged_before = cart.cloud.emulator.counts().charged;
    cart.disk.restore_data(copy);
    cart.boot();
    wait_ready(cart, "after the rollback");
    let journal = cart.must("journalctl -b -u cart-app --no-pager");
    if !journal.contains("restored older copy") {
        cart.fail(&format!(
            "the journal does not report the rollback:\n{}",
            tail(&journal, 30)
        ));
    }
    let status = cart.must("cartctl status --json");
    std::fs::write(cart.art.file("s6-status.json"), &status).ok();
    assert!(
        status.to_lowercase().contains("rolled"),
        "cartctl status does not report the rollback: {status}"
    );
    let reported = qemu_suite::wait_for(Duration::from_secs(120), || {
        cart.cloud
            .emulator
            .status(CART)
            .is_some_and(|s| s.integrity == "rolled_back")
    });
    if !reported {
        cart.fail("the cart's status on the link never said rolled_back");
    }
    // Still selling online; the copy's offline approval, charged before the
    // copy went back, is forwarded again under its key: not charged twice.
    pay_for(cart, BREAD, "s6-online");
    tap_when_shown(cart, "s6-online-receipt", DONE, Duration::from_secs(180));
    drain(cart, "after the rollback");
    let counts = cart.cloud.emulator.counts();
    if counts.charged != charged_before + 1 {
        cart.fail(&format!(
            "after the rollback: expected the online payment charged, and nothing twice: {counts:?}"
        ));
    }
    cart.boots.push(
        "rollback: detected through the TPM counter, offline approval off, selling online, the restored approval not charged twice".into(),
    );
}

/// A payment key as the backend names it (a UUID, hyphenated).
fn uuid_text(raw: &[u8]) -> String {
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    if hex.len() != 32 {
        return hex;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Scenario 8: the field technician. The journal carries the cart's
/// fields; cartctl works for a member of cart-tech and is refused for
/// another user; the unit's exposure score in the guest stays as documented.
fn field_technician(cart: &mut Cart) {
    let journal = cart.must("journalctl -u cart-app -o json --no-pager -n 300");
    assert!(
        journal.contains(&format!("\"CART_ID\":\"{CART}\"")),
        "no CART_ID field in the unit's journal:\n{}",
        tail(&journal, 5)
    );
    // Two people for the test, added for this boot only (the root is
    // read-only: bind mounts over passwd and group, never the image).
    cart.must(
        "set -e; cp /etc/passwd /etc/group /run/; \
         gid=$(getent group cart-tech | cut -d: -f3); \
         echo \"tech:x:2001:2001::/nonexistent:/usr/sbin/nologin\" >> /run/passwd; \
         echo \"other:x:2002:2002::/nonexistent:/usr/sbin/nologin\" >> /run/passwd; \
         sed -i \"s/^cart-tech:x:$gid:.*/&,tech/; s/^cart-tech:x:$gid:,tech/cart-tech:x:$gid:tech/\" /run/group; \
         echo tech:x:2001: >> /run/group; echo other:x:2002: >> /run/group; \
         mount --bind /run/passwd /etc/passwd; mount --bind /run/group /etc/group",
    );
    let as_user = |cart: &mut Cart, user: &str, cmd: &str| {
        cart.guest().sh(&format!(
            "setpriv --reuid={user} --regid={user} --init-groups {cmd}"
        ))
    };
    let st = as_user(cart, "tech", "cartctl status --json");
    if !st.success() || !st.stdout.contains("\"source\": \"daemon\"") {
        cart.fail(&format!(
            "cartctl status for a cart-tech member: exit {}\n{}{}",
            st.code, st.stdout, st.stderr
        ));
    }
    let sync = as_user(cart, "tech", "cartctl sync");
    assert!(
        sync.success(),
        "cartctl sync for cart-tech: {}{}",
        sync.stdout,
        sync.stderr
    );
    let diag = as_user(cart, "tech", "cartctl diag --out /tmp/diag.json");
    assert!(
        diag.success(),
        "cartctl diag for cart-tech: {}{}",
        diag.stdout,
        diag.stderr
    );
    let other = as_user(cart, "other", "cartctl status --json");
    assert!(
        !other.success(),
        "cartctl status must be refused for a user outside cart-tech: {}",
        other.stdout
    );

    // The exposure score in the guest (systemd 252) while the daemon runs
    // with the TPM, DRM, input and serial devices.
    let score = cart.must("systemd-analyze security cart-app.service --no-pager | tail -1");
    let value: f64 = score
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or(99.0);
    assert!(value <= 2.5, "exposure in the guest: {score}");
    cart.boots.push(format!(
        "technician: exposure in the guest {}",
        score.trim()
    ));
}

/// Scenario 7: the daemon stops responding (SIGSTOP); systemd's watchdog
/// kills it after WatchdogSec and starts it again; the journal says why;
/// the cart is READY again.
fn watchdog(cart: &mut Cart) {
    let (_, _, pid, restarts) = unit(cart);
    let t = Instant::now();
    cart.must(&format!("kill -STOP {pid}"));
    let back = cart.wait_guest(
        &format!(
            "test \"$(systemctl show -p MainPID --value cart-app)\" != {pid} && \
             test \"$(systemctl show -p ActiveState --value cart-app)\" = active"
        ),
        Duration::from_secs(240),
    );
    if !back {
        cart.fail("the watchdog did not restart the stopped daemon");
    }
    let journal = cart.must("journalctl -b -u cart-app --no-pager");
    assert!(
        journal.contains("Watchdog timeout"),
        "the journal does not say why: {}",
        tail(&journal, 20)
    );
    let (_, _, _, restarts_after) = unit(cart);
    assert_ne!(restarts, restarts_after, "NRestarts counts the restart");
    cart.boots.push(format!(
        "watchdog: stopped daemon replaced and READY in {:.1} s (WatchdogSec=30)",
        t.elapsed().as_secs_f64()
    ));
    restart_loop(cart);
    hardware_watchdog(cart);
}

/// Scenario 7, the board: systemd holds the hardware watchdog
/// (RuntimeWatchdogSec, packaging/systemd/50-cart-watchdog.conf); a kernel
/// that stops (a crash with `kernel.panic=0`: it never reboots by itself)
/// is reset by the watchdog, and the cart comes back selling.
fn hardware_watchdog(cart: &mut Cart) {
    let armed = cart.must(
        "cat /sys/class/watchdog/watchdog0/identity /sys/class/watchdog/watchdog0/state \
             /sys/class/watchdog/watchdog0/timeout; \
         systemctl show -p RuntimeWatchdogUSec --value",
    );
    let lines: Vec<&str> = armed.lines().map(str::trim).collect();
    assert!(
        matches!(lines[..], [identity, "active", "30", "30s"] if identity.contains("6300ESB")),
        "the hardware watchdog is not armed by systemd: {lines:?}"
    );
    let before = boot_id(cart);
    let resets_before = cart.guest().qmp.events_named("WATCHDOG").len();
    // The crash runs after the agent has answered.
    cart.must(
        "sysctl -q -w kernel.panic=0; \
         nohup sh -c 'sleep 2; echo c > /proc/sysrq-trigger' >/dev/null 2>&1 &",
    );
    let t = Instant::now();
    if !rebooted_since(cart, &before, Duration::from_secs(300)) {
        cart.fail("a stopped kernel was not reset by the watchdog");
    }
    let fired = cart.guest().qmp.events_named("WATCHDOG");
    assert!(
        fired.len() > resets_before
            && fired.iter().all(|e| e
                .pointer("/data/action")
                .and_then(serde_json::Value::as_str)
                == Some("reset")),
        "QEMU saw no watchdog reset: {fired:?}"
    );
    assert!(
        cart.guest().console().contains("sysrq triggered crash"),
        "the console does not show the crash"
    );
    wait_ready(cart, "after the watchdog reset");
    cart.boots.push(format!(
        "hardware watchdog: crashed kernel reset and READY in {:.1} s (RuntimeWatchdogSec=30)",
        t.elapsed().as_secs_f64()
    ));
}

/// Creates a job for the cart at the emulator's AWS IoT Jobs.
fn create_job(cart: &mut Cart, id: &str, document: serde_json::Value) {
    let config = backend_emulator::JobConfig::new(id, &[CART], document);
    let cloud = &cart.cloud;
    let jobs = cloud
        .emulator
        .jobs()
        .expect("the suite's emulator runs Jobs");
    cloud
        .rt
        .block_on(jobs.create_job(config))
        .expect("job created");
}

/// Scenario 10: remote jobs under the shipped unit. A diagnostic upload:
/// the bundle PUT over HTTPS to the emulator's object store, with the
/// daemon's journal read through `cart-journal.socket` (the daemon itself
/// cannot read the journal: user `cart` is not in `systemd-journal`). A
/// reboot: the cart waits for idle, asks logind (polkit lets user `cart`,
/// the unit has no capabilities and filters `@reboot`), the guest reboots
/// (a new boot id), the daemon comes back READY and reports the job
/// SUCCEEDED with `rebooted`; the previous boot's journal has the request
/// under the job's id.
fn remote_jobs(cart: &mut Cart) {
    // The daemon's user cannot read the journal itself.
    let direct = cart
        .guest()
        .sh("setpriv --reuid=cart --regid=cart --init-groups journalctl -u cart-app -n 1 --no-pager 2>&1");
    assert!(
        !direct.stdout.contains("cart-app["),
        "user cart reads the journal directly: {}",
        direct.stdout
    );

    let url = cart
        .cloud
        .objects
        .upload_url("diag/cart-qemu-0001/diag-q1.json");
    let t = Instant::now();
    create_job(
        cart,
        "diag-q1",
        serde_json::json!({"operation": "diagnostic_upload", "url": url, "max_bytes": 2_097_152}),
    );
    let details = job_succeeded(cart, "diag-q1", Duration::from_secs(120));
    let uploads = cart.cloud.objects.uploads();
    let Some(upload) = uploads.last() else {
        cart.fail("the diagnostic upload succeeded but nothing arrived")
    };
    let bundle: serde_json::Value =
        serde_json::from_slice(&upload.body).expect("the bundle is JSON");
    let journal = bundle["journal"].as_str().unwrap_or_default().to_owned();
    assert_eq!(bundle["cart_id"], CART);
    assert_eq!(bundle["written_by"], "job diag-q1");
    assert!(
        !journal.contains("journal unavailable") && journal.contains("cart-app["),
        "the bundle's journal is not the daemon's: {}",
        tail(&journal, 10)
    );
    assert!(
        !String::from_utf8_lossy(&upload.body).contains("BEGIN PRIVATE KEY"),
        "a key in the bundle"
    );
    cart.boots.push(format!(
        "diagnostic upload: {} bytes ({} journal lines) in {:.1} s",
        upload.body.len(),
        details.get("journal_lines").map_or("?", |s| s.as_str()),
        t.elapsed().as_secs_f64()
    ));

    let before = boot_id(cart);
    let t = Instant::now();
    create_job(
        cart,
        "reboot-q1",
        serde_json::json!({"operation": "reboot", "when": "quiet"}),
    );
    if !rebooted_since(cart, &before, Duration::from_secs(300)) {
        cart.fail("the reboot job did not reboot the guest");
    }
    let down_after = t.elapsed();
    wait_ready(cart, "after the reboot job");
    let details = job_succeeded(cart, "reboot-q1", Duration::from_secs(120));
    assert_eq!(
        details.get("rebooted").map(String::as_str),
        Some("true"),
        "{details:?}"
    );
    let previous = cart.must("journalctl -b -1 JOB_ID=reboot-q1 --no-pager -o cat");
    assert!(
        previous.contains("rebooting for a job"),
        "the previous boot's journal: {previous}"
    );
    cart.boots.push(format!(
        "reboot job: guest rebooted {:.1} s after the job, SUCCEEDED {:.1} s after it",
        down_after.as_secs_f64(),
        t.elapsed().as_secs_f64()
    ));
}

/// Waits for a job to end SUCCEEDED; its status details (fails the suite
/// with the execution as the backend has it otherwise).
fn job_succeeded(
    cart: &mut Cart,
    id: &str,
    timeout: Duration,
) -> std::collections::BTreeMap<String, String> {
    job_ended(cart, id, JobExecutionStatus::Succeeded, timeout)
}

/// The RAUC compatible of the guest (as the image's, qemux86-64).
const COMPATIBLE: &str = "cart-qemux86-64";

/// Waits for a job to end in `status`; its status details.
fn job_ended(
    cart: &mut Cart,
    id: &str,
    status: JobExecutionStatus,
    timeout: Duration,
) -> std::collections::BTreeMap<String, String> {
    let execution = || {
        cart.cloud
            .emulator
            .jobs()
            .and_then(|j| j.with(|j| j.execution(CART, id)))
    };
    let done = qemu_suite::wait_for(timeout, || execution().is_some_and(|e| e.status == status));
    let last = execution();
    if !done {
        cart.fail(&format!("job {id} did not end {status:?}: {last:?}"));
    }
    last.map(|e| e.status_details).unwrap_or_default()
}

/// The first 4 MiB of root_b, hashed in the guest: what an install writes.
fn root_b_head(cart: &mut Cart) -> String {
    cart.must("head -c 4194304 /dev/disk/by-partlabel/root_b | sha256sum")
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The guest's image version (os-release's IMAGE_VERSION).
fn image_version(cart: &mut Cart) -> String {
    cart.must(". /etc/os-release && echo \"$IMAGE_VERSION\"")
        .trim()
        .to_owned()
}

/// This boot's id (it changes at every boot).
fn boot_id(cart: &mut Cart) -> String {
    cart.must("cat /proc/sys/kernel/random/boot_id")
        .trim()
        .to_owned()
}

/// Waits until the guest answers from a boot other than `before`.
fn rebooted_since(cart: &mut Cart, before: &str, timeout: Duration) -> bool {
    qemu_suite::wait_for(timeout, || {
        cart.guest
            .as_ref()
            .and_then(|g| {
                g.agent
                    .sh(
                        "cat /proc/sys/kernel/random/boot_id",
                        Duration::from_secs(10),
                    )
                    .ok()
            })
            .is_some_and(|o| {
                o.success() && !o.stdout.trim().is_empty() && o.stdout.trim() != before
            })
    })
}

/// An update job's document for `bundle` published at `url`.
fn update_doc(url: &str, b: &qemu_suite::bundle::Bundle, version: &str) -> serde_json::Value {
    serde_json::json!({
        "operation": "update",
        "version": version,
        "bundle_url": url,
        "size": b.size,
        "sha256": b.sha256,
        "compatible": COMPATIBLE,
        "allow_downgrade": false,
    })
}

/// Scenario 11 (the update issue's scenario 4): bundles the cart must
/// refuse before anything is written to a slot, through the guest's real
/// RAUC (Debian's 1.8, the image's system.conf and development keyring):
/// an older version without permission (REJECTED by the document), a
/// bundle for another compatible and one signed by a foreign signer
/// (FAILED once RAUC read them), a truncated download (FAILED). root_b's
/// first 4 MiB are the same after all four.
fn update_refusals(cart: &mut Cart) {
    use qemu_suite::bundle::{self, Signer};
    let dir = cart.art.path().to_owned();
    let running = image_version(cart);
    assert!(
        !running.is_empty(),
        "the guest's os-release has no IMAGE_VERSION"
    );
    let before = root_b_head(cart);
    let t = Instant::now();

    let good = bundle::make(&dir, "u-good", COMPATIBLE, "90.0.0", Signer::Development);
    let other = bundle::make(
        &dir,
        "u-other",
        "cart-other-board",
        "90.0.1",
        Signer::Development,
    );
    let foreign = bundle::make(&dir, "u-foreign", COMPATIBLE, "90.0.2", Signer::Foreign);
    let objects = &cart.cloud.objects;
    let url = |name: &str, b: &qemu_suite::bundle::Bundle| {
        objects.publish(name, std::fs::read(&b.path).expect("bundle"))
    };
    let old_url = url("bundles/u-good.raucb", &good);
    let other_url = url("bundles/u-other.raucb", &other);
    let foreign_url = url("bundles/u-foreign.raucb", &foreign);
    let bytes = std::fs::read(&good.path).expect("bundle");
    let truncated_url = objects.publish(
        "bundles/u-truncated.raucb",
        bytes[..bytes.len() / 2].to_vec(),
    );

    // Each job in turn, to its end.
    let mut refused = |id: &str, doc: serde_json::Value, status: JobExecutionStatus| {
        create_job(cart, id, doc);
        job_ended(cart, id, status, Duration::from_secs(240))
    };
    // Older than what runs, no permission: refused by the document.
    let d = refused(
        "u-old",
        update_doc(&old_url, &good, "0.0.1"),
        JobExecutionStatus::Rejected,
    );
    assert!(d["reason"].contains("not newer"), "{d:?}");
    // Another board's bundle: RAUC reads its manifest, the cart refuses.
    let d = refused(
        "u-compatible",
        update_doc(&other_url, &other, "90.0.1"),
        JobExecutionStatus::Failed,
    );
    assert!(d["reason"].contains("cart-other-board"), "{d:?}");
    assert_eq!(d.get("to_version").map(String::as_str), Some("90.0.1"));
    // Signed by nobody the keyring knows: RAUC refuses to read it.
    let d = refused(
        "u-signature",
        update_doc(&foreign_url, &foreign, "90.0.2"),
        JobExecutionStatus::Failed,
    );
    assert!(d["reason"].contains("RAUC refused"), "{d:?}");
    // Half the bundle behind the URL: the download never completes.
    let d = refused(
        "u-truncated",
        update_doc(&truncated_url, &good, "90.0.0"),
        JobExecutionStatus::Failed,
    );
    assert!(d["reason"].contains("download"), "{d:?}");

    let after = root_b_head(cart);
    assert_eq!(before, after, "root_b was written by a refused update");
    let rauc = cart.must("rauc status --detailed 2>&1 || true");
    assert!(!rauc.contains("90.0."), "RAUC recorded an install: {rauc}");
    cart.boots.push(format!(
        "update refusals: older REJECTED, other compatible, foreign signature and truncated download FAILED, root_b untouched ({:.0} s)",
        t.elapsed().as_secs_f64()
    ));
}

/// Scenario 12 (the update issue's scenario 5): an update job that arrives
/// while a shopper pays waits for the end of the session, then RAUC
/// installs the bundle into root_b and the cart reboots through logind.
/// This suite boots the kernel directly (`rauc.slot=A`), so the reboot
/// comes back on slot A whatever GRUB's environment says: the health check
/// sees the old slot and the job ends FAILED as a rollback, the reason
/// naming slot A; the slot switch itself needs the OVMF boot (docs/updates.md).
fn update_waits_for_a_payment(cart: &mut Cart) {
    use qemu_suite::bundle::{self, Signer};
    let dir = cart.art.path().to_owned();
    let before_b = root_b_head(cart);
    let charged_before = cart.cloud.emulator.counts().charged;
    let b = bundle::make(&dir, "u-new", COMPATIBLE, "91.0.0", Signer::Development);
    let url = cart.cloud.objects.publish(
        "bundles/u-new.raucb",
        std::fs::read(&b.path).expect("bundle"),
    );
    let before = boot_id(cart);

    pay_for(cart, BREAD, "s12");
    create_job(cart, "u-new", update_doc(&url, &b, "91.0.0"));
    // The cart waits: the shopper's session is still open.
    let waiting = cart.wait_guest(
        "journalctl -u cart-app JOB_ID=u-new -o cat | grep -q 'update waiting for an idle cart'",
        Duration::from_secs(180),
    );
    if !waiting {
        let log = cart.must("journalctl -u cart-app JOB_ID=u-new -o cat | tail -20");
        cart.fail(&format!("the update did not wait for the shopper: {log}"));
    }
    let early = cart.must("journalctl -u cart-app JOB_ID=u-new -o cat");
    assert!(
        !early.contains("installing the update"),
        "installed during a session: {early}"
    );
    tap_when_shown(cart, "s12-receipt", DONE, Duration::from_secs(120));
    // Idle now: installed, then the reboot.
    let t = Instant::now();
    if !rebooted_since(cart, &before, Duration::from_secs(400)) {
        let log = cart.must("journalctl -u cart-app JOB_ID=u-new -o cat | tail -20");
        cart.fail(&format!("the update did not reboot the cart: {log}"));
    }
    wait_ready(cart, "after the update's reboot");
    let d = job_ended(
        cart,
        "u-new",
        JobExecutionStatus::Failed,
        Duration::from_secs(180),
    );
    assert!(d["reason"].contains("slot A"), "{d:?}");
    assert_eq!(
        d.get("to_version").map(String::as_str),
        Some("91.0.0"),
        "{d:?}"
    );
    // RAUC wrote root_b: its image, its version in RAUC's status.
    assert_ne!(
        root_b_head(cart),
        before_b,
        "root_b unchanged after an install"
    );
    let previous = cart.must("journalctl -b -1 -u cart-app JOB_ID=u-new -o cat");
    assert!(previous.contains("installing the update"), "{previous}");
    let status = cart.must("cartctl status");
    assert!(status.contains("91.0.0"), "cartctl status: {status}");
    cart.charged_expected = Some(charged_before + 1);
    cart.boots.push(format!(
        "update during a payment: waited for the session, installed into root_b and rebooted in {:.0} s; reported as a rollback (direct kernel boot)",
        t.elapsed().as_secs_f64()
    ));
}

/// Scenario 7, continued: a cart that cannot start keeps trying for ever.
/// The shipped unit never gives up (`StartLimitIntervalSec=0`) and waits
/// 30 s between tries (settings systemd 252 and 259 both read); a runtime
/// drop-in makes every start fail (`ExecStart=/bin/false`) and shortens
/// the wait to 1 s so that more than ten failures fit in the test, the
/// start limits staying the shipped unit's.
fn restart_loop(cart: &mut Cart) {
    let shipped =
        cart.must("systemctl show -p Restart -p RestartUSec -p StartLimitIntervalUSec cart-app");
    for want in [
        "Restart=always",
        "RestartUSec=30s",
        "StartLimitIntervalUSec=0",
    ] {
        assert!(
            shipped.lines().any(|l| l == want),
            "the unit: {want} missing in\n{shipped}"
        );
    }
    let (_, _, _, before) = unit(cart);
    let before: u64 = before.trim().parse().unwrap_or(0);
    cart.must(
        "set -e; mkdir -p /run/systemd/system/cart-app.service.d; \
         printf '[Service]\\nExecStart=\\nExecStart=/bin/false\\nRestartSec=1\\n' \
           > /run/systemd/system/cart-app.service.d/90-test-fail.conf; \
         systemctl daemon-reload; systemctl restart --no-block cart-app",
    );
    let failures = 12;
    let looped = cart.wait_guest(
        &format!(
            "test \"$(systemctl show -p NRestarts --value cart-app)\" -ge {}",
            before + failures
        ),
        Duration::from_secs(180),
    );
    let state = cart.must("systemctl show -p ActiveState -p SubState -p NRestarts cart-app");
    if !looped {
        cart.fail(&format!(
            "fewer than {failures} restarts of a failing cart:\n{state}"
        ));
    }
    // Still trying: not failed for good, and the counter goes on.
    assert!(
        !state.contains("ActiveState=failed"),
        "systemd gave up:\n{state}"
    );
    let more = cart.wait_guest(
        &format!(
            "test \"$(systemctl show -p NRestarts --value cart-app)\" -ge {}",
            before + failures + 2
        ),
        Duration::from_secs(60),
    );
    assert!(more, "the restarts stopped after {failures}:\n{state}");
    let journal =
        cart.must("journalctl -b -u cart-app --no-pager | grep -c 'Scheduled restart job' || true");
    assert!(
        journal.trim().parse::<u64>().unwrap_or(0) >= failures,
        "the journal does not show the restarts: {journal}"
    );
    cart.must(
        "rm -r /run/systemd/system/cart-app.service.d; systemctl daemon-reload; \
         systemctl restart --no-block cart-app",
    );
    wait_ready(cart, "after the restart loop");
    cart.boots.push(format!(
        "restart loop: {failures}+ failed starts, still restarting ({})",
        state.replace('\n', " ")
    ));
}

/// The probes and taps above sit on their buttons in the UI's reference
/// screens (a layout change fails here, before any guest boots).
#[test]
fn control_probes_sit_on_their_buttons_in_the_reference_screens() {
    let refs = qemu_suite::workspace_root().join("docs/screenshots");
    for (file, control) in [
        ("shopping-1280x800.png", CHECKOUT),
        ("checkout-1280x800.png", PAY),
        ("approved-offline-1280x800.png", DONE),
    ] {
        let screen = Rgb::read_png(&refs.join(file)).expect("reference screen");
        assert!(
            is_primary_blue(&screen, control.probe),
            "{file}: probe {:?}",
            control.probe
        );
        let idle = Rgb::read_png(&refs.join("idle-1280x800.png")).expect("idle");
        assert!(
            !is_primary_blue(&idle, control.probe),
            "the idle screen has no {file} button"
        );
    }
}

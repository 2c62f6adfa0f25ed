//! The update issue's scenarios 1-3, on the cart's own boot path: OVMF,
//! GRUB from the EFI partition, the slot its environment chooses. They need
//! two real builds (the older from a git tag in slot A, the newer in the
//! bundles) and are run by `scripts/qemu-updates.sh`, which builds both and
//! sets what [`Builds::from_env`] reads (docs/updates.md).
//!
//! - 13: a signed bundle of the newer build installs, the cart reboots into
//!   the other slot and marks it good; the job SUCCEEDED with both
//!   versions; payments before (old build) and after (new build) charged.
//! - 14: a bundle whose build fails at start: never READY, the health
//!   deadline marks its slot bad and reboots; GRUB boots the old slot, the
//!   job ends FAILED; every stored payment still there.
//! - 15: power cuts during the download, during the install and during
//!   the first boot of the new slot: the cart always comes back selling, on
//!   one slot or the other, with every stored payment. It starts on this
//!   tree's build (after 13).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use qemu_suite::bundle::{self, Bundle};
use store_and_forward::wire::jobs::JobExecutionStatus;

use super::{
    BREAD, COMPATIBLE, Cart, DONE, boot_id, create_job, image_version, job_ended, pay_for,
    payment_states, receipt_shown, tap_when_shown, update_doc, wait_ready,
};

/// The version `scripts/qemu-updates.sh` gives the older build in slot A.
const OLD: &str = "1.0.0";
/// The newer build, as installed by scenario 13.
const NEW: &str = "1.1.0";
/// The newer build, broken (scenario 14).
const BROKEN: &str = "1.2.0";
/// The newer build again, for the power cuts (scenario 15).
const AGAIN: &str = "1.3.0";

/// What the script built.
pub struct Builds {
    /// The newer build's root file system (`rootfs.ext4`).
    rootfs: PathBuf,
}

impl Builds {
    /// From the environment `scripts/qemu-updates.sh` sets; panics with
    /// what to run when it is not there.
    pub fn from_env(cart: &mut Cart) -> Builds {
        let rootfs = std::env::var("CART_QEMU_UPDATE_ROOTFS").map(PathBuf::from);
        let Ok(rootfs) = rootfs else {
            panic!(
                "scenarios 13-15 need two builds and the OVMF boot: run scripts/qemu-updates.sh (it sets CART_QEMU_UPDATE_ROOTFS, CART_QEMU_GUEST, CART_QEMU_BOOT=firmware)"
            );
        };
        assert!(rootfs.exists(), "{}: no such root image", rootfs.display());
        assert!(
            cart.image.firmware.is_some(),
            "scenarios 13-15 boot through OVMF and GRUB: set CART_QEMU_BOOT=firmware (scripts/qemu-updates.sh does)"
        );
        Builds { rootfs }
    }

    /// A bundle of the newer build as `version` (broken: its daemon fails
    /// at start), published on the object store; its job document.
    fn publish(&self, cart: &mut Cart, version: &str, broken: bool) -> serde_json::Value {
        let dir = cart.art.path().to_owned();
        let name = format!("rootfs-{version}");
        let image = dir.join(format!("{name}.ext4"));
        bundle::rootfs_variant(&self.rootfs, &image, version, broken);
        let b: Bundle = bundle::make_from_rootfs(&dir, &name, &image, COMPATIBLE, version);
        let _ = std::fs::remove_file(&image);
        let url = cart.cloud.objects.publish(
            &format!("bundles/{name}.raucb"),
            std::fs::read(&b.path).expect("bundle"),
        );
        let _ = std::fs::remove_file(&b.path);
        qemu_suite::step(&format!("bundle {version}: {} bytes", b.size));
        update_doc(&url, &b, version)
    }
}

/// The slot GRUB booted (`rauc.slot=` on the kernel's command line).
fn booted_slot(cart: &mut Cart) -> String {
    let cmdline = cart.must("cat /proc/cmdline");
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rauc.slot="))
        .unwrap_or_default()
        .to_owned()
}

/// GRUB's environment as RAUC left it.
fn grubenv(cart: &mut Cart) -> String {
    cart.must("grub-editenv /efi/EFI/BOOT/grubenv list")
}

/// All payments in the ledger (every state), from `cartctl status`.
fn stored(cart: &mut Cart) -> u64 {
    payment_states(cart).values().sum()
}

/// A payment through the devices, to its receipt and Done: the cart sells.
fn sells(cart: &mut Cart, tag: &str) {
    pay_for(cart, BREAD, tag);
    if !receipt_shown(cart, tag) {
        cart.fail(&format!("{tag}: no receipt: the cart does not sell"));
    }
    tap_when_shown(cart, &format!("{tag}-done"), DONE, Duration::from_secs(60));
}

/// Waits until the journal of this boot has `line` for job `id`.
fn journal_says(cart: &mut Cart, id: &str, line: &str, timeout: Duration) {
    let said = cart.wait_guest(
        &format!("journalctl -b -u cart-app JOB_ID={id} -o cat | grep -q '{line}'"),
        timeout,
    );
    if !said {
        let log = cart.must(&format!(
            "journalctl -b -u cart-app JOB_ID={id} -o cat | tail -20"
        ));
        cart.fail(&format!("job {id}: never '{line}':\n{log}"));
    }
}

/// Boots the cart again after a power cut and waits for READY.
fn power_on(cart: &mut Cart, what: &str) {
    cart.boot();
    wait_ready(cart, what);
}

/// Scenario 13 (the update issue's 1).
pub fn newer_build(cart: &mut Cart, builds: &Builds) {
    assert_eq!(booted_slot(cart), "A", "a fresh cart boots slot A");
    assert_eq!(
        image_version(cart),
        OLD,
        "slot A runs the older build (scripts/qemu-updates.sh)"
    );
    let charged = cart.cloud.emulator.counts().charged;
    sells(cart, "s13-before");
    let doc = builds.publish(cart, NEW, false);
    let before = boot_id(cart);
    let t = Instant::now();
    create_job(cart, "u-newer", doc);
    let d = job_ended(
        cart,
        "u-newer",
        JobExecutionStatus::Succeeded,
        Duration::from_secs(1200),
    );
    let took = t.elapsed();
    wait_ready(cart, "on the new slot");
    assert_ne!(boot_id(cart), before, "no reboot");
    assert_eq!(booted_slot(cart), "B", "GRUB booted the installed slot");
    assert_eq!(image_version(cart), NEW);
    assert_eq!(
        d.get("from_version").map(String::as_str),
        Some(OLD),
        "{d:?}"
    );
    assert_eq!(d.get("to_version").map(String::as_str), Some(NEW), "{d:?}");
    let env = grubenv(cart);
    for want in ["ORDER=B A", "B_OK=1", "B_TRY=0"] {
        assert!(env.contains(want), "grubenv lacks {want}:\n{env}");
    }
    let status = cart.must("cartctl status");
    assert!(
        status.contains("Succeeded") && status.contains(NEW),
        "cartctl status: {status}"
    );
    sells(cart, "s13-after");
    cart.charged_expected = Some(charged + 2);
    cart.boots.push(format!(
        "newer build {OLD} -> {NEW}: installed into B, rebooted, marked good, job SUCCEEDED {:.0} s after it was created",
        took.as_secs_f64()
    ));
}

/// Scenario 14 (the update issue's 2). Runs on slot B (after 13).
pub fn broken_build(cart: &mut Cart, builds: &Builds) {
    let slot = booted_slot(cart);
    let running = image_version(cart);
    let payments = stored(cart);
    let charged = cart.cloud.emulator.counts().charged;
    let doc = builds.publish(cart, BROKEN, true);
    let t = Instant::now();
    create_job(cart, "u-broken", doc);
    // Installed, rebooted into the other slot, never READY there; the
    // health deadline (300 s after boot) marks it bad and reboots; GRUB
    // boots the old slot, whose daemon reports.
    let d = job_ended(
        cart,
        "u-broken",
        JobExecutionStatus::Failed,
        Duration::from_secs(1800),
    );
    let took = t.elapsed();
    wait_ready(cart, "back on the old slot");
    assert_eq!(booted_slot(cart), slot, "back on the slot that ran before");
    assert_eq!(image_version(cart), running);
    assert!(d["reason"].contains(&format!("slot {slot}")), "{d:?}");
    assert_eq!(d.get("to_version").map(String::as_str), Some(BROKEN));
    let other = if slot == "A" { "B" } else { "A" };
    let env = grubenv(cart);
    assert!(
        env.contains(&format!("{other}_OK=0")),
        "the broken slot is not marked bad:\n{env}"
    );
    // The broken boot's journal: the daemon failed, the deadline acted.
    let broken_boot = cart.must(
        "journalctl -b -1 -o cat --no-pager | grep -E 'fails at start|no health verdict' || true",
    );
    assert!(
        broken_boot.contains("this build fails at start"),
        "the broken build never ran: {broken_boot}"
    );
    assert!(
        broken_boot.contains("no health verdict"),
        "the health deadline did not act: {broken_boot}"
    );
    assert!(stored(cart) >= payments, "stored payments lost");
    sells(cart, "s14-after");
    cart.charged_expected = Some(charged + 1);
    cart.boots.push(format!(
        "broken build {BROKEN}: installed into {other}, failed its health check, slot marked bad, back on {slot}, job FAILED {:.0} s after it was created",
        took.as_secs_f64()
    ));
}

/// Scenario 15 (the update issue's 3): three power cuts.
pub fn power_cuts(cart: &mut Cart, builds: &Builds) {
    // The slot it starts on must run this tree's build: the older one
    // (update-base) leaves the old slot on trial after a rollback.
    assert_ne!(
        image_version(cart),
        OLD,
        "scenario 15 runs after 13 (QEMU_SCENARIOS=13,15 at least), on this tree's build"
    );
    let slot = booted_slot(cart);
    let other = if slot == "A" { "B" } else { "A" };
    let charged = cart.cloud.emulator.counts().charged;
    let mut payments = stored(cart);
    let doc = builds.publish(cart, AGAIN, false);
    let mut moments = Vec::new();

    // 1. During the download: the cart comes back selling; the job goes on
    // where the download stopped and installs (cut 2 stops that).
    create_job(cart, "u-cut-download", doc.clone());
    journal_says(
        cart,
        "u-cut-download",
        "update accepted: downloading",
        Duration::from_secs(300),
    );
    let partial = cart.must("du -sb /var/lib/cart/update 2>/dev/null | cut -f1 || echo 0");
    cart.power_cut();
    moments.push(format!("during the download ({} bytes in)", partial.trim()));
    power_on(cart, "after the cut during the download");
    assert_eq!(booted_slot(cart), slot);
    sells(cart, "s15-download");
    payments += 1;
    assert!(stored(cart) >= payments, "stored payments lost");

    // 2. During the install: RAUC marked the slot it writes bad first;
    // GRUB boots the old one; the job ends FAILED.
    journal_says(
        cart,
        "u-cut-download",
        "installing the update",
        Duration::from_secs(900),
    );
    std::thread::sleep(Duration::from_secs(5));
    cart.power_cut();
    moments.push("during the install".to_owned());
    power_on(cart, "after the cut during the install");
    assert_eq!(booted_slot(cart), slot, "the half-written slot was booted");
    let d = job_ended(
        cart,
        "u-cut-download",
        JobExecutionStatus::Failed,
        Duration::from_secs(300),
    );
    assert!(d["reason"].contains(&format!("slot {slot}")), "{d:?}");
    assert!(stored(cart) >= payments, "stored payments lost");
    // Back on the old slot, which the health check confirms: were it left
    // on trial, the cut below would find no untried slot and GRUB would
    // boot the new one again.
    let env = grubenv(cart);
    for want in [format!("{slot}_OK=1"), format!("{slot}_TRY=0")] {
        assert!(env.contains(&want), "grubenv lacks {want}:\n{env}");
    }
    sells(cart, "s15-install");
    payments += 1;

    // 3. During the first boot of the new slot: the install completes and
    // the cart reboots; the power goes as soon as the new slot's kernel
    // runs. That slot is on trial (TRY=1) and never marked good: GRUB
    // passes it over and boots the old one.
    create_job(cart, "u-cut-boot", doc);
    let before = boot_id(cart);
    journal_says(
        cart,
        "u-cut-boot",
        "update installed: rebooting",
        Duration::from_secs(1200),
    );
    let console_before = cart.guest().console().len();
    let marker = format!("rauc.slot={other}");
    let reached = qemu_suite::wait_for(Duration::from_secs(600), || {
        cart.guest.as_ref().is_some_and(|g| {
            g.console()
                .get(console_before..)
                .is_some_and(|c| c.contains(&marker))
        })
    });
    if !reached {
        cart.fail(&format!("the new slot {other} never started its kernel"));
    }
    std::thread::sleep(Duration::from_secs(5));
    cart.power_cut();
    moments.push(format!("during the first boot of slot {other}"));
    power_on(cart, "after the cut during the new slot's first boot");
    assert_ne!(boot_id(cart), before);
    assert_eq!(booted_slot(cart), slot, "GRUB did not fall back");
    let d = job_ended(
        cart,
        "u-cut-boot",
        JobExecutionStatus::Failed,
        Duration::from_secs(300),
    );
    assert!(d["reason"].contains(&format!("slot {slot}")), "{d:?}");
    assert!(stored(cart) >= payments, "stored payments lost");
    sells(cart, "s15-boot");
    cart.charged_expected = Some(charged + 3);
    cart.boots.push(format!(
        "power cuts {}: back selling on slot {slot} each time, every stored payment kept",
        moments.join(", ")
    ));
}

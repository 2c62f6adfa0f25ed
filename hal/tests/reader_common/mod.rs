//! Helpers shared by the reader's integration tests: a simulator on a real
//! pty pair, the cart's driver on its slave side, and a payment runner.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use hal::reader::carddata::{self, Binding, ProcessorPrivateKey};
use hal::reader::fixtures::{self, TestCards};
use hal::reader::sim::{self, FaultPlan, SimConfig, SimHandle};
use hal::reader::{DriverConfig, PaymentEvent, PaymentReader, PaymentRequest, SerialReader};
use uuid::Uuid;

/// Hang guard for one payment; never a timing assertion.
pub const PAYMENT_GUARD: Duration = Duration::from_secs(30);

pub fn cards() -> TestCards {
    TestCards::load(&fixtures::source_tree_dir().join(fixtures::TEST_CARDS)).unwrap()
}

pub fn processor_key() -> ProcessorPrivateKey {
    fixtures::load_processor_key(&fixtures::source_tree_dir().join(fixtures::PROCESSOR_KEY))
        .unwrap()
}

/// A simulator damaging every `out`-th frame it sends and every `inbound`-th
/// frame it receives (0 = none).
pub fn sim_config(out: u32, inbound: u32) -> SimConfig {
    let mut cfg = SimConfig::from_fixtures(&fixtures::source_tree_dir()).unwrap();
    cfg.faults = FaultPlan {
        every: out,
        inbound_every: inbound,
    };
    cfg
}

pub fn start_sim(out: u32, inbound: u32) -> SimHandle {
    sim::spawn_pty(sim_config(out, inbound)).unwrap()
}

pub fn driver_config() -> DriverConfig {
    DriverConfig {
        exclusive: false,
        ..DriverConfig::default()
    }
}

pub fn open(sim: &SimHandle) -> SerialReader<serialport::TTYPort> {
    let path = sim.path().to_str().unwrap().to_owned();
    let mut r = SerialReader::open(&path, driver_config()).unwrap();
    r.hello().unwrap();
    r
}

pub fn request(amount_minor: u64, card_timeout_s: u16) -> PaymentRequest {
    PaymentRequest {
        key: Uuid::now_v7(),
        amount_minor,
        currency: "EUR".parse().unwrap(),
        card_timeout_s,
    }
}

/// Events of payment `key` up to and including the first CardRead, Failed or
/// Status (events of earlier payments are skipped).
pub fn collect(r: &mut impl PaymentReader, key: Uuid) -> Vec<PaymentEvent> {
    let deadline = Instant::now() + PAYMENT_GUARD;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let Some(e) = r.next_event(Duration::from_millis(200)).unwrap() else {
            continue;
        };
        let of = match &e {
            PaymentEvent::Ui { key, .. } | PaymentEvent::Failed { key, .. } => *key,
            PaymentEvent::CardRead(res) => res.key,
            PaymentEvent::Status(s) => s.key,
        };
        if of != key {
            continue;
        }
        let last = !matches!(e, PaymentEvent::Ui { .. });
        out.push(e);
        if last {
            return out;
        }
    }
    panic!("payment did not finish within the guard; events so far: {out:?}");
}

pub fn pay(r: &mut impl PaymentReader, req: &PaymentRequest) -> Vec<PaymentEvent> {
    r.start_payment(req).unwrap();
    collect(r, req.key)
}

pub fn binding(req: &PaymentRequest) -> Binding {
    Binding {
        key: req.key,
        amount_minor: req.amount_minor,
        currency: req.currency,
    }
}

/// Opens the blob with the processor's key and returns the PAN inside.
pub fn pan_in_blob(req: &PaymentRequest, blob: &[u8]) -> String {
    carddata::decrypt(&processor_key(), &binding(req), blob)
        .unwrap()
        .pan
        .clone()
}

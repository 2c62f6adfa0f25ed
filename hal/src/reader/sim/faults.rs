//! Line faults the simulator can inject into what it sends, so the cart's
//! driver meets noise, damaged, truncated and lost frames on a real line.

use crate::reader::frame::{Decoded, Decoder, STX};

/// Which frames to damage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Damage every n-th frame the simulator sends (ACKs included); 0 = never.
    /// Must be 2 or more for the payment to get through.
    pub every: u32,
    /// Damage every n-th frame the simulator receives, before its link sees
    /// it, as a noisy line towards the reader would; 0 = never.
    pub inbound_every: u32,
}

/// A fault applied to one frame; they are used in this order, round-robin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// One bit of the CRC flipped.
    Corrupt,
    /// Noise (including a false STX) before the frame.
    Noise,
    /// Only the first half of the frame is sent.
    Truncate,
    /// The frame is not sent at all.
    Drop,
}

const ORDER: [Fault; 4] = [Fault::Corrupt, Fault::Noise, Fault::Truncate, Fault::Drop];

/// Applies a [`FaultPlan`] to the outgoing byte stream.
#[derive(Debug, Default)]
pub struct FaultInjector {
    plan: FaultPlan,
    frames: u64,
    applied: u64,
    decoder: Decoder,
}

impl FaultInjector {
    /// An injector damaging every `plan.every`-th frame (0 = none).
    pub fn new(plan: FaultPlan) -> Self {
        FaultInjector {
            plan,
            ..Default::default()
        }
    }

    /// An injector for the inbound direction (`plan.inbound_every`).
    pub fn inbound(plan: FaultPlan) -> Self {
        FaultInjector::new(FaultPlan {
            every: plan.inbound_every,
            inbound_every: 0,
        })
    }

    /// Faults applied so far.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Takes well-formed frames (possibly split across calls: a partial frame
    /// waits for the rest), returns the bytes to pass on.
    pub fn apply(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        if self.plan.every == 0 || bytes.is_empty() {
            return bytes;
        }
        self.decoder.push(&bytes);
        let mut out = Vec::with_capacity(bytes.len() + 8);
        while let Some(Decoded::Frame(f)) = self.decoder.next_frame() {
            self.frames += 1;
            let mut enc = f.encode();
            if !self.frames.is_multiple_of(u64::from(self.plan.every)) {
                out.extend_from_slice(&enc);
                continue;
            }
            let fault = ORDER[(self.applied % ORDER.len() as u64) as usize];
            self.applied += 1;
            tracing::debug!(?fault, seq = f.seq(), "reader sim: injecting line fault");
            match fault {
                Fault::Corrupt => {
                    let last = enc.len() - 1;
                    enc[last] ^= 0x01;
                    out.extend_from_slice(&enc);
                }
                Fault::Noise => {
                    out.extend_from_slice(&[0x00, 0xFF, STX, 0x7F, 0x55]);
                    out.extend_from_slice(&enc);
                }
                Fault::Truncate => out.extend_from_slice(&enc[..enc.len() / 2]),
                Fault::Drop => {}
            }
        }
        out
    }
}

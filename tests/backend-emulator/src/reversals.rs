//! Reversals as a processor does them: idempotent by payment key.
//!
//! A cart asks for a reversal when the backend approved a payment whose
//! approval the shopper never saw (a late online approval after an offline
//! decline or a cancel; an in-doubt attempt approved here). The answer is
//! always clean:
//! - an approved payment not yet reversed is reversed (`reversed`), once;
//! - the same key again is `already_reversed`, nothing done twice;
//! - a key with no approval here (never seen, declined, closed by an
//!   inquiry) is `unknown_payment`: nothing was charged. A key never seen
//!   is closed, so a request arriving after the reversal cannot charge it.

use store_and_forward::payment::BackendOutcome;
use store_and_forward::wire::down::ReversalOutcome;

use crate::counts::Counts;
use crate::emulator::Payment;

/// Reverses `payment` (the backend's record of the key, if any),
/// counting what happened.
pub(crate) fn reverse(payment: &mut Payment, is_new: bool, counts: &mut Counts) -> ReversalOutcome {
    counts.reversals += 1;
    if is_new {
        counts.payments += 1;
        payment.outcome = Some(BackendOutcome::Unknown);
    } else {
        payment.duplicates += 1;
    }
    match (&payment.outcome, payment.reversed) {
        (Some(BackendOutcome::Approved { .. }), false) => {
            payment.reversed = true;
            counts.reversed += 1;
            ReversalOutcome::Reversed
        }
        (Some(BackendOutcome::Approved { .. }), true) => {
            counts.reversal_duplicates += 1;
            ReversalOutcome::AlreadyReversed
        }
        _ => {
            counts.reversal_unknown += 1;
            ReversalOutcome::UnknownPayment
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approved() -> Payment {
        Payment {
            outcome: Some(BackendOutcome::Approved {
                reference: "ONL-1".into(),
            }),
            ..Payment::default()
        }
    }

    #[test]
    fn an_approved_payment_is_reversed_once() {
        let mut c = Counts::default();
        let mut p = approved();
        assert_eq!(reverse(&mut p, false, &mut c), ReversalOutcome::Reversed);
        assert_eq!(
            reverse(&mut p, false, &mut c),
            ReversalOutcome::AlreadyReversed
        );
        assert_eq!((c.reversals, c.reversed, c.reversal_duplicates), (2, 1, 1));
    }

    #[test]
    fn nothing_approved_is_an_unknown_payment_and_stays_uncharged() {
        let mut c = Counts::default();
        let mut p = Payment::default();
        assert_eq!(
            reverse(&mut p, true, &mut c),
            ReversalOutcome::UnknownPayment
        );
        assert_eq!(p.outcome, Some(BackendOutcome::Unknown));
        let mut declined = Payment {
            outcome: Some(BackendOutcome::Declined { reason: "x".into() }),
            ..Payment::default()
        };
        assert_eq!(
            reverse(&mut declined, false, &mut c),
            ReversalOutcome::UnknownPayment
        );
        assert_eq!((c.reversed, c.reversal_unknown), (0, 2));
    }
}

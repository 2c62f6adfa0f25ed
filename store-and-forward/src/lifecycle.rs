//! The payment lifecycle: one transition table, states × events.
//!
//! [`PaymentState::on`] is the only definition of what may happen to a
//! payment. The ledger asks it before every state change (the checkout's
//! decision, a cancel, the restart that leaves an attempt in doubt, a
//! forward's delivery, every backend answer, a reversal's result) and the
//! tests check the ledger against it, cell by cell.
//!
//! What the backend says about a key is one event whatever carried it (an
//! online answer, a forward result, an inquiry's answer, a late answer):
//! what it means follows from the state. An approval that reaches a state
//! in which the shopper was never shown one (declined offline, cancelled,
//! failed, in doubt) queues a reversal: nobody pays for goods they did not
//! take.
//!
//! A cell that maps a state to itself is a replay: legal, acknowledged, and
//! nothing is written (an answer received twice, a reversal result
//! received twice).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::payment::PaymentState;

/// Something that happens to a payment attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentEvent {
    /// The offline policy approved it (shown to the shopper).
    OfflineApproved,
    /// The offline policy declined it (shown to the shopper).
    OfflineDeclined,
    /// The shopper or the reader cancelled before a decision.
    Cancelled,
    /// A fault before a decision (reader fault).
    Failed,
    /// The cart restarted and found the attempt committed but undecided.
    CrashedUndecided,
    /// The broker acknowledged the offline approval's forward.
    Forwarded,
    /// The backend says the key is approved (charged).
    BackendApproved,
    /// The backend says the key is declined (nothing charged).
    BackendDeclined,
    /// The backend has no record of the key (nothing charged).
    BackendUnknown,
    /// The backend answered the reversal: reversed now, reversed before, or
    /// no payment to reverse. Either way nothing stays charged.
    ReversalDone,
}

impl PaymentEvent {
    /// Every event, for tests and reports.
    pub const ALL: [PaymentEvent; 10] = [
        PaymentEvent::OfflineApproved,
        PaymentEvent::OfflineDeclined,
        PaymentEvent::Cancelled,
        PaymentEvent::Failed,
        PaymentEvent::CrashedUndecided,
        PaymentEvent::Forwarded,
        PaymentEvent::BackendApproved,
        PaymentEvent::BackendDeclined,
        PaymentEvent::BackendUnknown,
        PaymentEvent::ReversalDone,
    ];

    /// Stable name (logs, errors, docs).
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentEvent::OfflineApproved => "offline_approved",
            PaymentEvent::OfflineDeclined => "offline_declined",
            PaymentEvent::Cancelled => "cancelled",
            PaymentEvent::Failed => "failed",
            PaymentEvent::CrashedUndecided => "crashed_undecided",
            PaymentEvent::Forwarded => "forwarded",
            PaymentEvent::BackendApproved => "backend_approved",
            PaymentEvent::BackendDeclined => "backend_declined",
            PaymentEvent::BackendUnknown => "backend_unknown",
            PaymentEvent::ReversalDone => "reversal_done",
        }
    }

    /// Whether the event is the backend's word (an answer the ledger
    /// refuses is a conflict to report, not a bug of the cart).
    pub fn is_from_backend(self) -> bool {
        matches!(
            self,
            PaymentEvent::BackendApproved
                | PaymentEvent::BackendDeclined
                | PaymentEvent::BackendUnknown
                | PaymentEvent::ReversalDone
        )
    }
}

impl fmt::Display for PaymentEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event the state machine has no cell for; nothing is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition: {event} in state {from}")]
pub struct IllegalTransition {
    /// The state.
    pub from: PaymentState,
    /// The event.
    pub event: PaymentEvent,
}

impl PaymentState {
    /// The transition table: the state after `event`, or the event is
    /// illegal in this state. The same state back means a replay (legal,
    /// nothing to write).
    pub fn on(self, event: PaymentEvent) -> Result<PaymentState, IllegalTransition> {
        use PaymentEvent as E;
        use PaymentState as S;
        let to = match (self, event) {
            // The checkout's decision, or what stopped it.
            (S::CardRead, E::OfflineApproved) => S::OfflineApproved,
            (S::CardRead, E::OfflineDeclined) => S::OfflineDeclined,
            (S::CardRead, E::Cancelled) => S::Cancelled,
            (S::CardRead, E::Failed) => S::Failed,
            (S::CardRead, E::CrashedUndecided) => S::InDoubt,
            (S::CardRead, E::BackendApproved) => S::OnlineApproved,
            (S::CardRead, E::BackendDeclined) => S::OnlineDeclined,
            // No online answer: the checkout decides offline.
            (S::CardRead, E::BackendUnknown) => S::CardRead,

            // In doubt: resolved by asking the backend, never forwarded as
            // a sale (no decision was shown). Approved there: reversed.
            (S::InDoubt, E::BackendApproved) => S::ReversalPending,
            (S::InDoubt, E::BackendDeclined) => S::OnlineDeclined,
            (S::InDoubt, E::BackendUnknown) => S::Cancelled,

            // An offline approval: forwarded, then answered (an online
            // answer learned late settles it the same way).
            (S::OfflineApproved, E::Forwarded) => S::Forwarded,
            (S::OfflineApproved | S::Forwarded, E::BackendApproved) => S::Confirmed,
            (S::OfflineApproved | S::Forwarded, E::BackendDeclined) => S::DeclinedAfterForward,
            // Delivered again after a requeue; no answer yet.
            (S::Forwarded, E::Forwarded) => S::Forwarded,
            (S::OfflineApproved | S::Forwarded, E::BackendUnknown) => self,

            // Nothing was shown approved: a late approval is reversed.
            (S::OfflineDeclined | S::Cancelled | S::Failed, E::BackendApproved) => {
                S::ReversalPending
            }
            (
                S::OfflineDeclined | S::Cancelled | S::Failed,
                E::BackendDeclined | E::BackendUnknown,
            ) => self,

            // The reversal's result closes it; the approval again is a replay.
            (S::ReversalPending, E::ReversalDone) => S::Reversed,
            (S::ReversalPending | S::Reversed, E::BackendApproved | E::BackendUnknown) => self,
            (S::Reversed, E::ReversalDone) => S::Reversed,

            // Settled: the same answer again is a replay.
            (S::OnlineApproved | S::Confirmed, E::BackendApproved | E::BackendUnknown) => self,
            (
                S::OnlineDeclined | S::DeclinedAfterForward,
                E::BackendDeclined | E::BackendUnknown,
            ) => self,

            (from, event) => return Err(IllegalTransition { from, event }),
        };
        Ok(to)
    }

    /// Whether some event moves `self` to `to` (`to` differing from it).
    pub fn can_become(self, to: PaymentState) -> bool {
        self != to && PaymentEvent::ALL.iter().any(|e| self.on(*e) == Ok(to))
    }

    /// No event moves it any more (replays are still accepted).
    pub fn is_terminal(self) -> bool {
        !PaymentState::ALL.iter().any(|to| self.can_become(*to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PaymentEvent as E;
    use PaymentState as S;

    #[test]
    fn terminal_states_are_the_settled_ones() {
        let terminal: Vec<_> = S::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(
            terminal,
            [
                S::OnlineApproved,
                S::OnlineDeclined,
                S::Confirmed,
                S::DeclinedAfterForward,
                S::Reversed
            ]
        );
    }

    #[test]
    fn every_state_is_reachable_from_card_read() {
        let mut seen = vec![S::CardRead];
        let mut i = 0;
        while i < seen.len() {
            for e in E::ALL {
                if let Ok(to) = seen[i].on(e)
                    && !seen.contains(&to)
                {
                    seen.push(to);
                }
            }
            i += 1;
        }
        for s in S::ALL {
            assert!(seen.contains(&s), "{s} unreachable");
        }
    }

    #[test]
    fn in_doubt_is_never_forwarded_as_a_sale() {
        assert!(!S::InDoubt.can_become(S::Forwarded));
        assert!(!S::InDoubt.can_become(S::OnlineApproved));
        assert_eq!(S::InDoubt.on(E::BackendApproved), Ok(S::ReversalPending));
        assert_eq!(S::InDoubt.on(E::BackendUnknown), Ok(S::Cancelled));
        assert!(S::InDoubt.on(E::Forwarded).is_err());
    }

    #[test]
    fn an_approval_never_shown_is_reversed_and_one_shown_is_kept() {
        for s in [S::OfflineDeclined, S::Cancelled, S::Failed, S::InDoubt] {
            assert_eq!(s.on(E::BackendApproved), Ok(S::ReversalPending), "{s}");
        }
        for s in [S::OfflineApproved, S::Forwarded] {
            assert_eq!(s.on(E::BackendApproved), Ok(S::Confirmed), "{s}");
        }
        assert_eq!(
            S::ReversalPending.on(E::BackendApproved),
            Ok(S::ReversalPending)
        );
        assert_eq!(S::Reversed.on(E::BackendApproved), Ok(S::Reversed));
    }

    #[test]
    fn reversal_results_are_idempotent_and_only_for_reversals() {
        assert_eq!(S::ReversalPending.on(E::ReversalDone), Ok(S::Reversed));
        assert_eq!(S::Reversed.on(E::ReversalDone), Ok(S::Reversed));
        for s in S::ALL {
            if !matches!(s, S::ReversalPending | S::Reversed) {
                assert!(s.on(E::ReversalDone).is_err(), "{s}");
            }
        }
    }

    #[test]
    fn cart_events_only_move_an_undecided_attempt() {
        for e in [
            E::OfflineApproved,
            E::OfflineDeclined,
            E::Cancelled,
            E::Failed,
            E::CrashedUndecided,
        ] {
            for s in S::ALL {
                assert_eq!(s.on(e).is_ok(), s == S::CardRead, "{s} on {e}");
            }
        }
    }
}

//! The link state machine driven without a line: two ends wired through a
//! lossy "wire" that the test controls, on a virtual clock.

use std::time::{Duration, Instant};

use super::*;

/// Moves bytes from `a` to `b`, passing each frame through `fault`.
fn carry(a: &mut Link, b: &mut Link, now: Instant, fault: &mut dyn FnMut(Vec<u8>) -> Vec<u8>) {
    let bytes = a.poll_transmit();
    if !bytes.is_empty() {
        let bytes = fault(bytes);
        b.handle_input(&bytes, now);
    }
}

fn delivered(l: &mut Link) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| l.poll_delivered().map(|d| d.payload)).collect()
}

fn pass(b: Vec<u8>) -> Vec<u8> {
    b
}

#[test]
fn clean_line_delivers_in_order_and_acks() {
    let t0 = Instant::now();
    let (mut a, mut b) = (
        Link::new(LinkConfig::default()),
        Link::new(LinkConfig::default()),
    );
    for i in 1..=3u8 {
        a.send(vec![i], false, t0).unwrap();
    }
    for _ in 0..10 {
        carry(&mut a, &mut b, t0, &mut pass);
        carry(&mut b, &mut a, t0, &mut pass);
    }
    assert_eq!(delivered(&mut b), vec![vec![1], vec![2], vec![3]]);
    assert!(a.tx_idle());
    assert_eq!(a.stats().last_acked_seq, Some(2));
    assert_eq!(a.stats().retransmissions, 0);
}

#[test]
fn lost_ack_causes_retransmission_and_the_duplicate_is_dropped() {
    let t0 = Instant::now();
    let cfg = LinkConfig::default();
    let (mut a, mut b) = (Link::new(cfg), Link::new(cfg));
    a.send(vec![0x42], false, t0).unwrap();
    carry(&mut a, &mut b, t0, &mut pass);
    // B's ACK is lost.
    carry(&mut b, &mut a, t0, &mut |_| Vec::new());
    let t1 = t0 + cfg.ack_timeout;
    a.handle_timeout(t1);
    carry(&mut a, &mut b, t1, &mut pass);
    carry(&mut b, &mut a, t1, &mut pass);
    assert_eq!(delivered(&mut b), vec![vec![0x42]]);
    assert_eq!(b.stats().duplicates, 1);
    assert_eq!(a.stats().retransmissions, 1);
    assert!(a.tx_idle());
}

#[test]
fn corrupted_frame_is_naked_and_resent_at_once() {
    let t0 = Instant::now();
    let (mut a, mut b) = (
        Link::new(LinkConfig::default()),
        Link::new(LinkConfig::default()),
    );
    a.send(vec![1, 2, 3], false, t0).unwrap();
    carry(&mut a, &mut b, t0, &mut |mut f| {
        let i = f.len() - 3;
        f[i] ^= 0x40;
        f
    });
    assert!(delivered(&mut b).is_empty());
    assert_eq!(b.stats().damaged, 1);
    // The NAK makes A resend without waiting for T_ACK.
    carry(&mut b, &mut a, t0, &mut pass);
    carry(&mut a, &mut b, t0, &mut pass);
    assert_eq!(delivered(&mut b), vec![vec![1, 2, 3]]);
    assert_eq!(a.stats().naks_received, 1);
}

#[test]
fn truncated_frame_is_naked_after_idle() {
    let t0 = Instant::now();
    let cfg = LinkConfig::default();
    let (mut a, mut b) = (Link::new(cfg), Link::new(cfg));
    a.send(vec![9; 20], false, t0).unwrap();
    carry(&mut a, &mut b, t0, &mut |f| f[..12].to_vec());
    assert_eq!(b.poll_timeout(), Some(t0 + cfg.idle_timeout));
    b.handle_timeout(t0 + cfg.idle_timeout);
    assert_eq!(b.stats().damaged, 1);
    let t1 = t0 + cfg.idle_timeout;
    carry(&mut b, &mut a, t1, &mut pass);
    carry(&mut a, &mut b, t1, &mut pass);
    assert_eq!(delivered(&mut b), vec![vec![9; 20]]);
}

#[test]
fn gives_up_after_max_tries_with_no_ack() {
    let t0 = Instant::now();
    let cfg = LinkConfig::default();
    let mut a = Link::new(cfg);
    let seq = a.send(vec![1], false, t0).unwrap();
    let mut now = t0;
    let mut sent = 0;
    for _ in 0..10 {
        if !a.poll_transmit().is_empty() {
            sent += 1;
        }
        now += cfg.ack_timeout;
        a.handle_timeout(now);
    }
    assert_eq!(sent, usize::from(cfg.max_tries));
    assert_eq!(
        a.poll_error(),
        Some(LinkError::NoAck {
            seq,
            tries: cfg.max_tries
        })
    );
    assert!(a.tx_idle());
}

#[test]
fn sync_is_delivered_even_with_a_repeated_seq() {
    let t0 = Instant::now();
    let (mut a, mut b) = (
        Link::new(LinkConfig::default()),
        Link::new(LinkConfig::default()),
    );
    a.send(vec![1], false, t0).unwrap();
    carry(&mut a, &mut b, t0, &mut pass);
    carry(&mut b, &mut a, t0, &mut pass);
    // A restarts: a new link whose first frame reuses SEQ 0.
    let mut a2 = Link::new(LinkConfig::default());
    a2.send(vec![2], true, t0).unwrap();
    carry(&mut a2, &mut b, t0, &mut pass);
    let d: Vec<_> = std::iter::from_fn(|| b.poll_delivered()).collect();
    assert_eq!(d.len(), 2);
    assert!(d[0].sync, "a link's first frame goes as SYNC");
    assert!(d[1].sync);
    // After the SYNC, a DATA with the restarted sender's next SEQ is new.
    carry(&mut b, &mut a2, t0, &mut pass);
    a2.send(vec![3], false, t0).unwrap();
    carry(&mut a2, &mut b, t0, &mut pass);
    assert_eq!(delivered(&mut b), vec![vec![3]]);
}

#[test]
fn noisy_line_still_delivers_everything_exactly_once() {
    // Every 3rd frame in either direction is damaged, dropped or noise-prefixed.
    let t0 = Instant::now();
    let cfg = LinkConfig::default();
    let (mut a, mut b) = (Link::new(cfg), Link::new(cfg));
    let msgs: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; usize::from(i) + 1]).collect();
    for m in &msgs {
        a.send(m.clone(), false, t0).unwrap();
    }
    let mut n = 0u32;
    let mut fault = |f: Vec<u8>| {
        n += 1;
        match n % 9 {
            3 => Vec::new(),
            6 => {
                let mut f = f;
                let i = f.len() / 2;
                f[i] ^= 0xFF;
                f
            }
            0 => {
                let mut x = vec![0x02, 0x77, 0x13];
                x.extend(f);
                x
            }
            _ => f,
        }
    };
    let mut now = t0;
    let mut got = Vec::new();
    for _ in 0..2000 {
        carry(&mut a, &mut b, now, &mut fault);
        carry(&mut b, &mut a, now, &mut fault);
        got.extend(delivered(&mut b));
        assert!(a.poll_error().is_none(), "link gave up");
        if a.tx_idle() {
            break;
        }
        now += Duration::from_millis(50);
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    assert_eq!(got, msgs);
    assert!(a.stats().retransmissions > 0);
}

#[test]
fn a_restarted_peer_is_heard_even_when_its_first_seq_repeats() {
    // The reader restarts while the cart keeps its link: the reader's first
    // frame (SEQ 0) must not be taken for the duplicate of the old SEQ 0.
    let t0 = Instant::now();
    let (mut cart, mut reader) = (
        Link::new(LinkConfig::default()),
        Link::new(LinkConfig::default()),
    );
    reader.send(vec![1], false, t0).unwrap();
    carry(&mut reader, &mut cart, t0, &mut pass);
    carry(&mut cart, &mut reader, t0, &mut pass);
    assert_eq!(delivered(&mut cart), vec![vec![1]]);
    let mut reader = Link::new(LinkConfig::default());
    reader.send(vec![2], false, t0).unwrap();
    carry(&mut reader, &mut cart, t0, &mut pass);
    let d: Vec<_> = std::iter::from_fn(|| cart.poll_delivered()).collect();
    assert_eq!(d.len(), 1);
    assert!(d[0].sync, "a link's first frame goes as SYNC");
    assert_eq!(d[0].payload, vec![2]);
}

#[test]
fn a_retransmitted_sync_is_delivered_once() {
    let t0 = Instant::now();
    let cfg = LinkConfig::default();
    let (mut a, mut b) = (Link::new(cfg), Link::new(cfg));
    a.send(vec![7, 7], true, t0).unwrap();
    carry(&mut a, &mut b, t0, &mut pass);
    carry(&mut b, &mut a, t0, &mut |_| Vec::new());
    let t1 = t0 + cfg.ack_timeout;
    a.handle_timeout(t1);
    carry(&mut a, &mut b, t1, &mut pass);
    carry(&mut b, &mut a, t1, &mut pass);
    assert_eq!(delivered(&mut b), vec![vec![7, 7]]);
    assert_eq!(b.stats().duplicates, 1);
    assert!(a.tx_idle());
}

use super::*;

const SHIPPED: &str = include_str!("../../prices/aws-iot-core-us-east-1.toml");

fn table() -> PriceTable {
    PriceTable::parse(SHIPPED).expect("the shipped price table")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn messages_are_metered_in_5_kb_steps_at_least_one() {
    assert_eq!(steps(0), 1);
    assert_eq!(steps(1), 1);
    assert_eq!(steps(5120), 1);
    assert_eq!(steps(5121), 2);
    assert_eq!(steps(3 * 5120 + 1), 4);
    let mut u = Usage::default();
    // Topic and properties count with the payload.
    u.record(Packet::PublishFromDevice {
        topic: 40,
        payload: 5080,
        props: 1,
    });
    u.record(Packet::PublishToDevice {
        topic: 40,
        payload: 100,
        props: 0,
    });
    assert_eq!((u.publish_in, u.publish_out), (2, 1));
}

#[test]
fn the_carts_puback_is_metered_and_the_free_packets_are_not() {
    let mut u = Usage::default();
    u.record(Packet::PubAckFromDevice { mqtt5_bytes: None });
    u.record(Packet::PubAckFromDevice {
        mqtt5_bytes: Some(4),
    });
    for _ in 0..10 {
        u.record(Packet::Free);
    }
    u.record(Packet::Connect { bytes: 300 });
    u.record(Packet::Subscribe {
        topics: 120,
        props: 0,
    });
    assert_eq!(u.puback_in, 2);
    assert_eq!(u.free_packets, 10);
    assert_eq!(u.messages(), 4);
}

#[test]
fn a_telemetry_message_a_minute_costs_what_the_issue_says() {
    // 43,200 messages a month at $1.00 per million: $0.0432.
    let mut u = Usage::default();
    for _ in 0..60 {
        u.record(Packet::PublishFromDevice {
            topic: 30,
            payload: 400,
            props: 0,
        });
    }
    let month = u.per_cart_month(1, Duration::from_secs(3600));
    assert!(close(month.messages, 43_200.0), "{month:?}");
    let bill = table().bill(&month, 1);
    assert!(close(bill.lines[0].usd, 0.0432), "{bill:?}");
    assert!(close(bill.usd_per_cart_month, 0.0432));
}

#[test]
fn usage_scales_to_a_cart_month_and_splits_over_the_fleet() {
    let mut u = Usage::default();
    for _ in 0..100 {
        u.connection(Duration::from_secs(59 * 60 + 1)); // an hour, rounded up
        u.job_execution();
    }
    assert_eq!(u.connection_minutes, 6000);
    // 100 carts for one hour: each connected the whole month.
    let m = u.per_cart_month(100, Duration::from_secs(3600));
    assert!(close(m.connection_minutes, 43_200.0));
    assert!(close(m.job_executions, 720.0));
    let bill = table().bill(&m, 100);
    let conn = bill
        .lines
        .iter()
        .find(|l| l.item == "connection minutes")
        .unwrap();
    assert!(close(conn.usd, 43_200.0 * 0.08 / 1e6));
}

#[test]
fn messaging_tiers_apply_to_the_whole_fleet() {
    let t = table();
    assert!(close(t.messaging_usd(1.0), 1.0));
    assert!(close(t.messaging_usd(1000.0), 1000.0));
    assert!(close(t.messaging_usd(2000.0), 1000.0 + 800.0));
    assert!(close(t.messaging_usd(6000.0), 1000.0 + 3200.0 + 700.0));
    // 100,000 carts of 50,000 messages a month: 5 billion, so cheaper per
    // cart than one cart alone.
    let month = Monthly {
        messages: 50_000.0,
        ..Monthly::default()
    };
    let one = t.bill(&month, 1).usd_per_cart_month;
    let many = t.bill(&month, 100_000).usd_per_cart_month;
    assert!(close(one, 0.05));
    assert!(close(many, (1000.0 + 3200.0) / 100_000.0));
    assert!(many < one);
}

#[test]
fn a_bad_price_table_is_refused_with_the_reason() {
    let swapped = SHIPPED.replace("up_to_millions = 5000", "up_to_millions = 500");
    let e = PriceTable::parse(&swapped).unwrap_err();
    assert!(e.to_string().contains("rise strictly"), "{e}");
    let negative = SHIPPED.replace(
        "usd_per_remote_action = 0.003",
        "usd_per_remote_action = -1",
    );
    let e = PriceTable::parse(&negative).unwrap_err();
    assert!(e.to_string().contains("negative"), "{e}");
    let unknown = format!("{SHIPPED}\n[shadow]\nusd = 1\n");
    assert!(matches!(
        PriceTable::parse(&unknown),
        Err(BillError::Parse(_))
    ));
    let e = PriceTable::load(Path::new("no-such-prices.toml")).unwrap_err();
    assert!(e.to_string().contains("no-such-prices.toml"), "{e}");
}

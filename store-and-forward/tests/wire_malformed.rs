//! Malformed downstream messages are typed errors, never panics.

use proptest::prelude::*;
use store_and_forward::wire::{self, MAX_DECOMPRESSED, MAX_MESSAGE, WireError, decode_down};

const CART: &str = "cart-0042";

fn vector(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/vectors/v1/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn truncated() {
    let v = vector("policy_update.json");
    for cut in [0, 1, 10, v.len() / 2, v.len() - 1] {
        assert!(
            matches!(decode_down(&v[..cut], CART), Err(WireError::Malformed(_))),
            "cut {cut}"
        );
    }
}

#[test]
fn unknown_version() {
    let v = String::from_utf8(vector("policy_update.json"))
        .unwrap()
        .replacen("\"v\":1", "\"v\":2", 1);
    assert!(matches!(
        decode_down(v.as_bytes(), CART),
        Err(WireError::UnsupportedVersion(2))
    ));
}

#[test]
fn unknown_type() {
    let v = String::from_utf8(vector("policy_update.json"))
        .unwrap()
        .replacen("policy_update", "firmware_update", 1);
    assert!(
        matches!(decode_down(v.as_bytes(), CART), Err(WireError::UnknownKind(k)) if k == "firmware_update")
    );
}

#[test]
fn another_carts_message() {
    let v = vector("policy_update.json");
    assert!(matches!(
        decode_down(&v, "cart-0043"),
        Err(WireError::WrongCart { .. })
    ));
}

#[test]
fn upstream_type_on_the_downstream_path() {
    let v = vector("auth_request.json");
    assert!(matches!(
        decode_down(&v, CART),
        Err(WireError::WrongDirection(_))
    ));
}

#[test]
fn oversized() {
    let mut v = vec![b' '; MAX_MESSAGE + 1];
    v[0] = b'{';
    assert!(matches!(
        decode_down(&v, CART),
        Err(WireError::TooLarge { .. })
    ));
}

#[test]
fn compression_bomb() {
    let big = vec![b' '; MAX_DECOMPRESSED + 10];
    let bomb = zstd::bulk::compress(&big, 19).unwrap();
    assert!(bomb.len() < MAX_MESSAGE);
    assert!(matches!(
        decode_down(&bomb, CART),
        Err(WireError::Decompress(_))
    ));
}

#[test]
fn body_of_the_wrong_shape() {
    let v = String::from_utf8(vector("deny_list_update.json"))
        .unwrap()
        .replacen("\"replace\":false", "\"replace\":\"maybe\"", 1);
    assert!(matches!(
        decode_down(v.as_bytes(), CART),
        Err(WireError::Body { .. })
    ));
    let v = String::from_utf8(vector("deny_list_update.json"))
        .unwrap()
        .replacen("\"q6ur", "\"!!!!", 1);
    assert!(
        matches!(decode_down(v.as_bytes(), CART), Err(WireError::Body { .. })),
        "bad base64"
    );
}

/// A staff list whose entries are not hashes, whose salt is not base64, or
/// that lacks its version is refused whole by the decoder (the cart acks it
/// as rejected and keeps the list it holds).
#[test]
fn staff_list_of_the_wrong_shape() {
    let good = String::from_utf8(vector("staff_list_update.json")).unwrap();
    assert!(decode_down(good.as_bytes(), CART).is_ok());
    // A badge entry that decodes to 3 bytes, not a 32-byte hash.
    let short_entry = good.replacen(
        "\"b79joz8Oiz9zezV/YGx9r/frvixKPQUjVb+TUSaPor0=\"",
        "\"AAAA\"",
        1,
    );
    // A badge code in clear where a hash belongs.
    let clear_code = good.replacen(
        "\"b79joz8Oiz9zezV/YGx9r/frvixKPQUjVb+TUSaPor0=\"",
        "\"0042\"",
        1,
    );
    let bad_salt = good.replacen("\"AAECAwQFBgcICQoLDA0ODw==\"", "\"not base64!\"", 1);
    let no_version = good.replacen("\"version\":7,", "", 1);
    let badges_not_a_list = good.replacen("\"badges\":[", "\"badges\":{\"x\":[", 1);
    for (what, v) in [
        ("short entry", short_entry),
        ("clear code", clear_code),
        ("bad salt", bad_salt),
        ("no version", no_version),
        ("badges not a list", badges_not_a_list),
    ] {
        assert_ne!(v, good, "{what}: the mutation did not apply");
        assert!(
            matches!(
                decode_down(v.as_bytes(), CART),
                Err(WireError::Body { .. }) | Err(WireError::Malformed(_))
            ),
            "{what}"
        );
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_down(&bytes, CART);
        let _ = wire::decode_up(&bytes);
    }

    #[test]
    fn mutated_vectors_never_panic(idx in any::<prop::sample::Index>(), byte in any::<u8>()) {
        for name in ["catalog_delta.json", "telemetry_batch.zst", "policy_update.json", "staff_list_update.json"] {
            let mut v = vector(name);
            let i = idx.index(v.len());
            v[i] = byte;
            let _ = decode_down(&v, CART);
            let _ = wire::decode_up(&v);
        }
    }
}

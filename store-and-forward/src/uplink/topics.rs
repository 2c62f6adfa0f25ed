//! The topic layout, one prefix per cart (`carts/{cart_id}/...`, the shape
//! AWS IoT policy variables expect: `carts/${iot:Connection.Thing.ThingName}/*`),
//! and MQTT topic-filter matching. See `docs/uplink.md`.
//!
//! - `carts/{cart_id}/up/{kind}`: cart to cloud (payments, telemetry, status, acks).
//! - `carts/{cart_id}/down/{kind}`: cloud to cart (policy, deny-list, catalog, results, rotation).
//! - `carts/{cart_id}/rpc/{kind}`: responses to the cart's requests (MQTT 5
//!   response topic; matched by correlation data inside the link).

/// The prefix every topic of one cart starts with: `carts/{cart_id}`.
pub fn cart_prefix(cart_id: &str) -> String {
    format!("carts/{cart_id}")
}

/// Cart to cloud: `carts/{cart_id}/up/{kind}`.
pub fn up(cart_id: &str, kind: &str) -> String {
    format!("carts/{cart_id}/up/{kind}")
}

/// Cloud to cart: `carts/{cart_id}/down/{kind}`.
pub fn down(cart_id: &str, kind: &str) -> String {
    format!("carts/{cart_id}/down/{kind}")
}

/// Responses to the cart's requests: `carts/{cart_id}/rpc/{kind}`.
pub fn rpc(cart_id: &str, kind: &str) -> String {
    format!("carts/{cart_id}/rpc/{kind}")
}

/// Whether `id` can stand in a topic level and as an MQTT client id: not
/// empty, at most 128 bytes (AWS IoT's limit), no `/`, `+`, `#`, NUL or
/// whitespace.
pub fn valid_cart_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id
            .chars()
            .any(|c| matches!(c, '/' | '+' | '#' | '\0') || c.is_whitespace())
}

/// Whether a topic name (for PUBLISH) is valid: not empty, at most 65,535
/// bytes, no wildcards, no NUL.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= 65_535 && !topic.contains(['+', '#', '\0'])
}

/// Whether a topic filter (for SUBSCRIBE) is valid: not empty, no NUL,
/// `+` and `#` only as whole levels, `#` only last.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| match *l {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// MQTT topic-filter matching: `+` matches one level, a trailing `#`
/// matches the parent level and everything below it.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(up("c1", "payment"), "carts/c1/up/payment");
        assert_eq!(down("c1", "catalog"), "carts/c1/down/catalog");
        assert_eq!(rpc("c1", "auth"), "carts/c1/rpc/auth");
        assert_eq!(cart_prefix("c1"), "carts/c1");
    }

    #[test]
    fn filters() {
        assert!(filter_matches("carts/c1/rpc/#", "carts/c1/rpc/auth"));
        assert!(filter_matches("carts/c1/rpc/#", "carts/c1/rpc"));
        assert!(filter_matches("carts/+/up/#", "carts/c9/up/telemetry"));
        assert!(filter_matches("carts/c1/down/+", "carts/c1/down/policy"));
        assert!(!filter_matches("carts/c1/down/+", "carts/c1/down/policy/x"));
        assert!(!filter_matches("carts/c1/down/+", "carts/c1/down"));
        assert!(!filter_matches("carts/c1/rpc/#", "carts/c2/rpc/auth"));
        assert!(filter_matches("a/b", "a/b"));
        assert!(!filter_matches("a/b", "a/b/c"));
        assert!(filter_matches("#", "anything/at/all"));
    }

    #[test]
    fn ids_and_names() {
        assert!(valid_cart_id("cart-0042"));
        for bad in ["", "a/b", "a+b", "a#", "a b", "a\0"] {
            assert!(!valid_cart_id(bad), "{bad:?}");
        }
        assert!(!valid_cart_id(&"x".repeat(129)));
        assert!(valid_filter("carts/c1/down/#"));
        assert!(valid_filter("carts/+/up/+"));
        assert!(valid_filter("#"));
        for bad in ["", "carts/#/x", "carts/c1+/x", "carts/c#", "a\0"] {
            assert!(!valid_filter(bad), "{bad:?}");
        }
        assert!(valid_topic_name("carts/c1/up/x"));
        assert!(!valid_topic_name("carts/+/up"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name(&"a".repeat(65_536)));
    }
}

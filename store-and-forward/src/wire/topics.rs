//! Topic names by message type (the layout itself is
//! [`crate::uplink::topics`]). Every topic of a cart sits under `carts/{cart_id}/`, the
//! shape AWS IoT policy variables (`${iot:Connection.Thing.ThingName}`) and
//! a mosquitto `pattern` ACL confine a cart to.
//!
//! | direction | topic |
//! | --- | --- |
//! | cart to cloud | `carts/{cart_id}/up/{kind}` |
//! | cloud to cart | `carts/{cart_id}/down/{kind}` |
//! | responses to the cart's requests | `carts/{cart_id}/rpc/{kind}` |

use super::Kind;
use crate::uplink::topics as uplink;

/// The prefix of every cart topic.
pub const PREFIX: &str = "carts";

/// Where the cart publishes a message of `kind`.
pub fn up(cart: &str, kind: Kind) -> String {
    uplink::up(cart, kind.as_str())
}

/// Where the backend publishes a message of `kind` for the cart.
pub fn down(cart: &str, kind: Kind) -> String {
    uplink::down(cart, kind.as_str())
}

/// Where the backend answers the cart's requests of `kind` (MQTT 5
/// response topic).
pub fn rpc(cart: &str, kind: Kind) -> String {
    uplink::rpc(cart, kind.as_str())
}

/// The cart's subscription for everything coming down.
pub fn down_filter(cart: &str) -> String {
    uplink::down(cart, "#")
}

/// The cart's subscription for responses.
pub fn rpc_filter(cart: &str) -> String {
    uplink::rpc(cart, "#")
}

/// The backend's subscription for everything every cart sends.
pub const BACKEND_UP_FILTER: &str = "carts/+/up/#";

/// Splits `carts/{cart}/{dir}/{kind}` into (cart, dir, kind).
pub fn parse(topic: &str) -> Option<(&str, &str, &str)> {
    let mut it = topic.splitn(4, '/');
    if it.next()? != PREFIX {
        return None;
    }
    let cart = it.next()?;
    let dir = it.next()?;
    let kind = it.next()?;
    (!cart.is_empty() && !kind.contains('/')).then_some((cart, dir, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = up("cart-7", Kind::TelemetryBatch);
        assert_eq!(t, "carts/cart-7/up/telemetry_batch");
        assert_eq!(parse(&t), Some(("cart-7", "up", "telemetry_batch")));
        assert_eq!(parse("other/x/up/y"), None);
        assert_eq!(parse("carts/x/up/y/z"), None);
    }
}

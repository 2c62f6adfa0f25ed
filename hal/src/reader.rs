//! The card reader: protocol, cart-side driver and simulator.

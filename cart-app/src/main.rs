//! The payment cart's daemon.
fn main() {}

//! Fleet operations at scale, measured on this machine.
//!
//! # Layout
//! - [`bill`]: the cloud bill. MQTT traffic as AWS IoT Core meters it (each
//!   packet kind's rule, 5 KB steps, connection minutes, the ingest rule,
//!   job executions), projected to a cart-month and priced from a
//!   replaceable table (`prices/*.toml`), for one fleet size or several.
//!
//! The fleet simulator (N carts of the project's real ledger, uplink and
//! sync code against mosquitto and the emulator) feeds [`bill::Usage`] from
//! what it measures; it is not written yet.

pub mod bill;

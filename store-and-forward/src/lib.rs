//! The cart's durable heart.
#![deny(missing_docs)]

//! Barcode scanners: the `Scanner` trait, drivers and the decoder.

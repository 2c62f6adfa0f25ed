//! The receipt's QR code: a module matrix made by `qrcodegen`, drawn as an
//! RGB image the UI shows with pixelated scaling.

use qrcodegen::{QrCode, QrCodeEcc};
use slint::{Rgb8Pixel, SharedPixelBuffer};

/// The modules left blank around the code, as the QR specification asks.
const QUIET_ZONE: usize = 4;

/// Errors making a QR code.
#[derive(Debug, thiserror::Error)]
pub enum QrError {
    /// The text does not fit in the largest QR code; the receipt screen shows
    /// no code (the reference stays readable as text).
    #[error("receipt reference too long for a QR code ({0} bytes)")]
    TooLong(usize),
}

/// A square matrix of dark (`true`) and light modules, without quiet zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrMatrix {
    size: usize,
    dark: Vec<bool>,
}

impl QrMatrix {
    /// Encodes `text` with medium error correction.
    pub fn encode(text: &str) -> Result<QrMatrix, QrError> {
        let code = QrCode::encode_text(text, QrCodeEcc::Medium)
            .map_err(|_| QrError::TooLong(text.len()))?;
        // qrcodegen sizes are 21..=177, always positive.
        let size = usize::try_from(code.size()).unwrap_or(0);
        let mut dark = Vec::with_capacity(size * size);
        for y in 0..code.size() {
            for x in 0..code.size() {
                dark.push(code.get_module(x, y));
            }
        }
        Ok(QrMatrix { size, dark })
    }

    /// Modules per side.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the module at column `x`, row `y` is dark (false outside).
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.size && y < self.size && self.dark[y * self.size + x]
    }

    /// Draws the code with one pixel per module and the quiet zone around it;
    /// the UI scales it up without smoothing.
    pub fn to_pixels(&self) -> SharedPixelBuffer<Rgb8Pixel> {
        let side = self.size + 2 * QUIET_ZONE;
        let side_u32 = u32::try_from(side).unwrap_or(0);
        let mut buffer = SharedPixelBuffer::<Rgb8Pixel>::new(side_u32, side_u32);
        let pixels = buffer.make_mut_slice();
        for (i, pixel) in pixels.iter_mut().enumerate() {
            let (px, py) = (i % side, i / side);
            let dark = px >= QUIET_ZONE
                && py >= QUIET_ZONE
                && self.is_dark(px - QUIET_ZONE, py - QUIET_ZONE);
            let v = if dark { 0 } else { 255 };
            *pixel = Rgb8Pixel { r: v, g: v, b: v };
        }
        buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_receipt_reference_with_finder_patterns() {
        let qr = QrMatrix::encode("R-2026-000123").expect("short text fits");
        assert_eq!(qr.size(), 21, "a short reference fits version 1");
        // The three finder patterns have dark corners and a light separator.
        for (x, y) in [(0, 0), (20, 0), (0, 20), (6, 6), (14, 0)] {
            assert!(qr.is_dark(x, y), "module {x},{y} should be dark");
        }
        assert!(!qr.is_dark(7, 7), "separator module should be light");
        let pixels = qr.to_pixels();
        assert_eq!(pixels.width(), 29);
        let first = pixels.as_slice()[0];
        assert_eq!(
            (first.r, first.g, first.b),
            (255, 255, 255),
            "quiet zone is light"
        );
        let corner = pixels.as_slice()[4 * 29 + 4];
        assert_eq!((corner.r, corner.g, corner.b), (0, 0, 0));
    }

    #[test]
    fn refuses_text_too_long_for_any_version() {
        let text = "x".repeat(5000);
        assert!(matches!(
            QrMatrix::encode(&text),
            Err(QrError::TooLong(5000))
        ));
    }
}

//! Screens: QMP screendumps (PPM, P6), written as PNG, and compared with the
//! UI's reference images (`docs/screenshots/`) within a tolerance; a diff
//! image is kept when they differ.

use std::path::Path;

/// An RGB image.
#[derive(Debug, Clone)]
pub struct Rgb {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// R, G, B bytes, row by row.
    pub data: Vec<u8>,
}

/// A channel may differ this much before a pixel counts as different (the
/// UI's own screenshot tests use the same: anti-aliasing differs between
/// library versions).
pub const CHANNEL_TOLERANCE: u8 = 40;
/// This fraction of pixels may differ.
pub const MAX_DIFFERENT_FRACTION: f64 = 0.01;

impl Rgb {
    /// Reads a binary PPM (what QEMU's screendump writes).
    pub fn read_ppm(path: &Path) -> Result<Rgb, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // Header: P6 <ws> width <ws> height <ws> maxval <one ws> data.
        let mut fields = Vec::new();
        let mut i = 0;
        while fields.len() < 4 {
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < bytes.len() && bytes[i] == b'#' {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if start == i {
                return Err(format!("{}: truncated PPM header", path.display()));
            }
            fields.push(String::from_utf8_lossy(&bytes[start..i]).into_owned());
        }
        i += 1;
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| format!("{}: bad PPM header", path.display()))
        };
        if fields[0] != "P6" || num(&fields[3])? != 255 {
            return Err(format!("{}: not an 8-bit P6 PPM", path.display()));
        }
        let (width, height) = (num(&fields[1])?, num(&fields[2])?);
        let len = (width as usize) * (height as usize) * 3;
        let data = bytes
            .get(i..i + len)
            .ok_or_else(|| format!("{}: PPM data truncated", path.display()))?
            .to_vec();
        Ok(Rgb {
            width,
            height,
            data,
        })
    }

    /// Reads an 8-bit RGB PNG.
    pub fn read_png(path: &Path) -> Result<Rgb, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader
            .next_frame(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
            return Err(format!("{}: not an 8-bit RGB PNG", path.display()));
        }
        buf.truncate(info.buffer_size());
        Ok(Rgb {
            width: info.width,
            height: info.height,
            data: buf,
        })
    }

    /// Writes an 8-bit RGB PNG.
    pub fn write_png(&self, path: &Path) -> Result<(), String> {
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), self.width, self.height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| e.to_string())?;
        w.write_image_data(&self.data).map_err(|e| e.to_string())
    }

    /// The pixel at (x, y), when inside.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = ((y * self.width + x) * 3) as usize;
        self.data.get(i..i + 3).map(|p| [p[0], p[1], p[2]])
    }

    /// Whether the amber banner (offline, a notice) runs across the screen
    /// under the header: a band of at least 20 amber rows at the left edge
    /// and the right edge within the top fifth.
    pub fn has_banner(&self) -> bool {
        let amber = |p: [u8; 3]| p[0] > 200 && (150..225).contains(&p[1]) && p[2] < 130;
        let rows = |x: u32| {
            (0..self.height / 5)
                .filter(|y| self.pixel(x, *y).is_some_and(amber))
                .count()
        };
        rows(5) >= 20 && rows(self.width - 5) >= 20
    }

    /// How many pixels (one in four sampled) are the red of a warning
    /// heading: the fault screen's "This cart needs help" (or a decline).
    pub fn red_heading_pixels(&self) -> usize {
        let red = |p: [u8; 3]| p[0] > 150 && p[1] < 80 && p[2] < 80;
        (0..self.height)
            .step_by(2)
            .flat_map(|y| (0..self.width).step_by(2).map(move |x| (x, y)))
            .filter(|(x, y)| self.pixel(*x, *y).is_some_and(red))
            .count()
    }

    /// The fraction of pixels that differ from `other` beyond the tolerance,
    /// and a diff image (differing pixels red on a dimmed copy); `None` when
    /// the sizes differ.
    pub fn diff(&self, other: &Rgb) -> Option<(f64, Rgb)> {
        if (self.width, self.height) != (other.width, other.height) {
            return None;
        }
        let mut out = Vec::with_capacity(self.data.len());
        let mut different = 0usize;
        for (a, b) in self.data.chunks_exact(3).zip(other.data.chunks_exact(3)) {
            let off = a
                .iter()
                .zip(b)
                .any(|(x, y)| x.abs_diff(*y) > CHANNEL_TOLERANCE);
            if off {
                different += 1;
                out.extend_from_slice(&[255, 0, 0]);
            } else {
                out.extend(a.iter().map(|c| c / 3));
            }
        }
        let total = (self.width as usize * self.height as usize).max(1);
        Some((
            different as f64 / total as f64,
            Rgb {
                width: self.width,
                height: self.height,
                data: out,
            },
        ))
    }
}

/// Compares a screen with the reference `docs/screenshots/<name>-WxH.png`;
/// on a mismatch writes `<dir>/<name>-diff.png` and returns why.
pub fn matches_reference(screen: &Rgb, name: &str, dir: &Path) -> Result<f64, String> {
    let file = format!("{name}-{}x{}.png", screen.width, screen.height);
    let reference = crate::workspace_root().join("docs/screenshots").join(&file);
    let expected = Rgb::read_png(&reference)?;
    let _ = screen.write_png(&dir.join(format!("{name}-guest.png")));
    match screen.diff(&expected) {
        None => Err(format!(
            "the guest's screen is {}x{}, the reference {file} is {}x{}",
            screen.width, screen.height, expected.width, expected.height
        )),
        Some((fraction, diff)) if fraction > MAX_DIFFERENT_FRACTION => {
            let _ = diff.write_png(&dir.join(format!("{name}-diff.png")));
            Err(format!(
                "{:.2} % of the pixels differ from {file} (at most {:.2} %): see {}",
                fraction * 100.0,
                MAX_DIFFERENT_FRACTION * 100.0,
                dir.display()
            ))
        }
        Some((fraction, _)) => Ok(fraction),
    }
}

#[cfg(test)]
mod tests {
    use super::Rgb;

    fn reference(name: &str) -> Rgb {
        Rgb::read_png(&crate::workspace_root().join("docs/screenshots").join(name))
            .expect("reference screen")
    }

    /// The detectors the scenarios use, on the UI's own reference screens.
    #[test]
    fn banner_and_red_heading_are_found_where_drawn_and_only_there() {
        for size in ["1280x800", "800x480"] {
            assert!(reference(&format!("offline-banner-{size}.png")).has_banner());
            assert!(!reference(&format!("shopping-{size}.png")).has_banner());
            assert!(!reference(&format!("idle-{size}.png")).has_banner());
            assert!(reference(&format!("fault-{size}.png")).red_heading_pixels() > 300);
            for calm in ["idle", "shopping", "approved", "out-of-service"] {
                assert_eq!(
                    reference(&format!("{calm}-{size}.png")).red_heading_pixels(),
                    0,
                    "{calm}-{size}"
                );
            }
        }
    }
}

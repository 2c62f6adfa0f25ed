//! The scanner simulator: writes scans to a serial line the way a real
//! scanner does (optional AIM identifier, the data, the terminator). The
//! `scanner-sim` binary and the tests (on the far end of a pseudo-terminal
//! pair) both use it.
//!
//! Input format, one code per line: the data as printed, with `<GS>` or
//! `\x1d` for the GS1 separator; a GS1 element string may be written in the
//! bracketed form `(01)09501101530003(17)260101`. A line may start with its
//! own AIM identifier (`]E0...`); otherwise one is inferred when AIM
//! identifiers are on. Blank lines and lines starting with `#` are skipped.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::gs1_check_ok;
use super::gs1::{GS, hri_to_element_string};
use super::serial::Terminator;

/// How the simulated scanner frames its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SimConfig {
    /// Prefix each scan with an AIM identifier (inferred when the input
    /// line has none).
    pub aim: bool,
    /// What ends each scan.
    pub terminator: Terminator,
}

/// Turns one input line into the bytes of a code (without AIM identifier
/// unless the line has one). `None` for blank and comment lines.
pub fn parse_code(line: &str) -> Option<Vec<u8>> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() || line.starts_with('#') {
        return None;
    }
    let text = line
        .replace("<GS>", "\u{1d}")
        .replace("\\x1d", "\u{1d}")
        .replace("\\x1D", "\u{1d}");
    if text.starts_with('(')
        && let Some(es) = hri_to_element_string(&text)
    {
        let mut out = b"]C1".to_vec();
        out.extend_from_slice(&es);
        return Some(out);
    }
    Some(text.into_bytes())
}

/// The AIM identifier a scanner would send for `data`.
pub fn aim_for(data: &[u8]) -> &'static [u8] {
    let digits = !data.is_empty() && data.iter().all(u8::is_ascii_digit);
    match data.len() {
        _ if data.first() == Some(&GS) => b"]C1",
        _ if data.starts_with(b"WIFI:") => b"]Q1",
        8 if digits && gs1_check_ok(data) => b"]E4",
        8 | 12 | 13 if digits => b"]E0",
        15 | 18 if digits => b"]E3",
        14 if digits => b"]I1",
        n if digits && n >= 16 && data.starts_with(b"01") => b"]e0",
        _ => b"]C0",
    }
}

/// The bytes the scanner puts on the line for one code.
pub fn frame(code: &[u8], config: &SimConfig) -> Vec<u8> {
    let mut out = Vec::with_capacity(code.len() + 6);
    if config.terminator == Terminator::Etx {
        out.push(0x02);
    }
    let has_aim = code.starts_with(b"]") && code.len() >= 3;
    if config.aim && !has_aim {
        out.extend_from_slice(aim_for(code));
    }
    let body = if !config.aim && has_aim {
        &code[3..]
    } else {
        code
    };
    // A leading GS stands for the FNC1 that the AIM identifier replaces.
    let body = if config.aim || has_aim {
        body.strip_prefix(&[GS]).unwrap_or(body)
    } else {
        body
    };
    out.extend_from_slice(body);
    out.extend_from_slice(config.terminator.bytes());
    out
}

/// Writes one code as a scan and flushes.
pub fn write_scan<W: Write>(out: &mut W, code: &[u8], config: &SimConfig) -> io::Result<()> {
    out.write_all(&frame(code, config))?;
    out.flush()
}

/// Reads codes from `input` and writes each as a scan, `interval` apart.
/// Returns the number of scans written.
pub fn run<R: BufRead, W: Write>(
    input: R,
    out: &mut W,
    config: &SimConfig,
    interval: Duration,
) -> io::Result<usize> {
    let mut count = 0;
    for line in input.lines() {
        let Some(code) = parse_code(&line?) else {
            continue;
        };
        if count > 0 && !interval.is_zero() {
            std::thread::sleep(interval);
        }
        write_scan(out, &code, config)?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_with_and_without_aim() {
        let aim = SimConfig {
            aim: true,
            terminator: Terminator::Cr,
        };
        let plain = SimConfig {
            aim: false,
            terminator: Terminator::Crlf,
        };
        assert_eq!(frame(b"4006381333931", &aim), b"]E04006381333931\r");
        assert_eq!(frame(b"96385074", &aim), b"]E496385074\r");
        assert_eq!(frame(b"4006381333931", &plain), b"4006381333931\r\n");
        assert_eq!(frame(b"]Q1hello", &plain), b"hello\r\n");
        let etx = SimConfig {
            aim: false,
            terminator: Terminator::Etx,
        };
        assert_eq!(frame(b"96385074", &etx), b"\x0296385074\x03");
        let gs1 = parse_code("(01)09501101530003(10)AB1(17)260101").expect("code");
        assert_eq!(frame(&gs1, &aim), b"]C1010950110153000310AB1\x1d17260101\r");
        assert_eq!(parse_code("# comment"), None);
        assert_eq!(parse_code("01<GS>"), Some(b"01\x1d".to_vec()));
    }

    #[test]
    fn run_counts_codes() {
        let input = b"4006381333931\n\n# x\n96385074\n";
        let mut out = Vec::new();
        let cfg = SimConfig::default();
        assert_eq!(
            run(&input[..], &mut out, &cfg, Duration::ZERO).expect("run"),
            2
        );
        assert_eq!(out, b"4006381333931\r96385074\r");
    }
}

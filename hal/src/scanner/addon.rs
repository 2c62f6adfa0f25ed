//! Joins an EAN/UPC add-on that a scanner sends as its own AIM packet
//! (`]E1` two digits, `]E2` five digits) to the main code sent just before
//! it (`]E0`, `]E4`), as some scanners do when told to transmit add-ons
//! separately. Sans-IO: lines and the time in, lines out.
//!
//! A main code whose GS1 prefix is one that carries add-ons (books,
//! periodicals; configurable) is held for a short window. An add-on
//! packet inside the window joins it into one `]E3` line (main then
//! add-on, the form the decoder reads); anything else, or the end of the
//! window, releases the main code unchanged. Codes of other prefixes are
//! never held, so ordinary items reach the screen without delay.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::gtin::expand_upce;

/// How add-ons sent as their own packet are joined (config section
/// `[scanner.decoder.add_on]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AddOnConfig {
    /// How long a main code waits for its add-on packet, in milliseconds
    /// (0: add-ons sent separately are not joined).
    pub window_ms: u64,
    /// GS1 prefixes (of the 13-digit form) whose codes may wait for an
    /// add-on; empty: every `]E0`/`]E4` code waits.
    pub prefixes: Vec<String>,
}

impl Default for AddOnConfig {
    fn default() -> Self {
        Self {
            window_ms: 50,
            // ISSN periodicals (977), books (978, 979), press in Germany
            // (414, 419, 434, 439) and UPC periodicals (number system 0,
            // GTIN-13 prefix 007).
            prefixes: ["977", "978", "979", "414", "419", "434", "439", "007"]
                .map(str::to_owned)
                .to_vec(),
        }
    }
}

/// The joiner's state: at most one main code waiting.
#[derive(Debug)]
pub struct AddOnJoiner {
    config: AddOnConfig,
    held: Option<(Vec<u8>, Instant)>,
    ready: VecDeque<Vec<u8>>,
}

impl AddOnJoiner {
    /// A joiner with this config.
    pub fn new(config: AddOnConfig) -> Self {
        Self {
            config,
            held: None,
            ready: VecDeque::new(),
        }
    }

    /// One line from the framer, received at `now`.
    pub fn push(&mut self, line: Vec<u8>, now: Instant) {
        if let Some((main, _)) = self.held.take() {
            match join(&main, &line) {
                Some(joined) => {
                    self.ready.push_back(joined);
                    return;
                }
                None => self.ready.push_back(main),
            }
        }
        if self.config.window_ms > 0 && self.may_have_add_on(&line) {
            let until = now + Duration::from_millis(self.config.window_ms);
            self.held = Some((line, until));
        } else {
            self.ready.push_back(line);
        }
    }

    /// Releases a held main code without waiting (a framing error or a
    /// lost device ends the window).
    pub fn flush(&mut self) {
        if let Some((main, _)) = self.held.take() {
            self.ready.push_back(main);
        }
    }

    /// The next line to decode: ready ones first, then a held main code
    /// whose window ended by `now`.
    pub fn pop(&mut self, now: Instant) -> Option<Vec<u8>> {
        if let Some(line) = self.ready.pop_front() {
            return Some(line);
        }
        match &self.held {
            Some((_, until)) if *until <= now => self.held.take().map(|(l, _)| l),
            _ => None,
        }
    }

    /// When a held main code will be released, if one is held.
    pub fn deadline(&self) -> Option<Instant> {
        self.held.as_ref().map(|(_, until)| *until)
    }

    fn may_have_add_on(&self, line: &[u8]) -> bool {
        let Some(digits13) = main_digits(line) else {
            return false;
        };
        self.config.prefixes.is_empty()
            || self
                .config
                .prefixes
                .iter()
                .any(|p| digits13.starts_with(p.as_str()))
    }
}

/// The 13-digit form of a `]E0` (13 or 12 digits, or 8-digit UPC-E) or
/// `]E4` (EAN-8, as 0-padded 13 digits) main code.
fn main_digits(line: &[u8]) -> Option<String> {
    let (aim, data) = line.split_at_checked(3)?;
    let text = std::str::from_utf8(data).ok()?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match (aim, text.len()) {
        (b"]E0", 13) => Some(text.to_owned()),
        (b"]E0", 12) => Some(format!("0{text}")),
        (b"]E0", 8) => expand_upce(text).ok().map(|a| format!("0{a}")),
        (b"]E4", 8) => Some(format!("00000{text}")),
        _ => None,
    }
}

/// `]E3` + main + add-on when `add_on` is an add-on packet for `main`.
fn join(main: &[u8], add_on: &[u8]) -> Option<Vec<u8>> {
    let (aim, digits) = add_on.split_at_checked(3)?;
    let ok = match aim {
        b"]E1" => digits.len() == 2,
        b"]E2" => digits.len() == 5,
        _ => false,
    };
    if !ok || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let main_body = match main.get(..3)? {
        // EAN-8 stays 8 digits (`]E3` reads 10 or 13 as EAN-8 + add-on).
        b"]E4" => main.get(3..)?.to_vec(),
        _ => main_digits(main)?.into_bytes(),
    };
    Some([b"]E3".as_slice(), &main_body, digits].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joiner() -> AddOnJoiner {
        AddOnJoiner::new(AddOnConfig::default())
    }

    #[test]
    fn add_on_packet_joins_the_book_before_it() {
        let mut j = joiner();
        let t = Instant::now();
        j.push(b"]E09780201379624".to_vec(), t);
        assert_eq!(j.pop(t), None, "held for its add-on");
        assert!(j.deadline().is_some());
        j.push(b"]E290000".to_vec(), t + Duration::from_millis(5));
        assert_eq!(j.pop(t).as_deref(), Some(&b"]E3978020137962490000"[..]));
        assert_eq!(j.pop(t), None);
    }

    #[test]
    fn a_book_without_add_on_is_released_when_the_window_ends() {
        let mut j = joiner();
        let t = Instant::now();
        j.push(b"]E09780201379624".to_vec(), t);
        assert_eq!(j.pop(t + Duration::from_millis(49)), None);
        assert_eq!(
            j.pop(t + Duration::from_millis(50)).as_deref(),
            Some(&b"]E09780201379624"[..])
        );
    }

    #[test]
    fn groceries_are_never_held_and_other_lines_release_the_held_code() {
        let mut j = joiner();
        let t = Instant::now();
        j.push(b"]E04006381333931".to_vec(), t);
        assert_eq!(j.pop(t).as_deref(), Some(&b"]E04006381333931"[..]));
        j.push(b"]E09771234567003".to_vec(), t);
        j.push(b"]E04006381333931".to_vec(), t);
        assert_eq!(j.pop(t).as_deref(), Some(&b"]E09771234567003"[..]));
        assert_eq!(j.pop(t).as_deref(), Some(&b"]E04006381333931"[..]));
        // An add-on alone stays what it is (the decoder refuses it).
        j.push(b"]E205".to_vec(), t);
        assert_eq!(j.pop(t).as_deref(), Some(&b"]E205"[..]));
    }

    #[test]
    fn twelve_digit_upc_and_empty_prefix_list() {
        let mut j = AddOnJoiner::new(AddOnConfig {
            window_ms: 10,
            prefixes: Vec::new(),
        });
        let t = Instant::now();
        j.push(b"]E0036000291452".to_vec(), t);
        j.push(b"]E112".to_vec(), t);
        assert_eq!(j.pop(t).as_deref(), Some(&b"]E3003600029145212"[..]));
        j.push(b"]E473513537".to_vec(), t);
        j.push(b"]E112".to_vec(), t);
        assert_eq!(j.pop(t).as_deref(), Some(&b"]E37351353712"[..]));
        j.push(b"]E473513537".to_vec(), t);
        j.flush();
        assert_eq!(j.pop(t).as_deref(), Some(&b"]E473513537"[..]));
    }
}

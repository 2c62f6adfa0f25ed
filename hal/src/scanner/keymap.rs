//! Key events of a HID keyboard-wedge scanner to characters and lines: a
//! pure state machine, fed evdev `(key code, value)` pairs, so recorded
//! event sequences test it without a device.
//!
//! Keymap: US layout (the factory default of wedge scanners). Letters and
//! digits, Shift (left or right) for capitals and the shifted symbols, Caps
//! Lock toggles letters' case, the keypad's digits and operators. The GS1
//! separator (GS, 0x1D) arrives as any of: Ctrl+`]` (the ASCII control key
//! convention most scanners use), Alt held while typing `0029` or `29` on
//! the keypad (the "ALT mode" convention), or a function key chosen in the
//! config (`gs_function_key`, e.g. 8 for F8). Enter (main or keypad) and/or
//! Tab end a line, as configured.

use evdev::KeyCode;
use serde::{Deserialize, Serialize};

use super::reject::RejectReason;

/// Which key ends a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WedgeTerminator {
    /// Enter (main or keypad), the usual factory setting.
    #[default]
    Enter,
    /// Tab.
    Tab,
    /// Either.
    EnterOrTab,
}

/// Keymap settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeymapConfig {
    /// The key that ends a scan.
    pub terminator: WedgeTerminator,
    /// A function key (1 to 24) the scanner is programmed to send for the
    /// GS1 separator, besides Ctrl+] and Alt+keypad 29 which always work.
    pub gs_function_key: Option<u8>,
}

/// What one key event means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutput {
    /// A character.
    Char(u8),
    /// The end of a scan.
    Terminator,
    /// A key press the keymap does not know.
    Unmapped(u16),
}

/// Turns key events into characters; tracks modifiers.
#[derive(Debug, Clone, Default)]
pub struct KeyDecoder {
    config: KeymapConfig,
    shift: u8,
    ctrl: u8,
    alt: u8,
    caps: bool,
    alt_code: Option<u32>,
}

const PRESS: i32 = 1;
const RELEASE: i32 = 0;

fn bit(code: KeyCode) -> u8 {
    if matches!(
        code,
        KeyCode::KEY_LEFTSHIFT | KeyCode::KEY_LEFTCTRL | KeyCode::KEY_LEFTALT
    ) {
        1
    } else {
        2
    }
}

fn letter(code: KeyCode) -> Option<u8> {
    const ROWS: [(KeyCode, u8); 26] = [
        (KeyCode::KEY_A, b'a'),
        (KeyCode::KEY_B, b'b'),
        (KeyCode::KEY_C, b'c'),
        (KeyCode::KEY_D, b'd'),
        (KeyCode::KEY_E, b'e'),
        (KeyCode::KEY_F, b'f'),
        (KeyCode::KEY_G, b'g'),
        (KeyCode::KEY_H, b'h'),
        (KeyCode::KEY_I, b'i'),
        (KeyCode::KEY_J, b'j'),
        (KeyCode::KEY_K, b'k'),
        (KeyCode::KEY_L, b'l'),
        (KeyCode::KEY_M, b'm'),
        (KeyCode::KEY_N, b'n'),
        (KeyCode::KEY_O, b'o'),
        (KeyCode::KEY_P, b'p'),
        (KeyCode::KEY_Q, b'q'),
        (KeyCode::KEY_R, b'r'),
        (KeyCode::KEY_S, b's'),
        (KeyCode::KEY_T, b't'),
        (KeyCode::KEY_U, b'u'),
        (KeyCode::KEY_V, b'v'),
        (KeyCode::KEY_W, b'w'),
        (KeyCode::KEY_X, b'x'),
        (KeyCode::KEY_Y, b'y'),
        (KeyCode::KEY_Z, b'z'),
    ];
    ROWS.iter().find(|(k, _)| *k == code).map(|(_, c)| *c)
}

/// Unshifted and shifted characters of the other printing keys.
fn symbol(code: KeyCode) -> Option<(u8, u8)> {
    Some(match code {
        KeyCode::KEY_1 => (b'1', b'!'),
        KeyCode::KEY_2 => (b'2', b'@'),
        KeyCode::KEY_3 => (b'3', b'#'),
        KeyCode::KEY_4 => (b'4', b'$'),
        KeyCode::KEY_5 => (b'5', b'%'),
        KeyCode::KEY_6 => (b'6', b'^'),
        KeyCode::KEY_7 => (b'7', b'&'),
        KeyCode::KEY_8 => (b'8', b'*'),
        KeyCode::KEY_9 => (b'9', b'('),
        KeyCode::KEY_0 => (b'0', b')'),
        KeyCode::KEY_MINUS => (b'-', b'_'),
        KeyCode::KEY_EQUAL => (b'=', b'+'),
        KeyCode::KEY_LEFTBRACE => (b'[', b'{'),
        KeyCode::KEY_RIGHTBRACE => (b']', b'}'),
        KeyCode::KEY_BACKSLASH => (b'\\', b'|'),
        KeyCode::KEY_SEMICOLON => (b';', b':'),
        KeyCode::KEY_APOSTROPHE => (b'\'', b'"'),
        KeyCode::KEY_GRAVE => (b'`', b'~'),
        KeyCode::KEY_COMMA => (b',', b'<'),
        KeyCode::KEY_DOT => (b'.', b'>'),
        KeyCode::KEY_SLASH => (b'/', b'?'),
        KeyCode::KEY_SPACE => (b' ', b' '),
        KeyCode::KEY_KPASTERISK => (b'*', b'*'),
        KeyCode::KEY_KPMINUS => (b'-', b'-'),
        KeyCode::KEY_KPPLUS => (b'+', b'+'),
        KeyCode::KEY_KPSLASH => (b'/', b'/'),
        KeyCode::KEY_KPDOT => (b'.', b'.'),
        _ => return None,
    })
}

fn keypad_digit(code: KeyCode) -> Option<u8> {
    const KP: [KeyCode; 10] = [
        KeyCode::KEY_KP0,
        KeyCode::KEY_KP1,
        KeyCode::KEY_KP2,
        KeyCode::KEY_KP3,
        KeyCode::KEY_KP4,
        KeyCode::KEY_KP5,
        KeyCode::KEY_KP6,
        KeyCode::KEY_KP7,
        KeyCode::KEY_KP8,
        KeyCode::KEY_KP9,
    ];
    KP.iter().position(|k| *k == code).map(|p| p as u8)
}

fn function_key(code: KeyCode) -> Option<u8> {
    let c = code.code();
    let f = KeyCode::KEY_F1.code();
    match c {
        _ if (f..f + 10).contains(&c) => Some((c - f + 1) as u8),
        _ if c == KeyCode::KEY_F11.code() => Some(11),
        _ if c == KeyCode::KEY_F12.code() => Some(12),
        _ if (KeyCode::KEY_F13.code()..=KeyCode::KEY_F24.code()).contains(&c) => {
            Some((c - KeyCode::KEY_F13.code() + 13) as u8)
        }
        _ => None,
    }
}

impl KeyDecoder {
    /// A decoder with these settings.
    pub fn new(config: KeymapConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Feeds one key event (`value`: 1 press, 0 release, 2 autorepeat,
    /// which is ignored). Returns what a press means, if anything.
    pub fn feed(&mut self, code: KeyCode, value: i32) -> Option<KeyOutput> {
        match code {
            KeyCode::KEY_LEFTSHIFT | KeyCode::KEY_RIGHTSHIFT => {
                self.shift = toggle(self.shift, bit(code), value);
                return None;
            }
            KeyCode::KEY_LEFTCTRL | KeyCode::KEY_RIGHTCTRL => {
                self.ctrl = toggle(self.ctrl, bit(code), value);
                return None;
            }
            KeyCode::KEY_LEFTALT | KeyCode::KEY_RIGHTALT => {
                self.alt = toggle(self.alt, bit(code), value);
                if value == RELEASE && self.alt == 0 {
                    return self.alt_code.take().map(|c| match u8::try_from(c) {
                        Ok(b) => KeyOutput::Char(b),
                        Err(_) => KeyOutput::Unmapped(code.code()),
                    });
                }
                return None;
            }
            _ => {}
        }
        if value != PRESS {
            return None;
        }
        if code == KeyCode::KEY_CAPSLOCK {
            self.caps = !self.caps;
            return None;
        }
        if self.alt != 0
            && let Some(d) = keypad_digit(code)
        {
            self.alt_code = Some(
                self.alt_code
                    .unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(u32::from(d)),
            );
            return None;
        }
        let enter = matches!(code, KeyCode::KEY_ENTER | KeyCode::KEY_KPENTER);
        let tab = code == KeyCode::KEY_TAB;
        let term = self.config.terminator;
        if (enter && term != WedgeTerminator::Tab) || (tab && term != WedgeTerminator::Enter) {
            return Some(KeyOutput::Terminator);
        }
        if tab {
            return Some(KeyOutput::Char(b'\t'));
        }
        if self.ctrl != 0 && code == KeyCode::KEY_RIGHTBRACE {
            return Some(KeyOutput::Char(0x1d));
        }
        if let (Some(f), Some(gs)) = (function_key(code), self.config.gs_function_key)
            && f == gs
        {
            return Some(KeyOutput::Char(0x1d));
        }
        if let Some(c) = letter(code) {
            if self.ctrl != 0 {
                // Ctrl+letter: the ASCII control character, as a terminal does.
                return Some(KeyOutput::Char(c & 0x1f));
            }
            let upper = (self.shift != 0) != self.caps;
            return Some(KeyOutput::Char(if upper {
                c.to_ascii_uppercase()
            } else {
                c
            }));
        }
        if let Some(d) = keypad_digit(code) {
            return Some(KeyOutput::Char(b'0' + d));
        }
        if let Some((plain, shifted)) = symbol(code) {
            return Some(KeyOutput::Char(if self.shift != 0 {
                shifted
            } else {
                plain
            }));
        }
        Some(KeyOutput::Unmapped(code.code()))
    }
}

/// The key events a US-keymap wedge scanner sends to type `text` and end
/// it with the configured terminator (GS as Ctrl+]): the inverse of
/// [`KeyDecoder`], for the simulator and the tests. `None` when a byte has
/// no key.
pub fn key_events_for(text: &[u8], config: KeymapConfig) -> Option<Vec<(KeyCode, i32)>> {
    let mut out = Vec::with_capacity(text.len() * 2 + 2);
    let tap = |out: &mut Vec<(KeyCode, i32)>, key: KeyCode| {
        out.push((key, PRESS));
        out.push((key, RELEASE));
    };
    for &b in text {
        if b == 0x1d {
            out.push((KeyCode::KEY_LEFTCTRL, PRESS));
            tap(&mut out, KeyCode::KEY_RIGHTBRACE);
            out.push((KeyCode::KEY_LEFTCTRL, RELEASE));
            continue;
        }
        let (key, shift) = if b.is_ascii_alphabetic() {
            let lower = b.to_ascii_lowercase();
            let key = (0..=u16::MAX)
                .map(KeyCode::new)
                .find(|k| letter(*k) == Some(lower))?;
            (key, b.is_ascii_uppercase())
        } else {
            (0..0x80u16)
                .map(KeyCode::new)
                .find_map(|k| match symbol(k) {
                    Some((plain, _))
                        if plain == b && keypad_digit(k).is_none() && !is_keypad(k) =>
                    {
                        Some((k, false))
                    }
                    Some((_, shifted)) if shifted == b && !is_keypad(k) => Some((k, true)),
                    _ => None,
                })?
        };
        if shift {
            out.push((KeyCode::KEY_LEFTSHIFT, PRESS));
        }
        tap(&mut out, key);
        if shift {
            out.push((KeyCode::KEY_LEFTSHIFT, RELEASE));
        }
    }
    let end = match config.terminator {
        WedgeTerminator::Tab => KeyCode::KEY_TAB,
        WedgeTerminator::Enter | WedgeTerminator::EnterOrTab => KeyCode::KEY_ENTER,
    };
    tap(&mut out, end);
    Some(out)
}

fn is_keypad(k: KeyCode) -> bool {
    matches!(
        k,
        KeyCode::KEY_KPASTERISK
            | KeyCode::KEY_KPMINUS
            | KeyCode::KEY_KPPLUS
            | KeyCode::KEY_KPSLASH
            | KeyCode::KEY_KPDOT
    )
}

fn toggle(mask: u8, bit: u8, value: i32) -> u8 {
    match value {
        PRESS => mask | bit,
        RELEASE => mask & !bit,
        _ => mask,
    }
}

/// Assembles key events into lines: what the wedge driver feeds, and what
/// the tests feed recorded sequences into.
#[derive(Debug, Clone)]
pub struct WedgeLines {
    keys: KeyDecoder,
    max: usize,
    buf: Vec<u8>,
    problem: Option<RejectReason>,
}

impl WedgeLines {
    /// Lines of at most `max` characters.
    pub fn new(config: KeymapConfig, max: usize) -> Self {
        Self {
            keys: KeyDecoder::new(config),
            max: max.max(1),
            buf: Vec::new(),
            problem: None,
        }
    }

    /// Feeds one key event; returns a finished line (or the reason it was
    /// refused) when the terminator key is pressed. Empty lines are skipped.
    pub fn feed(&mut self, code: KeyCode, value: i32) -> Option<Result<Vec<u8>, RejectReason>> {
        match self.keys.feed(code, value)? {
            KeyOutput::Char(c) => {
                if self.problem.is_none() {
                    if self.buf.len() >= self.max {
                        zeroize::Zeroize::zeroize(&mut self.buf);
                        self.buf.clear();
                        self.problem = Some(RejectReason::TooLong { max: self.max });
                    } else {
                        self.buf.push(c);
                    }
                }
                None
            }
            KeyOutput::Unmapped(code) => {
                self.problem
                    .get_or_insert(RejectReason::UnmappedKey { code });
                None
            }
            KeyOutput::Terminator => {
                let line = std::mem::take(&mut self.buf);
                match self.problem.take() {
                    Some(reason) => {
                        let mut line = line;
                        zeroize::Zeroize::zeroize(&mut line);
                        Some(Err(reason))
                    }
                    None if line.is_empty() => None,
                    None => Some(Ok(line)),
                }
            }
        }
    }

    /// Forgets a partial line (the device went away mid-scan).
    pub fn reset(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buf);
        self.buf.clear();
        self.problem = None;
        self.keys = KeyDecoder::new(self.keys.config);
    }
}

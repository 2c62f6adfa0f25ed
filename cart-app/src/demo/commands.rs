//! The interactive demo's typed commands, sans-IO: what a line means
//! ([`parse`]), the help text, and the test cards in words ([`describe_card`]).

use hal::reader::fixtures::{ProcessorBehaviour, ReaderBehaviour, TestCard};

/// One typed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Nothing typed.
    Empty,
    /// `help` or `?`.
    Help,
    /// A sample product by its number in the list (1-based).
    Product(usize),
    /// `scan CODE`: any barcode, bad ones included.
    Scan(String),
    /// `cards`: the test cards.
    Cards,
    /// `card NAME`: the card the reader reads next.
    Card(String),
    /// `down`: cut the link.
    Down,
    /// `up`: restore it.
    Up,
    /// `status`: the cart's status in words.
    Status,
    /// `quit`.
    Quit,
    /// Anything else.
    Unknown(String),
}

/// What a typed line asks for.
pub fn parse(line: &str) -> Command {
    let line = line.trim();
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    match (word.to_ascii_lowercase().as_str(), rest) {
        ("", _) => Command::Empty,
        ("help" | "?" | "h", "") => Command::Help,
        ("scan", code) if !code.is_empty() => Command::Scan(code.to_owned()),
        ("cards", "") => Command::Cards,
        ("card", name) if !name.is_empty() => Command::Card(name.to_owned()),
        ("down", "") => Command::Down,
        ("up", "") => Command::Up,
        ("status", "") => Command::Status,
        ("quit" | "q" | "exit", "") => Command::Quit,
        _ => match line.parse::<usize>() {
            Ok(n) => Command::Product(n),
            Err(_) => Command::Unknown(line.to_owned()),
        },
    }
}

/// The help text, with the sample products numbered.
pub fn help(products: &[(&str, &str)]) -> String {
    let mut out = String::from("The cart is in the window; type here:\n");
    for (i, (code, what)) in products.iter().enumerate() {
        out.push_str(&format!("  {:<14} scan {code} ({what})\n", i + 1));
    }
    out.push_str(
        "  scan CODE      scan any barcode (bad ones too: the cart says what it makes of them)\n\
         \x20 cards          the test cards and what the bank does with each\n\
         \x20 card NAME      the card the reader reads at the next payment\n\
         \x20 down / up      cut or restore the link to the cloud\n\
         \x20 status         the cart's status\n\
         \x20 help           this list\n\
         \x20 quit           stop the cart (closing the window does too)\n",
    );
    out
}

/// One test card in words: how it is read and what the bank does.
pub fn describe_card(card: &TestCard) -> String {
    let read = match card.reader {
        ReaderBehaviour::Normal => format!(
            "{}{}",
            match card.entry_mode {
                hal::reader::message::EntryMode::Contactless => "tapped",
                _ => "inserted",
            },
            if card.pin { ", with PIN" } else { "" }
        ),
        ReaderBehaviour::Slow { read_ms } => format!("read slowly ({read_ms} ms)"),
        ReaderBehaviour::NoCard => "never presented: the payment times out".into(),
        ReaderBehaviour::RemovedMidRead => "pulled out while being read".into(),
        ReaderBehaviour::Unreadable => "cannot be read".into(),
        ReaderBehaviour::Fault => "the reader reports a fault".into(),
    };
    let bank = match card.processor {
        ProcessorBehaviour::Approve => "the bank approves".to_owned(),
        ProcessorBehaviour::Decline { reason } => format!("the bank declines ({reason:?})"),
        ProcessorBehaviour::DeclineWhenForwarded { reason } => {
            format!("the bank approves online; declines ({reason:?}) an offline approval forwarded")
        }
        ProcessorBehaviour::Slow { delay_ms } => {
            format!("the bank approves after {delay_ms} ms")
        }
        ProcessorBehaviour::NeverAnswers => "the bank never answers online".into(),
    };
    let deny = if card.deny_listed {
        "; on the deny-list"
    } else {
        ""
    };
    format!("{:<26} {read}; {bank}{deny}", card.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_commands() {
        assert_eq!(parse("  "), Command::Empty);
        assert_eq!(parse("help"), Command::Help);
        assert_eq!(parse("?"), Command::Help);
        assert_eq!(parse("3"), Command::Product(3));
        assert_eq!(
            parse("scan 4006381333931"),
            Command::Scan("4006381333931".into())
        );
        assert_eq!(parse("scan WIFI:S:x;;"), Command::Scan("WIFI:S:x;;".into()));
        assert_eq!(parse("scan"), Command::Unknown("scan".into()));
        assert_eq!(parse("cards"), Command::Cards);
        assert_eq!(
            parse("card chip-approve"),
            Command::Card("chip-approve".into())
        );
        assert_eq!(parse("DOWN"), Command::Down);
        assert_eq!(parse("status"), Command::Status);
        assert_eq!(parse("q"), Command::Quit);
        assert_eq!(parse("pay now"), Command::Unknown("pay now".into()));
    }

    #[test]
    fn every_fixture_card_has_words() {
        let cards = hal::reader::fixtures::TestCards::load(
            &crate::demo::default_fixtures().join("test-cards.json"),
        )
        .expect("the test cards");
        for c in &cards.cards {
            let line = describe_card(c);
            assert!(line.starts_with(&c.name) && line.contains("bank"), "{line}");
        }
        assert!(help(&[("1", "one")]).contains("scan CODE"));
    }
}

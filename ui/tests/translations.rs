//! Every shopper-facing text (`@tr("...")` in `ui/ui/*.slint`) has a German
//! translation in `ui/lang/de/LC_MESSAGES/ui.po`, and the file has no stale
//! entries. Guards against a new text shipping untranslated.

use std::collections::BTreeSet;
use std::path::Path;

/// Reads a string literal starting after its opening quote; returns the text
/// and the rest after the closing quote.
fn literal(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &s[i + 1..])),
            _ => out.push(c),
        }
    }
    None
}

fn slint_texts() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    let mut texts = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("ui/ui") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "slint") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("read .slint");
        let mut rest = source.as_str();
        while let Some(at) = rest.find("@tr(\"") {
            let (text, after) = literal(&rest[at + 5..]).expect("closed @tr string");
            texts.insert(text);
            rest = after;
            // A plural form: `"one" | "many" % n`.
            if let Some(plural) = rest.strip_prefix(" | \"") {
                let (text, after) = literal(plural).expect("closed plural string");
                texts.insert(text);
                rest = after;
            }
        }
    }
    texts
}

fn po_entries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("lang/de/LC_MESSAGES/ui.po");
    let po = std::fs::read_to_string(path).expect("read ui.po");
    let mut entries = Vec::new();
    let mut id = None;
    for line in po.lines() {
        let quoted = |prefix: &str| {
            line.strip_prefix(prefix)
                .and_then(|r| literal(r).map(|(t, _)| t))
        };
        if let Some(t) = quoted("msgid_plural \"") {
            // Translated by the msgstr[n] lines that follow the singular.
            entries.push((t, String::from("(plural)")));
        } else if let Some(t) = quoted("msgid \"") {
            id = Some(t);
        } else if let Some(t) = quoted("msgstr \"").or_else(|| quoted("msgstr[0] \""))
            && let Some(id) = id.take()
        {
            entries.push((id, t));
        }
    }
    entries.retain(|(id, _)| !id.is_empty());
    entries
}

#[test]
fn every_tr_text_has_a_german_translation_and_none_is_stale() {
    let texts = slint_texts();
    assert!(texts.len() > 40, "found only {} @tr texts", texts.len());
    let entries = po_entries();
    let ids: BTreeSet<String> = entries.iter().map(|(id, _)| id.clone()).collect();
    let missing: Vec<&String> = texts.difference(&ids).collect();
    assert!(missing.is_empty(), "untranslated in ui.po: {missing:#?}");
    let stale: Vec<&String> = ids.difference(&texts).collect();
    assert!(
        stale.is_empty(),
        "ui.po entries no .slint file uses: {stale:#?}"
    );
    let empty: Vec<&String> = entries
        .iter()
        .filter(|(_, t)| t.is_empty())
        .map(|(id, _)| id)
        .collect();
    assert!(empty.is_empty(), "empty translations: {empty:#?}");
}

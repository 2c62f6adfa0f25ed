//! `cartctl` as a technician runs it: against a real ledger and catalog
//! file, checking output and exit codes.

use std::process::Command;

fn cartctl(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cartctl"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run cartctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn status_and_catalog_import() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cart.toml");
    std::fs::write(
        &config,
        format!(
            "[ledger]\npath = \"{0}/ledger.sqlite\"\n[catalog]\npath = \"{0}/catalog.sqlite\"\n[control]\nsocket = \"{0}/control.sock\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    // No ledger yet.
    let (code, _, err) = cartctl(&config, &["status"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no ledger"), "{err}");
    // A ledger with payments, made by the scripted session.
    let made = Command::new(env!("CARGO_BIN_EXE_cart-app"))
        .args(["demo-ledger", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (code, out, err) = cartctl(&config, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("online_approved 1") && out.contains("queue telemetry"),
        "{out}"
    );
    // No recovery key configured: said, not a failure.
    assert!(
        out.contains("WARNING: no recovery key configured ([tpm] recovery_public_key)"),
        "{out}"
    );
    let (code, out, _) = cartctl(&config, &["status", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ledger"]["payments"]["confirmed"], 1);
    assert!(v["ledger"]["integrity"].is_null());
    assert_eq!(v["source"], "ledger (daemon down)");
    // Sync needs the daemon: exit code 4, saying so.
    let (code, _, err) = cartctl(&config, &["sync", "--timeout", "1"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("the daemon is not running"), "{err}");
    // Catalog import: a good file, then a bad one refused whole with the line.
    let csv = dir.path().join("items.csv");
    std::fs::write(
        &csv,
        "gtin,name,price_minor,currency,tax_class,min_age,sold_by_weight\n4006381333931,Highlighter,189,EUR,standard,,false\n",
    )
    .unwrap();
    let (code, out, err) = cartctl(&config, &["catalog", "import", csv.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("imported 1 items"), "{out}");
    std::fs::write(
        &csv,
        "gtin,name,price_minor,currency,tax_class\n4006381333931,\"Pens, blue\",1,EUR,standard\n4006381333932,x,1,EUR,standard\n",
    )
    .unwrap();
    let (code, _, err) = cartctl(&config, &["catalog", "import", csv.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("line 3, column 1 (gtin)") && err.contains("check digit"),
        "{err}"
    );
    // A quarantined payment forward is shown with its key and how to
    // release it; releasing needs the daemon.
    {
        let c = rusqlite::Connection::open(dir.path().join("ledger.sqlite")).unwrap();
        let n = c
            .execute(
                "UPDATE outbox SET status = 2, last_error = 'broker reason 135: NotAuthorized'
                 WHERE class = 0 AND payment_seq IS NOT NULL",
                [],
            )
            .unwrap();
        assert!(n >= 1);
    }
    let (code, out, err) = cartctl(&config, &["status"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("QUARANTINED"))
        .unwrap_or_else(|| panic!("no quarantined payment shown: {out}"));
    assert!(
        line.contains("135") && line.contains("cartctl release"),
        "{line}"
    );
    let (code, out, _) = cartctl(&config, &["status", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key = v["ledger"]["quarantined_payments"][0]["payment"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(line.contains(&key), "{line}");
    let (code, _, err) = cartctl(&config, &["release", &key]);
    assert_eq!(code, 4, "{err}");
    // A bad config names the key and exits 2.
    std::fs::write(&config, "[ledger]\npathh = 1\n").unwrap();
    let (code, _, err) = cartctl(&config, &["status"]);
    assert_eq!(code, 2);
    assert!(err.contains("pathh"), "{err}");
}

//! The demo's screens: the checkout UI rendered headless at each step and
//! written as PNGs, from the daemon's own basket and payment results.

use std::path::{Path, PathBuf};

use ui::headless::Headless;
use ui::{CartView, CheckoutUi, ViewUpdate};

use crate::basket::{Basket, TaxTable};

/// The UI in a headless window, and where the step PNGs go.
pub struct Screens {
    headless: Headless,
    ui: CheckoutUi,
    dir: PathBuf,
    step: u32,
    _events: std::sync::mpsc::Receiver<ui::UiEvent>,
}

impl Screens {
    /// Installs the headless platform on this thread and creates the UI.
    pub fn new(dir: &Path, currency: &str) -> anyhow::Result<Screens> {
        let headless = Headless::install()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let ui = CheckoutUi::new(currency, tx)?;
        std::fs::create_dir_all(dir)?;
        Ok(Screens {
            headless,
            ui,
            dir: dir.to_path_buf(),
            step: 0,
            _events: rx,
        })
    }

    /// Applies updates.
    pub fn show(&self, updates: impl IntoIterator<Item = ViewUpdate>) {
        for u in updates {
            self.ui.update(u);
        }
    }

    /// Renders the current screen at 1280x800 to `NN-name.png`.
    pub fn snap(&mut self, name: &str) -> anyhow::Result<PathBuf> {
        self.step += 1;
        self.headless.resize(1280, 800);
        let frame = self.headless.render();
        let path = self.dir.join(format!("{:02}-{name}.png", self.step));
        frame.write_png(&path)?;
        Ok(path)
    }
}

/// The basket as the UI's view model (lines named by their index).
pub fn cart_view(basket: &Basket, taxes: &TaxTable) -> CartView {
    crate::session::cart_view(basket, taxes, |i| i as u64)
}

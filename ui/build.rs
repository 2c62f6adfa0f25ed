//! Compiles the `.slint` files with the German translation bundled in.
//!
//! Debug info (what `i-slint-backend-testing` needs to find elements by their
//! accessible label) is emitted in every profile except `release`, so the
//! tests find elements under a plain `cargo test` and CI needs no extra
//! environment; `SLINT_EMIT_DEBUG_INFO=1` forces it in release too.

fn main() {
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let debug_info = profile != "release" || std::env::var_os("SLINT_EMIT_DEBUG_INFO").is_some();
    println!("cargo:rerun-if-env-changed=SLINT_EMIT_DEBUG_INFO");
    println!("cargo:rerun-if-changed=lang");
    let config = slint_build::CompilerConfiguration::new()
        .with_style("fluent".into())
        .with_bundled_translations("lang")
        .with_default_translation_context(slint_build::DefaultTranslationContext::None)
        .with_debug_info(debug_info);
    if let Err(err) = slint_build::compile_with_config("ui/main.slint", config) {
        eprintln!("slint compile error: {err}");
        std::process::exit(1);
    }
}

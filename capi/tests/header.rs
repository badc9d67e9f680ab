//! The committed header is what cbindgen makes of the code: CI fails when they disagree.
//! `DIA_BLESS=1 cargo test -p dia-capi --test header` rewrites it.

use std::path::Path;

#[test]
fn the_committed_header_matches_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    // The version string from Cargo.toml (cbindgen does not export string constants).
    config.after_includes = Some(format!(
        "\n/* The version of libdia this header belongs to; dia_version() says the library's. */\n\
         #define DIA_VERSION_STRING \"{}\"",
        env!("CARGO_PKG_VERSION")
    ));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads the crate")
        .write(&mut out);
    let generated = String::from_utf8(out).expect("UTF-8 header");
    let path = dir.join("include/dia.h");
    if std::env::var_os("DIA_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write include/dia.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "capi/include/dia.h differs from what cbindgen generates from capi/src: rerun with \
         DIA_BLESS=1 cargo test -p dia-capi --test header and commit the header"
    );
}

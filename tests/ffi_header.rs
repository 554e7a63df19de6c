//! The committed C header, csrc/include/zo.h, is what cbindgen generates from src/ffi/
//! today. `ZO_BLESS=1 cargo test --test ffi_header` rewrites it after a change of the ABI.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("csrc/include/cbindgen.toml"))
        .expect("csrc/include/cbindgen.toml parses");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen parses src/ffi/")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");
    let path = root.join("csrc/include/zo.h");
    if std::env::var_os("ZO_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("zo.h is writable");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "csrc/include/zo.h is stale: the ABI in src/ffi/ changed. Regenerate it with \
         `ZO_BLESS=1 cargo test --release --test ffi_header` and commit it (and bump \
         ZO_ABI_VERSION if the change is not only additive)."
    );
}

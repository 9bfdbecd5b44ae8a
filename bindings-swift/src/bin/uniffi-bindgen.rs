//! UniFFI's binding generator, pinned to this crate's UniFFI version:
//! `cargo run -p tidewire-swift --bin uniffi-bindgen -- generate --library <lib> --language swift|python --out-dir <dir>`.
fn main() {
    uniffi::uniffi_bindgen_main()
}

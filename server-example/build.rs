//! Rebuilds when a migration or the web app's bundle is added or changed:
//! `sqlx::migrate!` embeds `migrations/`, and rust-embed `web/dist/`, into
//! the binary.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=web/dist");
}

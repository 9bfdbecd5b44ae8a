//! Rebuilds when a migration is added or changed: `sqlx::migrate!` embeds
//! `migrations/` into the binary.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

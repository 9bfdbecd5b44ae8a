//! A PostgreSQL database of a test's own.
//!
//! The tests need a PostgreSQL server where they may `CREATE DATABASE`:
//! `TIDEWIRE_TEST_POSTGRES_URL` names it (a URL to an existing database,
//! e.g. `postgres://postgres@127.0.0.1:5432/postgres`, the default; on a
//! fresh Debian install, where only the local socket lets `root` in,
//! `postgres:///postgres?host=/var/run/postgresql&user=root`). `.ci/run`
//! starts the server when it is down. When none answers, the test fails
//! and says so: it is never skipped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection as _, PgConnection};

/// The server's address when `TIDEWIRE_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Where the tests find PostgreSQL.
pub fn admin_url() -> String {
    std::env::var("TIDEWIRE_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// A database with a random name, dropped (with `FORCE`, so the server's
/// connections are cut) when this is dropped, even when the test panics.
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// A URL to it, for `DATABASE_URL`.
    pub url: String,
}

impl TestDatabase {
    /// Creates a database named `tidewire_test_<pid>_<time>_<n>`.
    ///
    /// # Panics
    /// When PostgreSQL cannot be reached or refuses: the message says how
    /// to point the tests at one.
    pub async fn create() -> TestDatabase {
        static N: AtomicUsize = AtomicUsize::new(0);
        let admin = admin_url();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default();
        let name = format!("tidewire_test_{}_{nanos}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut conn = connect(&admin).await;
        if let Err(e) = sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await {
            panic!("cannot create a test database on PostgreSQL at {admin} (TIDEWIRE_TEST_POSTGRES_URL): {e}");
        }
        let _ = conn.close().await;
        let url = with_database(&admin, &name);
        TestDatabase { name, url }
    }

    /// Drops the database under whoever uses it (their connections are cut).
    pub async fn drop_now(&self) {
        let mut conn = connect(&admin_url()).await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .execute(&mut conn)
            .await
            .expect("drop the test database");
        let _ = conn.close().await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any runtime (or inside one that must not block):
        // a thread with a runtime of its own.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async {
                let Ok(Ok(mut conn)) =
                    tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&admin_url())).await
                else {
                    return Err("cannot connect".to_owned());
                };
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let dropped = sqlx::query(&sql).execute(&mut conn).await.map(drop).map_err(|e| e.to_string());
                let _ = conn.close().await;
                dropped
            })
        })
        .join();
        if let Ok(Err(e)) | Err(e) = dropped.map_err(|_| "panicked".to_owned()) {
            eprintln!("could not drop the test database {}: {e}", self.name);
        }
    }
}

/// A connection to `url`, or a panic that says what the tests need.
async fn connect(url: &str) -> PgConnection {
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!("{}", unreachable_message(url, &e.to_string())),
        Err(_) => panic!("{}", unreachable_message(url, "no answer within 10 s")),
    }
}

fn unreachable_message(url: &str, error: &str) -> String {
    format!(
        "PostgreSQL is not reachable at {url} ({error}). The store tests need a PostgreSQL server where they may \
         CREATE DATABASE: start one (Debian: `pg_ctlcluster <version> main start`; .ci/run does it) or set \
         TIDEWIRE_TEST_POSTGRES_URL to a postgres:// URL of an existing database on one."
    )
}

/// `url` naming database `name` instead of its own (its query kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..].find('/').map_or(base.len(), |i| authority + i);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}/{name}{query}", &base[..path])
}

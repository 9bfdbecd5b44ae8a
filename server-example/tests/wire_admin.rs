//! `--admin-addr`: `/metrics` leaves the public listener for an admin
//! address; `/healthz` stays on both (load balancers probe the public port).

mod common;

use std::time::Duration;

use common::*;
use tokio::time::{Instant, sleep};

const ADMIN_PREFIX: &str = "tidewire-server admin listening on http://127.0.0.1:";

/// The admin port, from the line printed after the ready line.
async fn admin_port(server: &Server) -> u16 {
    let deadline = Instant::now() + STEP;
    loop {
        let out = server.extra_stdout();
        if let Some(line) = out.lines().find_map(|l| l.strip_prefix(ADMIN_PREFIX)) {
            return line.trim().parse().expect("admin port");
        }
        assert!(Instant::now() < deadline, "no admin ready line; stdout after the ready line: {out:?}");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn with_an_admin_address_metrics_are_served_only_there() {
    run(async {
        for (args, env) in
            [(vec!["--admin-addr", "127.0.0.1:0"], vec![]), (vec![], vec![("TIDEWIRE_ADMIN_ADDR", "127.0.0.1:0")])]
        {
            let mut command = chat_command(&args, &env);
            command.args(["--conformance", "--host", "127.0.0.1"]);
            let mut server = Server::spawn(command);
            let admin = admin_port(&server).await;
            assert_ne!(admin, server.port);

            let public_metrics = http_get(server.port, "/metrics").await;
            assert_eq!(public_metrics.status, 404, "/metrics on the public port: {}", public_metrics.text());
            let public_health = http_get(server.port, "/healthz").await;
            assert_eq!((public_health.status, public_health.text()), (200, "ok".to_owned()));

            let metrics = http_get(admin, "/metrics").await;
            assert_eq!(metrics.status, 200);
            assert!(metrics.text().contains("tidewire_connections"), "{}", metrics.text());
            let health = http_get(admin, "/healthz").await;
            assert_eq!((health.status, health.text()), (200, "ok".to_owned()));
            let engine = http_get(admin, SIO_POLL).await;
            assert_eq!(engine.status, 404, "the admin port serves no clients");
            server.assert_running();
        }
    })
    .await
}

#[tokio::test]
async fn without_an_admin_address_metrics_stay_on_the_public_port() {
    run(async {
        let server = Server::start();
        let metrics = http_get(server.port, "/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(metrics.text().contains("tidewire_connections"));
        assert_eq!(server.extra_stdout(), "", "no admin line without --admin-addr");
    })
    .await
}

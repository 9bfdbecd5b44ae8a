//! The chat's web app at `/`: the page and its hashed assets from the
//! bundle embedded in the binary, with their content types, cache headers
//! and ETags; other methods refused; the other routes and the socket.io
//! path unchanged; nothing of it in `--conformance` mode.

mod common;

use common::*;

/// The `/assets/...` paths the page names.
fn assets_of(page: &str) -> Vec<String> {
    page.split('"').filter(|part| part.starts_with("/assets/")).map(str::to_owned).collect()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_types_and_cache_headers() {
    run(async {
        let mut server = Server::start_chat(&[], &[]);
        let page = http_get(server.port, "/").await;
        assert_eq!(page.status, 200);
        assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
        assert_eq!(page.header("cache-control"), Some("no-cache"), "the page is revalidated on every load");
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        let body = page.text();
        assert!(body.contains(r#"<div id="root"></div>"#), "{body}");
        assert_eq!(http_get(server.port, "/index.html").await.body, page.body);

        let assets = assets_of(&body);
        let js = assets.iter().find(|a| a.ends_with(".js")).expect("the page names a script");
        let css = assets.iter().find(|a| a.ends_with(".css")).expect("the page names a stylesheet");
        for (path, kind) in [(js, "javascript"), (css, "text/css")] {
            let r = http_get(server.port, path).await;
            assert_eq!(r.status, 200, "{path}");
            let content_type = r.header("content-type").unwrap_or_default();
            assert!(content_type.contains(kind) && content_type.ends_with("charset=utf-8"), "{path}: {content_type}");
            assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"), "{path}");
            assert!(!r.body.is_empty(), "{path}");
        }

        // Revalidation: the ETag answers 304 without a body.
        let etag = page.header("etag").expect("an ETag").to_owned();
        let request = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: \"other\", {etag}\r\nConnection: close\r\n\r\n"
        );
        let r = http_raw(server.port, request.as_bytes()).await;
        assert_eq!(r.status, 304);
        assert!(r.body.is_empty());
        let stale = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: \"old\"\r\nConnection: close\r\n\r\n";
        assert_eq!(http_raw(server.port, stale.as_bytes()).await.status, 200);

        // Only GET and HEAD.
        let r = http_post(server.port, "/", "text/plain", b"x").await;
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD"));

        // Everything else as before.
        assert_eq!(http_get(server.port, "/nope").await.status, 404);
        assert_eq!(http_get(server.port, "/assets/nope.js").await.status, 404);
        assert_eq!(http_get(server.port, "/healthz").await.text(), "ok");
        assert_eq!(http_get(server.port, "/dev/token?sub=alice").await.status, 200);
        let r = http_get(server.port, SIO_POLL).await;
        assert_eq!(r.status, 200);
        parse_open(&r.text(), &["websocket"]);
        server.assert_running();
    })
    .await
}

#[tokio::test]
async fn the_conformance_mode_serves_no_page() {
    run(async {
        let mut server = Server::start();
        assert_eq!(http_get(server.port, "/").await.status, 404);
        server.assert_running();
    })
    .await
}

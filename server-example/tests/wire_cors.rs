//! CORS on the Engine.IO endpoints, over raw HTTP: `--client-url '*'`
//! answers a literal `*` without credentials (as npm `cors` does), so no
//! site can make credentialed requests; a listed origin is reflected with
//! credentials; other origins get no CORS headers.

mod common;

use common::*;

const EVIL: &str = "https://evil.example";
const APP: &str = "https://app.example";

/// A polling handshake and a preflight from `origin`.
async fn from_origin(port: u16, origin: &str) -> (HttpResponse, HttpResponse) {
    let get = format!(
        "GET {SIO_POLL} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\nCookie: session=1\r\nConnection: close\r\n\r\n"
    );
    let preflight = format!(
        "OPTIONS {SIO_POLL} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\nConnection: close\r\n\r\n"
    );
    (http_raw(port, get.as_bytes()).await, http_raw(port, preflight.as_bytes()).await)
}

fn cors(r: &HttpResponse) -> (Option<&str>, Option<&str>) {
    (r.header("access-control-allow-origin"), r.header("access-control-allow-credentials"))
}

#[tokio::test]
async fn wildcard_answers_a_literal_star_without_credentials() {
    run(async {
        for args in [["--client-url", "*"], ["--client-url", "https://x.example,*"]] {
            let server = Server::start_with(&args);
            let (get, preflight) = from_origin(server.port, EVIL).await;
            assert_eq!(get.status, 200, "the handshake is served");
            assert_eq!(cors(&get), (Some("*"), None), "{args:?}: handshake from {EVIL}");
            // Beside listed origins, the answer depends on the origin.
            let vary = (args[1] != "*").then_some("Origin");
            assert_eq!(get.header("vary"), vary, "{args:?}: Vary");
            assert_eq!(preflight.status, 204);
            assert_eq!(cors(&preflight), (Some("*"), None), "{args:?}: preflight from {EVIL}");
        }
    })
    .await
}

#[tokio::test]
async fn a_listed_origin_is_reflected_with_credentials_and_others_get_nothing() {
    run(async {
        let server = Server::start_with(&["--client-url", APP]);
        let (get, preflight) = from_origin(server.port, APP).await;
        assert_eq!(cors(&get), (Some(APP), Some("true")), "handshake from the listed origin");
        assert_eq!(get.header("vary"), Some("Origin"));
        assert_eq!(cors(&preflight), (Some(APP), Some("true")), "preflight from the listed origin");
        let (get, preflight) = from_origin(server.port, EVIL).await;
        assert_eq!(cors(&get), (None, None), "handshake from another origin");
        assert_eq!(cors(&preflight), (None, None), "preflight from another origin");

        // Listed beside `*`: the listed origin keeps its credentials.
        let both = Server::start_with(&["--client-url", &format!("{APP},*")]);
        let (get, _) = from_origin(both.port, APP).await;
        assert_eq!(cors(&get), (Some(APP), Some("true")));
        let (get, _) = from_origin(both.port, EVIL).await;
        assert_eq!(cors(&get), (Some("*"), None));
    })
    .await
}

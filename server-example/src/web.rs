//! The chat's web app (`server-example/web/`, a React app built with
//! Vite), served at `/` from the bundle committed in `web/dist/` and
//! embedded in the binary: `cargo run -p tidewire-server` serves the page
//! on a fresh clone, without Node.
//!
//! Every file of the bundle is one exact route (`/` and `/index.html` are
//! the page); other paths keep their meaning (`/socket.io/`, `/healthz`,
//! ...) or are `404`. Answers carry the content type from the file name,
//! an `ETag` (the file's SHA-256, so `If-None-Match` gets `304`), and
//! cache headers: the files under `assets/` have content hashes in their
//! names and are cached for a year as immutable; the page is revalidated
//! on every load (`no-cache`), so a new build is picked up at once.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use rust_embed::Embed;
use tidewire::transport::{Body, IncomingBody, ServerBuilder, text_response};

/// The built web app.
#[derive(Embed)]
#[folder = "web/dist/"]
struct Bundle;

/// Cache policy of the files under `assets/` (hashed names).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of everything else (the page names the current assets).
const REVALIDATE: &str = "no-cache";

/// Adds a route for every file of the bundle to `builder`, and `/` for the
/// page. Returns how many files are served.
pub(crate) fn routes(mut builder: ServerBuilder) -> (ServerBuilder, usize) {
    let mut served = 0;
    for name in Bundle::iter() {
        let name = name.into_owned();
        if name == "index.html" {
            builder = builder.route("/", move |req| answer(req, "index.html"));
        }
        let path = format!("/{name}");
        builder = builder.route(path, move |req| answer(req, &name));
        served += 1;
    }
    (builder, served)
}

/// The answer to `req` for the bundle's file `name`.
fn answer(req: &Request<IncomingBody>, name: &str) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut res = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    let Some(file) = Bundle::get(name) else {
        return text_response(StatusCode::NOT_FOUND, "Not Found");
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let cache = if name.starts_with("assets/") { IMMUTABLE } else { REVALIDATE };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let length = file.data.len();
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else if req.method() == Method::HEAD {
        (StatusCode::OK, Bytes::new())
    } else {
        let data = match file.data {
            std::borrow::Cow::Borrowed(b) => Bytes::from_static(b),
            std::borrow::Cow::Owned(v) => Bytes::from(v),
        };
        (StatusCode::OK, data)
    };
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    let mime = file.metadata.mimetype();
    // Text files are UTF-8 (Vite writes them so); say it, so no browser guesses.
    let content_type = if mime.starts_with("text/") || mime == "application/javascript" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    let value = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
    headers.insert(header::CONTENT_TYPE, value(&content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::ETAG, value(&etag));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if status == StatusCode::OK && req.method() == Method::HEAD {
        // The length a GET would get (hyper sends no body for HEAD).
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    res
}

/// Lowercase hexadecimal.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_has_a_page_and_hashed_assets() {
        let names: Vec<_> = Bundle::iter().collect();
        assert!(names.iter().any(|n| n == "index.html"), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("assets/") && n.ends_with(".js")), "{names:?}");
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}

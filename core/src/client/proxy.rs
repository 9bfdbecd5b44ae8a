//! HTTP proxies: the connection is tunnelled through an HTTP `CONNECT`
//! (for `http`/`ws` and `https`/`wss` servers alike; TLS, when used, is
//! end to end through the tunnel), with the proxy chosen as curl does from
//! `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` and `NO_PROXY` (and their
//! lower-case forms), or given explicitly. hyper-util does the matching
//! and the tunnel.

use std::sync::Arc;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use tokio::net::TcpStream;
use tower_service::Service as _;

use super::ClientError;

/// Which proxy the client's connections go through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Proxy {
    /// As the environment says: `HTTPS_PROXY` for `https`/`wss` servers,
    /// `HTTP_PROXY` for `http`/`ws` ones, `ALL_PROXY` for both, except the
    /// hosts in `NO_PROXY` (the default). Mobile platforms keep their
    /// proxy settings elsewhere: read them there (e.g.
    /// `CFNetworkCopySystemProxySettings`) and pass [`Proxy::Url`].
    #[default]
    System,
    /// No proxy, whatever the environment says.
    Direct,
    /// This proxy for every connection: `http://[user:password@]host:port`.
    Url(String),
}

/// Where to connect: straight to the server, or through a proxy.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    matcher: Option<Arc<Matcher>>,
}

impl Route {
    /// The route of `proxy`.
    ///
    /// # Errors
    /// [`ClientError::InvalidOption`] for a proxy URL that is not
    /// `http://host:port`.
    pub(crate) fn new(proxy: &Proxy) -> Result<Route, ClientError> {
        let matcher = match proxy {
            Proxy::Direct => None,
            Proxy::System => Some(Arc::new(Matcher::from_env())),
            Proxy::Url(url) => {
                check(url).map_err(|e| ClientError::InvalidOption(format!("proxy: {e}")))?;
                Some(Arc::new(Matcher::builder().all(url.clone()).build()))
            }
        };
        Ok(Route { matcher })
    }

    /// A TCP connection to `authority` (`host:port`), tunnelled through the
    /// proxy for `scheme` (`http` or `https`) when there is one.
    pub(crate) async fn connect(&self, scheme: &str, authority: &str) -> Result<TcpStream, String> {
        let dst: http::Uri = format!("{scheme}://{authority}/").parse().map_err(|e| format!("{e}"))?;
        let Some(proxy) = self.matcher.as_ref().and_then(|m| m.intercept(&dst)) else {
            return TcpStream::connect(authority).await.map_err(|e| e.to_string());
        };
        let uri = proxy.uri().clone();
        check(&uri.to_string()).map_err(|e| format!("proxy {uri}: {e}"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let mut tunnel = Tunnel::new(uri.clone(), connector);
        if let Some(auth) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        std::future::poll_fn(|cx| tunnel.poll_ready(cx)).await.map_err(|e| format!("proxy {uri}: {e}"))?;
        let io = tunnel.call(dst).await.map_err(|e| format!("proxy {uri}: {e}"))?;
        Ok(io.into_inner())
    }
}

/// A proxy URL the tunnel can use: `http://host:port`.
fn check(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some_and(|h| !h.is_empty()) => Ok(()),
        Some("http") => Err(format!("{url:?} has no host")),
        _ => Err(format!("{url:?}: only http:// proxies (HTTP CONNECT) are supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_checked() {
        assert!(Route::new(&Proxy::Url("http://127.0.0.1:8080".into())).is_ok());
        assert!(Route::new(&Proxy::Url("http://user:pw@proxy.example:3128".into())).is_ok());
        for bad in ["socks5://127.0.0.1:1080", "https://proxy.example", "not a url", ""] {
            assert!(matches!(Route::new(&Proxy::Url(bad.into())), Err(ClientError::InvalidOption(_))), "{bad}");
        }
        assert!(Route::new(&Proxy::Direct).unwrap().matcher.is_none());
    }
}

//! Where the Manager connects: the server's URL plus the `path` and
//! `query` options, as Engine.IO request URIs.

use std::collections::BTreeMap;

use super::ClientError;
use super::options::TransportKind;

/// The server, parsed once.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) secure: bool,
    /// `host:port`, as dialled and sent in `Host`.
    pub(crate) authority: String,
    /// The host name, for TLS (no brackets, no port).
    pub(crate) host: String,
    path: String,
    query: Vec<(String, String)>,
}

impl Endpoint {
    /// Parses `url` (`http(s)://` or `ws(s)://`). The URL's own query is
    /// kept; its path is not used (it names a namespace in socket.io).
    pub(crate) fn parse(url: &str, path: &str, query: &BTreeMap<String, String>) -> Result<Endpoint, ClientError> {
        let invalid = || ClientError::InvalidUrl(url.to_owned());
        let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            _ => return Err(invalid()),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let mut url_query = "";
        if let Some(q) = rest[end..].split('#').next().and_then(|r| r.split_once('?')) {
            url_query = q.1;
        }
        if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
            return Err(invalid());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, Some(p.parse::<u16>().map_err(|_| invalid())?)),
            _ => (authority, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(invalid());
        }
        let port = port.unwrap_or(if secure { 443 } else { 80 });
        let authority = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let mut path = path.to_owned();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if !path.ends_with('/') {
            path.push('/');
        }
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(url_query.as_bytes()).into_owned().collect();
        pairs.extend(query.iter().map(|(k, v)| (k.clone(), v.clone())));
        pairs.retain(|(k, _)| !matches!(k.as_str(), "EIO" | "transport" | "sid"));
        Ok(Endpoint { secure, authority, host, path, query: pairs })
    }

    /// The request target (path and query) for `transport`, in session `sid`.
    pub(crate) fn target(&self, transport: TransportKind, sid: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.extend_pairs(self.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        q.append_pair("EIO", "4").append_pair("transport", transport.as_str());
        if let Some(sid) = sid {
            q.append_pair("sid", sid);
        }
        format!("{}?{}", self.path, q.finish())
    }

    /// The WebSocket URL for session `sid` (or a new one).
    pub(crate) fn websocket_url(&self, sid: Option<&str>) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority, self.target(TransportKind::WebSocket, sid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Endpoint, ClientError> {
        Endpoint::parse(url, "/socket.io/", &BTreeMap::new())
    }

    #[test]
    fn urls() {
        let e = parse("http://h:1").unwrap();
        assert_eq!(e.websocket_url(None), "ws://h:1/socket.io/?EIO=4&transport=websocket");
        let e = parse("https://h/chat?token=a%20b").unwrap();
        assert_eq!(e.authority, "h:443");
        assert_eq!(
            e.target(TransportKind::Polling, Some("s1")),
            "/socket.io/?token=a+b&EIO=4&transport=polling&sid=s1"
        );
        assert_eq!(e.websocket_url(None), "wss://h:443/socket.io/?token=a+b&EIO=4&transport=websocket");
        let e = Endpoint::parse("ws://[::1]:9", "custom", &BTreeMap::from([("k".into(), "v".into())])).unwrap();
        assert_eq!((e.host.as_str(), e.authority.as_str()), ("::1", "[::1]:9"));
        assert_eq!(e.target(TransportKind::Polling, None), "/custom/?k=v&EIO=4&transport=polling");
        for bad in ["ftp://h", "http://", "nonsense", "http://h:99999", "http://u@h", "http://:80"] {
            assert!(matches!(parse(bad), Err(ClientError::InvalidUrl(_))), "{bad}");
        }
    }
}

//! Limits as text ([`LimitsSpec`]), as configuration files, command lines
//! and the language bindings give them.

use super::{ConnectionLimits, Rate, RateLimits, RateParseError};

/// Limits as text, the way configuration files, command lines and the
/// language bindings give them: every field optional (`None` keeps what it
/// is applied to), rates as `COUNT/UNIT[:BURST]` or `off`, caps as numbers
/// (0: no cap). Field names are camelCase in JSON.
///
/// # Examples
/// ```
/// use tidewire::limits::{ConnectionLimits, LimitsSpec, RateLimits};
/// let spec: LimitsSpec = serde_json::from_str(
///     r#"{"rateSocket": "20/s:40", "events": {"chat:message": "10/s:20"}, "maxConnPerIp": 50, "rateIp": "off"}"#,
/// ).unwrap();
/// let (rates, conns) = spec.apply(RateLimits::default(), ConnectionLimits::default()).unwrap();
/// assert_eq!(rates.socket, Some("20/s:40".parse().unwrap()));
/// assert_eq!(rates.ip, None);
/// assert_eq!(conns.per_ip, Some(50));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitsSpec {
    /// [`RateLimits::socket`].
    pub rate_socket: Option<String>,
    /// [`RateLimits::user`].
    pub rate_user: Option<String>,
    /// [`RateLimits::ip`].
    pub rate_ip: Option<String>,
    /// [`RateLimits::events`], by event name.
    #[serde(default)]
    pub events: std::collections::BTreeMap<String, String>,
    /// [`RateLimits::max_violations`] (within the current window).
    pub max_violations: Option<u32>,
    /// [`ConnectionLimits::per_ip`].
    pub max_conn_per_ip: Option<u32>,
    /// [`ConnectionLimits::per_user`].
    pub max_conn_per_user: Option<u32>,
    /// [`ConnectionLimits::global`].
    pub max_connections: Option<u32>,
    /// [`ConnectionLimits::handshakes_per_ip`].
    pub handshakes_per_ip: Option<String>,
    /// [`ConnectionLimits::handshakes_total`].
    pub handshakes_total: Option<String>,
    /// [`ConnectionLimits::trusted_proxies`].
    pub trusted_proxies: Option<usize>,
}

/// `off` (or `0`) or a [`Rate`].
///
/// # Errors
/// [`RateParseError`] for anything else.
pub fn parse_optional_rate(text: &str) -> Result<Option<Rate>, RateParseError> {
    match text.trim() {
        "off" | "0" => Ok(None),
        other => other.parse().map(Some),
    }
}

impl LimitsSpec {
    /// `rates` and `conns` with the fields this spec sets replaced.
    ///
    /// # Errors
    /// A message naming the field whose rate does not parse.
    pub fn apply(
        &self,
        mut rates: RateLimits,
        mut conns: ConnectionLimits,
    ) -> Result<(RateLimits, ConnectionLimits), String> {
        let rate = |field: &str, text: &str| parse_optional_rate(text).map_err(|e| format!("{field}: {e}"));
        if let Some(t) = &self.rate_socket {
            rates = rates.socket(rate("rateSocket", t)?);
        }
        if let Some(t) = &self.rate_user {
            rates = rates.user(rate("rateUser", t)?);
        }
        if let Some(t) = &self.rate_ip {
            rates = rates.ip(rate("rateIp", t)?);
        }
        for (event, t) in &self.events {
            match rate(&format!("events.{event}"), t)? {
                Some(r) => rates = rates.event(event.clone(), r),
                None => rates.events.retain(|(e, _)| e != event),
            }
        }
        if let Some(n) = self.max_violations {
            let window = rates.violation_window;
            rates = rates.disconnect_after(n, window);
        }
        let cap = |n: u32| (n > 0).then_some(n);
        if let Some(n) = self.max_conn_per_ip {
            conns = conns.per_ip(cap(n));
        }
        if let Some(n) = self.max_conn_per_user {
            conns = conns.per_user(cap(n));
        }
        if let Some(n) = self.max_connections {
            conns = conns.global(cap(n));
        }
        if let Some(t) = &self.handshakes_per_ip {
            conns = conns.handshakes_per_ip(rate("handshakesPerIp", t)?);
        }
        if let Some(t) = &self.handshakes_total {
            conns = conns.handshakes_total(rate("handshakesTotal", t)?);
        }
        if let Some(n) = self.trusted_proxies {
            conns = conns.trusted_proxies(n);
        }
        Ok((rates, conns))
    }
}

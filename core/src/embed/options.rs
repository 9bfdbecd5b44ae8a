//! Option objects from another language, checked in one place.
//!
//! A binding hands its user's options over as JSON text (a JavaScript
//! options object, Python keyword arguments) and names its [`Dialect`]:
//! the keys and units its users write. Every check happens here, and an
//! error names the option the way the user spelled it
//! (`pingInterval must be a non-negative integer` in Node,
//! `ping_interval must be a non-negative number of seconds` in Python).
//!
//! | option | Node (ms) | Python (seconds) |
//! |---|---|---|
//! | interface | `host` | `host` |
//! | port | `port` | `port` |
//! | heartbeat | `pingInterval`, `pingTimeout` | `ping_interval`, `ping_timeout` |
//! | namespace join deadline | `connectTimeout` | `connect_timeout` |
//! | largest message (bytes) | `maxPayload` | `max_payload` |
//! | CORS origins | `cors: {origin: [...]}` | `cors_origins` |
//! | limits ([`LimitsSpec`](crate::limits::LimitsSpec) JSON) | `limits` | `limits` |
//! | recovery window | `connectionStateRecovery: {maxDisconnectionDuration}` (120000 when omitted) | `recovery` |
//! | transports offered (`polling`, `websocket`) | `transports` | `transports` |
//! | empty dynamic children removed (default no) | `cleanupEmptyChildNamespaces` | |
//!
//! Node's `null` is a wrong value (JSON turns `NaN` into it); Python's
//! `None` is "the default". Unknown keys are ignored (Node's options carry
//! `onError` and the like for the wrapper).

use serde_json::{Map, Value};

use super::EmbedOptions;
use super::error::{EmbedError, invalid};
use crate::hub::DrainOptions;
use crate::limits::{EventRule, JsonSchema};

/// Whose spelling and units an options object uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dialect {
    /// camelCase keys, durations in integer milliseconds.
    Node,
    /// snake_case keys, durations in seconds.
    Python,
}

/// Reads the options of one object in one dialect.
struct Reader<'a> {
    object: &'a Map<String, Value>,
    dialect: Dialect,
}

impl<'a> Reader<'a> {
    fn parse(json: &'a str, dialect: Dialect, holder: &'a mut Value) -> Result<Reader<'a>, EmbedError> {
        *holder = serde_json::from_str(json).map_err(|e| invalid(format!("options must be JSON: {e}")))?;
        let object = holder.as_object().ok_or_else(|| invalid("options must be an object"))?;
        Ok(Reader { object, dialect })
    }

    fn name(&self, node: &'static str, python: &'static str) -> &'static str {
        match self.dialect {
            Dialect::Node => node,
            Dialect::Python => python,
        }
    }

    /// The value of the option, `None` when absent (or Python's `None`).
    fn get(&self, name: &str) -> Option<&'a Value> {
        match self.object.get(name) {
            Some(Value::Null) if self.dialect == Dialect::Python => None,
            other => other,
        }
    }

    fn string(&self, name: &str) -> Result<Option<String>, EmbedError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(format!("{name} must be a string"))),
        }
    }

    fn integer(&self, name: &str, min: u64, max: u64, what: &str) -> Result<Option<u64>, EmbedError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.as_u64().filter(|n| (min..=max).contains(n)) {
                Some(n) => Ok(Some(n)),
                None => Err(invalid(format!("{name} must be {what}"))),
            },
        }
    }

    /// A duration in milliseconds: Node's integer milliseconds, Python's
    /// seconds (any number). `positive` refuses zero.
    fn duration_ms(&self, node: &'static str, python: &'static str, positive: bool) -> Result<Option<u64>, EmbedError> {
        let name = self.name(node, python);
        let sign = if positive { "positive" } else { "non-negative" };
        match self.dialect {
            Dialect::Node => self.integer(name, u64::from(positive), u64::MAX, &format!("a {sign} integer")),
            Dialect::Python => match self.get(name) {
                None => Ok(None),
                Some(v) => match v.as_f64().filter(|s| s.is_finite() && (*s > 0.0 || (!positive && *s == 0.0))) {
                    Some(seconds) => Ok(Some((seconds * 1000.0) as u64)),
                    None => Err(invalid(format!("{name} must be a {sign} number of seconds"))),
                },
            },
        }
    }

    fn object(&self, name: &str) -> Result<Option<&'a Map<String, Value>>, EmbedError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(invalid(format!("{name} must be an object"))),
        }
    }

    fn strings(&self, value: Option<&Value>, name: &str) -> Result<Vec<String>, EmbedError> {
        let bad = || invalid(format!("{name} must be an array of strings"));
        match value {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(bad)).collect(),
            Some(_) => Err(bad()),
        }
    }
}

impl EmbedOptions {
    /// The options of `json` (an object in `dialect`; see the
    /// [module](self)).
    ///
    /// # Errors
    /// [`EmbedError::InvalidArgument`] naming the first bad option.
    pub fn from_json(json: &str, dialect: Dialect) -> Result<EmbedOptions, EmbedError> {
        let mut holder = Value::Null;
        let r = Reader::parse(json, dialect, &mut holder)?;
        let port = r.integer("port", 0, 65535, "an integer 0-65535")?;
        let max_payload = r.name("maxPayload", "max_payload");
        let max_payload = r.integer(max_payload, 1, u64::MAX, "a positive integer")?;
        let cors_origins = match dialect {
            Dialect::Node => match r.object("cors") {
                Ok(cors) => r.strings(cors.and_then(|c| c.get("origin")), "cors.origin")?,
                Err(_) if r.get("cors") == Some(&Value::Null) => Vec::new(),
                Err(e) => return Err(e),
            },
            Dialect::Python => r.strings(r.get("cors_origins"), "cors_origins")?,
        };
        let limits = r.object("limits")?.map(|o| Value::Object(o.clone()).to_string());
        let recovery_ms = match dialect {
            Dialect::Node => match r.object("connectionStateRecovery")? {
                None => None,
                Some(o) => {
                    let inner = Reader { object: o, dialect };
                    let window = inner.integer("maxDisconnectionDuration", 1, u64::MAX, "a positive integer");
                    let window = window.map_err(|e| invalid(format!("connectionStateRecovery.{e}")))?;
                    Some(window.unwrap_or(120_000))
                }
            },
            Dialect::Python => r.duration_ms("", "recovery", false)?,
        };
        let transports = match r.get("transports") {
            None => None,
            Some(v) => {
                let names = r.strings(Some(v), "transports")?;
                let bad = names.iter().find(|n| !matches!(n.as_str(), "polling" | "websocket"));
                if let Some(bad) = bad {
                    return Err(invalid(format!("transports: unknown transport {bad:?} (polling, websocket)")));
                }
                let (polling, websocket) =
                    (names.iter().any(|n| n == "polling"), names.iter().any(|n| n == "websocket"));
                if !(polling || websocket) {
                    return Err(invalid("transports must name at least one transport"));
                }
                Some((polling, websocket))
            }
        };
        let cleanup_empty_children = match (dialect, r.get("cleanupEmptyChildNamespaces")) {
            (Dialect::Python, _) | (_, None) => None,
            (Dialect::Node, Some(Value::Bool(yes))) => Some(*yes),
            (Dialect::Node, Some(_)) => return Err(invalid("cleanupEmptyChildNamespaces must be a boolean")),
        };
        Ok(EmbedOptions {
            cleanup_empty_children,
            host: r.string("host")?,
            port: port.map(|p| p as u32),
            ping_interval_ms: r.duration_ms("pingInterval", "ping_interval", false)?,
            ping_timeout_ms: r.duration_ms("pingTimeout", "ping_timeout", false)?,
            max_payload,
            connect_timeout_ms: r.duration_ms("connectTimeout", "connect_timeout", false)?,
            cors_origins,
            limits,
            recovery_ms,
            transports,
        })
    }
}

/// Graceful-drain options: Node's `{batchSize, batchInterval,
/// ackDeadline}` (ms), Python's `batch_size`, `batch_interval`,
/// `ack_deadline` (seconds).
///
/// # Errors
/// [`EmbedError::InvalidArgument`] naming the first bad option.
pub fn drain_options_from_json(json: &str, dialect: Dialect) -> Result<DrainOptions, EmbedError> {
    let mut holder = Value::Null;
    let r = Reader::parse(json, dialect, &mut holder)?;
    let batch_size = r.name("batchSize", "batch_size");
    let batch_size = r.integer(batch_size, 0, u64::MAX, "a non-negative integer")?;
    Ok(DrainOptions::from_millis(
        batch_size.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        r.duration_ms("batchInterval", "batch_interval", false)?,
        r.duration_ms("ackDeadline", "ack_deadline", false)?,
    ))
}

/// How a server joins a cluster, from Node's `{redisUrl, prefix,
/// requestTimeout, redisCluster}` (ms) or Python's `redis_url`, `prefix`,
/// `request_timeout` (seconds), `redis_cluster`.
///
/// # Errors
/// [`EmbedError::InvalidArgument`] naming the first bad option.
#[cfg(feature = "redis")]
pub fn redis_options_from_json(json: &str, dialect: Dialect) -> Result<super::RedisOptions, EmbedError> {
    let mut holder = Value::Null;
    let r = Reader::parse(json, dialect, &mut holder)?;
    let url_name = r.name("redisUrl", "redis_url");
    let url = r.string(url_name)?.filter(|u| !u.is_empty());
    let url = url.ok_or_else(|| invalid(format!("{url_name} must be a redis:// URL")))?;
    let cluster = match r.get(r.name("redisCluster", "redis_cluster")) {
        None | Some(Value::Null) => false,
        Some(v) => v.as_bool().unwrap_or(true),
    };
    Ok(super::RedisOptions {
        url,
        prefix: r.string("prefix")?,
        request_timeout_ms: r.duration_ms("requestTimeout", "request_timeout", true)?,
        cluster,
    })
}

/// An event's limits: Node's `{maxBytes, schema}`, Python's `max_bytes`,
/// `schema`: a positive size in bytes (the packet with its attachments)
/// and a JSON Schema of the event's first argument.
///
/// # Errors
/// [`EmbedError::InvalidArgument`] naming the first bad option.
pub fn event_rule_from_json(json: &str, dialect: Dialect) -> Result<EventRule, EmbedError> {
    let mut holder = Value::Null;
    let r = Reader::parse(json, dialect, &mut holder)?;
    let mut rule = EventRule::new();
    let max_bytes = r.name("maxBytes", "max_bytes");
    if let Some(n) = r.integer(max_bytes, 1, u64::MAX, "a positive integer")? {
        rule = rule.max_bytes(usize::try_from(n).unwrap_or(usize::MAX));
    }
    if let Some(schema) = r.get("schema") {
        rule = rule.validator(JsonSchema::first_arg(schema).map_err(|e| invalid(format!("schema: {e}")))?);
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: &str, dialect: Dialect) -> String {
        let e = EmbedOptions::from_json(json, dialect).unwrap_err();
        assert_eq!(e.code().as_str(), "ERR_INVALID_ARG");
        e.to_string()
    }

    #[test]
    fn node_options() {
        let o = EmbedOptions::from_json(
            r#"{"port":3000,"pingInterval":100,"cors":{"origin":["http://a"]},"limits":{"rateSocket":"off"},
                "connectionStateRecovery":{},"onError":null}"#,
            Dialect::Node,
        )
        .unwrap();
        assert_eq!((o.port, o.ping_interval_ms, o.recovery_ms), (Some(3000), Some(100), Some(120_000)));
        assert_eq!(o.cors_origins, ["http://a"]);
        assert_eq!(o.limits.as_deref(), Some(r#"{"rateSocket":"off"}"#));
        assert!(EmbedOptions::from_json(r#"{"cors":null}"#, Dialect::Node).is_ok());
        assert!(EmbedOptions::from_json("{}", Dialect::Node).unwrap().recovery_ms.is_none());
    }

    #[test]
    fn node_errors_name_the_option() {
        assert_eq!(message(r#"{"port":70000}"#, Dialect::Node), "port must be an integer 0-65535");
        assert_eq!(message(r#"{"pingInterval":-1}"#, Dialect::Node), "pingInterval must be a non-negative integer");
        assert_eq!(message(r#"{"pingTimeout":null}"#, Dialect::Node), "pingTimeout must be a non-negative integer");
        assert_eq!(
            message(r#"{"connectTimeout":1.5}"#, Dialect::Node),
            "connectTimeout must be a non-negative integer"
        );
        assert_eq!(message(r#"{"maxPayload":0}"#, Dialect::Node), "maxPayload must be a positive integer");
        assert_eq!(message(r#"{"host":1}"#, Dialect::Node), "host must be a string");
        assert_eq!(message(r#"{"cors":{"origin":"x"}}"#, Dialect::Node), "cors.origin must be an array of strings");
        assert_eq!(message(r#"{"limits":"x"}"#, Dialect::Node), "limits must be an object");
        assert_eq!(
            message(r#"{"connectionStateRecovery":{"maxDisconnectionDuration":-1}}"#, Dialect::Node),
            "connectionStateRecovery.maxDisconnectionDuration must be a positive integer"
        );
        assert_eq!(message("5", Dialect::Node), "options must be an object");
    }

    #[test]
    fn python_options_are_seconds_and_none_is_default() {
        let o = EmbedOptions::from_json(
            r#"{"host":null,"port":null,"ping_interval":0.25,"recovery":2,"cors_origins":["x"],"max_payload":null}"#,
            Dialect::Python,
        )
        .unwrap();
        assert_eq!((o.ping_interval_ms, o.recovery_ms, o.port, o.max_payload), (Some(250), Some(2000), None, None));
        assert_eq!(o.cors_origins, ["x"]);
        assert_eq!(
            message(r#"{"ping_interval":-1}"#, Dialect::Python),
            "ping_interval must be a non-negative number of seconds"
        );
        assert_eq!(
            message(r#"{"connect_timeout":true}"#, Dialect::Python),
            "connect_timeout must be a non-negative number of seconds"
        );
        assert_eq!(message(r#"{"port":70000}"#, Dialect::Python), "port must be an integer 0-65535");
        assert_eq!(message(r#"{"max_payload":-3}"#, Dialect::Python), "max_payload must be a positive integer");
        assert_eq!(message(r#"{"cors_origins":[1]}"#, Dialect::Python), "cors_origins must be an array of strings");
        let o = EmbedOptions::from_json(r#"{"transports":["websocket"]}"#, Dialect::Python).unwrap();
        assert_eq!(o.transports, Some((false, true)));
        assert_eq!(
            message(r#"{"transports":["polling","carrier pigeon"]}"#, Dialect::Python),
            r#"transports: unknown transport "carrier pigeon" (polling, websocket)"#
        );
        assert_eq!(message(r#"{"transports":[]}"#, Dialect::Python), "transports must name at least one transport");
    }

    #[test]
    fn drain_and_event_options() {
        assert!(drain_options_from_json(r#"{"batchSize":2,"ackDeadline":10}"#, Dialect::Node).is_ok());
        let e = drain_options_from_json(r#"{"batch_interval":-1}"#, Dialect::Python).unwrap_err();
        assert_eq!(e.to_string(), "batch_interval must be a non-negative number of seconds");
        assert!(event_rule_from_json(r#"{"maxBytes":10,"schema":{"type":"string"}}"#, Dialect::Node).is_ok());
        let e = event_rule_from_json(r#"{"max_bytes":0}"#, Dialect::Python).unwrap_err();
        assert_eq!(e.to_string(), "max_bytes must be a positive integer");
        let e = event_rule_from_json(r#"{"schema":{"type":12}}"#, Dialect::Node).unwrap_err();
        assert!(e.to_string().starts_with("schema: "), "{e}");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn cluster_options() {
        let o = redis_options_from_json(r#"{"redis_url":"redis://x","request_timeout":1.5}"#, Dialect::Python).unwrap();
        assert_eq!((o.url.as_str(), o.request_timeout_ms, o.cluster), ("redis://x", Some(1500), false));
        let e = redis_options_from_json("{}", Dialect::Node).unwrap_err();
        assert_eq!(e.to_string(), "redisUrl must be a redis:// URL");
        let e = redis_options_from_json(r#"{"redisUrl":"r","requestTimeout":0}"#, Dialect::Node).unwrap_err();
        assert_eq!(e.to_string(), "requestTimeout must be a positive integer");
    }
}

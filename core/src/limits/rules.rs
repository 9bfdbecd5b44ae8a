//! Per-event payload rules: size caps and validators ([`EventRule`],
//! [`PayloadValidator`], [`JsonSchema`]).

use std::sync::Arc;

/// Checks an event's arguments before its handler sees them.
///
/// Implemented by [`JsonSchema`]; an application may implement it for any
/// other check. Called on the socket's reading path: keep it quick.
pub trait PayloadValidator: Send + Sync + 'static {
    /// Checks `args`, the event's arguments as a JSON array (binary
    /// attachments appear as `{"_placeholder": true, "num": i}`).
    ///
    /// # Errors
    /// A message for the client saying what is wrong.
    fn validate(&self, args: &serde_json::Value) -> Result<(), String>;
}

/// A [`PayloadValidator`] from a JSON Schema (drafts 4 to 2020-12, through
/// the `jsonschema` crate; no remote references are fetched).
///
/// # Examples
/// ```
/// use serde_json::json;
/// use tidewire::limits::{JsonSchema, PayloadValidator};
/// let message = JsonSchema::first_arg(&json!({
///     "type": "object",
///     "properties": { "roomId": { "type": "string" }, "text": { "type": "string", "maxLength": 2000 } },
///     "required": ["roomId", "text"],
/// }))
/// .unwrap();
/// assert!(message.validate(&json!([{ "roomId": "r1", "text": "hi" }])).is_ok());
/// assert!(message.validate(&json!([{ "roomId": "r1" }])).is_err());
/// assert!(message.validate(&json!([])).is_err());
/// ```
pub struct JsonSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchema").finish_non_exhaustive()
    }
}

/// A schema that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON schema: {0}")]
pub struct SchemaError(String);

impl JsonSchema {
    /// A validator of the whole arguments array against `schema`.
    ///
    /// # Errors
    /// [`SchemaError`] when `schema` is not a valid schema.
    pub fn args(schema: &serde_json::Value) -> Result<JsonSchema, SchemaError> {
        let validator = jsonschema::validator_for(schema).map_err(|e| SchemaError(e.to_string()))?;
        Ok(JsonSchema { validator })
    }

    /// A validator of events that carry exactly one argument matching
    /// `schema` (the common case: one object per event).
    ///
    /// # Errors
    /// [`SchemaError`] when `schema` is not a valid schema.
    pub fn first_arg(schema: &serde_json::Value) -> Result<JsonSchema, SchemaError> {
        JsonSchema::args(&serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "prefixItems": [schema],
        }))
    }
}

impl PayloadValidator for JsonSchema {
    fn validate(&self, args: &serde_json::Value) -> Result<(), String> {
        self.validator.validate(args).map_err(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() { e.to_string() } else { format!("{path}: {e}") }
        })
    }
}

/// Limits on one event: its size and a validator of its arguments. Set on
/// a namespace with [`Namespace::limit_event`](crate::hub::Namespace::limit_event).
#[derive(Clone, Default)]
pub struct EventRule {
    /// The largest accepted packet, attachments included, in bytes.
    pub max_bytes: Option<usize>,
    /// Checks the arguments.
    pub validator: Option<Arc<dyn PayloadValidator>>,
}

impl std::fmt::Debug for EventRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRule")
            .field("max_bytes", &self.max_bytes)
            .field("validator", &self.validator.is_some())
            .finish()
    }
}

impl EventRule {
    /// No limit yet.
    pub fn new() -> EventRule {
        EventRule::default()
    }

    /// Sets [`max_bytes`](Self::max_bytes).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Sets the [`validator`](Self::validator).
    pub fn validator(mut self, validator: impl PayloadValidator) -> Self {
        self.validator = Some(Arc::new(validator));
        self
    }
}

//! Event arguments as Rust values: what an `emit` or an ack takes
//! ([`IntoPayload`]) and how a handler reads what it got ([`Payload::arg`],
//! [`Payload::args_as`]).
//!
//! # Sending
//! Every `emit` and every ack answer takes `impl IntoPayload`. How many
//! arguments a value makes follows its serde shape, as in socketioxide:
//!
//! | value                                   | arguments                    |
//! |-----------------------------------------|------------------------------|
//! | `()`                                    | none                         |
//! | a tuple `(a, b, ..)` (any length)       | one per element              |
//! | any other [`Serialize`] value, or `&T`  | one                          |
//! | a [`Payload`]                           | as is (JSON + attachments)   |
//!
//! So `emit("move", (x, y))` is `socket.on("move", (x, y) => ..)` in
//! JavaScript, and `emit("msg", &message)` is one object. Fixed-size arrays
//! are tuples to serde: `[a, b]` is two arguments too; send one array as a
//! `Vec`, a slice or a one-element tuple `([a, b],)`.
//!
//! An argument (alone, or a tuple element, or inside `Some`) that serializes
//! as bytes — [`bytes::Bytes`], `serde_bytes::ByteBuf` — travels as a binary
//! attachment (a BINARY_EVENT / BINARY_ACK; the client gets a `Buffer`).
//! Its bytes are copied once; build a [`Payload`] with
//! [`Payload::push_binary`] to share a buffer without copying, or to put
//! binary data inside an object. `Vec<u8>` is a sequence of numbers to serde,
//! hence a JSON array.
//!
//! # Receiving
//! [`Payload::arg`] reads one argument as any [`Deserialize`] type,
//! [`Payload::args_as`] the leading arguments as a tuple. A missing
//! argument is `None` for an `Option` and an [`ArgError::Missing`] for
//! anything else; extra arguments are ignored, as in JavaScript. A binary
//! argument reads as [`bytes::Bytes`] (or any type that takes bytes).
//!
//! # Examples
//! ```
//! use tidewire::protocol::args::IntoPayload;
//! use tidewire::protocol::socketio::Payload;
//! let two = ("room:1", 42).into_payload().unwrap();
//! assert_eq!(two, Payload::json(vec!["room:1".into(), 42.into()]));
//! assert_eq!(().into_payload().unwrap(), Payload::default());
//! let one = serde_json::json!({"text": "hi"}).into_payload().unwrap();
//! assert_eq!(one.data.len(), 1);
//! let (room, n): (String, u32) = two.args_as().unwrap();
//! assert_eq!((room.as_str(), n), ("room:1", 42));
//! ```

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{self, Serialize, Serializer};
use serde_json::Value;

use super::socketio::Payload;

/// Values that can be sent as event or ack arguments; see the
/// [module docs](self) for which value makes how many arguments.
///
/// # Examples
/// ```
/// use bytes::Bytes;
/// use tidewire::protocol::args::IntoPayload;
/// #[derive(serde::Serialize)]
/// struct Message { text: String }
/// let p = (Message { text: "hi".into() }, Bytes::from_static(b"\x00\x01")).into_payload().unwrap();
/// assert_eq!(p.data[0], serde_json::json!({"text": "hi"}));
/// assert_eq!(p.data[1], serde_json::json!({"_placeholder": true, "num": 0}));
/// assert_eq!(p.attachments, vec![Bytes::from_static(b"\x00\x01")]);
/// ```
pub trait IntoPayload {
    /// The arguments.
    ///
    /// # Errors
    /// [`EncodeError`] when the value cannot be serialized (a map with
    /// non-string keys, a failing `Serialize` impl).
    fn into_payload(self) -> Result<Payload, EncodeError>;
}

impl IntoPayload for Payload {
    fn into_payload(self) -> Result<Payload, EncodeError> {
        Ok(self)
    }
}

impl<T: Serialize> IntoPayload for T {
    fn into_payload(self) -> Result<Payload, EncodeError> {
        let mut payload = Payload::default();
        // Only `()` itself (zero-sized) is "no arguments": a `Value::Null`
        // also serializes as unit, and is one `null` argument.
        let unit_is_empty = std::mem::size_of::<T>() == 0;
        self.serialize(TopLevel { payload: &mut payload, unit_is_empty })
            .map_err(|e| EncodeError { message: e.to_string() })?;
        Ok(payload)
    }
}

/// Arguments that could not be serialized; nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("arguments cannot be serialized: {message}")]
pub struct EncodeError {
    message: String,
}

impl EncodeError {
    /// What serde said.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Why an argument could not be read.
///
/// # Examples
/// ```
/// use tidewire::protocol::args::ArgError;
/// use tidewire::protocol::socketio::Payload;
/// let p = Payload::json(vec!["lobby".into()]);
/// assert_eq!(p.arg::<u32>(1), Err(ArgError::Missing { index: 1 }));
/// let err = p.arg::<u32>(0).unwrap_err();
/// assert_eq!(err.index(), 0);
/// assert_eq!(err.to_string(), "argument 0 is invalid: invalid type: string \"lobby\", expected u32");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgError {
    /// The client sent fewer arguments.
    #[error("argument {index} is missing")]
    Missing {
        /// The argument's position (0 is the first after the event name).
        index: usize,
    },
    /// The argument does not have the expected type or shape.
    #[error("argument {index} is invalid: {message}")]
    Invalid {
        /// The argument's position.
        index: usize,
        /// What serde said.
        message: String,
    },
}

impl ArgError {
    /// The position of the argument in question.
    pub fn index(&self) -> usize {
        match self {
            ArgError::Missing { index } | ArgError::Invalid { index, .. } => *index,
        }
    }
}

impl Payload {
    /// Argument `index` as a `T` (which may borrow from the payload, e.g.
    /// `&str`). A missing argument is `None` for an `Option`; a binary one
    /// reads as [`Bytes`].
    ///
    /// # Examples
    /// ```
    /// use serde_json::json;
    /// use tidewire::protocol::socketio::Payload;
    /// let p = Payload::json(vec![json!({"roomId": "1", "text": "hi"})]);
    /// #[derive(serde::Deserialize)]
    /// #[serde(rename_all = "camelCase")]
    /// struct Message { room_id: String, text: String }
    /// let m: Message = p.arg(0).unwrap();
    /// assert_eq!((m.room_id.as_str(), m.text.as_str()), ("1", "hi"));
    /// assert_eq!(p.arg::<Option<u32>>(1), Ok(None));
    /// ```
    ///
    /// # Errors
    /// [`ArgError::Missing`] or [`ArgError::Invalid`].
    pub fn arg<'a, T: Deserialize<'a>>(&'a self, index: usize) -> Result<T, ArgError> {
        let Some(value) = self.data.get(index) else {
            return T::deserialize(Missing).map_err(|_: de::value::Error| ArgError::Missing { index });
        };
        if let Some(binary) = self.attachment_of(value)
            && let Ok(v) = T::deserialize(Binary(binary))
        {
            return Ok(v);
        }
        T::deserialize(value).map_err(|e| ArgError::Invalid { index, message: e.to_string() })
    }

    /// The leading arguments as a tuple, `()` for none; extra arguments are
    /// ignored.
    ///
    /// # Examples
    /// ```
    /// use tidewire::protocol::socketio::Payload;
    /// let p = Payload::json(vec![3.into(), 4.into(), "extra".into()]);
    /// let (x, y): (i32, i32) = p.args_as().unwrap();
    /// assert_eq!(x * y, 12);
    /// ```
    ///
    /// # Errors
    /// The [`ArgError`] of the first argument that cannot be read.
    pub fn args_as<'a, T: FromArgs<'a>>(&'a self) -> Result<T, ArgError> {
        T::from_args(self)
    }

    /// The attachment `value` stands for, when it is a placeholder.
    fn attachment_of(&self, value: &Value) -> Option<&Bytes> {
        let map = value.as_object()?;
        if map.len() != 2 || map.get("_placeholder") != Some(&Value::Bool(true)) {
            return None;
        }
        self.attachments.get(usize::try_from(map.get("num")?.as_u64()?).ok()?)
    }
}

/// A tuple of arguments read at once by [`Payload::args_as`]; implemented
/// for `()` and tuples of up to 8 [`Deserialize`] types.
pub trait FromArgs<'a>: Sized {
    /// Reads the leading arguments of `payload`.
    ///
    /// # Errors
    /// The [`ArgError`] of the first argument that cannot be read.
    fn from_args(payload: &'a Payload) -> Result<Self, ArgError>;
}

impl FromArgs<'_> for () {
    fn from_args(_: &Payload) -> Result<(), ArgError> {
        Ok(())
    }
}

macro_rules! from_args_tuple {
    ($($t:ident $i:tt),+) => {
        impl<'a, $($t: Deserialize<'a>),+> FromArgs<'a> for ($($t,)+) {
            fn from_args(payload: &'a Payload) -> Result<Self, ArgError> {
                Ok(($(payload.arg::<$t>($i)?,)+))
            }
        }
    };
}

from_args_tuple!(A 0);
from_args_tuple!(A 0, B 1);
from_args_tuple!(A 0, B 1, C 2);
from_args_tuple!(A 0, B 1, C 2, D 3);
from_args_tuple!(A 0, B 1, C 2, D 3, E 4);
from_args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
from_args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
from_args_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

// --- reading ----------------------------------------------------------------

/// An argument the client did not send: `None` to an `Option`, an error to
/// anything else.
struct Missing;

impl<'de> Deserializer<'de> for Missing {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("missing"))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_none()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// A binary argument, offered only to types that take bytes (a `String`
/// does not get valid UTF-8 binary data as text).
struct Binary<'a>(&'a [u8]);

macro_rules! refuse_binary {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("binary data"))
        }
    )*};
}

impl<'de> Deserializer<'de> for Binary<'de> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_bytes(self.0)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_bytes(self.0)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_bytes(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("binary data"))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("binary data"))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("binary data"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("binary data"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("binary data"))
    }

    refuse_binary! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128 deserialize_f32
        deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_unit deserialize_seq
        deserialize_map deserialize_identifier deserialize_ignored_any
    }
}

// --- writing ----------------------------------------------------------------

use serde_json::value::Serializer as Json;
type Error = serde_json::Error;

/// The value given to an emit: decides how many arguments it makes.
struct TopLevel<'a> {
    payload: &'a mut Payload,
    unit_is_empty: bool,
}

impl<'a> TopLevel<'a> {
    fn push(self, f: impl FnOnce(Arg<'_>) -> Result<Value, Error>) -> Result<(), Error> {
        let value = f(Arg { attachments: &mut self.payload.attachments })?;
        self.payload.data.push(value);
        Ok(())
    }
}

/// One argument: JSON, except that bytes become an attachment.
struct Arg<'a> {
    attachments: &'a mut Vec<Bytes>,
}

macro_rules! forward_one {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method(self, $($arg: $ty),*) -> Result<(), Error> {
            self.push(|a| a.$method($($arg),*))
        }
    )*};
}

impl<'a> Serializer for TopLevel<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Push<'a, <Json as Serializer>::SerializeSeq>;
    type SerializeTuple = Elements<'a>;
    type SerializeTupleStruct = Push<'a, <Json as Serializer>::SerializeTupleStruct>;
    type SerializeTupleVariant = Push<'a, <Json as Serializer>::SerializeTupleVariant>;
    type SerializeMap = Push<'a, <Json as Serializer>::SerializeMap>;
    type SerializeStruct = Push<'a, <Json as Serializer>::SerializeStruct>;
    type SerializeStructVariant = Push<'a, <Json as Serializer>::SerializeStructVariant>;

    forward_one! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_unit(self) -> Result<(), Error> {
        if self.unit_is_empty { Ok(()) } else { self.push(|a| a.serialize_unit()) }
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Error> {
        self.push(|a| a.serialize_some(value))
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, name: &'static str, value: &T) -> Result<(), Error> {
        self.push(|a| a.serialize_newtype_struct(name, value))
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.push(|a| a.serialize_newtype_variant(name, index, variant, value))
    }

    fn serialize_tuple(self, len: usize) -> Result<Elements<'a>, Error> {
        self.payload.data.reserve(len);
        Ok(Elements { payload: self.payload })
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Ok(Push { inner: Json.serialize_seq(len)?, data: &mut self.payload.data })
    }

    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeTupleStruct, Error> {
        Ok(Push { inner: Json.serialize_tuple_struct(name, len)?, data: &mut self.payload.data })
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Ok(Push { inner: Json.serialize_tuple_variant(name, index, variant, len)?, data: &mut self.payload.data })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Ok(Push { inner: Json.serialize_map(len)?, data: &mut self.payload.data })
    }

    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct, Error> {
        Ok(Push { inner: Json.serialize_struct(name, len)?, data: &mut self.payload.data })
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Ok(Push { inner: Json.serialize_struct_variant(name, index, variant, len)?, data: &mut self.payload.data })
    }
}

/// The elements of a top-level tuple: one argument each.
struct Elements<'a> {
    payload: &'a mut Payload,
}

impl ser::SerializeTuple for Elements<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        let value = value.serialize(Arg { attachments: &mut self.payload.attachments })?;
        self.payload.data.push(value);
        Ok(())
    }

    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

/// A compound value serialized by serde_json, pushed as one argument.
struct Push<'a, S> {
    inner: S,
    data: &'a mut Vec<Value>,
}

/// `Push` forwards each compound serializer of its inner one and pushes the
/// finished value: one impl per serde trait, the same body.
macro_rules! push_compound {
    ($($trait:ident :: $method:ident($($key:ident: $key_ty:ty),*);)*) => {$(
        impl<S: ser::$trait<Ok = Value, Error = Error>> ser::$trait for Push<'_, S> {
            type Ok = ();
            type Error = Error;
            fn $method<T: ?Sized + Serialize>(&mut self, $($key: $key_ty,)* value: &T) -> Result<(), Error> {
                self.inner.$method($($key,)* value)
            }
            fn end(self) -> Result<(), Error> {
                self.data.push(self.inner.end()?);
                Ok(())
            }
        }
    )*};
}

push_compound! {
    SerializeSeq::serialize_element();
    SerializeTupleStruct::serialize_field();
    SerializeTupleVariant::serialize_field();
    SerializeStruct::serialize_field(key: &'static str);
    SerializeStructVariant::serialize_field(key: &'static str);
}

impl<S: ser::SerializeMap<Ok = Value, Error = Error>> ser::SerializeMap for Push<'_, S> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Error> {
        self.inner.serialize_key(key)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.inner.serialize_value(value)
    }
    fn end(self) -> Result<(), Error> {
        self.data.push(self.inner.end()?);
        Ok(())
    }
}

macro_rules! forward_json {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method(self, $($arg: $ty),*) -> Result<Value, Error> {
            Json.$method($($arg),*)
        }
    )*};
}

impl Serializer for Arg<'_> {
    type Ok = Value;
    type Error = Error;
    type SerializeSeq = <Json as Serializer>::SerializeSeq;
    type SerializeTuple = <Json as Serializer>::SerializeTuple;
    type SerializeTupleStruct = <Json as Serializer>::SerializeTupleStruct;
    type SerializeTupleVariant = <Json as Serializer>::SerializeTupleVariant;
    type SerializeMap = <Json as Serializer>::SerializeMap;
    type SerializeStruct = <Json as Serializer>::SerializeStruct;
    type SerializeStructVariant = <Json as Serializer>::SerializeStructVariant;

    forward_json! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_f32(v: f32);
        serialize_f64(v: f64);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Json.serialize_seq(len)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, Error> {
        Json.serialize_tuple(len)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Json.serialize_map(len)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<Value, Error> {
        let placeholder = Payload::placeholder(self.attachments.len());
        self.attachments.push(Bytes::copy_from_slice(v));
        Ok(placeholder)
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<Value, Error> {
        value.serialize(self)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(self, _name: &'static str, value: &T) -> Result<Value, Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, Error> {
        Json.serialize_newtype_variant(name, index, variant, value)
    }

    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeTupleStruct, Error> {
        Json.serialize_tuple_struct(name, len)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Json.serialize_tuple_variant(name, index, variant, len)
    }

    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct, Error> {
        Json.serialize_struct(name, len)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Json.serialize_struct_variant(name, index, variant, len)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn args(p: &Payload) -> Value {
        Value::Array(p.data.clone())
    }

    #[test]
    fn unit_is_no_argument_and_null_is_one() {
        assert_eq!(().into_payload().unwrap(), Payload::default());
        assert_eq!(args(&Value::Null.into_payload().unwrap()), json!([null]));
        assert_eq!(args(&None::<u8>.into_payload().unwrap()), json!([null]));
        assert_eq!(args(&(Value::Null,).into_payload().unwrap()), json!([null]));
    }

    #[test]
    fn a_tuple_is_several_arguments_anything_else_one() {
        assert_eq!(args(&(1, "a", true).into_payload().unwrap()), json!([1, "a", true]));
        assert_eq!(args(&(json!({"k": 1}),).into_payload().unwrap()), json!([{"k": 1}]));
        assert_eq!(args(&"solo".into_payload().unwrap()), json!(["solo"]));
        assert_eq!(args(&vec![1, 2].into_payload().unwrap()), json!([[1, 2]]), "a Vec is one array");
        assert_eq!(args(&(&[1, 2][..]).into_payload().unwrap()), json!([[1, 2]]), "so is a slice");
        assert_eq!(args(&([1, 2],).into_payload().unwrap()), json!([[1, 2]]));
        assert_eq!(args(&[1, 2].into_payload().unwrap()), json!([1, 2]), "serde: arrays are tuples");
        assert_eq!(args(&json!([1, 2]).into_payload().unwrap()), json!([[1, 2]]), "a JSON array is one");
        let map: BTreeMap<&str, u8> = [("a", 1)].into();
        assert_eq!(args(&(&map).into_payload().unwrap()), json!([{"a": 1}]));
        let nested = (("x", 1), Some(2));
        assert_eq!(args(&nested.into_payload().unwrap()), json!([["x", 1], 2]), "only the outer tuple spreads");
    }

    #[test]
    fn structs_and_enums_are_one_argument() {
        #[derive(serde::Serialize)]
        struct Msg<'a> {
            text: &'a str,
        }
        #[derive(serde::Serialize)]
        struct Pair(u8, u8);
        #[derive(serde::Serialize)]
        struct Id(u32);
        #[derive(serde::Serialize)]
        enum E {
            Unit,
            New(u8),
            Tup(u8, u8),
            Rec { a: u8 },
        }
        assert_eq!(args(&Msg { text: "hi" }.into_payload().unwrap()), json!([{"text": "hi"}]));
        assert_eq!(args(&Pair(1, 2).into_payload().unwrap()), json!([[1, 2]]));
        assert_eq!(args(&Id(7).into_payload().unwrap()), json!([7]));
        let all = (E::Unit, E::New(1), E::Tup(1, 2), E::Rec { a: 3 });
        assert_eq!(args(&all.into_payload().unwrap()), json!(["Unit", {"New": 1}, {"Tup": [1, 2]}, {"Rec": {"a": 3}}]));
        assert_eq!(args(&E::Rec { a: 3 }.into_payload().unwrap()), json!([{"Rec": {"a": 3}}]));
    }

    #[test]
    fn bytes_become_attachments() {
        let bin = Bytes::from_static(b"\x01\x02");
        let p = bin.clone().into_payload().unwrap();
        assert_eq!(args(&p), json!([{"_placeholder": true, "num": 0}]));
        assert_eq!(p.attachments, vec![bin.clone()]);
        let p = ("meta", bin.clone(), Some(bin.clone()), None::<Bytes>).into_payload().unwrap();
        assert_eq!(args(&p), json!(["meta", {"_placeholder": true, "num": 0}, {"_placeholder": true, "num": 1}, null]));
        assert_eq!(p.attachments.len(), 2);
        assert_eq!(args(&vec![1u8, 2].into_payload().unwrap()), json!([[1, 2]]), "Vec<u8> is numbers");
    }

    #[test]
    fn a_payload_goes_as_is_and_failures_are_errors() {
        let mut p = Payload::json(vec![json!(1)]);
        p.push_binary(Bytes::from_static(b"x"));
        assert_eq!(p.clone().into_payload().unwrap(), p);
        let bad: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        let err = bad.into_payload().unwrap_err();
        assert!(err.message().contains("key must be a string"), "{err}");
        assert!(err.to_string().starts_with("arguments cannot be serialized"));
    }

    #[test]
    fn reading_arguments() {
        let mut p = Payload::json(vec![json!("lobby"), json!({"n": 2}), json!(null)]);
        p.push_binary(Bytes::from_static(b"\xff\x00"));
        assert_eq!(p.arg::<&str>(0), Ok("lobby"), "borrowed");
        assert_eq!(p.arg::<String>(0), Ok("lobby".to_owned()));
        assert_eq!(p.arg::<Value>(1), Ok(json!({"n": 2})));
        assert_eq!(p.arg::<Option<u8>>(2), Ok(None));
        assert_eq!(p.arg::<Option<u8>>(9), Ok(None), "missing is None to an Option");
        assert_eq!(p.arg::<Value>(9), Err(ArgError::Missing { index: 9 }));
        assert_eq!(p.arg::<()>(9), Err(ArgError::Missing { index: 9 }));
        assert_eq!(p.arg::<Bytes>(3), Ok(Bytes::from_static(b"\xff\x00")));
        assert_eq!(p.arg::<Option<Bytes>>(3), Ok(Some(Bytes::from_static(b"\xff\x00"))));
        assert_eq!(p.arg::<Value>(3), Ok(json!({"_placeholder": true, "num": 0})), "JSON sees the placeholder");
        assert!(matches!(p.arg::<String>(3), Err(ArgError::Invalid { index: 3, .. })), "binary is not text");
        let err = p.arg::<u32>(1).unwrap_err();
        assert_eq!(err, ArgError::Invalid { index: 1, message: "invalid type: map, expected u32".into() });

        let (room, obj): (String, Value) = p.args_as().unwrap();
        assert_eq!((room.as_str(), obj), ("lobby", json!({"n": 2})));
        assert_eq!(p.args_as::<()>(), Ok(()));
        assert_eq!(
            p.args_as::<(String, u8)>(),
            Err(ArgError::Invalid { index: 1, message: "invalid type: map, expected u8".into() })
        );
        let empty = Payload::default();
        assert_eq!(empty.args_as::<(String,)>(), Err(ArgError::Missing { index: 0 }));
        assert_eq!(ArgError::Missing { index: 0 }.to_string(), "argument 0 is missing");
    }

    #[test]
    fn a_forged_placeholder_is_plain_json() {
        let p = Payload::json(vec![json!({"_placeholder": true, "num": 5})]);
        assert_eq!(p.arg::<Value>(0), Ok(json!({"_placeholder": true, "num": 5})));
        assert!(p.arg::<Bytes>(0).is_err());
    }

    #[test]
    fn round_trip_through_the_codec() {
        use crate::protocol::socketio::Packet;
        let payload = ("hi", Bytes::from_static(b"\x01")).into_payload().unwrap();
        let packet = Packet::event("/", "e", payload, None);
        assert_eq!(packet.packet_type(), crate::protocol::socketio::PacketType::BinaryEvent);
    }
}

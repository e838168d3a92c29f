//! Value encodings: how a typed view turns values into bytes and back.
//!
//! | codec | bytes | interop |
//! | --- | --- | --- |
//! | [`Json`] (the default) | `serde_json`'s compact output | what rave-level writes with `valueEncoding: 'json'` (see below) |
//! | [`MsgPack`] | MessagePack (`rmp-serde`, structs as maps with field names) | any MessagePack reader |
//! | [`Raw`] | the bytes as they are (`Vec<u8>` values) | Level's `buffer`/`view` |
//!
//! # JSON and `JSON.stringify`
//!
//! For strings, integers up to 2^53, booleans, `null`, arrays, structs and maps whose keys are
//! strings, the bytes are those of JavaScript's `JSON.stringify` of the same value (the same
//! escapes: `"`, `\`, and control characters as `\b \f \n \r \t` or `\u00xx`), so a Node program
//! using rave-level with `valueEncoding: 'json'` reads them, and they read its values. They
//! differ where JavaScript and Rust differ:
//!
//! - a float with no fraction: Rust `1.0f64` is `1.0`, JavaScript writes `1`; exponents: Rust
//!   `1e21`, JavaScript `1e+21` (both decode either way);
//! - NaN and infinities are `null` in both, and do not decode back into a float;
//! - an object's key order is its fields' declaration order (a `HashMap`'s is unspecified),
//!   JavaScript's is insertion order;
//! - integers beyond 2^53 are exact in Rust and rounded by JavaScript.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// An encoding of values of type `V` as bytes.
///
/// ```
/// use rave::view::{Codec, Json};
/// let bytes = <Json as Codec<Vec<u32>>>::encode(&vec![1, 2]).unwrap();
/// assert_eq!(bytes, b"[1,2]");
/// assert_eq!(<Json as Codec<Vec<u32>>>::decode(&bytes).unwrap(), vec![1, 2]);
/// ```
pub trait Codec<V>: Send + Sync + 'static {
    /// The bytes of `value`.
    fn encode(value: &V) -> Result<Vec<u8>>;

    /// The value of `bytes`; bytes that are not a `V` in this encoding are
    /// [`Error::InvalidArgument`] (the view's type or codec does not match the stored data).
    fn decode(bytes: &[u8]) -> Result<V>;
}

/// JSON, as `serde_json` writes it (compact): the default codec of a typed view.
///
/// ```
/// use rave::view::{Codec, Json};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct User { name: String, age: u8 }
/// let bytes = Json::encode(&User { name: "Ada".into(), age: 36 }).unwrap();
/// assert_eq!(bytes, br#"{"name":"Ada","age":36}"#);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl<V: Serialize + DeserializeOwned> Codec<V> for Json {
    fn encode(value: &V) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| Error::invalid(format!("encode as JSON: {e}")))
    }

    fn decode(bytes: &[u8]) -> Result<V> {
        serde_json::from_slice(bytes).map_err(|e| Error::invalid(format!("decode JSON: {e}")))
    }
}

/// MessagePack (`rmp-serde`), structs written as maps with their field names, so fields may
/// be added or reordered later.
///
/// ```
/// use rave::view::{Codec, MsgPack};
/// let bytes = MsgPack::encode(&(1u8, "a".to_string())).unwrap();
/// assert_eq!(bytes, [0x92, 0x01, 0xa1, b'a']);
/// assert_eq!(<MsgPack as Codec<(u8, String)>>::decode(&bytes).unwrap(), (1, "a".into()));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MsgPack;

impl<V: Serialize + DeserializeOwned> Codec<V> for MsgPack {
    fn encode(value: &V) -> Result<Vec<u8>> {
        rmp_serde::to_vec_named(value)
            .map_err(|e| Error::invalid(format!("encode as MessagePack: {e}")))
    }

    fn decode(bytes: &[u8]) -> Result<V> {
        rmp_serde::from_slice(bytes).map_err(|e| Error::invalid(format!("decode MessagePack: {e}")))
    }
}

/// The bytes as they are: values are `Vec<u8>`.
///
/// ```
/// use rave::view::{Codec, Raw};
/// assert_eq!(Raw::encode(&vec![0, 255]).unwrap(), vec![0, 255]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Raw;

impl Codec<Vec<u8>> for Raw {
    fn encode(value: &Vec<u8>) -> Result<Vec<u8>> {
        Ok(value.clone())
    }

    fn decode(bytes: &[u8]) -> Result<Vec<u8>> {
        Ok(bytes.to_vec())
    }
}

/// Names a codec and a value type together, for `PhantomData` in the views (so a view is
/// `Send + Sync` whatever `V` is).
pub(crate) type Marker<K, V, C> = PhantomData<fn() -> (K, V, C)>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes `JSON.stringify` produces for the same values (checked with node 20: `node -e "console.log(JSON.stringify(v))"`).
    #[test]
    fn json_bytes_are_those_of_json_stringify() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (serde_json::json!("from node"), r#""from node""#),
            (
                serde_json::json!({"a": [1, true, null], "b": "x"}),
                r#"{"a":[1,true,null],"b":"x"}"#,
            ),
            (
                serde_json::json!("q\"\\\n\t\u{1}\u{1f}é€😀"),
                "\"q\\\"\\\\\\n\\t\\u0001\\u001fé€😀\"",
            ),
            (serde_json::json!(-12.5), "-12.5"),
            (serde_json::json!(9007199254740991i64), "9007199254740991"),
        ];
        for (value, js) in cases {
            assert_eq!(
                String::from_utf8(Json::encode(&value).unwrap()).unwrap(),
                js
            );
            let back: serde_json::Value = Json::decode(js.as_bytes()).unwrap();
            assert_eq!(back, value);
        }
        // The documented differences.
        assert_eq!(Json::encode(&1.0f64).unwrap(), b"1.0");
        assert_eq!(Json::encode(&f64::NAN).unwrap(), b"null");
        assert_eq!(<Json as Codec<f64>>::decode(b"1").unwrap(), 1.0);
    }

    #[test]
    fn a_mismatched_value_is_an_invalid_argument() {
        let err = <Json as Codec<u8>>::decode(b"\"x\"").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        let err = <MsgPack as Codec<u8>>::decode(b"\xc1").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
    }
}

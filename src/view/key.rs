//! Order-preserving key encodings: a typed range scan returns keys in their natural order.
//!
//! Integers are fixed-width big-endian (signed ones with the sign bit flipped), so `-1 < 0 < 1`
//! and `2 < 10` hold for their bytes too. A string or byte key on its own is its bytes as they
//! are (the same bytes a Level `utf8` or `buffer` key has); inside a tuple, every part but the
//! last is made self-delimiting: `0x00` is written `0x00 0xFF` and the part ends with
//! `0x00 0x01`, which sorts below every continuation, so `("a", 9) < ("ab", 0)`. Tuples compare
//! part by part. The encoding is not self-describing: read keys with the type they were written
//! with.

use crate::{Error, Result};

/// A key type with an order-preserving encoding (see [the module](self)).
///
/// ```
/// use rave::view::Key;
/// let (a, b) = ((-1i32).to_key(), 7i32.to_key());
/// assert!(a < b);
/// assert_eq!(<(String, u16)>::from_key(&("ab".to_string(), 3u16).to_key()).unwrap(),
///            ("ab".to_string(), 3));
/// ```
pub trait Key: Sized + Send + 'static {
    /// Appends the encoding of `self` to `out`; `last` is false inside a tuple, before
    /// another part (the encoding must then be self-delimiting).
    fn encode_key(&self, out: &mut Vec<u8>, last: bool);

    /// Reads a key from the front of `input`, advancing it; `last` as in
    /// [`Key::encode_key`] (a last part takes the rest of `input`).
    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self>;

    /// The encoding of `self` as a whole key.
    fn to_key(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_key(&mut out, true);
        out
    }

    /// The key whose encoding is `bytes` (all of them).
    fn from_key(bytes: &[u8]) -> Result<Self> {
        let mut input = bytes;
        let key = Self::decode_key(&mut input, true)?;
        if !input.is_empty() {
            return Err(bad_key(format!("{} bytes left over", input.len())));
        }
        Ok(key)
    }
}

/// What may be passed where a key of type `K` is expected: a `K`, a reference to an integer
/// or tuple key, and for string and byte keys their borrowed forms (`&str` for `String`;
/// `&str`, `String`, `&[u8]`, `b"..."` for `Vec<u8>`).
///
/// ```
/// use rave::view::AsKey;
/// assert_eq!(AsKey::<Vec<u8>>::to_key_bytes("ada"), b"ada".to_vec());
/// assert_eq!(AsKey::<String>::to_key_bytes(&"ada"), b"ada".to_vec());
/// assert_eq!(AsKey::<u16>::to_key_bytes(&258u16), vec![1, 2]);
/// ```
pub trait AsKey<K: Key> {
    /// Appends the encoding of the key, as [`Key::encode_key`].
    fn encode_as_key(&self, out: &mut Vec<u8>, last: bool);

    /// The encoding of the key as a whole key.
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_as_key(&mut out, true);
        out
    }
}

impl<K: Key> AsKey<K> for K {
    fn encode_as_key(&self, out: &mut Vec<u8>, last: bool) {
        self.encode_key(out, last);
    }
}

/// Implements `AsKey<$key>` for borrowed forms, by their bytes.
macro_rules! bytes_as_key {
    ($key:ty: $($t:ty),*) => {$(
        impl AsKey<$key> for $t {
            fn encode_as_key(&self, out: &mut Vec<u8>, last: bool) {
                let bytes: &[u8] = self.as_ref();
                encode_bytes(bytes, out, last);
            }
        }
    )*};
}

bytes_as_key!(String: str, &str, &String);
bytes_as_key!(Vec<u8>: str, &str, String, &String, [u8], &[u8], &Vec<u8>);

impl<const N: usize> AsKey<Vec<u8>> for [u8; N] {
    fn encode_as_key(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(self, out, last);
    }
}

impl<const N: usize> AsKey<Vec<u8>> for &[u8; N] {
    fn encode_as_key(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(*self, out, last);
    }
}

/// Implements `AsKey<K>` for `&K`.
macro_rules! ref_as_key {
    ($($t:ty),*) => {$(
        impl AsKey<$t> for &$t {
            fn encode_as_key(&self, out: &mut Vec<u8>, last: bool) {
                (**self).encode_key(out, last);
            }
        }
    )*};
}

ref_as_key!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

impl<A: Key, B: Key> AsKey<(A, B)> for &(A, B) {
    fn encode_as_key(&self, out: &mut Vec<u8>, last: bool) {
        (**self).encode_key(out, last);
    }
}

impl<A: Key, B: Key, C: Key> AsKey<(A, B, C)> for &(A, B, C) {
    fn encode_as_key(&self, out: &mut Vec<u8>, last: bool) {
        (**self).encode_key(out, last);
    }
}

fn bad_key(why: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "a key does not decode as the view's key type: {why}"
    ))
}

/// Bytes as they are when last; else escaped (`00` as `00 FF`) and ended with `00 01`.
fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>, last: bool) {
    if last {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

fn decode_bytes(input: &mut &[u8], last: bool) -> Result<Vec<u8>> {
    if last {
        let all = input.to_vec();
        *input = &[];
        return Ok(all);
    }
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        match (input.get(i), input.get(i + 1)) {
            (Some(0), Some(0x01)) => {
                *input = &input[i + 2..];
                return Ok(out);
            }
            (Some(0), Some(0xFF)) => {
                out.push(0);
                i += 2;
            }
            (Some(0), _) => return Err(bad_key("a 0x00 byte not followed by 0x01 or 0xFF")),
            (Some(&b), _) => {
                out.push(b);
                i += 1;
            }
            (None, _) => return Err(bad_key("a tuple part has no end mark")),
        }
    }
}

impl Key for Vec<u8> {
    fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(self, out, last);
    }

    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self> {
        decode_bytes(input, last)
    }
}

impl Key for String {
    fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
        encode_bytes(self.as_bytes(), out, last);
    }

    fn decode_key(input: &mut &[u8], last: bool) -> Result<Self> {
        String::from_utf8(decode_bytes(input, last)?).map_err(bad_key)
    }
}

fn take<const N: usize>(input: &mut &[u8], last: bool) -> Result<[u8; N]> {
    if input.len() < N || (last && input.len() != N) {
        return Err(bad_key(format!(
            "{} bytes where a {N}-byte integer was expected",
            input.len()
        )));
    }
    let (head, rest) = input.split_at(N);
    *input = rest;
    head.try_into().map_err(bad_key)
}

macro_rules! unsigned_keys {
    ($($t:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>, _last: bool) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode_key(input: &mut &[u8], last: bool) -> Result<Self> {
                Ok(<$t>::from_be_bytes(take(input, last)?))
            }
        }
    )*};
}

macro_rules! signed_keys {
    ($($t:ty => $u:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>, _last: bool) {
                // Flipping the sign bit puts negatives below positives in unsigned order.
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
            fn decode_key(input: &mut &[u8], last: bool) -> Result<Self> {
                let flipped = <$u>::from_be_bytes(take(input, last)?);
                Ok((flipped ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}

unsigned_keys!(u8, u16, u32, u64, u128);
signed_keys!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

macro_rules! tuple_keys {
    ($($name:ident)+ ; $last:ident) => {
        impl<$($name: Key,)+ $last: Key> Key for ($($name,)+ $last,) {
            #[allow(non_snake_case)]
            fn encode_key(&self, out: &mut Vec<u8>, last: bool) {
                let ($($name,)+ $last,) = self;
                $($name.encode_key(out, false);)+
                $last.encode_key(out, last);
            }
            fn decode_key(input: &mut &[u8], last: bool) -> Result<Self> {
                Ok(($($name::decode_key(input, false)?,)+ $last::decode_key(input, last)?,))
            }
        }

    };
}

tuple_keys!(A; B);
tuple_keys!(A B; C);
tuple_keys!(A B C; D);

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted<K: Key + Clone + Ord + std::fmt::Debug>(mut keys: Vec<K>) {
        keys.sort();
        let encoded: Vec<Vec<u8>> = keys.iter().map(Key::to_key).collect();
        let mut by_bytes = encoded.clone();
        by_bytes.sort();
        assert_eq!(encoded, by_bytes, "{keys:?}");
        for (key, bytes) in keys.iter().zip(&encoded) {
            assert_eq!(&K::from_key(bytes).unwrap(), key);
        }
    }

    #[test]
    fn integers_sort_by_value() {
        sorted(vec![0u64, 1, 2, 10, 255, 256, u64::MAX]);
        sorted(vec![i64::MIN, -300, -1, 0, 1, 2, 10, i64::MAX]);
        sorted(vec![i8::MIN, -1, 0, i8::MAX]);
        sorted(vec![0u128, 1 << 100]);
    }

    #[test]
    fn strings_and_tuples_sort_part_by_part() {
        sorted(vec![
            "".to_string(),
            "a".into(),
            "a\0".into(),
            "ab".into(),
            "b".into(),
        ]);
        sorted(vec![
            ("a".to_string(), 9u32),
            ("a\0".to_string(), 0),
            ("ab".to_string(), 0),
            ("".to_string(), u32::MAX),
        ]);
        sorted(vec![
            (vec![0u8, 0], "x".to_string()),
            (vec![0u8], "\u{ff}".to_string()),
            (vec![], "".to_string()),
            (vec![0xFF], "".to_string()),
        ]);
        sorted(vec![
            (1u8, -2i16, "z".to_string()),
            (1, -3, "zz".to_string()),
        ]);
    }

    #[test]
    fn a_lone_string_is_its_bytes() {
        assert_eq!("ada".to_string().to_key(), b"ada");
        assert_eq!(vec![0u8, 1].to_key(), vec![0, 1]);
        assert_eq!(("a".to_string(), "b".to_string()).to_key(), b"a\0\x01b");
    }

    #[test]
    fn bad_bytes_are_invalid_arguments() {
        for bytes in [&b"abc"[..], b""] {
            let err = u16::from_key(bytes).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        }
        assert!(<(String, u8)>::from_key(b"ab").is_err());
        assert!(String::from_key(b"\xff").is_err());
    }
}

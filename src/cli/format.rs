//! The line formats of `rave export` and `rave import`: JSON lines and TSV, each carrying any
//! bytes (tabs, newlines, invalid UTF-8, empty keys and values) and read back byte for byte.

use clap::ValueEnum;
use serde::Deserialize;

use super::codec::{hex_decode, hex_encode};

/// What `rave export --help` and `rave import --help` say about the formats.
pub const FORMATS_HELP: &str = "\
Formats (one entry a line, in the order of the range; `import` reads both back byte for byte):

  jsonl (default)  {\"key\":\"...\",\"value\":\"...\"}: a key or value that is valid UTF-8 is a
                   JSON string (JSON's own escapes for quotes, backslashes and control
                   characters); one that is not is written as \"key_hex\" / \"value_hex\" in
                   place of \"key\" / \"value\", lowercase hex. With --hex every key and value is
                   written as hex. Each line has exactly one of key/key_hex and one of
                   value/value_hex, and no other field.

  tsv              KEY<TAB>VALUE, each escaped: backslash as \\\\, tab as \\t, newline as \\n,
                   carriage return as \\r, other control bytes (0x00-0x1f, 0x7f) and bytes that
                   are not valid UTF-8 as \\xHH; everything else as is. With --hex: both as
                   lowercase hex (as `scan --hex` prints them).

Blank lines are skipped on import, and a carriage return before a line's newline is ignored.";

/// A line format of `export` and `import`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON object a line (see below).
    Jsonl,
    /// `KEY<TAB>VALUE`, escaped (see below).
    Tsv,
}

/// Writes and reads entries as lines of one format.
#[derive(Clone, Copy, Debug)]
pub struct LineFormat {
    /// The format.
    pub format: Format,
    /// Hex keys and values (the global `--hex`).
    pub hex: bool,
}

/// One JSON line as `import` reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    key: Option<String>,
    key_hex: Option<String>,
    value: Option<String>,
    value_hex: Option<String>,
}

impl LineFormat {
    /// Appends the line of one entry, newline included, to `out`.
    pub fn encode(&self, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
        match self.format {
            Format::Jsonl => {
                out.push(b'{');
                self.json_field("key", key, out);
                out.push(b',');
                self.json_field("value", value, out);
                out.push(b'}');
            }
            Format::Tsv if self.hex => {
                out.extend_from_slice(hex_encode(key).as_bytes());
                out.push(b'\t');
                out.extend_from_slice(hex_encode(value).as_bytes());
            }
            Format::Tsv => {
                escape(key, out);
                out.push(b'\t');
                escape(value, out);
            }
        }
        out.push(b'\n');
    }

    /// `"name":"text"` for UTF-8 bytes (without `--hex`), else `"name_hex":"..."`.
    fn json_field(&self, name: &str, bytes: &[u8], out: &mut Vec<u8>) {
        match std::str::from_utf8(bytes) {
            Ok(text) if !self.hex => {
                out.extend_from_slice(format!("\"{name}\":").as_bytes());
                // Serializing a string into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, text);
            }
            _ => {
                out.extend_from_slice(format!("\"{name}_hex\":\"").as_bytes());
                out.extend_from_slice(hex_encode(bytes).as_bytes());
                out.push(b'"');
            }
        }
    }

    /// The entry of one line (without its newline), or why the line is not one.
    pub fn decode(&self, line: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
        match self.format {
            Format::Jsonl => {
                let line: JsonLine = serde_json::from_slice(line).map_err(|e| {
                    format!(
                        "not an entry ({{\"key\":...,\"value\":...}}, or key_hex/value_hex): {e}"
                    )
                })?;
                let key = one_of("key", line.key, line.key_hex)?;
                let value = one_of("value", line.value, line.value_hex)?;
                Ok((key, value))
            }
            Format::Tsv => {
                let mut fields = line.split(|&b| b == b'\t');
                let (Some(key), Some(value), None) = (fields.next(), fields.next(), fields.next())
                else {
                    return Err("expected KEY<TAB>VALUE (one tab)".into());
                };
                if self.hex {
                    let hex = |field: &[u8], what: &str| {
                        std::str::from_utf8(field)
                            .ok()
                            .and_then(hex_decode)
                            .ok_or_else(|| format!("the {what} is not hex (--hex)"))
                    };
                    Ok((hex(key, "key")?, hex(value, "value")?))
                } else {
                    Ok((unescape(key, "key")?, unescape(value, "value")?))
                }
            }
        }
    }
}

/// The bytes of a JSON line's `name` (text) or `name_hex` field: exactly one must be there.
fn one_of(name: &str, text: Option<String>, hex: Option<String>) -> Result<Vec<u8>, String> {
    match (text, hex) {
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(hex)) => {
            hex_decode(&hex).ok_or_else(|| format!("\"{name}_hex\" is not hex: {hex:?}"))
        }
        (None, None) => Err(format!("no \"{name}\" (or \"{name}_hex\")")),
        (Some(_), Some(_)) => Err(format!("both \"{name}\" and \"{name}_hex\"")),
    }
}

/// TSV's escaping of one field (see [`FORMATS_HELP`]).
pub fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    for chunk in bytes.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                _ => out.push(b),
            }
        }
        for &b in chunk.invalid() {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
    }
}

/// The bytes of one escaped TSV field.
pub fn unescape(field: &[u8], what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter().copied();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(b't') => out.push(b'\t'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b'x') => {
                let digits = [bytes.next(), bytes.next()];
                let byte = match digits {
                    [Some(hi), Some(lo)] => std::str::from_utf8(&[hi, lo])
                        .ok()
                        .and_then(hex_decode)
                        .and_then(|v| v.first().copied()),
                    _ => None,
                };
                out.push(byte.ok_or_else(|| format!("the {what} has a bad \\x escape"))?);
            }
            Some(other) => {
                return Err(format!(
                    "the {what} has an unknown escape \\{} (known: \\\\ \\t \\n \\r \\xHH)",
                    char::from(other).escape_default()
                ));
            }
            None => return Err(format!("the {what} ends with a lone backslash")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Vec<u8>> {
        vec![
            Vec::new(),
            b"plain".to_vec(),
            b"tab\there\nnewline\r\\back\\slash\\t".to_vec(),
            vec![0, 1, 0x1f, 0x7f, 0x80, 0xff, b'\\', b'x', b'4', b'1'],
            "é ünïcödé \u{1F600} \"quoted\"".as_bytes().to_vec(),
            vec![0xe2, 0x82], // a truncated UTF-8 sequence
            b"{\"key\":\"x\"}".to_vec(),
        ]
    }

    #[test]
    fn every_format_round_trips_every_sample() {
        for format in [Format::Jsonl, Format::Tsv] {
            for hex in [false, true] {
                let lines = LineFormat { format, hex };
                for key in samples() {
                    for value in samples() {
                        let mut line = Vec::new();
                        lines.encode(&key, &value, &mut line);
                        assert_eq!(line.last(), Some(&b'\n'));
                        let body = &line[..line.len() - 1];
                        assert!(!body.contains(&b'\n'), "{format:?} {hex}: one line");
                        assert!(std::str::from_utf8(body).is_ok(), "{format:?}: text");
                        let decoded = lines.decode(body);
                        assert_eq!(
                            decoded,
                            Ok((key.clone(), value.clone())),
                            "{format:?} {hex}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn jsonl_uses_strings_for_text_and_hex_for_the_rest() {
        let lines = LineFormat {
            format: Format::Jsonl,
            hex: false,
        };
        let mut out = Vec::new();
        lines.encode(b"a\tb", &[0xff], &mut out);
        assert_eq!(out, b"{\"key\":\"a\\tb\",\"value_hex\":\"ff\"}\n");
    }

    #[test]
    fn tsv_escapes() {
        let mut out = Vec::new();
        escape(b"a\\b\tc\nd\re\0f\xff", &mut out);
        assert_eq!(out, b"a\\\\b\\tc\\nd\\re\\x00f\\xff");
    }

    #[test]
    fn bad_lines_are_refused() {
        let jsonl = LineFormat {
            format: Format::Jsonl,
            hex: false,
        };
        for bad in [
            &b"not json"[..],
            b"{\"key\":\"a\"}",
            b"{\"value\":\"a\"}",
            b"{\"key\":\"a\",\"key_hex\":\"61\",\"value\":\"\"}",
            b"{\"key\":\"a\",\"value\":\"b\",\"extra\":1}",
            b"{\"key_hex\":\"6\",\"value\":\"b\"}",
            b"{\"key\":1,\"value\":\"b\"}",
        ] {
            assert!(
                jsonl.decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let tsv = LineFormat {
            format: Format::Tsv,
            hex: false,
        };
        for bad in [
            &b"no tab"[..],
            b"a\tb\tc",
            b"a\\q\tb",
            b"a\tb\\",
            b"a\\x4\tb",
            b"a\\xzz\tb",
        ] {
            assert!(
                tsv.decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let tsv_hex = LineFormat {
            format: Format::Tsv,
            hex: true,
        };
        assert!(tsv_hex.decode(b"6\t61").is_err());
        assert!(tsv_hex.decode(b"+f\t61").is_err());
    }
}

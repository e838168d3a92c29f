//! How the CLI reads keys and values from arguments and prints them: as given, or as hex with
//! the global `--hex` flag.

use std::io::Write;

use rave::{BatchOp, Change, Range};

use super::{CliError, ProjectionArgs, RangeArgs};

/// Keys and values from arguments and to output: raw bytes, or hex with `--hex`.
pub struct Codec {
    /// Hex in, hex out.
    pub hex: bool,
}

impl Codec {
    /// The bytes an argument names.
    pub fn decode(&self, text: &str) -> Result<Vec<u8>, CliError> {
        if !self.hex {
            return Ok(text.as_bytes().to_vec());
        }
        hex_decode(text).ok_or_else(|| CliError::Usage(format!("{text:?} is not hex")))
    }

    /// The bytes as printed (raw, or hex).
    pub fn encode(&self, bytes: &[u8]) -> Vec<u8> {
        if self.hex {
            hex_encode(bytes).into_bytes()
        } else {
            bytes.to_vec()
        }
    }

    /// Prints `bytes` to stdout (raw, or hex).
    pub fn write(&self, out: &mut impl Write, bytes: &[u8]) -> Result<(), CliError> {
        let result = if self.hex {
            out.write_all(hex_encode(bytes).as_bytes())
        } else {
            out.write_all(bytes)
        };
        result.map_err(stdout_error)
    }

    /// One line of `rave watch`.
    pub fn write_change(
        &self,
        out: &mut impl Write,
        sequence: u64,
        change: &Change,
    ) -> Result<(), CliError> {
        write!(out, "{sequence}\t").map_err(stdout_error)?;
        match change {
            Change::Put { key, value } => {
                out.write_all(b"put\t").map_err(stdout_error)?;
                self.write(out, key)?;
                out.write_all(b"\t").map_err(stdout_error)?;
                self.write(out, value)?;
            }
            Change::Del { key } => {
                out.write_all(b"del\t").map_err(stdout_error)?;
                self.write(out, key)?;
            }
            Change::Clear { range } => {
                out.write_all(b"clear").map_err(stdout_error)?;
                let lower = [("gt", &range.gt), ("gte", &range.gte)];
                let upper = [("lt", &range.lt), ("lte", &range.lte)];
                for side in [lower, upper] {
                    out.write_all(b"\t").map_err(stdout_error)?;
                    let mut any = false;
                    for (name, bound) in side {
                        if let Some(key) = bound {
                            if any {
                                out.write_all(b",").map_err(stdout_error)?;
                            }
                            write!(out, "{name}=").map_err(stdout_error)?;
                            self.write(out, key)?;
                            any = true;
                        }
                    }
                    if !any {
                        out.write_all(b"-").map_err(stdout_error)?;
                    }
                }
            }
        }
        out.write_all(b"\n").map_err(stdout_error)
    }

    /// The range the flags name, with the projection (`--keys-only`, `--values-only`) when the
    /// command has one.
    pub fn range(
        &self,
        args: &RangeArgs,
        projection: Option<&ProjectionArgs>,
    ) -> Result<Range, CliError> {
        let mut range = Range::all();
        let bound = |k: &Option<String>| k.as_deref().map(|k| self.decode(k)).transpose();
        range.gt = bound(&args.gt)?;
        range.gte = bound(&args.gte)?;
        range.lt = bound(&args.lt)?;
        range.lte = bound(&args.lte)?;
        range.reverse = args.reverse;
        range.limit = args.limit;
        if let Some(projection) = projection {
            if projection.keys_only {
                range = range.keys_only();
            }
            if projection.values_only {
                range = range.values_only();
            }
        }
        Ok(range)
    }

    /// One stdin line of `rave batch`.
    pub fn batch_line(&self, number: usize, line: &str) -> Result<BatchOp, CliError> {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["put", key, value] => Ok(BatchOp::put(self.decode(key)?, self.decode(value)?)),
            ["del", key] => Ok(BatchOp::del(self.decode(key)?)),
            _ => Err(CliError::Usage(format!(
                "stdin line {number}: expected \"put<TAB>KEY<TAB>VALUE\" or \"del<TAB>KEY\""
            ))),
        }
    }
}

/// A failed write to stdout.
pub fn stdout_error(e: std::io::Error) -> CliError {
    CliError::Rave(rave::Error::io("write stdout", &e))
}

/// Lowercase hex, two digits a byte.
pub fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}

/// The bytes of hex text (either case), or `None` when it is not an even number of hex digits.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = vec![0u8, 1, 0x7f, 0x80, 0xff];
        assert_eq!(hex_decode(&hex_encode(&bytes)), Some(bytes));
        assert_eq!(hex_decode("0"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_decode("+f"), None);
        assert_eq!(hex_decode(""), Some(Vec::new()));
    }
}

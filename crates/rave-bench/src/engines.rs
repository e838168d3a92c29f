//! The engines a run can measure, and dispatch from a name to a type.

use rave::{Error, Result};

/// An engine named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineName {
    /// redb (feature `redb`, the default).
    Redb,
    /// LevelDB through rusty-leveldb (feature `leveldb`).
    Leveldb,
    /// RocksDB (feature `rocksdb`).
    Rocksdb,
    /// rave's in-memory engine (always compiled in; isolates the transport from any engine).
    Memory,
}

impl EngineName {
    /// The name as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineName::Redb => "redb",
            EngineName::Leveldb => "leveldb",
            EngineName::Rocksdb => "rocksdb",
            EngineName::Memory => "memory",
        }
    }

    /// Whether this build has the engine's Cargo feature.
    pub fn compiled(self) -> bool {
        match self {
            EngineName::Redb => cfg!(feature = "redb"),
            EngineName::Leveldb => cfg!(feature = "leveldb"),
            EngineName::Rocksdb => cfg!(feature = "rocksdb"),
            EngineName::Memory => true,
        }
    }

    /// Fails with a clear message when the engine is not compiled in.
    pub fn check_compiled(self) -> Result<()> {
        if self.compiled() {
            Ok(())
        } else {
            Err(not_compiled(self))
        }
    }
}

impl std::fmt::Display for EngineName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for an engine whose feature is off.
pub fn not_compiled(engine: EngineName) -> Error {
    Error::invalid(format!(
        "the {engine} engine is not compiled in: build rave-bench with `--features {engine}`"
    ))
}

/// Runs `$body` with the type alias `$B` bound to the engine named `$name`.
macro_rules! with_engine {
    ($name:expr, $B:ident => $body:expr) => {{
        use $crate::engines::EngineName;
        match $name {
            #[cfg(feature = "redb")]
            EngineName::Redb => {
                type $B = rave::backends::RedbBackend;
                $body
            }
            #[cfg(feature = "leveldb")]
            EngineName::Leveldb => {
                type $B = rave::backends::LevelDbBackend;
                $body
            }
            #[cfg(feature = "rocksdb")]
            EngineName::Rocksdb => {
                type $B = rave::backends::RocksDbBackend;
                $body
            }
            EngineName::Memory => {
                type $B = rave::backends::MemoryBackend;
                $body
            }
            #[allow(unreachable_patterns)]
            other => Err($crate::engines::not_compiled(other)),
        }
    }};
}
pub(crate) use with_engine;

/// The key of entry `i` of the point-operation data set: 16 bytes, the shape of
/// redis-benchmark's `key:__rand_int__` (`key:` and 12 digits), so both store the same keys.
pub fn key(i: usize) -> Vec<u8> {
    format!("key:{i:012}").into_bytes()
}

/// The value stored under every key of the point-operation data set.
pub fn value(size: usize) -> Vec<u8> {
    vec![b'x'; size]
}

/// The key of entry `i` of the scan data set (P7): 12 bytes.
pub fn small_key(i: usize) -> Vec<u8> {
    format!("s:{i:010}").into_bytes()
}

/// The value of every entry of the scan data set: 16 bytes.
pub const SMALL_VALUE: &[u8] = b"0123456789abcdef";

/// A small, fast, seeded generator of key indices (xorshift64*): the benchmark needs spread,
/// not statistical quality, and the same sequence on every run.
#[derive(Clone, Debug)]
pub struct KeyGen(u64);

impl KeyGen {
    /// A generator seeded with `seed` (any value).
    pub fn new(seed: u64) -> Self {
        KeyGen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next index below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r % n.max(1) as u64) as usize
    }
}

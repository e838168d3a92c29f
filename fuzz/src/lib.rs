//! Shared pieces of rave's fuzz targets.
//!
//! - [`exchange`]: one follower session against `serve_connection` and the invariants every
//!   answer keeps (the same file runs as a proptest inside rave-transport's tests);
//! - [`Session`]: a session built with `arbitrary` from the fuzzer's bytes: valid-ish messages
//!   over a small key and id space (so they meet each other), mixed with raw junk (the same
//!   file replays the committed `dispatch` corpus inside rave-transport's tests);
//! - [`Harness`]: a runtime and two live stores (the memory engine and redb in a temporary
//!   directory), each with a well-behaved client, opened once per fuzzing process;
//! - [`check_client_body`] / [`check_server_body`]: decode, and round-trip what decodes;
//!   [`check_frames`]: the frame codec's invariants, then one of those on every frame.

use std::sync::{Arc, OnceLock};

use rave_api::{Backend, KvStore, MemoryBackend, OpenOptions, Range};
use rave_transport as rt;
use rt::wire::{self, ClientMessage, Limits, ServerMessage};

#[allow(missing_docs)]
pub mod exchange {
    include!("exchange.rs");
}

pub use exchange::{Outcome, Wire};

/// Decodes a body as a `ClientMessage`; what decodes must encode and decode to itself.
pub fn check_client_body(body: &[u8]) {
    check_round_trip::<ClientMessage>(body);
}

/// Decodes a body as a `ServerMessage`; what decodes must encode and decode to itself.
pub fn check_server_body(body: &[u8]) {
    check_round_trip::<ServerMessage>(body);
}

/// What decodes as `T` must encode and decode to itself.
fn check_round_trip<T>(body: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(message) = wire::decode::<T>(body) {
        let again = wire::encode(&message).expect("a decoded message encodes");
        let back = wire::decode::<T>(&again).expect("an encoded message decodes");
        assert_eq!(
            back,
            message,
            "a {} does not survive a round trip",
            std::any::type_name::<T>()
        );
    }
}

/// A decoding target's whole run: the first input byte picks the frame limit
/// ([`max_frame_for`]), the rest is a byte stream cut into frames by the codec, and each frame,
/// then the whole stream as one body, goes to `check_body`. Asserts that no frame over the limit
/// is ever returned and that a length prefix over the limit is refused at once (an error, not a
/// wait for a body that would have to be buffered).
pub fn check_frames(data: &[u8], check_body: fn(&[u8])) {
    use tokio_util::codec::Decoder;

    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let max_frame = max_frame_for(selector);
    let mut codec = Limits {
        max_frame,
        ..Limits::default()
    }
    .codec();
    let mut buf = bytes::BytesMut::from(stream);
    loop {
        let head = buf
            .get(..4)
            .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize);
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= max_frame, "a frame of {} bytes", frame.len());
                check_body(&frame);
            }
            Ok(None) => {
                if let Some(len) = head {
                    assert!(len <= max_frame, "a {len}-byte length prefix is waited on");
                }
                break;
            }
            Err(_) => break,
        }
    }
    // The whole input as one body, too.
    check_body(stream);
}

/// The frame limits a decoding target runs with, picked by one input byte: tiny limits find
/// the edges, the default one is what runs in production.
pub fn max_frame_for(selector: u8) -> usize {
    match selector % 4 {
        0 => 0,
        1 => 16,
        2 => 4096,
        _ => Limits::default().max_frame,
    }
}

#[allow(missing_docs)]
pub mod session {
    include!("session.rs");
}

pub use session::{
    EngineChoice, Key, LimitsChoice, MessageSpec, OpSpec, RangeSpec, Session, Step, Value,
};

/// A runtime and the two stores, shared by every run of one fuzzing process.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    memory: Arc<dyn KvStore>,
    redb: Arc<dyn KvStore>,
    /// A well-behaved client of each store, connected for the whole fuzzing run.
    good_memory: rt::Client,
    good_redb: rt::Client,
}

impl Harness {
    /// The process's harness, opened on first use.
    pub fn get() -> &'static Harness {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(Harness::open)
    }

    fn open() -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let memory: Arc<dyn KvStore> = Arc::new(
            MemoryBackend
                .open("unused".as_ref(), &OpenOptions::default())
                .expect("the memory engine"),
        );
        // On tmpfs when there is one: redb fsyncs every commit.
        let base = std::path::Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        let redb: Arc<dyn KvStore> = Arc::new(
            rave_backend_redb::RedbBackend
                .open(dir.path(), &OpenOptions::default())
                .expect("redb opens"),
        );
        // redb keeps its file open: the directory can go now, so no fuzzing run leaves files
        // behind however it ends.
        drop(dir);
        let (good_memory, good_redb) = runtime.block_on(async {
            (
                exchange::good_client(memory.clone(), &Limits::default()).await,
                exchange::good_client(redb.clone(), &Limits::default()).await,
            )
        });
        Harness {
            runtime,
            memory,
            redb,
            good_memory,
            good_redb,
        }
    }

    /// Runs one session and checks it (panics on a broken invariant).
    pub fn run(&self, session: &Session) -> Outcome {
        let (store, good) = match session.engine {
            EngineChoice::Memory => (self.memory.clone(), &self.good_memory),
            EngineChoice::Redb => (self.redb.clone(), &self.good_redb),
        };
        let limits = session.limits.limits();
        let wire = session.wire();
        self.runtime.block_on(async move {
            // Each session starts from an empty store, so runs do not slow down over time.
            store
                .clear(Range::all())
                .await
                .expect("clear before a session");
            let outcome = exchange::exchange(store, limits, wire).await;
            // The client connected all along (through every earlier session) still works.
            exchange::still_works(good).await;
            outcome
        })
    }
}

impl Harness {
    /// A follower's side: see [`exchange::follower_session`].
    pub fn follower(&self, data: &[u8]) {
        self.runtime
            .block_on(exchange::follower_session(data.to_vec()));
    }
}

//! What a follower parses from its leader: the frame codec, then `ServerMessage`.
//!
//! The first input byte picks the frame limit; the rest is the byte stream. Asserts: no panic;
//! no frame over the limit; a length prefix over the limit is refused at once; what decodes
//! round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rave_fuzz::{check_frames, check_server_body};

fuzz_target!(|data: &[u8]| check_frames(data, check_server_body));

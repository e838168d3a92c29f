//! The leader's parsing of what a follower sends: the frame codec, then `ClientMessage`.
//!
//! The first input byte picks the frame limit; the rest is the byte stream. Asserts: no panic;
//! no frame over the limit is ever returned; a length prefix over the limit is refused at once
//! (an error, not a wait for a body that would have to be buffered); what decodes round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rave_fuzz::{check_client_body, check_frames};

fuzz_target!(|data: &[u8]| check_frames(data, check_client_body));

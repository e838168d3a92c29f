//! What a follower parses from its leader: the frame codec, then `ServerMessage`.
//!
//! The first input byte picks the frame limit; the rest is the byte stream. Asserts: no panic,
//! no frame over the limit, and what decodes round-trips.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rave_fuzz::{check_server_body, max_frame_for};
use rave_transport::Limits;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let max_frame = max_frame_for(selector);
    let mut codec = Limits {
        max_frame,
        ..Limits::default()
    }
    .codec();
    let mut buf = BytesMut::from(stream);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        assert!(frame.len() <= max_frame, "a frame of {} bytes", frame.len());
        check_server_body(&frame);
    }
    check_server_body(stream);
});

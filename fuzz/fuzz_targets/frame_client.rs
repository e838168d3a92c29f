//! The leader's parsing of what a follower sends: the frame codec, then `ClientMessage`.
//!
//! The first input byte picks the frame limit; the rest is the byte stream. Asserts: no panic;
//! no frame over the limit is ever returned; a length prefix over the limit is refused at once
//! (an error, not a wait for a body that would have to be buffered); what decodes round-trips.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rave_fuzz::{check_client_body, max_frame_for};
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
    loop {
        let head = buf
            .get(..4)
            .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize);
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(frame.len() <= max_frame, "a frame of {} bytes", frame.len());
                check_client_body(&frame);
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
    check_client_body(stream);
});

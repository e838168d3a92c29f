//! The leader's dispatch against a live engine: a fuzzer-built session (valid-ish messages
//! built with `arbitrary`, mixed with raw junk) into `serve_connection` over an in-memory
//! stream, served by the memory engine or by redb. See `rave_fuzz::exchange` for what every
//! session asserts; a well-behaved client on the same store must still work afterwards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rave_fuzz::{Harness, Session};

fuzz_target!(|session: Session| {
    Harness::get().run(&session);
});

//! The follower's client against a leader that says anything: after a `Welcome`, the input is
//! written as the leader's bytes, then the leader hangs up. The client must not panic, and its
//! calls (a read, a write, an iterator, a ping) must all end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rave_fuzz::Harness;

fuzz_target!(|data: &[u8]| {
    Harness::get().follower(data);
});

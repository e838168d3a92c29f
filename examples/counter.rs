//! A counter that any number of processes increment at once, with compare-and-swap:
//! `cargo run --example counter -- DIR N` adds N to the counter `n` in DIR, printing `ok` for
//! each increment the database acknowledged (and `error: ...` for an attempt that failed
//! otherwise: it may or may not have been applied, as with any write whose answer was lost).
//! Each acknowledged increment is applied exactly once, whichever leader received it and
//! however often it was re-sent across leader changes.

use std::io::Write;

fn main() -> rave::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "./data".into());
    let times: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let db = rave::blocking::Rave::open(&dir, Default::default())?;
    let mut out = std::io::stdout().lock();
    for _ in 0..times {
        loop {
            let current = match db.get("n") {
                Ok(current) => current,
                Err(e) => {
                    writeln!(out, "error: {e}").ok();
                    continue;
                }
            };
            let n: u64 = current
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                .unwrap_or(0);
            match db.compare_and_swap("n", current, Some((n + 1).to_string())) {
                Ok(Ok(())) => {
                    writeln!(out, "ok").ok();
                    break;
                }
                // Someone else incremented first: read again.
                Ok(Err(_conflict)) => {}
                Err(e) => {
                    writeln!(out, "error: {e}").ok();
                    break;
                }
            }
        }
        out.flush().ok();
    }
    db.close()
}

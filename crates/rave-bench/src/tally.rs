//! What a watching process (a rave watcher or a Redis subscriber) counts, and the `until`
//! command the harness reads it with.
//!
//! Arrival times are `CLOCK_MONOTONIC` nanoseconds ([`mono_ns`]): that clock is one for the
//! whole machine, so a time taken here can be subtracted from one taken in the writing process
//! (`std::time::Instant` gives no such promise across processes).

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rave::{Error, Result};
use tokio::sync::Notify;

/// Now, in nanoseconds of `CLOCK_MONOTONIC`: comparable between processes of one machine.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call, and CLOCK_MONOTONIC
    // is a clock every Linux kernel has.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        // Cannot happen on Linux; a zero would show up as an absurd latency, not pass unseen.
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The index a writer put in an item's first digits (`w:<digits>` keys, `<digits>...`
/// messages), if any.
pub fn index_of(bytes: &[u8]) -> Option<u64> {
    let digits: &[u8] = bytes.strip_prefix(b"w:").unwrap_or(bytes);
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

#[derive(Default)]
struct State {
    /// Items (puts, messages) received.
    items: u64,
    /// Events (commits, messages) received.
    events: u64,
    first_ns: u64,
    last_ns: u64,
    /// `(index, arrival)` of every item with an index, when recording.
    record: Option<Vec<[u64; 2]>>,
    failed: Option<String>,
}

/// The counts of one watching process, shared by its receiving task and its command loop.
#[derive(Default)]
pub struct Tally {
    state: Mutex<State>,
    changed: Notify,
}

impl Tally {
    /// A tally that keeps each item's arrival when `record`.
    pub fn new(record: bool) -> Self {
        let tally = Tally::default();
        tally.lock().record = record.then(Vec::new);
        tally
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One event arrived at `at_ns` carrying items with these indices.
    pub fn arrived(&self, at_ns: u64, indices: impl Iterator<Item = Option<u64>>) {
        let mut s = self.lock();
        if s.events == 0 {
            s.first_ns = at_ns;
        }
        s.events += 1;
        s.last_ns = at_ns;
        for index in indices {
            s.items += 1;
            if let (Some(i), Some(record)) = (index, s.record.as_mut()) {
                record.push([i, at_ns]);
            }
        }
        drop(s);
        self.changed.notify_waiters();
    }

    /// The stream ended with `why`: every `until` fails from now on.
    pub fn fail(&self, why: String) {
        self.lock().failed = Some(why);
        self.changed.notify_waiters();
    }

    /// Waits until `n` items arrived (at most `limit`); answers `items events first last`.
    async fn until(&self, n: u64, limit: Duration) -> Result<String> {
        let wait = async {
            loop {
                // Created before the check: it sees every notification sent after this line.
                let changed = self.changed.notified();
                {
                    let s = self.lock();
                    if let Some(why) = &s.failed {
                        return Err(Error::other(format!("the watch ended: {why}")));
                    }
                    if s.items >= n {
                        return Ok(format!(
                            "{} {} {} {}",
                            s.items, s.events, s.first_ns, s.last_ns
                        ));
                    }
                }
                changed.await;
            }
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(answer) => answer,
            Err(_) => {
                let items = self.lock().items;
                Err(Error::other(format!(
                    "only {items} of {n} items arrived within {limit:?}"
                )))
            }
        }
    }

    /// Obeys `until <n>` commands on stdin until it closes: each answers `done items events
    /// first_ns last_ns`, after writing the recorded arrivals to `record` (one `index ns` line
    /// each).
    pub fn serve(&self, rt: &tokio::runtime::Runtime, record: Option<&Path>) -> Result<()> {
        while let Some(line) = crate::helper::command() {
            let Some(n) = line
                .strip_prefix("until ")
                .and_then(|n| n.trim().parse().ok())
            else {
                crate::helper::say(&format!("error unknown command {line:?}"));
                continue;
            };
            let answer = rt.block_on(self.until(n, Duration::from_secs(120)))?;
            if let Some(path) = record {
                let rows = self.lock().record.clone().unwrap_or_default();
                write_rows(path, &rows)?;
            }
            crate::helper::say(&format!("done {answer}"));
        }
        Ok(())
    }
}

/// Writes rows of numbers, one row a line, separated by spaces.
pub fn write_rows<const N: usize>(path: &Path, rows: &[[u64; N]]) -> Result<()> {
    let err = |e: std::io::Error| Error::io(format!("write {}", path.display()), &e);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    for row in rows {
        let line: Vec<String> = row.iter().map(u64::to_string).collect();
        writeln!(out, "{}", line.join(" ")).map_err(err)?;
    }
    out.flush().map_err(err)
}

/// Reads what [`write_rows`] wrote.
pub fn read_rows<const N: usize>(path: &Path) -> Result<Vec<[u64; N]>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("read {}", path.display()), &e))?;
    text.lines()
        .map(|line| {
            let mut row = [0u64; N];
            let mut words = line.split_whitespace();
            for cell in &mut row {
                *cell = words.next().and_then(|w| w.parse().ok()).ok_or_else(|| {
                    Error::protocol(format!("a bad line in {}: {line:?}", path.display()))
                })?;
            }
            Ok(row)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_come_from_keys_and_messages() {
        assert_eq!(index_of(b"w:000000000042"), Some(42));
        assert_eq!(index_of(b"000000000007xxxx"), Some(7));
        assert_eq!(index_of(b"w00-001-0000000003"), None);
    }

    #[test]
    fn the_clock_moves_forward_and_rows_round_trip() {
        let a = mono_ns();
        let b = mono_ns();
        assert!(a > 0 && b >= a);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows");
        write_rows(&path, &[[1, 2, 3], [4, 5, 6]]).unwrap();
        assert_eq!(read_rows::<3>(&path).unwrap(), vec![[1, 2, 3], [4, 5, 6]]);
        assert!(read_rows::<4>(&path).is_err());
    }

    #[test]
    fn until_answers_once_enough_arrived() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tally = Tally::new(true);
        tally.arrived(10, [Some(1), None].into_iter());
        tally.arrived(20, [Some(2)].into_iter());
        let answer = rt.block_on(tally.until(3, Duration::from_secs(1))).unwrap();
        assert_eq!(answer, "3 2 10 20");
        assert!(
            rt.block_on(tally.until(4, Duration::from_millis(10)))
                .is_err()
        );
        tally.fail("gone".into());
        assert!(rt.block_on(tally.until(1, Duration::from_secs(1))).is_err());
    }
}

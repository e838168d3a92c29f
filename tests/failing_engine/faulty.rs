//! An engine that fails on purpose, plugged in through the documented [`Engine`] trait: it keeps
//! its data in memory (shared by every opening, so a reopen finds it again) and panics, errors or
//! hangs when its [`Faults`] say so.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rave::engine_thread::{Engine, EngineIter, EngineStore};
use rave::{Backend, BatchOp, Capabilities, Error, OpenOptions, Range, Result};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// What the engine does wrong, switched on and off by the test; shared by every opening.
#[derive(Default)]
pub struct Faults {
    data: Mutex<Map>,
    /// Writes panic.
    pub panic_write: AtomicBool,
    /// Iterators panic on their next entry of a user key.
    pub panic_iterate: AtomicBool,
    /// Every write fails with an I/O error (the engine stays usable).
    pub fail_writes: AtomicBool,
    /// The "disk" is full: a write fails with `StorageFull`, and the engine instance that failed
    /// refuses every later write until it is reopened, as redb and LevelDB do.
    pub full: AtomicBool,
    /// Opening fails with an I/O error.
    pub fail_open: AtomicBool,
    /// Writes block until [`Faults::release`].
    pub hang_write: AtomicBool,
    released: Mutex<bool>,
    wake: Condvar,
    /// How many times the engine was opened.
    pub opens: AtomicUsize,
    /// How many writes reached the engine.
    pub writes: AtomicUsize,
}

impl Faults {
    fn data(&self) -> MutexGuard<'_, Map> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends every hang, now and later.
    pub fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.wake.notify_all();
    }

    fn hang(&self) {
        let mut released = self.released.lock().unwrap();
        while !*released {
            released = self
                .wake
                .wait_timeout(released, Duration::from_secs(1))
                .unwrap()
                .0;
        }
    }

    pub fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

fn on(flag: &AtomicBool) -> bool {
    flag.load(Ordering::SeqCst)
}

/// A [`Backend`] opening [`Faulty`] engines that share one set of [`Faults`].
#[derive(Clone, Default)]
pub struct FaultyBackend(pub Arc<Faults>);

impl Backend for FaultyBackend {
    type Store = EngineStore;

    fn name(&self) -> &'static str {
        "faulty"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::in_memory().with_exactly_once(true)
    }

    fn open(&self, _path: &Path, _options: &OpenOptions) -> Result<EngineStore> {
        let faults = self.0.clone();
        EngineStore::spawn("faulty", move || {
            if on(&faults.fail_open) {
                return Err(Error::Io {
                    kind: std::io::ErrorKind::StorageFull,
                    message: "faulty open: no space left on device".into(),
                });
            }
            faults.opens.fetch_add(1, Ordering::SeqCst);
            Ok(Faulty {
                faults: faults.clone(),
                broken: AtomicBool::new(false),
            })
        })
    }
}

/// One opening of the faulty engine.
pub struct Faulty {
    faults: Arc<Faults>,
    /// Set by a write that failed on a full disk: this instance refuses writes from then on.
    broken: AtomicBool,
}

impl Engine for Faulty {
    type Iter<'a> = FaultyIter<'a>;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.faults.data().get(key).cloned())
    }

    fn write(&self, ops: &[BatchOp]) -> Result<()> {
        let faults = &self.faults;
        faults.writes.fetch_add(1, Ordering::SeqCst);
        if on(&faults.hang_write) {
            faults.hang();
        }
        if on(&faults.panic_write) {
            panic!("faulty write: injected panic");
        }
        if on(&faults.fail_writes) {
            return Err(Error::Io {
                kind: std::io::ErrorKind::Other,
                message: "faulty write: injected I/O error".into(),
            });
        }
        if on(&self.broken) {
            return Err(Error::Io {
                kind: std::io::ErrorKind::Other,
                message: "faulty write: refused after an earlier write failed".into(),
            });
        }
        if on(&faults.full) {
            self.broken.store(true, Ordering::SeqCst);
            return Err(Error::Io {
                kind: std::io::ErrorKind::StorageFull,
                message: "faulty write: no space left on device".into(),
            });
        }
        BatchOp::apply_all(ops, &mut faults.data());
        Ok(())
    }

    fn iter<'a>(&'a self, range: &Range) -> Result<FaultyIter<'a>> {
        let data = self.faults.data();
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (range.lower(), range.upper());
        let mut entries: Vec<_> = data
            .range::<[u8], _>(bounds)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if range.reverse {
            entries.reverse();
        }
        Ok(FaultyIter {
            entries: entries.into_iter(),
            engine: self,
        })
    }
}

/// A snapshot copied at creation; it borrows its engine, as real engines' iterators do.
pub struct FaultyIter<'a> {
    entries: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    engine: &'a Faulty,
}

impl EngineIter for FaultyIter<'_> {
    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let entry = self.entries.next();
        // Only on user keys: the engine thread's own scans at open (of rave's reserved keys,
        // which begin 0xFF) still work, so that the engine can be reopened.
        if on(&self.engine.faults.panic_iterate)
            && entry
                .as_ref()
                .is_some_and(|(key, _)| key.first() != Some(&0xFF))
        {
            panic!("faulty iterator: injected panic");
        }
        Ok(entry)
    }
}

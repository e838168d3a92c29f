use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::engine_thread::{Engine, EngineIter, EngineStore};
use crate::{Backend, BatchOp, Capabilities, OpenOptions, Range, Result};

/// The reference engine: a `BTreeMap` in memory. Nothing survives the process; the path is
/// ignored. It is the model the conformance suite compares real engines against, and the
/// smallest example of a custom [`Backend`].
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryBackend;

impl Backend for MemoryBackend {
    type Store = EngineStore;

    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::in_memory()
            .with_exactly_once(true)
            .with_watch(true)
            .with_conditional_writes(true)
    }

    fn open(&self, _path: &Path, options: &OpenOptions) -> Result<EngineStore> {
        // Reopening (after a panic) opens the same map again.
        let engine = MemoryEngine::default();
        EngineStore::spawn_with("memory", options.watch.clone(), move || Ok(engine.clone()))
    }
}

/// The [`Engine`] behind [`MemoryBackend`]. Clones share one map, so an engine thread reopens
/// it by cloning it again, without losing data.
#[derive(Clone, Debug, Default)]
pub struct MemoryEngine {
    map: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl MemoryEngine {
    fn map(&self) -> MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // Every change is one `apply_all` or nothing that can panic halfway in practice; the map
        // is valid whatever a panicking thread left.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Engine for MemoryEngine {
    type Iter<'a> = std::vec::IntoIter<(Vec<u8>, Vec<u8>)>;

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map().get(key).cloned())
    }

    fn write(&self, ops: &[BatchOp]) -> Result<()> {
        BatchOp::apply_all(ops, &mut self.map());
        Ok(())
    }

    /// Cuts each range out of the map (two `split_off`s and an `append`): no key is listed or
    /// copied, and the whole write happens under one lock, so it is atomic.
    fn delete_ranges_and_write(&self, ranges: &[Range], ops: &[BatchOp]) -> Result<()> {
        let mut map = self.map();
        for range in ranges {
            let mut cut = match range.lower() {
                Bound::Unbounded => std::mem::take(&mut *map),
                Bound::Included(k) => map.split_off(k),
                Bound::Excluded(k) => map.split_off(&successor(k)),
            };
            let mut kept = match range.upper() {
                Bound::Unbounded => BTreeMap::new(),
                Bound::Excluded(k) => cut.split_off(k),
                Bound::Included(k) => cut.split_off(&successor(k)),
            };
            drop(cut);
            map.append(&mut kept);
        }
        BatchOp::apply_all(ops, &mut map);
        Ok(())
    }

    fn iter<'a>(&'a self, range: &Range) -> Result<Self::Iter<'a>> {
        // The snapshot is a copy of the range: simple and obviously isolated.
        let map = self.map();
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (range.lower(), range.upper());
        let mut entries: Vec<_> = map
            .range::<[u8], _>(bounds)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if range.reverse {
            entries.reverse();
        }
        Ok(entries.into_iter())
    }
}

/// The smallest key greater than `key`: `key ++ [0]`.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

impl EngineIter for std::vec::IntoIter<(Vec<u8>, Vec<u8>)> {
    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self.next())
    }
}

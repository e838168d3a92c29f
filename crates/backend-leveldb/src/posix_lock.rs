//! LevelDB's own lock on a database directory: a POSIX record lock (`fcntl`) on `<dir>/LOCK`.
//!
//! LevelDB (C++), Node's classic-level and rave-level take that lock. rusty-leveldb takes
//! `flock` on the same file, and rave's election lock is `rave.lock`: those programs see
//! neither, so without this lock rave would open, write and compact a database one of them has
//! open. The engine takes it before rusty-leveldb opens the directory and holds it while open.
//!
//! It is an open-file-description lock (`F_OFD_SETLK`, Linux 3.15+): it belongs to this
//! descriptor, so rusty-leveldb opening and closing its own descriptor of `LOCK` does not drop
//! it, and a second open in this process conflicts like another process. Where OFD locks do not
//! exist it is a classic `F_SETLK` lock, which belongs to the process: closing *any* descriptor
//! of the file in this process drops it, and a second open in this process does not conflict.
//! So in that mode the process keeps a list of the `LOCK` files it holds and refuses a second
//! open itself, before opening the file again. (rusty-leveldb keeps its own descriptor open
//! until the database closes, just before this lock is released.)
//!
//! Not on Windows: there rusty-leveldb's lock is `LockFileEx`, which LevelDB takes as well.

use std::path::Path;

use rave_api::Result;

/// The file LevelDB programs lock.
#[cfg_attr(not(unix), allow(dead_code))] // the lock is POSIX-only; Windows LevelDB takes none here
pub(crate) const LOCK_FILE: &str = "LOCK";

/// A POSIX lock on `<dir>/LOCK`, released when dropped.
#[derive(Debug)]
pub(crate) struct PosixLock {
    #[cfg(unix)]
    _held: unix::Held,
}

impl PosixLock {
    /// Locks `<dir>/LOCK` (creating it), or fails with an I/O error of kind `ResourceBusy`
    /// naming another LevelDB program when someone else holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<PosixLock> {
        #[cfg(unix)]
        {
            unix::Held::acquire(dir, unix::Mode::best()).map(|held| PosixLock { _held: held })
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(PosixLock {})
        }
    }

    /// [`PosixLock::acquire`] with classic process-owned locks, as where OFD locks do not exist.
    #[cfg(all(test, unix))]
    pub(crate) fn acquire_classic(dir: &Path) -> Result<PosixLock> {
        unix::Held::acquire(dir, unix::Mode::Process).map(|held| PosixLock { _held: held })
    }
}

#[cfg(unix)]
mod unix {
    use std::collections::HashSet;
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::sync::{Mutex, PoisonError};

    use rave_api::{Error, Result};

    use super::LOCK_FILE;

    /// Which kind of POSIX lock.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Mode {
        /// Owned by the open file description (`F_OFD_SETLK`).
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Description,
        /// Owned by the process (`F_SETLK`).
        Process,
    }

    impl Mode {
        /// OFD locks where the platform has them (the kernel may still refuse: see `acquire`).
        pub(super) fn best() -> Mode {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            return Mode::Description;
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            return Mode::Process;
        }

        fn command(self) -> libc::c_int {
            match self {
                #[cfg(any(target_os = "linux", target_os = "android"))]
                Mode::Description => libc::F_OFD_SETLK,
                Mode::Process => libc::F_SETLK,
            }
        }
    }

    /// The `LOCK` files (device, inode) this process holds with process-owned locks.
    static HELD_BY_PROCESS: Mutex<Option<HashSet<(u64, u64)>>> = Mutex::new(None);

    /// A locked descriptor of `LOCK`; closing it releases the lock.
    #[derive(Debug)]
    pub(super) struct Held {
        /// Always `Some` until dropped.
        file: Option<File>,
        /// Set for a process-owned lock: its entry in `HELD_BY_PROCESS`.
        registered: Option<(u64, u64)>,
    }

    impl Held {
        pub(super) fn acquire(dir: &Path, mode: Mode) -> Result<Held> {
            let path = dir.join(LOCK_FILE);
            if mode == Mode::Process {
                return Self::acquire_process_owned(&path);
            }
            let file = open(&path)?;
            match set_lock(&file, mode) {
                Ok(()) => Ok(Held {
                    file: Some(file),
                    registered: None,
                }),
                // The kernel has no OFD locks (before Linux 3.15).
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    drop(file);
                    Self::acquire_process_owned(&path)
                }
                Err(e) => Err(refusal(dir, &path, &file, &e)),
            }
        }

        fn acquire_process_owned(path: &Path) -> Result<Held> {
            let dir = path.parent().unwrap_or(path);
            let mut held = HELD_BY_PROCESS
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let held = held.get_or_insert_with(HashSet::new);
            // Checked before opening the file: a close of a second descriptor would drop the
            // lock this process already holds on it.
            if let Ok(meta) = std::fs::metadata(path)
                && held.contains(&(meta.dev(), meta.ino()))
            {
                return Err(busy(dir, "another handle in this process holds it".into()));
            }
            let file = open(path)?;
            let meta = file
                .metadata()
                .map_err(|e| Error::io(format!("stat {}", path.display()), &e))?;
            let id = (meta.dev(), meta.ino());
            match set_lock(&file, Mode::Process) {
                Ok(()) => {
                    held.insert(id);
                    Ok(Held {
                        file: Some(file),
                        registered: Some(id),
                    })
                }
                Err(e) => Err(refusal(dir, path, &file, &e)),
            }
        }
    }

    impl Drop for Held {
        fn drop(&mut self) {
            let Some(id) = self.registered else {
                // The lock goes with the descriptor.
                return;
            };
            // Closed under the list's mutex, before leaving the list: another open in this
            // process must not lock the file while this close is still to come (it would drop
            // that new lock).
            let mut held = HELD_BY_PROCESS
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            drop(self.file.take());
            if let Some(held) = held.as_mut() {
                held.remove(&id);
            }
        }
    }

    fn open(path: &Path) -> Result<File> {
        // As LevelDB: read-write, created if missing, never truncated.
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(format!("open {}", path.display()), &e))
    }

    /// A write lock over the whole file, without waiting.
    fn set_lock(file: &File, mode: Mode) -> io::Result<()> {
        let mut lock = whole_file(libc::F_WRLCK);
        // SAFETY: fcntl with a lock command reads the `flock` we pass, which outlives the call,
        // on a descriptor `file` owns.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), mode.command(), &mut lock) };
        if rc == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn whole_file(kind: libc::c_int) -> libc::flock {
        // SAFETY: `flock` is plain old data; all zeroes is valid (and OFD locks need l_pid 0).
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = kind as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        lock.l_start = 0;
        lock.l_len = 0;
        lock
    }

    /// The error for a failed lock: busy when someone holds it, else the OS error.
    fn refusal(dir: &Path, path: &Path, file: &File, e: &io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES) => {
                let holder = match holder(file) {
                    Some(pid) => format!("pid {pid} holds a POSIX lock on {}", path.display()),
                    None => format!("a POSIX lock on {} is held", path.display()),
                };
                busy(dir, holder)
            }
            _ => Error::io(format!("lock {}", path.display()), e),
        }
    }

    fn busy(dir: &Path, why: String) -> Error {
        Error::Io {
            kind: io::ErrorKind::ResourceBusy,
            message: format!(
                "the directory {} is in use by another LevelDB program: {why}",
                dir.display()
            ),
        }
    }

    /// The pid of a process holding a classic lock on `file`, if it says (`F_GETLK`; holders
    /// of OFD locks report -1).
    fn holder(file: &File) -> Option<i32> {
        let mut lock = whole_file(libc::F_WRLCK);
        // SAFETY: as in `set_lock`; F_GETLK writes the conflicting lock into `lock`.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
        (rc == 0 && lock.l_type != libc::F_UNLCK as libc::c_short && lock.l_pid > 0)
            .then_some(lock.l_pid)
    }
}

#[cfg(all(test, unix))]
mod tests;

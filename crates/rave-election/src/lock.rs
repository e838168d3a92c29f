use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The lock file inside the database directory.
pub const LOCK_FILE: &str = "rave.lock";
/// The file, written only by the lock holder, that names the current leader and its epoch.
pub const LEADER_FILE: &str = "rave.leader";

/// Who leads a directory: written by each new leader under the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderRecord {
    /// The leader's term; every new leader of a directory takes the next number.
    pub epoch: u64,
    /// The leader's process id.
    pub pid: u32,
}

/// The exclusive election lock on `<dir>/rave.lock`, held by the leader for as long as it leads.
///
/// It is an OS lock on an open file (`flock` on Unix): the OS drops it when the process dies,
/// however it dies, so a crashed leader never blocks the next election. Dropping the value
/// releases it.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    dir: PathBuf,
    record: LeaderRecord,
    /// Whether `record` is durably in [`LEADER_FILE`] (see [`DirLock::try_acquire_unrecorded`]).
    recorded: bool,
}

impl DirLock {
    /// Tries to take the lock without waiting. `Ok(None)` means another handle holds it.
    ///
    /// On success the epoch is advanced and recorded in [`LEADER_FILE`] before this returns, so
    /// epochs only grow and two leaders never share one.
    pub fn try_acquire(dir: &Path) -> io::Result<Option<DirLock>> {
        let Some(mut lock) = Self::try_acquire_unrecorded(dir)? else {
            return Ok(None);
        };
        lock.record()?;
        Ok(Some(lock))
    }

    /// Tries to take the lock without waiting, like [`DirLock::try_acquire`], but leaves the
    /// new epoch's record (a write, an fsync, a rename and a directory fsync: milliseconds,
    /// tens of them on a busy disk) to [`DirLock::record`].
    ///
    /// A new leader runs that record on one thread while it opens its engine on another, so a
    /// failover pays for the longer of the two, not their sum. The holder must not act as
    /// leader (bind the socket, serve) before `record` has returned `Ok`: that is what keeps
    /// epochs unique and growing. Until then the directory still names the previous leader,
    /// and a holder that dies leaves that record in place, so its successor takes the same
    /// epoch, one nobody has served in.
    pub fn try_acquire_unrecorded(dir: &Path) -> io::Result<Option<DirLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        let previous = read_leader_record(dir)?.map_or(0, |r| r.epoch);
        let record = LeaderRecord {
            epoch: previous + 1,
            pid: std::process::id(),
        };
        Ok(Some(DirLock {
            _file: file,
            dir: dir.to_path_buf(),
            record,
            recorded: false,
        }))
    }

    /// Writes this holder's record to [`LEADER_FILE`], durably, if it is not there yet.
    pub fn record(&mut self) -> io::Result<()> {
        if !self.recorded {
            write_leader_record(&self.dir, self.record)?;
            self.recorded = true;
        }
        Ok(())
    }

    /// Whether this holder's record is durably written (always, after
    /// [`DirLock::try_acquire`]).
    pub fn is_recorded(&self) -> bool {
        self.recorded
    }

    /// This leader's epoch.
    pub fn epoch(&self) -> u64 {
        self.record.epoch
    }

    /// The directory this lock guards.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The last leader recorded in `dir` (it may be dead: a record outlives its writer).
pub fn read_leader_record(dir: &Path) -> io::Result<Option<LeaderRecord>> {
    let text = match fs::read_to_string(dir.join(LEADER_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(epoch)), Some(Ok(pid))) => Ok(Some(LeaderRecord {
            epoch,
            pid: u32::try_from(pid).unwrap_or(0),
        })),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a leader record", dir.join(LEADER_FILE).display()),
        )),
    }
}

/// The record's text, fixed-width (32 bytes) so that a rewrite in place always covers the
/// whole previous record.
fn record_text(record: LeaderRecord) -> String {
    format!("{:020} {:010}\n", record.epoch, record.pid)
}

fn write_leader_record(dir: &Path, record: LeaderRecord) -> io::Result<()> {
    let text = record_text(record);
    let path = dir.join(LEADER_FILE);
    let tmp = dir.join(format!("{LEADER_FILE}.tmp"));
    match write_then_rename(&tmp, &path, &text) {
        // A full disk has no room for a new file, but the record already has its block: rewrite
        // it in place, so that a full disk still lets a new leader serve reads. (A 32-byte write
        // at offset 0 lies within one sector, which disks write whole.)
        Err(e) if e.kind() == io::ErrorKind::StorageFull && path.exists() => {
            let _ = fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), "disk full: rewriting the leader record in place");
            let mut file = OpenOptions::new().write(true).open(&path)?;
            file.write_all(text.as_bytes())?;
            file.set_len(text.len() as u64)?;
            file.sync_all()
        }
        other => other,
    }
}

/// Write-then-rename, so a crash mid-write never leaves a torn record (epochs must not reset),
/// then an fsync of the directory, so the rename itself survives power loss: without it a new
/// leader's record could vanish on a power cut and the next leader would reuse its epoch.
fn write_then_rename(tmp: &Path, path: &Path, text: &str) -> io::Result<()> {
    let mut file = File::create(tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes the directory's entries (a rename, a new file) durable. Windows has no directory fsync
/// (renames are journaled by NTFS), so there it does nothing.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_epochs_grow() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::try_acquire(dir.path()).unwrap().unwrap();
        assert_eq!(first.epoch(), 1);
        // A second handle in the same process is refused, like another process would be.
        assert!(DirLock::try_acquire(dir.path()).unwrap().is_none());
        drop(first);
        let second = DirLock::try_acquire(dir.path()).unwrap().unwrap();
        assert_eq!(second.epoch(), 2);
        let record = read_leader_record(dir.path()).unwrap().unwrap();
        assert_eq!(record.epoch, 2);
        assert_eq!(record.pid, std::process::id());
    }

    #[test]
    fn an_unrecorded_lock_takes_its_epoch_only_once_recorded() {
        let dir = tempfile::tempdir().unwrap();
        drop(DirLock::try_acquire(dir.path()).unwrap().unwrap());
        let mut lock = DirLock::try_acquire_unrecorded(dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(lock.epoch(), 2);
        assert!(!lock.is_recorded());
        // Held, though not recorded yet: nobody else gets it.
        assert!(DirLock::try_acquire(dir.path()).unwrap().is_none());
        assert_eq!(read_leader_record(dir.path()).unwrap().unwrap().epoch, 1);
        lock.record().unwrap();
        assert!(lock.is_recorded());
        assert_eq!(read_leader_record(dir.path()).unwrap().unwrap().epoch, 2);
        drop(lock);
        // A holder that dies before recording leaves its epoch to the next one, which then
        // records it (nobody served in it).
        drop(
            DirLock::try_acquire_unrecorded(dir.path())
                .unwrap()
                .unwrap(),
        );
        assert_eq!(
            DirLock::try_acquire(dir.path()).unwrap().unwrap().epoch(),
            3
        );
    }

    #[test]
    fn records_of_the_older_free_format_still_read() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LEADER_FILE), "7 4242\n").unwrap();
        let lock = DirLock::try_acquire(dir.path()).unwrap().unwrap();
        assert_eq!(lock.epoch(), 8);
        let text = fs::read_to_string(dir.path().join(LEADER_FILE)).unwrap();
        assert_eq!(text.len(), 32, "{text:?}");
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = DirLock::try_acquire(&dir.path().join("nope")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

//! A simulated power cut for durability tests: a pass-through FUSE file system over a backing
//! directory that remembers, per file, every write not yet made durable by `fsync` or
//! `fdatasync`, and on [`PowerCut::cut`] takes them all back.
//!
//! # What it models
//!
//! - **File data.** Each write (and each change of a file's length: truncate, `fallocate`) is
//!   applied to the backing file at once, with an undo record: the bytes it overwrote and the
//!   file's length before it. An `fsync` or `fdatasync` of the file (through any of its open
//!   handles: both sync the inode) drops the file's undo records: its data is now "on disk".
//!   [`PowerCut::cut`] applies every file's undo records in reverse order, which leaves each
//!   file exactly as it was at its last sync (content and length), as if the page cache had
//!   been lost. From then on every operation fails with `EIO`, so nothing written after the cut
//!   can be acknowledged.
//! - **What reaches it.** The mount asks for no writeback cache (fuser's default), so the kernel
//!   writes through: every `write(2)` reaches this file system before it returns, and every
//!   `fsync(2)`/`fdatasync(2)` arrives as a FUSE `FSYNC` (with its datasync flag), counted in
//!   [`Stats`]. Writes through a shared writable `mmap` would be written back lazily; the
//!   engines tested (redb, LevelDB, RocksDB in their default settings) do not write that way.
//!
//! # What it does not model
//!
//! - **Metadata** (create, mkdir, mknod, rename, unlink, rmdir, chmod, times) is durable at
//!   once: a file created and never synced survives the cut, empty; a rename never undone. A
//!   real file system may lose such changes unless the directory is synced. So this checks
//!   what an engine does with file data, not its handling of directories.
//! - **Torn or reordered writes** within what was not synced: everything unsynced is lost, all
//!   of it. A real disk may keep any subset of the unsynced pages (sectors torn in between);
//!   this is the one, harshest, outcome.
//! - **Hard and symbolic links** are refused, extended attributes are not supported, and file
//!   locks are the kernel's own (no lock operation is implemented, so the kernel keeps
//!   `flock` and POSIX locks locally: right on one machine). Unix sockets bound inside the
//!   mount work (a socket node is created in the backing directory; the kernel binds to the
//!   FUSE inode).
//! - The backing directory is never synced itself: the cut is simulated, the machine keeps
//!   running.
//!
//! # Use
//!
//! Mounting needs root (or `CAP_SYS_ADMIN`): fuser mounts with `mount(2)` directly, without
//! libfuse or `fusermount`.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use rave_powercut::PowerCut;
//! let backing = tempfile::tempdir()?;
//! let mountpoint = tempfile::tempdir()?;
//! let fs = PowerCut::mount(backing.path(), mountpoint.path())?;
//! // ... processes write and fsync under mountpoint ...
//! let report = fs.cut(); // unsynced data is gone; the mount now fails everything with EIO
//! println!("{report:?} {:?}", fs.stats());
//! // ... kill the processes ...
//! fs.unmount()?; // then open backing.path() directly: it is the disk after the power cut
//! # Ok(()) }
//! ```
#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CString, OsStr};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    TimeOrNow, WriteFlags,
};

/// How long the kernel may cache attributes and names. Nothing changes the backing directory
/// behind the mount's back, and writes go through the same kernel, so any value is right; a
/// short one keeps stale state after the cut short-lived.
const TTL: Duration = Duration::from_secs(1);

/// FUSE's inode number of the mount's root.
const ROOT: u64 = 1;

/// How long [`PowerCut::unmount`] retries an unmount that finds the file system busy (processes
/// just killed may still be closing their files) before detaching it lazily.
const UNMOUNT_PATIENCE: Duration = Duration::from_secs(3);

/// How long [`PowerCut::unmount`] waits for the session thread to end after the unmount.
const SESSION_END_PATIENCE: Duration = Duration::from_secs(5);

/// What the file system has seen since it was mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// `write` requests.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// `fsync` requests (full syncs).
    pub fsyncs: u64,
    /// `fdatasync` requests (FUSE `FSYNC` with the datasync flag).
    pub fdatasyncs: u64,
    /// `fsync` of a directory.
    pub dir_syncs: u64,
    /// Syncs of files (both kinds) by file name (the last component of its path when synced).
    pub syncs_by_name: BTreeMap<String, u64>,
    /// Writes and length changes not yet synced, over all files.
    pub unsynced: u64,
    /// Whether [`PowerCut::cut`] has happened.
    pub cut: bool,
}

/// What [`PowerCut::cut`] took back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files that had unsynced changes.
    pub files: u64,
    /// Unsynced writes and length changes undone.
    pub changes: u64,
    /// Bytes of unsynced writes lost.
    pub bytes_lost: u64,
    /// Undo records that could not be applied to the backing file (each an I/O error of the
    /// backing file system; the cut is then not faithful, and a test should fail).
    pub errors: Vec<String>,
}

/// A mounted power-cut file system (see the crate docs). Unmounted when dropped.
#[derive(Debug)]
pub struct PowerCut {
    shared: Arc<Shared>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    backing: PathBuf,
}

impl PowerCut {
    /// Mounts a view of `backing` (a directory) on `mountpoint` (an empty directory). Needs
    /// root. Files of `backing` that exist now count as synced.
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<PowerCut> {
        let backing = backing.canonicalize()?;
        let mountpoint = mountpoint.canonicalize()?;
        if !std::fs::metadata(&backing)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", backing.display()),
            ));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(backing.clone())),
            cutting: AtomicBool::new(false),
        });
        let fs = PowerCutFs {
            shared: shared.clone(),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("powercut".into()),
            MountOption::Subtype("powercut".into()),
            MountOption::NoAtime,
        ];
        let session = fuser::spawn_mount(fs, &mountpoint, &config).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("mount FUSE on {}: {e}", mountpoint.display()),
            )
        })?;
        Ok(PowerCut {
            shared,
            session: Some(session),
            mountpoint,
            backing,
        })
    }

    /// Where the file system is mounted (canonical).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The backing directory (canonical): after the cut and the unmount, the disk as a power
    /// cut left it.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Cuts the power: every file's unsynced changes are undone in the backing directory, and
    /// every later operation on the mount fails with `EIO`. A second cut does nothing.
    pub fn cut(&self) -> CutReport {
        self.shared.cutting.store(true, Ordering::SeqCst);
        let mut state = self.shared.lock();
        if state.cut {
            return CutReport::default();
        }
        state.cut = true;
        let mut report = CutReport::default();
        for (ino, dirty) in state.dirty.drain() {
            report.files += 1;
            for undo in dirty.undo.iter().rev() {
                report.changes += 1;
                report.bytes_lost += undo.written;
                if let Err(e) = undo.apply(&dirty.file) {
                    report.errors.push(format!(
                        "undo a change of inode {ino} at {}: {e}",
                        undo.offset
                    ));
                }
            }
        }
        state.handles.clear();
        report
    }

    /// What the file system has seen so far.
    pub fn stats(&self) -> Stats {
        let state = self.shared.lock();
        let mut stats = state.stats.clone();
        stats.unsynced = state.dirty.values().map(|d| d.undo.len() as u64).sum();
        stats.cut = state.cut;
        stats
    }

    /// Unmounts. Processes using the mount must be gone (killed and reaped); while files are
    /// still open it retries for a few seconds, then detaches the mount lazily (`MNT_DETACH`)
    /// and says so in the error.
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let path = CString::new(self.mountpoint.as_os_str().as_bytes())?;
        let started = Instant::now();
        let mut result = Ok(());
        loop {
            // SAFETY: `path` is a NUL-terminated string that outlives the call, which does not
            // keep it.
            if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                // Not mounted any more.
                Some(libc::EINVAL) => break,
                Some(libc::EBUSY) if started.elapsed() < UNMOUNT_PATIENCE => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    // SAFETY: as above.
                    unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
                    result = Err(io::Error::new(
                        err.kind(),
                        format!(
                            "unmount {}: {err}; detached lazily instead",
                            self.mountpoint.display()
                        ),
                    ));
                    break;
                }
            }
        }
        // The session's thread ends when the kernel closes the connection: at once after an
        // unmount, or when the last user of a lazily detached mount goes. Bounded either way:
        // a thread still running then is left behind (the process's exit ends it).
        let waited = Instant::now();
        while !session.guard.is_finished() && waited.elapsed() < SESSION_END_PATIENCE {
            std::thread::sleep(Duration::from_millis(10));
        }
        if session.guard.is_finished()
            && let Err(e) = session.join()
        {
            result = result.and(Err(e));
        }
        result
    }
}

impl Drop for PowerCut {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            eprintln!("powercut: {e}");
        }
    }
}

/// The state shared by the session thread and the [`PowerCut`] handle.
#[derive(Debug)]
struct Shared {
    /// One lock for everything: each operation, and the cut, is atomic with respect to the
    /// others (an operation either happened before the cut, with its undo record, or fails).
    state: Mutex<State>,
    /// Set by [`PowerCut::cut`] before it takes the lock: operations not yet started fail at
    /// once instead of competing for the lock (a busy session thread, re-taking it request
    /// after request, could otherwise hold the cut back for hundreds of milliseconds).
    cutting: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it but a bug; the state is still usable then.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct State {
    backing: PathBuf,
    /// FUSE inode number → its node. Numbers are never reused, so the kernel cannot confuse a
    /// deleted file with a new one at the same path.
    nodes: HashMap<u64, Node>,
    /// Backing path → inode number, for the nodes that are still linked.
    by_path: HashMap<PathBuf, u64>,
    next_ino: u64,
    handles: HashMap<u64, Arc<File>>,
    next_fh: u64,
    /// Inode number → its unsynced changes.
    dirty: HashMap<u64, Dirty>,
    cut: bool,
    stats: Stats,
}

#[derive(Debug)]
struct Node {
    /// The backing path; `None` once unlinked (open handles still reach the file).
    path: Option<PathBuf>,
}

/// A file's unsynced changes, oldest first, and the file to undo them through.
#[derive(Debug)]
struct Dirty {
    file: Arc<File>,
    undo: Vec<Undo>,
}

/// How to take one change back: write `old` at `offset`, then set the length to `old_len`.
/// This restores a write (`old` = the bytes it overwrote within the old length) and a length
/// change alike (shrink: `old` = the bytes cut off, at the new length; grow: `old` empty).
#[derive(Debug)]
struct Undo {
    offset: u64,
    old: Vec<u8>,
    old_len: u64,
    /// Bytes the change wrote (for the report).
    written: u64,
}

impl Undo {
    fn apply(&self, file: &File) -> io::Result<()> {
        file.write_all_at(&self.old, self.offset)?;
        file.set_len(self.old_len)
    }
}

impl State {
    fn new(backing: PathBuf) -> State {
        let mut nodes = HashMap::new();
        let mut by_path = HashMap::new();
        nodes.insert(
            ROOT,
            Node {
                path: Some(backing.clone()),
            },
        );
        by_path.insert(backing.clone(), ROOT);
        State {
            backing,
            nodes,
            by_path,
            next_ino: ROOT + 1,
            handles: HashMap::new(),
            next_fh: 1,
            dirty: HashMap::new(),
            cut: false,
            stats: Stats::default(),
        }
    }

    /// The backing path of `ino`, if it is still linked.
    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.nodes
            .get(&ino.0)
            .and_then(|n| n.path.clone())
            .ok_or(Errno::ENOENT)
    }

    /// The backing path of `name` in the directory `parent`.
    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        if name.as_bytes().contains(&b'/') || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        Ok(self.path(parent)?.join(name))
    }

    /// The inode number of the linked file at `path`, made up on first sight.
    fn ino_of(&mut self, path: &Path) -> u64 {
        if let Some(&ino) = self.by_path.get(path) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                path: Some(path.to_path_buf()),
            },
        );
        self.by_path.insert(path.to_path_buf(), ino);
        ino
    }

    /// `path` is no longer linked (unlinked, removed, or replaced by a rename).
    fn unlinked(&mut self, path: &Path) {
        if let Some(ino) = self.by_path.remove(path)
            && let Some(node) = self.nodes.get_mut(&ino)
        {
            node.path = None;
        }
    }

    /// The attributes of `ino`: through the open handle `fh` when given (the file may be
    /// unlinked), else its path, else any open handle of it.
    fn attr(&self, ino: INodeNo, fh: Option<FileHandle>) -> Result<FileAttr, Errno> {
        if let Some(file) = fh.and_then(|fh| self.handles.get(&fh.0)) {
            return Ok(attr(ino.0, &file.metadata()?));
        }
        match self.path(ino) {
            Ok(path) => Ok(attr(ino.0, &std::fs::symlink_metadata(path)?)),
            Err(e) => Err(e),
        }
    }

    /// The open handle `fh`.
    fn handle(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        self.handles.get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    /// Records the undo of a change about to be made to `file` (inode `ino`): the bytes in
    /// `offset..offset + len` that exist now, and the current length.
    fn record(
        &mut self,
        ino: u64,
        file: &Arc<File>,
        offset: u64,
        len: u64,
        written: u64,
    ) -> Result<(), Errno> {
        let old_len = file.metadata()?.len();
        let end = offset.saturating_add(len).min(old_len);
        let mut old = vec![0u8; end.saturating_sub(offset) as usize];
        if !old.is_empty() {
            file.read_exact_at(&mut old, offset)?;
        }
        self.dirty
            .entry(ino)
            .or_insert_with(|| Dirty {
                file: file.clone(),
                undo: Vec::new(),
            })
            .undo
            .push(Undo {
                offset,
                old,
                old_len,
                written,
            });
        Ok(())
    }

    /// Sets the length of `file` (inode `ino`) to `size`, with its undo record.
    fn truncate(&mut self, ino: u64, file: &Arc<File>, size: u64) -> Result<(), Errno> {
        let old_len = file.metadata()?.len();
        if old_len == size {
            return Ok(());
        }
        self.record(ino, file, size, old_len.saturating_sub(size), 0)?;
        file.set_len(size)?;
        Ok(())
    }

    fn add_handle(&mut self, file: File) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, Arc::new(file));
        fh
    }
}

/// The file attributes FUSE wants, from the backing file's.
fn attr(ino: u64, meta: &Metadata) -> FileAttr {
    let time = |secs: i64, nsecs: i64| {
        let nanos = u32::try_from(nsecs).unwrap_or(0);
        match u64::try_from(secs) {
            Ok(secs) => UNIX_EPOCH + Duration::new(secs, nanos),
            Err(_) => UNIX_EPOCH,
        }
    };
    FileAttr {
        ino: INodeNo(ino),
        size: meta.size(),
        blocks: meta.blocks(),
        atime: time(meta.atime(), meta.atime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile),
        perm: (meta.mode() & 0o7777) as u16,
        nlink: u32::try_from(meta.nlink()).unwrap_or(u32::MAX),
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: u32::try_from(meta.rdev()).unwrap_or(0),
        blksize: u32::try_from(meta.blksize()).unwrap_or(4096),
        flags: 0,
    }
}

fn cstring(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

/// The last OS error as FUSE's errno.
fn last_errno() -> Errno {
    Errno::from(io::Error::last_os_error())
}

/// Opens the backing file at `path` for reading and writing whatever the caller asked: the
/// file system must be able to read old bytes and undo changes through any handle. The flags
/// that act at open (`O_CREAT`, `O_EXCL`, `O_TRUNC`: the kernel sends a truncate as a separate
/// setattr) or on every write (`O_APPEND`: the kernel sends the offset) are left out.
fn open_backing(path: &Path, extra: i32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(extra | libc::O_CLOEXEC)
        .open(path)
}

/// `std::time::SystemTime` → `timespec` for `utimensat`; `None` leaves the time unchanged.
fn timespec(time: Option<TimeOrNow>) -> libc::timespec {
    match time {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            libc::timespec {
                tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: d.subsec_nanos() as libc::c_long,
            }
        }
    }
}

/// The FUSE side: every operation takes the state's lock and fails with `EIO` after the cut.
#[derive(Debug)]
struct PowerCutFs {
    shared: Arc<Shared>,
}

impl PowerCutFs {
    /// The state, or `EIO` once the power is cut.
    fn live(&self) -> Result<MutexGuard<'_, State>, Errno> {
        if self.shared.cutting.load(Ordering::SeqCst) {
            return Err(Errno::EIO);
        }
        let state = self.shared.lock();
        if state.cut {
            return Err(Errno::EIO);
        }
        Ok(state)
    }

    fn entry(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let mut state = self.live()?;
        let path = state.child(parent, name)?;
        let meta = std::fs::symlink_metadata(&path)?;
        let ino = state.ino_of(&path);
        Ok(attr(ino, &meta))
    }

    #[allow(clippy::too_many_arguments)]
    fn do_setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr, Errno> {
        let mut state = self.live()?;
        let handle = fh.and_then(|fh| state.handles.get(&fh.0).cloned());
        let path = state.path(ino).ok();
        if let Some(size) = size {
            let file = match &handle {
                Some(file) => file.clone(),
                None => Arc::new(open_backing(&path.clone().ok_or(Errno::ENOENT)?, 0)?),
            };
            state.truncate(ino.0, &file, size)?;
        }
        if let Some(mode) = mode {
            let perms = std::fs::Permissions::from_mode(mode & 0o7777);
            match (&handle, &path) {
                (Some(file), _) => file.set_permissions(perms)?,
                (None, Some(path)) => std::fs::set_permissions(path, perms)?,
                (None, None) => return Err(Errno::ENOENT),
            }
        }
        if uid.is_some() || gid.is_some() {
            match (&handle, &path) {
                (Some(file), _) => std::os::unix::fs::fchown(file.as_ref(), uid, gid)?,
                (None, Some(path)) => std::os::unix::fs::lchown(path, uid, gid)?,
                (None, None) => return Err(Errno::ENOENT),
            }
        }
        if atime.is_some() || mtime.is_some() {
            let times = [timespec(atime), timespec(mtime)];
            let rc = match (&handle, &path) {
                // SAFETY: the descriptor is open (the Arc holds the file) and `times` is an
                // array of two timespecs, as futimens wants.
                (Some(file), _) => unsafe { libc::futimens(file.as_raw_fd(), times.as_ptr()) },
                (None, Some(path)) => {
                    let c = cstring(path)?;
                    // SAFETY: `c` is NUL-terminated and `times` holds two timespecs; neither
                    // is kept after the call.
                    unsafe {
                        libc::utimensat(
                            libc::AT_FDCWD,
                            c.as_ptr(),
                            times.as_ptr(),
                            libc::AT_SYMLINK_NOFOLLOW,
                        )
                    }
                }
                (None, None) => return Err(Errno::ENOENT),
            };
            if rc != 0 {
                return Err(last_errno());
            }
        }
        state.attr(ino, fh)
    }

    fn do_mknod(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        rdev: u32,
    ) -> Result<FileAttr, Errno> {
        let mut state = self.live()?;
        let path = state.child(parent, name)?;
        let c = cstring(&path)?;
        // SAFETY: `c` is NUL-terminated and not kept after the call.
        if unsafe { libc::mknod(c.as_ptr(), mode, libc::dev_t::from(rdev)) } != 0 {
            return Err(last_errno());
        }
        let meta = std::fs::symlink_metadata(&path)?;
        let ino = state.ino_of(&path);
        Ok(attr(ino, &meta))
    }

    fn do_create(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64), Errno> {
        let mut state = self.live()?;
        let path = state.child(parent, name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(mode & 0o7777)
            .custom_flags(libc::O_CLOEXEC | (flags & libc::O_EXCL))
            .open(&path)?;
        let meta = file.metadata()?;
        let ino = state.ino_of(&path);
        let fh = state.add_handle(file);
        Ok((attr(ino, &meta), fh))
    }

    fn do_rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.bits() != 0 {
            // RENAME_NOREPLACE, RENAME_EXCHANGE: not needed by the engines tested.
            return Err(Errno::EINVAL);
        }
        let mut state = self.live()?;
        let from = state.child(parent, name)?;
        let to = state.child(newparent, newname)?;
        std::fs::rename(&from, &to)?;
        state.unlinked(&to);
        // Move the node, and everything under it when it is a directory.
        let moved: Vec<(PathBuf, u64)> = state
            .by_path
            .iter()
            .filter(|(p, _)| p.starts_with(&from))
            .map(|(p, &ino)| (p.clone(), ino))
            .collect();
        for (old, ino) in moved {
            let Ok(rest) = old.strip_prefix(&from) else {
                continue;
            };
            let new = if rest.as_os_str().is_empty() {
                to.clone()
            } else {
                to.join(rest)
            };
            state.by_path.remove(&old);
            state.by_path.insert(new.clone(), ino);
            if let Some(node) = state.nodes.get_mut(&ino) {
                node.path = Some(new);
            }
        }
        Ok(())
    }

    fn do_readdir(
        &self,
        ino: INodeNo,
        offset: u64,
        reply: &mut ReplyDirectory,
    ) -> Result<(), Errno> {
        let mut state = self.live()?;
        let path = state.path(ino)?;
        let parent = match path.parent() {
            Some(p) if path != state.backing => state.ino_of(p),
            _ => ROOT,
        };
        let mut entries = vec![
            (ino.0, FileType::Directory, OsStr::new(".").to_os_string()),
            (parent, FileType::Directory, OsStr::new("..").to_os_string()),
        ];
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let kind = entry
                .file_type()
                .ok()
                .and_then(FileType::from_std)
                .unwrap_or(FileType::RegularFile);
            let child = state.ino_of(&entry.path());
            entries.push((child, kind, entry.file_name()));
        }
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(skip) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        Ok(())
    }

    fn do_write(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
    ) -> Result<u32, Errno> {
        let mut state = self.live()?;
        let file = state.handle(fh)?;
        let len = data.len() as u64;
        state.record(ino.0, &file, offset, len, len)?;
        file.write_all_at(data, offset)?;
        state.stats.writes += 1;
        state.stats.bytes_written += len;
        u32::try_from(data.len()).map_err(|_| Errno::EINVAL)
    }

    fn do_fsync(&self, ino: INodeNo, datasync: bool) -> Result<(), Errno> {
        let mut state = self.live()?;
        // Durable now: every change of the inode, through whichever handle.
        state.dirty.remove(&ino.0);
        if datasync {
            state.stats.fdatasyncs += 1;
        } else {
            state.stats.fsyncs += 1;
        }
        let name = state
            .nodes
            .get(&ino.0)
            .and_then(|n| n.path.as_ref())
            .and_then(|p| p.file_name())
            .map_or_else(
                || "(unlinked)".to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
        *state.stats.syncs_by_name.entry(name).or_default() += 1;
        Ok(())
    }

    fn do_fallocate(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        if mode & !libc::FALLOC_FL_KEEP_SIZE != 0 {
            // Punching holes, zeroing, collapsing ranges: not needed by the engines tested.
            return Err(Errno::EOPNOTSUPP);
        }
        let mut state = self.live()?;
        let file = state.handle(fh)?;
        // Only the length can change (allocated blocks read as zeros, as before): the undo
        // restores the current length. Recorded first, so that it sees that length; harmless
        // when the length does not change.
        let (off, len) = (
            libc::off_t::try_from(offset).map_err(|_| Errno::EINVAL)?,
            libc::off_t::try_from(length).map_err(|_| Errno::EINVAL)?,
        );
        state.record(ino.0, &file, file.metadata()?.len(), 0, 0)?;
        // SAFETY: the descriptor is open (the Arc holds the file); fallocate takes integers only.
        if unsafe { libc::fallocate(file.as_raw_fd(), mode, off, len) } != 0 {
            return Err(last_errno());
        }
        Ok(())
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.entry(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.live().and_then(|state| state.attr(ino, fh)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.do_setattr(ino, mode, uid, gid, size, atime, mtime, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        match self.do_mknod(parent, name, mode & !umask, rdev) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.live().and_then(|mut state| {
            let path = state.child(parent, name)?;
            std::fs::DirBuilder::new()
                .mode(mode & !umask & 0o7777)
                .create(&path)?;
            let meta = std::fs::symlink_metadata(&path)?;
            let ino = state.ino_of(&path);
            Ok(attr(ino, &meta))
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.live().and_then(|mut state| {
            let path = state.child(parent, name)?;
            std::fs::remove_file(&path)?;
            state.unlinked(&path);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.live().and_then(|mut state| {
            let path = state.child(parent, name)?;
            std::fs::remove_dir(&path)?;
            state.unlinked(&path);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.do_rename(parent, name, newparent, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let result = self.live().and_then(|mut state| {
            let path = state.path(ino)?;
            let file = open_backing(&path, flags.0 & libc::O_NOFOLLOW)?;
            Ok(state.add_handle(file))
        });
        match result {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.live().and_then(|state| {
            let file = state.handle(fh)?;
            let mut buf = vec![0u8; size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Errno::from(e)),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        });
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.do_write(ino, fh, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is buffered here; after the cut, close(2) reports the lost data.
        match self.live() {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Also after the cut: the kernel forgets the handle whatever the answer. Unsynced
        // changes keep their own reference to the file until synced or undone.
        self.shared.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.do_fsync(ino, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.do_readdir(ino, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Metadata is durable at once (see the crate docs): only counted.
        match self.live() {
            Ok(mut state) => {
                state.stats.dir_syncs += 1;
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let result = self.live().and_then(|state| {
            let c = cstring(&state.backing)?;
            // SAFETY: statvfs is plain old data; all zeros is a valid value to overwrite.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            // SAFETY: `c` is NUL-terminated, `st` a valid place to write; neither is kept.
            if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
                return Err(last_errno());
            }
            Ok(st)
        });
        match result {
            Ok(st) => reply.statfs(
                st.f_blocks,
                st.f_bfree,
                st.f_bavail,
                st.f_files,
                st.f_ffree,
                u32::try_from(st.f_bsize).unwrap_or(4096),
                u32::try_from(st.f_namemax).unwrap_or(255),
                u32::try_from(st.f_frsize).unwrap_or(4096),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.do_create(parent, name, mode & !umask, flags) {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.do_fallocate(ino, fh, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

#[cfg(test)]
mod tests;

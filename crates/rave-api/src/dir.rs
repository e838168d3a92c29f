//! The database directory: checking what is there before an engine opens it.
//!
//! Every engine keeps its files inside one directory. [`prepare`] runs before the engine opens:
//! it refuses a path that is a regular file, a directory that holds another engine's database,
//! a missing database without `create_if_missing` and an existing one with `error_if_exists`,
//! each with its own typed error; then it creates the directory and records the engine's name in
//! [`ENGINE_FILE`] so that the next opener knows what is there.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::{Error, OpenOptions, Result};

/// The file, inside the directory, that names the engine whose database it holds.
pub const ENGINE_FILE: &str = "rave-engine";

/// The format of a directory's contents that this release writes: rave's reserved key block
/// ([`crate::keyspace`]) and redb's checksummed values (format 2), and the sequence record that
/// carries the change log's state ([`crate::changelog`], format 3), and redb's journal
/// ([`crate::journal`], format 4: a release that does not know the journal would open a redb file
/// without the acknowledged writes still in it after a crash). It is the engine record's
/// second line, `format N`. Releases before format 2 read the whole record as the engine's
/// name, so they refuse such a directory as another engine's instead of misreading it; later
/// ones refuse a newer format as `Unsupported`.
pub const FORMAT: u32 = 4;

/// Which engine's database `path` holds, if any: the recorded name, or else a guess from the
/// engines' well-known file names (so that a plain redb, LevelDB or RocksDB directory is
/// recognised too).
pub fn detect(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path.join(ENGINE_FILE)) {
        Ok(record) => {
            let name = record.lines().next().unwrap_or_default().trim();
            return Ok(Some(name.to_string()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(
                format!("read {}", path.join(ENGINE_FILE).display()),
                &e,
            ));
        }
    }
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("list {}", path.display()), &e)),
    };
    let mut has_current = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "data.redb" {
            return Ok(Some("redb".into()));
        }
        if name.starts_with("OPTIONS-") || name == "IDENTITY" {
            return Ok(Some("rocksdb".into()));
        }
        has_current |= name == "CURRENT";
    }
    Ok(has_current.then(|| "leveldb".into()))
}

/// Checks `path` for `engine` under `options`, then creates the directory and the engine record
/// as needed. Blocking.
pub fn prepare(path: &Path, options: &OpenOptions, engine: &str) -> Result<()> {
    match fs::metadata(path) {
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::invalid(format!(
                "{} is not a directory (a database is a directory)",
                path.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("stat {}", path.display()), &e)),
    }
    match detect(path)? {
        Some(found) if found != engine => Err(Error::WrongEngine {
            path: path.to_path_buf(),
            expected: engine.to_string(),
            found,
        }),
        Some(_) if options.error_if_exists => Err(Error::AlreadyExists {
            path: path.to_path_buf(),
        }),
        Some(_) => upgrade_record(path, engine),
        None if !options.create_if_missing => Err(Error::DoesNotExist {
            path: path.to_path_buf(),
        }),
        None => {
            fs::create_dir_all(path)
                .map_err(|e| Error::io(format!("create {}", path.display()), &e))?;
            write_engine_record(path, engine)
        }
    }
}

/// The format recorded in `path`'s engine record (0: a record from before formats, or none).
fn recorded_format(path: &Path) -> u32 {
    fs::read_to_string(path.join(ENGINE_FILE))
        .ok()
        .and_then(|record| {
            let line = record.lines().nth(1)?;
            line.trim().strip_prefix("format ")?.parse().ok()
        })
        .unwrap_or(0)
}

/// Refuses a directory written by a newer release, and records [`FORMAT`] in one written by an
/// older one (its data is migrated when the engine opens). Recording is best effort: a full disk
/// must still let a leader open the directory and serve reads; the next open tries again.
fn upgrade_record(path: &Path, engine: &str) -> Result<()> {
    let format = recorded_format(path);
    if format > FORMAT {
        return Err(Error::Unsupported {
            message: format!(
                "{} was written by a newer release of rave (format {format}; this release \
                 reads formats up to {FORMAT})",
                path.display()
            ),
        });
    }
    if format < FORMAT
        && let Err(err) = write_engine_record(path, engine)
    {
        tracing::warn!(%err, "could not record the directory's format; will retry at the next open");
    }
    Ok(())
}

fn write_engine_record(path: &Path, engine: &str) -> Result<()> {
    let tmp = path.join(format!("{ENGINE_FILE}.tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(format!("{engine}\nformat {FORMAT}\n").as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path.join(ENGINE_FILE))?;
        // The rename is durable only once the directory is synced (power loss could otherwise
        // leave a database without its engine record).
        sync_dir(path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(format!("write {}", path.join(ENGINE_FILE).display()), &e)
    })
}

/// Makes a directory's entries (a rename, a new file) durable. Windows has no directory fsync
/// (NTFS journals renames), so there it does nothing.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
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
    use crate::ErrorKind;

    fn tmp() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "rave-dir-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// A record from before formats gets the format line (so earlier releases, which compare the
    /// whole record with the engine's name, refuse the directory); a newer format is refused.
    #[test]
    fn formats_are_recorded_and_newer_ones_refused() {
        let dir = tmp();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(ENGINE_FILE), "redb\n").unwrap();
        prepare(&dir, &OpenOptions::default(), "redb").unwrap();
        let record = fs::read_to_string(dir.join(ENGINE_FILE)).unwrap();
        assert_eq!(record, format!("redb\nformat {FORMAT}\n"));
        assert_ne!(
            record.trim(),
            "redb",
            "an earlier release would still take it as redb's"
        );
        assert_eq!(detect(&dir).unwrap().as_deref(), Some("redb"));
        fs::write(
            dir.join(ENGINE_FILE),
            format!("redb\nformat {}\n", FORMAT + 1),
        )
        .unwrap();
        let err = prepare(&dir, &OpenOptions::default(), "redb").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn checks_in_order() {
        let dir = tmp();
        let no_create = OpenOptions {
            create_if_missing: false,
            ..OpenOptions::default()
        };
        let err = prepare(&dir, &no_create, "redb").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DoesNotExist);
        prepare(&dir, &OpenOptions::default(), "redb").unwrap();
        assert_eq!(detect(&dir).unwrap().as_deref(), Some("redb"));
        let err = prepare(&dir, &OpenOptions::default(), "leveldb").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongEngine);
        assert!(err.to_string().contains("redb"), "{err}");
        let exclusive = OpenOptions {
            error_if_exists: true,
            ..OpenOptions::default()
        };
        let err = prepare(&dir, &exclusive, "redb").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        let file = dir.join("plain-file");
        fs::write(&file, b"x").unwrap();
        let err = prepare(&file, &OpenOptions::default(), "redb").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        fs::remove_dir_all(&dir).unwrap();
    }
}

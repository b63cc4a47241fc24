//! One writer per history database: a coordinator holds an exclusive `flock` on
//! `<database>.lock` (created 0600, beside the database) for as long as it runs, taken before
//! anything binds or writes. A second coordinator given the same `database` refuses to start,
//! naming the file and the process that holds it. The kernel drops the lock when the holder's
//! last descriptor closes, so a crashed (even SIGKILLed) coordinator never leaves it behind;
//! the PID written into the file is only for the message, never trusted as proof of a holder.
//!
//! [`lock_holder`] tells who holds the lock without taking it (for `check --online`): on Linux
//! it reads `/proc/locks`, matching the lock file's device and inode.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Why the database's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "history file {database} is in use by another coordinator ({holder}, lock {lock}): stop it, or give this coordinator its own `database`",
        database = database.display(),
        lock = lock.display(),
        holder = match pid { Some(p) => format!("pid {p}"), None => "pid unknown".to_string() },
    )]
    Held {
        database: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    /// The lock file could not be opened, locked or written.
    #[error("lock file {lock}: {source}", lock = lock.display())]
    Io {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct DatabaseLock {
    // Never read: holding the open file is what holds the lock.
    _file: File,
    path: PathBuf,
}

impl DatabaseLock {
    /// Takes the exclusive lock of `database` without waiting, and writes this process's PID
    /// into the lock file.
    pub fn acquire(database: &Path) -> Result<DatabaseLock, LockError> {
        let path = lock_path(database);
        let io = |source| LockError::Io {
            lock: path.clone(),
            source,
        };
        // Not truncated on open: until the lock is ours, the file holds the holder's PID.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = read_pid(&mut file).or_else(|| lock_holder(database));
                return Err(LockError::Held {
                    database: database.to_owned(),
                    lock: path,
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DatabaseLock { _file: file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<database>.lock`.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    // A PID is a few digits; 64 bytes bound what a stray file could make us read.
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// The PID of the process holding `database`'s lock, if one does; never takes the lock.
/// `None` when nobody holds it, when there is no lock file, or where `/proc/locks` cannot be
/// read.
pub fn lock_holder(database: &Path) -> Option<u32> {
    let meta = std::fs::metadata(lock_path(database)).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in_proc_locks(
        &locks,
        dev_major(meta.dev()),
        dev_minor(meta.dev()),
        meta.ino(),
    )
}

/// The glibc / Linux encoding of `st_dev`.
fn dev_major(dev: u64) -> u64 {
    ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)
}

fn dev_minor(dev: u64) -> u64 {
    (dev & 0xff) | ((dev >> 12) & !0xff)
}

/// The PID of the `FLOCK` lock on `major:minor:inode` in the text of `/proc/locks`, whose lines
/// read `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF` (device numbers in hex, the inode in
/// decimal); blocked waiters (`->`) are not holders.
fn holder_in_proc_locks(text: &str, major: u64, minor: u64, inode: u64) -> Option<u32> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A waiter's line reads `2: -> FLOCK ...`: its second field is not `FLOCK`.
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let pid: u32 = fields.get(4)?.parse().ok()?;
        let mut id = fields.get(5)?.split(':');
        let ma = u64::from_str_radix(id.next()?, 16).ok()?;
        let mi = u64::from_str_radix(id.next()?, 16).ok()?;
        let ino: u64 = id.next()?.parse().ok()?;
        (ma == major && mi == minor && ino == inode).then_some(pid)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_naming_the_file_and_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("history.db");
        assert_eq!(lock_holder(&db), None, "no lock file yet");

        let held = DatabaseLock::acquire(&db).unwrap();
        assert_eq!(held.path(), dir.path().join("history.db.lock"));
        let mode = std::fs::metadata(held.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let me = std::process::id();
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{me}\n")
        );
        assert_eq!(lock_holder(&db), Some(me));

        // flock locks belong to the open file, so a second open in this process conflicts
        // just as another process would.
        let refused = DatabaseLock::acquire(&db).unwrap_err();
        assert!(
            matches!(&refused, LockError::Held { pid: Some(p), .. } if *p == me),
            "{refused:?}"
        );
        assert_eq!(
            refused.to_string(),
            format!(
                "history file {} is in use by another coordinator (pid {me}, lock {}): stop it, or give this coordinator its own `database`",
                db.display(),
                held.path().display()
            )
        );
        // The refused attempt left the holder's PID in place.
        assert_eq!(
            std::fs::read_to_string(held.path()).unwrap(),
            format!("{me}\n")
        );

        drop(held);
        assert_eq!(lock_holder(&db), None, "released on drop");
        let again = DatabaseLock::acquire(&db).unwrap();
        assert_eq!(lock_holder(&db), Some(me));
        drop(again);
    }

    #[test]
    fn proc_locks_lines_are_matched_by_device_and_inode() {
        let text = "\
1: POSIX  ADVISORY  WRITE 900 08:01:5678 0 EOF
2: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF
2: -> FLOCK  ADVISORY  WRITE 4321 fd:01:5678 0 EOF
3: FLOCK  ADVISORY  WRITE 77 08:01:5678 0 EOF
";
        assert_eq!(holder_in_proc_locks(text, 0xfd, 1, 5678), Some(1234));
        assert_eq!(holder_in_proc_locks(text, 8, 1, 5678), Some(77));
        assert_eq!(holder_in_proc_locks(text, 8, 1, 9999), None);
        assert_eq!(holder_in_proc_locks("", 8, 1, 5678), None);
    }
}

//! The data-directory lock: one broker per directory.
//!
//! An exclusive `flock` on `<data-dir>/spatemq.lock`, held for the life of the process (the
//! kernel releases it when the process dies, even by SIGKILL, so a crash never leaves a stale
//! lock behind).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

pub struct DataDirLock {
    _file: File,
}

pub fn lock_data_dir(dir: &Path) -> io::Result<DataDirLock> {
    let path = dir.join("spatemq.lock");
    let file = super::files::options().read(true).write(true).create(true).truncate(false).open(&path)?;
    // SAFETY: flock on a descriptor we own.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("data directory {} is in use by another broker", dir.display()),
            ));
        }
        return Err(error);
    }
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    #[test]
    fn second_lock_on_the_same_directory_fails() {
        let dir = std::env::temp_dir().join(format!("spatemq-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let first = super::lock_data_dir(&dir).expect("first lock");
        let second = super::lock_data_dir(&dir);
        assert!(second.is_err(), "a second lock must fail while the first is held");
        drop(first);
        assert!(super::lock_data_dir(&dir).is_ok(), "the lock is free again");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

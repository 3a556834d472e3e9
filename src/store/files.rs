//! How the broker creates what it keeps on disk: directories with mode 0700 and files with
//! mode 0600, so messages and definitions are the broker user's alone.
//!
//! The modes are given at creation (`DirBuilderExt::mode`, `OpenOptionsExt::mode`) rather than
//! left to the process's umask, which only ever takes bits away: under any usual umask the
//! result is exactly these modes. A path that already exists keeps its mode; the start-up
//! checks warn about one that group or others can reach.

use std::fs::{DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode of every directory the broker creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the broker creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` and any missing parents, each with `DIR_MODE`.
pub fn create_dirs(path: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(path)
}

/// fsync of the directory `path` (the current one for an empty path, as a relative path's
/// last parent is): the names created in it reach the disk.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    std::fs::File::open(path)?.sync_all()
}

/// `sync_dir` of `path` and of its `parents` nearest parents: a directory that may be new, with
/// those that may have been created along with it.
pub fn sync_dir_and_parents(path: &Path, parents: usize) -> io::Result<()> {
    for dir in path.ancestors().take(parents + 1) {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Open options that create a missing file with `FILE_MODE`; add read/write/create as needed.
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn created_directories_are_0700_and_files_0600_whatever_the_umask_allows() {
        let root = std::env::temp_dir().join(format!("spatemq-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let nested = root.join("messages").join("shard-0");
        create_dirs(&nested).expect("create the directories");
        let file = nested.join("0000000001.segment");
        options().write(true).create_new(true).open(&file).expect("create the file");
        let mode = |path: &Path| std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
        for dir in [&root, &root.join("messages"), &nested] {
            assert_eq!(mode(dir), DIR_MODE, "{}", dir.display());
        }
        assert_eq!(mode(&file), FILE_MODE);
        std::fs::remove_dir_all(&root).expect("clean up");
    }

    #[test]
    fn the_parent_of_a_relative_name_is_synced_as_the_current_directory() {
        let relative = Path::new("data");
        assert_eq!(relative.parent(), Some(Path::new("")));
        sync_dir(relative.parent().expect("a parent")).expect("sync the current directory");
        let missing = std::env::temp_dir().join(format!("spatemq-files-missing-{}", std::process::id()));
        assert_eq!(sync_dir(&missing).map_err(|error| error.kind()), Err(io::ErrorKind::NotFound));
        let nested = missing.join("messages").join("shard-0");
        assert_eq!(
            sync_dir_and_parents(&nested, 2).map_err(|error| error.kind()),
            Err(io::ErrorKind::NotFound),
            "a directory that does not exist is not synced"
        );
        create_dirs(&nested).expect("create the directories");
        sync_dir_and_parents(&nested, 2).expect("sync the three levels");
        std::fs::remove_dir_all(&missing).expect("clean up");
    }
}

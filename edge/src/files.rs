//! Files other processes read while they are being written (the hub's `endpoints.json`, a
//! generated manifest, the HTML report): written whole or not at all.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a temporary file beside it (`<path>.partial`), synced, then
/// renamed over `path`: a reader sees the old file or the new one, never half of one. `mode`
/// sets the permissions of a new file (0600 for one that holds a secret).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = partial(path);
    // A stale partial file from a crash would keep its own mode: start afresh.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn replaces_whole_with_the_mode_and_leaves_no_partial() {
        let dir = std::env::temp_dir().join(format!("edge-files-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("secret.json");
        write_atomic(&path, b"one", 0o600).unwrap_or_else(|e| panic!("{e}"));
        write_atomic(&path, b"two", 0o600).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&path).unwrap_or_default(), b"two");
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        assert!(!partial(&path).exists());
        // A directory that does not exist: an error, and nothing left behind.
        assert!(write_atomic(&dir.join("missing/x"), b"", 0o644).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

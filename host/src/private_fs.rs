//! Files only the server's user may read: the storage directory (0700), the
//! database and key files (0600), and the compiled-component cache, which holds
//! native code the server runs.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Permission bits that let group or others read, write or enter.
const GROUP_OTHER: u32 = 0o077;

/// Creates `dir` and any missing parents with mode 0700 (existing ones are left alone).
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `file` empty with mode 0600 if it does not exist (an existing file is left alone).
pub fn create_file(file: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)
        .map(drop)
}

/// A key file must be readable and writable by its owner only: refused, with
/// the command that fixes it, when group or others have any access.
pub fn check_key_file(file: &Path) -> anyhow::Result<()> {
    let mode = std::fs::metadata(file)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read the encryption key file {}: {e}",
                file.display()
            )
        })?
        .permissions()
        .mode();
    if mode & GROUP_OTHER != 0 {
        anyhow::bail!(
            "the encryption key file {} is accessible by group or others (mode {:04o}); run `chmod 600 {}`",
            file.display(),
            mode & 0o7777,
            file.display()
        );
    }
    Ok(())
}

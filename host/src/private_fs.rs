//! Files only the server's user may read: the storage directory (0700), the
//! database and key files (0600), and the compiled-component cache, which holds
//! native code the server runs.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Permission bits that let group or others read, write or enter.
const GROUP_OTHER: u32 = 0o077;
/// Permission bits that let group or others write.
const GROUP_OTHER_WRITE: u32 = 0o022;

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

/// Why a directory or file whose content the server trusts (`meta`) may have
/// been written by someone other than the server's user, if it may.
pub fn untrusted(meta: &std::fs::Metadata) -> Option<String> {
    let euid = effective_uid();
    if meta.uid() != euid {
        return Some(format!(
            "owned by uid {} and not by the server's user (uid {euid})",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & GROUP_OTHER_WRITE != 0 {
        return Some(format!(
            "writable by group or others (mode {:04o})",
            mode & 0o7777
        ));
    }
    None
}

#[expect(unsafe_code, reason = "geteuid is a plain system call")]
fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

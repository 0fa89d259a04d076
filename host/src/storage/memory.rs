//! [`PagedMemory`]: the "file" of an in-memory redb database (`server --dev`, tests), held page
//! by page, and only the pages redb has written.
//!
//! redb grows its file in large steps and writes only the pages it allocates. redb's own
//! in-memory backend is one `Vec<u8>`, so every growth fills the new tail with zeros (resident
//! memory for space nothing uses yet) and may copy the whole database to a buffer twice the size.
//! Here the file is a list of [`PAGE`]-sized blocks, each allocated when first written: a read of
//! a block never written returns zeros, as a sparse file would, and growing the file costs one
//! pointer per block. Shrinking drops the blocks past the end and zeroes the tail of the last one,
//! so growing again reads zeros there.

use std::io;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use ::redb::StorageBackend;

/// Bytes per block: redb's page size, so a written page is one block.
const PAGE: usize = 4096;

#[derive(Default)]
pub(crate) struct PagedMemory {
    file: RwLock<File>,
}

#[derive(Default)]
struct File {
    len: usize,
    /// Block `i` holds bytes `i * PAGE ..`; `None`: never written (zeros).
    blocks: Vec<Option<Box<[u8]>>>,
}

impl std::fmt::Debug for PagedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.read_file();
        f.debug_struct("PagedMemory")
            .field("len", &file.len)
            .field("resident_blocks", &file.resident())
            .finish()
    }
}

fn out_of_range() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "offset past the end of the database",
    )
}

/// `offset..offset + len` as `usize`s, within a file of `file_len` bytes.
fn range(offset: u64, len: usize, file_len: usize) -> io::Result<(usize, usize)> {
    let start = usize::try_from(offset).map_err(|_| out_of_range())?;
    let end = start.checked_add(len).ok_or_else(out_of_range)?;
    if end > file_len {
        return Err(out_of_range());
    }
    Ok((start, end))
}

/// The pieces of `start..end` that fall in each block: (block, offset in it, offset in the
/// caller's buffer, length).
fn pieces(start: usize, end: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut at = start;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let (block, within) = (at / PAGE, at % PAGE);
        let n = (PAGE - within).min(end - at);
        let piece = (block, within, at - start, n);
        at += n;
        Some(piece)
    })
}

impl File {
    fn resident(&self) -> usize {
        self.blocks.iter().filter(|b| b.is_some()).count()
    }
}

impl PagedMemory {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn read_file(&self) -> RwLockReadGuard<'_, File> {
        // Every change of `File` leaves it consistent before anything can panic.
        self.file.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_file(&self) -> RwLockWriteGuard<'_, File> {
        self.file.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl StorageBackend for PagedMemory {
    fn len(&self) -> io::Result<u64> {
        u64::try_from(self.read_file().len).map_err(|_| out_of_range())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let file = self.read_file();
        let (start, end) = range(offset, out.len(), file.len)?;
        for (block, within, at, n) in pieces(start, end) {
            let dest = out.get_mut(at..at + n).ok_or_else(out_of_range)?;
            match file.blocks.get(block).and_then(Option::as_ref) {
                Some(data) => {
                    dest.copy_from_slice(data.get(within..within + n).ok_or_else(out_of_range)?)
                }
                None => dest.fill(0),
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| out_of_range())?;
        let mut file = self.write_file();
        let blocks = len.div_ceil(PAGE);
        if len < file.len {
            file.blocks.truncate(blocks);
            // Bytes past the new end read as zeros if the file grows again.
            let within = len % PAGE;
            if within != 0
                && let Some(Some(last)) = file.blocks.last_mut()
                && let Some(tail) = last.get_mut(within..)
            {
                tail.fill(0);
            }
            file.blocks.shrink_to(blocks.saturating_mul(2));
        } else {
            file.blocks.resize(blocks, None);
        }
        file.len = len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut file = self.write_file();
        let (start, end) = range(offset, data.len(), file.len)?;
        for (block, within, at, n) in pieces(start, end) {
            let source = data.get(at..at + n).ok_or_else(out_of_range)?;
            let slot = file.blocks.get_mut(block).ok_or_else(out_of_range)?;
            let page = slot.get_or_insert_with(|| vec![0; PAGE].into_boxed_slice());
            page.get_mut(within..within + n)
                .ok_or_else(out_of_range)?
                .copy_from_slice(source);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ::redb::{ReadableDatabase as _, ReadableTableMetadata as _};

    use super::*;

    #[test]
    fn reads_what_was_written_and_zeros_elsewhere() {
        let m = PagedMemory::new();
        m.set_len(3 * PAGE as u64).unwrap();
        // Across a block boundary.
        m.write(PAGE as u64 - 3, b"abcdef").unwrap();
        let mut out = [1u8; 10];
        m.read(PAGE as u64 - 5, &mut out).unwrap();
        assert_eq!(&out, b"\0\0abcdef\0\0");
        assert_eq!(m.read_file().resident(), 2);
        // A block never written reads as zeros and stays unallocated.
        let mut out = [1u8; 16];
        m.read(2 * PAGE as u64, &mut out).unwrap();
        assert_eq!(out, [0; 16]);
        assert_eq!(m.read_file().resident(), 2);
        assert_eq!(m.len().unwrap(), 3 * PAGE as u64);
    }

    #[test]
    fn out_of_range_is_an_error() {
        let m = PagedMemory::new();
        m.set_len(100).unwrap();
        assert!(m.write(98, b"abc").is_err());
        assert!(m.read(u64::MAX, &mut [0u8; 1]).is_err());
        let mut out = [0u8; 3];
        assert!(m.read(98, &mut out).is_err());
        m.write(97, b"abc").unwrap();
    }

    #[test]
    fn shrinking_then_growing_reads_zeros_past_the_old_end() {
        let m = PagedMemory::new();
        m.set_len(2 * PAGE as u64).unwrap();
        m.write(0, &[7u8; 2 * PAGE]).unwrap();
        m.set_len(10).unwrap();
        assert_eq!(m.read_file().resident(), 1);
        m.set_len(2 * PAGE as u64).unwrap();
        let mut out = [1u8; 20];
        m.read(0, &mut out).unwrap();
        assert_eq!(&out[..10], &[7u8; 10]);
        assert_eq!(&out[10..], &[0u8; 10]);
        let mut out = [1u8; 8];
        m.read(PAGE as u64 + 8, &mut out).unwrap();
        assert_eq!(out, [0; 8]);
    }

    #[test]
    fn a_database_on_it_works() {
        let db = ::redb::Database::builder()
            .create_with_backend(PagedMemory::new())
            .unwrap();
        let table: ::redb::TableDefinition<&str, &[u8]> = ::redb::TableDefinition::new("t");
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            for i in 0..2000u32 {
                t.insert(format!("k{i}").as_str(), &[i as u8; 300][..])
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(table).unwrap();
        assert_eq!(
            t.get("k1999").unwrap().unwrap().value(),
            &[1999u32 as u8; 300][..]
        );
        assert_eq!(t.len().unwrap(), 2000);
    }
}

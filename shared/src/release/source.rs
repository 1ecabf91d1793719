//! Random access to the bytes of a drop.
//!
//! Validation never needs the whole archive: it reads the zip's tail (end of central directory),
//! its central directory, and the few entries it checks. [`RangeSource`] is that access: S3
//! ranged `GetObject`s in Lambda, a local file or an in-memory buffer in tests and benches.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

/// Random read access to an object of known length.
pub trait RangeSource {
    /// Length of the object in bytes.
    fn len(&self) -> u64;

    /// `true` when the object has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `len` bytes at `offset`. Callers only ask for ranges within [`RangeSource::len`];
    /// an implementation may return fewer bytes than asked (the reader checks and reports it).
    fn read(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Bytes, SourceError>> + Send;
}

/// A read of the drop that failed for a reason outside the drop itself (storage, network).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The range asked for is not inside the object.
    #[error("byte range {offset}+{len} is outside the object ({size} bytes)")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    /// The source returned fewer bytes than asked for (the object changed or a read was cut).
    #[error("a read of {wanted} bytes at offset {offset} returned {got} bytes")]
    ShortRead { offset: u64, wanted: u64, got: u64 },
    /// The underlying storage failed (I/O error, S3 error); kept whole for logs and retries.
    #[error("reading the release object failed")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl SourceError {
    /// Wraps any storage error, keeping it as this error's source.
    pub fn other(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Other(Box::new(err))
    }
}

impl From<io::Error> for SourceError {
    fn from(err: io::Error) -> Self {
        Self::other(err)
    }
}

/// Checks that `offset..offset+len` lies inside an object of `size` bytes.
fn check_range(offset: u64, len: u64, size: u64) -> Result<(), SourceError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(SourceError::OutOfRange { offset, len, size }),
    }
}

/// Reads exactly `len` bytes at `offset`, turning a short answer into [`SourceError::ShortRead`].
pub(crate) async fn read_exact<S: RangeSource + ?Sized>(
    source: &S,
    offset: u64,
    len: u64,
) -> Result<Bytes, SourceError> {
    check_range(offset, len, source.len())?;
    let bytes = source.read(offset, len).await?;
    if bytes.len() as u64 != len {
        return Err(SourceError::ShortRead {
            offset,
            wanted: len,
            got: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// An in-memory drop (tests, small local files).
impl RangeSource for Bytes {
    fn len(&self) -> u64 {
        Bytes::len(self) as u64
    }

    async fn read(&self, offset: u64, len: u64) -> Result<Bytes, SourceError> {
        check_range(offset, len, RangeSource::len(self))?;
        // Both fit in usize: they are bounded by the buffer's own length.
        let start = offset as usize;
        Ok(self.slice(start..start + len as usize))
    }
}

/// A drop in a local file, read by positional reads: only the ranges asked for are read, so a
/// large release costs no more memory than it does from S3.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Opens `path` and records its length.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl RangeSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    // A positional read of a local file is short and bounded by the validation limits, so it is
    // done in place rather than on a blocking pool: this keeps FileSource usable from any
    // executor (benches, proptests) without a tokio runtime.
    async fn read(&self, offset: u64, len: u64) -> Result<Bytes, SourceError> {
        check_range(offset, len, self.len)?;
        let len = usize::try_from(len).map_err(SourceError::other)?;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match self
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => break, // the file shrank: return what there is, the reader reports it
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(filled);
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn bytes_reads_ranges_and_refuses_reads_past_the_end() {
        let src = Bytes::from_static(b"0123456789");
        assert_eq!(
            block_on(src.read(2, 3)).unwrap(),
            Bytes::from_static(b"234")
        );
        assert_eq!(block_on(src.read(10, 0)).unwrap(), Bytes::new());
        assert!(matches!(
            block_on(src.read(8, 3)),
            Err(SourceError::OutOfRange { size: 10, .. })
        ));
        assert!(block_on(src.read(u64::MAX, 2)).is_err());
    }

    #[test]
    fn file_source_reads_positionally() {
        let dir = std::env::temp_dir().join(format!("shipgate-fs-{}", std::process::id()));
        std::fs::write(&dir, b"hello, release").unwrap();
        let src = FileSource::open(&dir).unwrap();
        assert_eq!(RangeSource::len(&src), 14);
        assert_eq!(
            block_on(src.read(7, 7)).unwrap(),
            Bytes::from_static(b"release")
        );
        assert!(block_on(src.read(10, 5)).is_err());
        std::fs::remove_file(&dir).unwrap();
    }
}

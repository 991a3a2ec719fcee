//! Blob content that is never held in memory whole: a list of segments (bytes, file ranges,
//! zero padding) read as a stream from any offset, so the digest pass and the upload (and a
//! resumed upload) each read the bytes once, in bounded buffers.

use std::{path::PathBuf, pin::Pin};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{Error, Result};

/// Read buffer per open stream: memory use is this times the number of concurrent streams.
pub const READ_BUFFER: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Bytes(Bytes),
    /// `len` bytes of a file from its start; the file must be exactly this long when read.
    File {
        path: PathBuf,
        len: u64,
    },
    Zeros(u64),
}

impl Segment {
    fn len(&self) -> u64 {
        match self {
            Segment::Bytes(b) => b.len() as u64,
            Segment::File { len, .. } | Segment::Zeros(len) => *len,
        }
    }
}

pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// The bytes of one blob, as segments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Content {
    segments: Vec<Segment>,
    size: u64,
}

impl Content {
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let mut c = Self::default();
        c.push(Segment::Bytes(bytes.into()));
        c
    }

    pub fn push(&mut self, segment: Segment) {
        let len = segment.len();
        if len > 0 {
            self.size += len;
            self.segments.push(segment);
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The bytes from `offset` to the end.
    pub fn stream_from(&self, offset: u64) -> ByteStream {
        let mut parts: Vec<ByteStream> = Vec::new();
        let mut start = 0u64;
        for seg in &self.segments {
            let len = seg.len();
            let end = start + len;
            if end > offset {
                let skip = offset.saturating_sub(start);
                parts.push(segment_stream(seg.clone(), skip));
            }
            start = end;
        }
        Box::pin(stream::iter(parts).flatten())
    }

    /// `sha256:<hex>` of the whole content, in one streaming pass.
    pub async fn digest(&self) -> Result<String> {
        let mut hasher = Sha256::new();
        let mut s = self.stream_from(0);
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|source| Error::Io {
                path: self.first_file().unwrap_or_default(),
                source,
            })?;
            hasher.update(&chunk);
        }
        Ok(format!("sha256:{:x}", hasher.finalize()))
    }

    fn first_file(&self) -> Option<PathBuf> {
        self.segments.iter().find_map(|s| match s {
            Segment::File { path, .. } => Some(path.clone()),
            _ => None,
        })
    }
}

/// `sha256:<hex>` of bytes in memory.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn segment_stream(seg: Segment, skip: u64) -> ByteStream {
    match seg {
        Segment::Bytes(b) => {
            let b = b.slice(skip as usize..);
            Box::pin(stream::once(async move { Ok(b) }))
        }
        Segment::Zeros(n) => {
            let mut left = n - skip;
            let chunks = std::iter::from_fn(move || {
                (left > 0).then(|| {
                    let k = left.min(READ_BUFFER as u64);
                    left -= k;
                    Ok(Bytes::from(vec![0u8; k as usize]))
                })
            });
            Box::pin(stream::iter(chunks))
        }
        Segment::File { path, len } => {
            let want = len - skip;
            let open = async move {
                let mut f = tokio::fs::File::open(&path).await?;
                let actual = f.metadata().await?.len();
                if actual != len {
                    // A file that changed since it was planned would silently corrupt the tar.
                    return Err(std::io::Error::other(format!(
                        "{} is {actual} bytes, expected {len} (changed while packaging?)",
                        path.display()
                    )));
                }
                f.seek(std::io::SeekFrom::Start(skip)).await?;
                Ok(tokio_util::io::ReaderStream::with_capacity(
                    f.take(want),
                    READ_BUFFER,
                ))
            };
            Box::pin(stream::once(open).try_flatten())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(s: ByteStream) -> Vec<u8> {
        s.try_fold(Vec::new(), |mut v, b| async move {
            v.extend_from_slice(&b);
            Ok(v)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn streams_from_any_offset_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"hello world").unwrap();
        let mut c = Content::from_bytes(&b"abc"[..]);
        c.push(Segment::File {
            path: f.clone(),
            len: 11,
        });
        c.push(Segment::Zeros(3));
        assert_eq!(c.size(), 17);
        let all = collect(c.stream_from(0)).await;
        assert_eq!(all, b"abchello world\0\0\0");
        for off in 0..=17u64 {
            assert_eq!(collect(c.stream_from(off)).await, all[off as usize..]);
        }
        assert_eq!(c.digest().await.unwrap(), sha256_digest(&all));
    }

    #[tokio::test]
    async fn a_file_that_changed_size_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        let mut c = Content::default();
        c.push(Segment::File { path: f, len: 4 });
        let err = c.digest().await.unwrap_err().to_string();
        assert!(err.contains("expected 4"), "{err}");
    }
}

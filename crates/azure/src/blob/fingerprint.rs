//! A data set's fingerprint: one sha256 over the listing of every blob (name, size,
//! Content-MD5, ETag), computed while the listing streams past — memory stays flat in the
//! number of blobs, and no blob content is read.
//!
//! Order: List Blobs returns names in ascending order (the service documents alphabetical,
//! ordinal order), so the listing order *is* the sorted order; it is hashed as it comes and a
//! name that is not strictly greater than its predecessor is an error rather than a silently
//! different hash. Rust's `str` ordering is byte order, which for UTF-8 is code-point order.
//!
//! Record format (so anyone can recompute it): for each blob in name order,
//! `u64be(len(name)) name u64be(size) u64be(len(md5)) md5 u64be(len(etag)) etag`, where `md5`
//! is the base64 Content-MD5 as listed (empty when the blob has none) and `etag` is in its
//! quoted form. The digest is lowercase hex.
//!
//! Blobs without a Content-MD5 (block-list uploads that did not set one) are hashed with an
//! empty MD5 and counted as *unverifiable*: their bytes are not known to the operator, so the
//! exfiltration check cannot recognise them in outputs. Computing their MD5 here would mean
//! downloading the whole data set into the operator; the count is reported instead.

use std::collections::HashSet;

use futures::{Stream, TryStreamExt};
use sha2::{Digest, Sha256};

use super::list::BlobItem;
use crate::{Error, Result};

/// The result over a whole listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Lowercase hex sha256 of the records.
    pub sha256: String,
    pub blob_count: u64,
    pub total_bytes: u64,
    /// Blobs listed without a Content-MD5.
    pub unverifiable: u64,
}

/// Incremental fingerprint: feed blobs in listing order, then [`Fingerprinter::finish`].
#[derive(Debug, Default)]
pub struct Fingerprinter {
    hash: Sha256,
    last_name: Option<String>,
    blob_count: u64,
    total_bytes: u64,
    unverifiable: u64,
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

impl Fingerprinter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next blob; fails when names are not strictly ascending.
    pub fn push(&mut self, blob: &BlobItem) -> Result<()> {
        if let Some(last) = &self.last_name
            && blob.name.as_str() <= last.as_str()
        {
            return Err(Error::decode(
                "List Blobs",
                format!(
                    "blob {:?} listed after {last:?}: the listing is not in ascending name order",
                    blob.name
                ),
            ));
        }
        field(&mut self.hash, blob.name.as_bytes());
        self.hash.update(blob.size.to_be_bytes());
        let md5 = blob.content_md5.as_deref().unwrap_or("");
        field(&mut self.hash, md5.as_bytes());
        field(&mut self.hash, blob.etag.as_bytes());
        self.blob_count += 1;
        self.total_bytes = self.total_bytes.saturating_add(blob.size);
        if blob.content_md5.is_none() {
            self.unverifiable += 1;
        }
        // Only the last name is kept: memory does not grow with the listing.
        self.last_name = Some(blob.name.clone());
        Ok(())
    }

    pub fn finish(self) -> Fingerprint {
        Fingerprint {
            sha256: self
                .hash
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            blob_count: self.blob_count,
            total_bytes: self.total_bytes,
            unverifiable: self.unverifiable,
        }
    }
}

/// Fingerprints a listing stream (e.g. [`super::BlobApi::list`]) as it is consumed.
pub async fn fingerprint<S>(listing: S) -> Result<Fingerprint>
where
    S: Stream<Item = Result<BlobItem>>,
{
    let mut fp = Fingerprinter::new();
    futures::pin_mut!(listing);
    while let Some(blob) = listing.try_next().await? {
        fp.push(&blob)?;
    }
    Ok(fp.finish())
}

/// The first blob of a listing whose Content-MD5 is one of `md5s`, read as the listing streams
/// (memory is the size of `md5s`, not of the listing). Used to find input data copied into
/// outputs: `md5s` are the outputs' (few) digests, the listing the (many) inputs.
pub async fn first_with_md5<S>(listing: S, md5s: &HashSet<String>) -> Result<Option<BlobItem>>
where
    S: Stream<Item = Result<BlobItem>>,
{
    if md5s.is_empty() {
        return Ok(None);
    }
    futures::pin_mut!(listing);
    while let Some(blob) = listing.try_next().await? {
        if blob.content_md5.as_ref().is_some_and(|m| md5s.contains(m)) {
            return Ok(Some(blob));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn blob(name: &str, size: u64, md5: Option<&str>, etag: &str) -> BlobItem {
        BlobItem {
            name: name.into(),
            size,
            content_md5: md5.map(str::to_string),
            etag: etag.into(),
            last_modified: Utc::now(),
        }
    }

    fn fp(blobs: &[BlobItem]) -> Result<Fingerprint> {
        futures::executor::block_on(fingerprint(futures::stream::iter(
            blobs.iter().cloned().map(Ok),
        )))
    }

    #[test]
    fn known_vector_and_counts() {
        let f = fp(&[
            blob("a.csv", 3, Some("kAFQmDzST7DWlj99KOF/cg=="), "\"0x1\""),
            blob("b.csv", 5, None, "\"0x2\""),
        ])
        .unwrap();
        // Recomputed independently with Python (struct.pack('>Q', ...) framing, hashlib.sha256).
        assert_eq!(
            f.sha256,
            "8a5ee32101f87003b148b4f4dd9fd7cd3e3bc716ac9489d0436dbca8dd93b26d"
        );
        assert_eq!((f.blob_count, f.total_bytes, f.unverifiable), (2, 8, 1));
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = fp(&[blob("a", 1, Some("m"), "\"e\"")]).unwrap().sha256;
        for changed in [
            blob("b", 1, Some("m"), "\"e\""),
            blob("a", 2, Some("m"), "\"e\""),
            blob("a", 1, Some("n"), "\"e\""),
            blob("a", 1, None, "\"e\""),
            blob("a", 1, Some("m"), "\"f\""),
        ] {
            assert_ne!(
                fp(std::slice::from_ref(&changed)).unwrap().sha256,
                base,
                "{changed:?}"
            );
        }
        // Framing: moving a byte from one field to the next is a different record.
        assert_ne!(
            fp(&[blob("ab", 1, Some("c"), "\"e\"")]).unwrap().sha256,
            fp(&[blob("a", 1, Some("bc"), "\"e\"")]).unwrap().sha256
        );
    }

    #[test]
    fn out_of_order_or_repeated_names_are_refused() {
        let err = fp(&[blob("b", 1, None, "e"), blob("a", 1, None, "e")]).unwrap_err();
        assert!(err.to_string().contains("ascending"), "{err}");
        assert!(fp(&[blob("a", 1, None, "e"), blob("a", 1, None, "e")]).is_err());
        assert_eq!(fp(&[]).unwrap().blob_count, 0);
    }

    #[test]
    fn finds_an_input_whose_md5_is_among_the_outputs() {
        let inputs = vec![
            blob("a", 1, Some("m1"), "e"),
            blob("b", 1, None, "e"),
            blob("c", 1, Some("m3"), "e"),
        ];
        let run = |set: &[&str]| {
            let set: HashSet<String> = set.iter().map(|s| s.to_string()).collect();
            futures::executor::block_on(first_with_md5(
                futures::stream::iter(inputs.clone().into_iter().map(Ok)),
                &set,
            ))
            .unwrap()
            .map(|b| b.name)
        };
        assert_eq!(run(&["m3", "zz"]), Some("c".into()));
        assert_eq!(run(&["zz"]), None);
        assert_eq!(run(&[]), None);
    }
}

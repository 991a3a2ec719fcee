//! `code.blobUri` (pure): where the code folder is, and which of its blobs make the code.
//! The files read from it become the same `Vec<CodeFile>` a ConfigMap gives, so the content
//! hash, the code version and its re-use are one path.

use edgetrain_azure::blob::BlobEndpoint;
use url::Url;

use crate::{Error, Result};

/// Ceiling on the bytes of a blob code folder: code, not data. A ConfigMap holds at most
/// 1 MiB; a few MiB leaves room for a small package without letting a wrong URI (a data
/// folder) be read into the controller's memory.
pub const MAX_CODE_BYTES: u64 = 4 * 1024 * 1024;
/// Ceiling on the number of files of a blob code folder (each one is a read and an upload).
pub const MAX_CODE_FILES: usize = 256;

/// The blob folder `https://{account host}/{container}/{folder}` of `code.blobUri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobFolder {
    /// The account's blob endpoint, checked by the blob client factory like `data.endpoint`.
    pub endpoint: String,
    pub container: String,
    /// Empty (the whole container) or ending in `/`, so `code` never matches `code2/x`.
    pub prefix: String,
}

/// Splits `code.blobUri` into endpoint, container and folder. The account part follows the
/// blob endpoint's own rule (host-style, or path-style for IP/localhost hosts), so the
/// container is whichever path segment comes right after the endpoint's root.
pub fn blob_folder(uri: &str) -> Result<BlobFolder> {
    let invalid = |m: &str| Error::InvalidSpec(format!("code.blobUri {uri:?}: {m}"));
    // The endpoint's checks (https, account host) first, for their clear messages.
    BlobEndpoint::parse(uri).map_err(|e| invalid(&e.to_string()))?;
    let url = Url::parse(uri).map_err(|e| invalid(&e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "must not carry a query or fragment (the key comes from code.credentialsSecretRef)",
        ));
    }
    if url.path().contains('%') {
        return Err(invalid("percent-encoded characters are not supported"));
    }
    let segments: Vec<&str> = url.path().trim_start_matches('/').split('/').collect();
    for i in 0..segments.len().min(2) {
        let mut base = url.clone();
        base.set_path(&segments[..i].join("/"));
        let Ok(endpoint) = BlobEndpoint::parse(base.as_str()) else {
            continue;
        };
        let Ok(container_url) = endpoint.container_url(segments[i]) else {
            continue;
        };
        if container_url.path() != format!("/{}", segments[..=i].join("/")) {
            continue;
        }
        let folder = segments[i + 1..].join("/");
        if folder.starts_with('/') || folder.contains("//") {
            return Err(invalid("the folder has an empty path segment"));
        }
        let prefix = if folder.is_empty() || folder.ends_with('/') {
            folder
        } else {
            format!("{folder}/")
        };
        return Ok(BlobFolder {
            endpoint: base.as_str().trim_end_matches('/').to_string(),
            container: segments[i].to_string(),
            prefix,
        });
    }
    Err(invalid(
        "expected https://{account host}/{container}/{folder} with a valid container name",
    ))
}

/// One code blob and the file path it becomes (relative to the folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeBlob {
    pub blob: String,
    pub path: String,
}

/// The code blobs of a folder, checked as the listing streams in: an oversized folder is
/// refused at the first blob over a ceiling, before anything is read.
#[derive(Debug)]
pub struct CodeBlobs<'a> {
    folder: &'a BlobFolder,
    blobs: Vec<CodeBlob>,
    bytes: u64,
}

impl<'a> CodeBlobs<'a> {
    pub fn new(folder: &'a BlobFolder) -> Self {
        Self {
            folder,
            blobs: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds one listed blob (`name` is the full blob name).
    pub fn add(&mut self, name: &str, size: u64) -> Result<()> {
        let Some(path) = name.strip_prefix(&self.folder.prefix) else {
            return Err(Error::InvalidSpec(format!(
                "code blob {name:?} is outside the folder {:?}",
                self.folder.prefix
            )));
        };
        // A zero-byte `dir/` blob is a folder marker some tools write, not a file.
        if path.is_empty() || (path.ends_with('/') && size == 0) {
            return Ok(());
        }
        if path.starts_with('/') || path.split('/').any(|s| s.is_empty() || s == "..") {
            return Err(Error::InvalidSpec(format!(
                "code blob {name:?}: the file name {path:?} must be relative, without '..' or empty segments"
            )));
        }
        if self.blobs.len() == MAX_CODE_FILES {
            return Err(Error::InvalidSpec(format!(
                "code.blobUri folder {}: more than {MAX_CODE_FILES} files",
                self.where_()
            )));
        }
        self.bytes = within_code_ceiling(self.bytes, size, &self.where_())?;
        self.blobs.push(CodeBlob {
            blob: name.to_string(),
            path: path.to_string(),
        });
        Ok(())
    }

    /// The blobs to read; an empty folder is an error (a job without code cannot run).
    pub fn finish(self) -> Result<Vec<CodeBlob>> {
        if self.blobs.is_empty() {
            return Err(Error::InvalidSpec(format!(
                "code.blobUri folder {} holds no files",
                self.where_()
            )));
        }
        Ok(self.blobs)
    }

    fn where_(&self) -> String {
        format!("{}/{}", self.folder.container, self.folder.prefix)
    }
}

/// `total + more`, or an error past [`MAX_CODE_BYTES`]. Also applied while reading: a blob
/// can grow between the listing and its read.
pub fn within_code_ceiling(total: u64, more: u64, folder: &str) -> Result<u64> {
    let sum = total.saturating_add(more);
    if sum > MAX_CODE_BYTES {
        return Err(Error::InvalidSpec(format!(
            "code.blobUri folder {folder}: more than {MAX_CODE_BYTES} bytes of code"
        )));
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(endpoint: &str, container: &str, prefix: &str) -> BlobFolder {
        BlobFolder {
            endpoint: endpoint.into(),
            container: container.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn host_style_and_path_style_uris_split_into_endpoint_container_and_folder() {
        assert_eq!(
            blob_folder("https://code.blob.local.azurestack.external/src/churn/v1").unwrap(),
            folder(
                "https://code.blob.local.azurestack.external",
                "src",
                "churn/v1/"
            )
        );
        assert_eq!(
            blob_folder("https://code.blob.localhost:8443/src/churn/").unwrap(),
            folder("https://code.blob.localhost:8443", "src", "churn/")
        );
        assert_eq!(
            blob_folder("https://127.0.0.1:10000/devstore/src/churn").unwrap(),
            folder("https://127.0.0.1:10000/devstore", "src", "churn/")
        );
        // The whole container.
        assert_eq!(
            blob_folder("https://code.blob.local/src").unwrap(),
            folder("https://code.blob.local", "src", "")
        );
    }

    #[test]
    fn bad_uris_are_invalid_spec() {
        for (uri, why) in [
            ("http://code.blob.local/src/x", "https"),
            ("https://example.com/src/x", "blob"),
            ("https://code.blob.local/", "container"),
            ("https://code.blob.local/Bad_Container/x", "container"),
            ("https://127.0.0.1:10000/devstore", "container"),
            ("https://code.blob.local/src/x?sv=1&sig=abc", "query"),
            ("https://code.blob.local/src/a%20b", "percent"),
            ("https://code.blob.local/src/a//b", "empty path segment"),
        ] {
            let e = blob_folder(uri).unwrap_err();
            assert!(matches!(e, Error::InvalidSpec(_)), "{uri}: {e:?}");
            assert!(e.to_string().contains(why), "{uri}: {e}");
        }
    }

    #[test]
    fn names_become_relative_paths_and_unclean_names_are_refused() {
        let f = folder("https://a.blob.local", "src", "churn/");
        let mut blobs = CodeBlobs::new(&f);
        blobs.add("churn/train.py", 10).unwrap();
        blobs.add("churn/lib/", 0).unwrap();
        blobs.add("churn/lib/util.py", 5).unwrap();
        assert_eq!(
            blobs.finish().unwrap(),
            vec![
                CodeBlob {
                    blob: "churn/train.py".into(),
                    path: "train.py".into()
                },
                CodeBlob {
                    blob: "churn/lib/util.py".into(),
                    path: "lib/util.py".into()
                },
            ]
        );
        for bad in [
            "churn//etc/passwd",
            "churn/a/../b.py",
            "churn/a//b.py",
            "other/x.py",
        ] {
            let mut blobs = CodeBlobs::new(&f);
            let e = blobs.add(bad, 1).unwrap_err();
            assert!(matches!(e, Error::InvalidSpec(_)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn an_empty_folder_and_folders_over_a_ceiling_are_refused() {
        let f = folder("https://a.blob.local", "src", "churn/");
        let e = CodeBlobs::new(&f).finish().unwrap_err();
        assert!(e.to_string().contains("holds no files"), "{e}");
        // Only a folder marker: still empty.
        let mut marker = CodeBlobs::new(&f);
        marker.add("churn/", 0).unwrap();
        assert!(marker.finish().is_err());

        let mut many = CodeBlobs::new(&f);
        for i in 0..MAX_CODE_FILES {
            many.add(&format!("churn/f{i}.py"), 1).unwrap();
        }
        let e = many.add("churn/one-more.py", 1).unwrap_err();
        assert!(e.to_string().contains("files"), "{e}");

        let mut big = CodeBlobs::new(&f);
        big.add("churn/a.bin", MAX_CODE_BYTES).unwrap();
        let e = big.add("churn/b.py", 1).unwrap_err();
        assert!(e.to_string().contains("bytes"), "{e}");
        assert_eq!(
            within_code_ceiling(1, MAX_CODE_BYTES - 1, "x").unwrap(),
            MAX_CODE_BYTES
        );
        assert!(within_code_ceiling(u64::MAX, 1, "x").is_err());
    }
}

//! Deterministic uncompressed tar layers: sorted entries, one fixed mtime taken from the input
//! (never the clock), uid/gid 0, fixed modes, PAX records for long names and files of 8 GiB or
//! more (USTAR's size field is 11 octal digits). The same inputs give the same bytes, so the
//! same digests, on any machine and any day.

use std::{collections::BTreeSet, sync::Arc};

use bytes::Bytes;

use crate::{
    Error, Result,
    content::{Content, RangeSource, Segment},
};

const BLOCK: u64 = 512;
/// Largest size the USTAR header field holds (8 GiB - 1).
const USTAR_MAX_SIZE: u64 = 0o777_7777_7777;
pub const FILE_MODE: u32 = 0o644;
pub const DIR_MODE: u32 = 0o755;

/// One regular file to put in a layer, at `path` (relative, `/`-separated); its size is the
/// source's.
#[derive(Debug, Clone)]
pub struct TarFile {
    pub path: String,
    pub source: Arc<dyn RangeSource>,
}

/// Reject paths that could escape the layer root or are ambiguous.
pub fn check_relative_path(path: &str) -> Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Error::Invalid(format!(
            "path {path:?} must be relative, '/'-separated, without empty, '.' or '..' parts"
        )));
    }
    Ok(())
}

/// A tar stream of `files` (parents added as directory entries), sorted by path.
pub fn tar_layer(files: &[TarFile], mtime: u64) -> Result<Content> {
    let mut dirs = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for f in files {
        check_relative_path(&f.path)?;
        if !seen.insert(f.path.as_str()) {
            return Err(Error::Invalid(format!("duplicate path {:?}", f.path)));
        }
        let mut parts: Vec<&str> = f.path.split('/').collect();
        parts.pop();
        for i in 1..=parts.len() {
            dirs.insert(parts[..i].join("/"));
        }
    }
    if let Some(clash) = dirs.iter().find(|d| seen.contains(d.as_str())) {
        return Err(Error::Invalid(format!(
            "{clash:?} is both a file and a directory"
        )));
    }
    // Sorted by name; a directory sorts before its children because "a" < "a/...".
    enum Entry<'a> {
        Dir,
        File(&'a TarFile),
    }
    let mut entries: Vec<(String, Entry)> = dirs
        .into_iter()
        .map(|d| (format!("{d}/"), Entry::Dir))
        .chain(files.iter().map(|f| (f.path.clone(), Entry::File(f))))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut content = Content::default();
    for (name, entry) in entries {
        match entry {
            Entry::Dir => content.push(Segment::Bytes(entry_header(
                &name, 0, DIR_MODE, mtime, b'5',
            ))),
            Entry::File(f) => {
                let size = f.source.size();
                content.push(Segment::Bytes(entry_header(
                    &name, size, FILE_MODE, mtime, b'0',
                )));
                content.push(Segment::Source(f.source.clone()));
                content.push(Segment::Zeros(padding(size)));
            }
        }
    }
    content.push(Segment::Zeros(2 * BLOCK));
    Ok(content)
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// Header block(s) of one entry: a PAX extended header first when the name or size does not
/// fit USTAR.
fn entry_header(name: &str, size: u64, mode: u32, mtime: u64, typeflag: u8) -> Bytes {
    let mut records = String::new();
    if name.len() > 100 {
        records.push_str(&pax_record("path", name));
    }
    if size > USTAR_MAX_SIZE {
        records.push_str(&pax_record("size", &size.to_string()));
    }
    let mut out = Vec::with_capacity(3 * BLOCK as usize);
    if !records.is_empty() {
        out.extend_from_slice(&ustar_block(
            "PaxHeader",
            records.len() as u64,
            0o644,
            mtime,
            b'x',
        ));
        out.extend_from_slice(records.as_bytes());
        out.resize(out.len() + padding(records.len() as u64) as usize, 0);
    }
    // With a PAX record the USTAR fields are fallbacks: a truncated name, a zero size.
    let mut cut = name.len().min(100);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let ustar_size = if size > USTAR_MAX_SIZE { 0 } else { size };
    out.extend_from_slice(&ustar_block(
        &name[..cut],
        ustar_size,
        mode,
        mtime,
        typeflag,
    ));
    Bytes::from(out)
}

/// `"<len> key=value\n"` where `<len>` counts the whole record including itself.
fn pax_record(key: &str, value: &str) -> String {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    format!("{len} {key}={value}\n")
}

fn octal(field: &mut [u8], value: u64) {
    // Zero-padded octal, NUL-terminated, filling the field.
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

fn ustar_block(name: &str, size: u64, mode: u32, mtime: u64, typeflag: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.as_bytes();
    h[..n.len().min(100)].copy_from_slice(&n[..n.len().min(100)]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;
    use crate::content::{LocalFile, tests::MemSource};

    async fn bytes_of(c: &Content) -> Vec<u8> {
        c.stream_from(0)
            .try_fold(Vec::new(), |mut v, b| async move {
                v.extend_from_slice(&b);
                Ok(v)
            })
            .await
            .unwrap()
    }

    fn parse_names(tar: &[u8]) -> Vec<(String, u8, u64, u64)> {
        // (name, typeflag, size, mtime) of each header, following sizes.
        let mut out = Vec::new();
        let mut off = 0;
        while off + 512 <= tar.len() && tar[off] != 0 {
            let h = &tar[off..off + 512];
            let name =
                String::from_utf8(h[..100].iter().take_while(|&&b| b != 0).copied().collect())
                    .unwrap();
            let field = |r: std::ops::Range<usize>| {
                let s: String = h[r]
                    .iter()
                    .take_while(|&&b| b != 0)
                    .map(|&b| b as char)
                    .collect();
                u64::from_str_radix(s.trim(), 8).unwrap()
            };
            let size = field(124..136);
            let stored: u64 = field(148..154);
            let mut copy = h.to_vec();
            copy[148..156].copy_from_slice(b"        ");
            assert_eq!(stored, copy.iter().map(|&b| u64::from(b)).sum::<u64>());
            out.push((name, h[156], size, field(136..148)));
            off += 512 + (size as usize).div_ceil(512) * 512;
        }
        out
    }

    #[tokio::test]
    async fn sorted_with_parent_dirs_fixed_metadata_and_checksums() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b"), b"bee").unwrap();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        let files = vec![
            TarFile {
                path: "model/sub/b.bin".into(),
                source: Arc::new(LocalFile::new(dir.path().join("b"), 3)),
            },
            TarFile {
                path: "model/a.onnx".into(),
                source: Arc::new(LocalFile::new(dir.path().join("a"), 1)),
            },
        ];
        let c = tar_layer(&files, 1_700_000_000).unwrap();
        let tar = bytes_of(&c).await;
        assert_eq!(tar.len() as u64, c.size());
        assert_eq!(tar.len() % 512, 0);
        let names = parse_names(&tar);
        assert_eq!(
            names,
            vec![
                ("model/".into(), b'5', 0, 1_700_000_000),
                ("model/a.onnx".into(), b'0', 1, 1_700_000_000),
                ("model/sub/".into(), b'5', 0, 1_700_000_000),
                ("model/sub/b.bin".into(), b'0', 3, 1_700_000_000),
            ]
        );
        // Same input in another order gives the same bytes.
        let mut rev = files.clone();
        rev.reverse();
        assert_eq!(
            bytes_of(&tar_layer(&rev, 1_700_000_000).unwrap()).await,
            tar
        );
        assert_ne!(bytes_of(&tar_layer(&files, 1).unwrap()).await, tar);
    }

    #[tokio::test]
    async fn a_layer_from_a_ranged_source_equals_the_layer_from_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        // Not a multiple of 512 (padding) and larger than one read chunk.
        let weights: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("w.onnx"), &weights).unwrap();
        std::fs::write(dir.path().join("cfg.json"), b"{}").unwrap();
        let from_files = tar_layer(
            &[
                TarFile {
                    path: "model/w.onnx".into(),
                    source: Arc::new(LocalFile::new(dir.path().join("w.onnx"), 5000)),
                },
                TarFile {
                    path: "model/cfg.json".into(),
                    source: Arc::new(LocalFile::new(dir.path().join("cfg.json"), 2)),
                },
            ],
            1_700_000_000,
        )
        .unwrap();
        let from_memory = tar_layer(
            &[
                TarFile {
                    path: "model/w.onnx".into(),
                    source: MemSource::new("w", &weights),
                },
                TarFile {
                    path: "model/cfg.json".into(),
                    source: MemSource::new("cfg", b"{}"),
                },
            ],
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(from_memory.size(), from_files.size());
        assert_eq!(
            from_memory.digest().await.unwrap(),
            from_files.digest().await.unwrap()
        );
        let tar = bytes_of(&from_memory).await;
        assert_eq!(
            parse_names(&tar)
                .into_iter()
                .map(|(n, _, size, _)| (n, size))
                .collect::<Vec<_>>(),
            vec![
                ("model/".to_string(), 0),
                ("model/cfg.json".to_string(), 2),
                ("model/w.onnx".to_string(), 5000),
            ]
        );
    }

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(pax_record("size", "9000000000"), "19 size=9000000000\n");
        let r = pax_record("path", &"x".repeat(95));
        assert_eq!(
            r.len(),
            r.split(' ').next().unwrap().parse::<usize>().unwrap()
        );
        let r = pax_record("path", &"x".repeat(94));
        assert_eq!(
            r.len(),
            r.split(' ').next().unwrap().parse::<usize>().unwrap()
        );
    }

    #[test]
    fn huge_files_and_long_names_get_a_pax_header() {
        let h = entry_header("f", 9 * 1024 * 1024 * 1024, FILE_MODE, 0, b'0');
        assert_eq!(h.len(), 1536);
        assert_eq!(h[156], b'x');
        assert!(
            std::str::from_utf8(&h[512..1024])
                .unwrap()
                .contains(" size=9663676416\n")
        );
        let long = format!("model/{}", "n".repeat(120));
        let h = entry_header(&long, 1, FILE_MODE, 0, b'0');
        assert!(
            std::str::from_utf8(&h[512..1024])
                .unwrap()
                .contains(&format!(" path={long}\n"))
        );
        assert_eq!(entry_header("small", 1, FILE_MODE, 0, b'0').len(), 512);
    }

    #[test]
    fn rejects_escaping_and_duplicate_paths() {
        for p in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(check_relative_path(p).is_err(), "{p}");
        }
        let f = |p: &str| TarFile {
            path: p.into(),
            source: Arc::new(LocalFile::new("/dev/null", 0)),
        };
        assert!(tar_layer(&[f("a"), f("a")], 0).is_err());
        assert!(tar_layer(&[f("a"), f("a/b")], 0).is_err());
    }
}

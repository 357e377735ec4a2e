//! Reading one layer: stream the blob once (decompressing, hashing and untarring as it
//! flows), keep only the few files that say what the image contains, and parse them.
//!
//! The result, [`LayerFacts`], depends only on the layer's bytes and the analyser version,
//! so it is cached and shared by every image that has the layer.
//!
//! Integrity: the stored blob's digest is always checked (it is the content address the
//! manifest names). The diff_id (digest of the uncompressed tar) costs a second SHA-256
//! over every uncompressed byte, which for compressed layers is as much CPU as the
//! decompression itself, so it is checked when it comes free (uncompressed layers) or
//! when asked for (`verify_diff_id`). [`LayerFacts::diff_id_verified`] records which, and
//! the cache only files facts under a diff_id that was verified.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::analyze::{os_release, packages, prefect, python};
use crate::inventory::SystemPackage;

/// Limits that keep hostile or broken layers from costing unbounded memory or time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    /// Largest metadata file read into memory (METADATA, RECORD, os-release, flows…).
    pub max_file_bytes: u64,
    /// Largest package database (dpkg `status`, apk `installed`).
    pub max_database_bytes: u64,
    /// A layer may expand to at most `max(ratio_floor_bytes, max_expansion_ratio × stored)`.
    pub max_expansion_ratio: u64,
    pub ratio_floor_bytes: u64,
    /// And never past this many uncompressed bytes.
    pub max_layer_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 8 << 20,
            max_database_bytes: 64 << 20,
            max_expansion_ratio: 100,
            ratio_floor_bytes: 1 << 30,
            max_layer_bytes: 64 << 30,
        }
    }
}

/// What one layer holds that matters, keyed by normalized path (no leading `/` or `./`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerFacts {
    /// The diff_id the image config claims for this layer.
    pub diff_id: String,
    /// Whether the uncompressed content was hashed and matched `diff_id`.
    pub diff_id_verified: bool,
    pub uncompressed_bytes: u64,
    pub entries: u64,
    pub files: BTreeMap<String, FileFact>,
    /// Paths this layer deletes from the layers below (`.wh.NAME`).
    pub whiteouts: Vec<String>,
    /// Directories whose lower-layer contents this layer hides (`.wh..wh..opq`).
    pub opaque_dirs: Vec<String>,
}

/// What one file of interest says, already parsed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FileFact {
    OsRelease {
        fields: BTreeMap<String, String>,
    },
    DpkgStatus {
        packages: Vec<SystemPackage>,
    },
    ApkInstalled {
        packages: Vec<SystemPackage>,
    },
    DistMetadata {
        meta: python::DistMetadata,
    },
    TopLevel {
        names: Vec<String>,
    },
    Record {
        summary: python::RecordSummary,
    },
    EggRequires {
        requires: Vec<String>,
    },
    Interpreter {
        minor: String,
    },
    PrefectFlow {
        flow: Box<prefect::FlowFile>,
    },
    FlowSource {
        bytes: u64,
        sha256: String,
    },
    /// A watched executable (`git`) in a `PATH` directory, with its permission bits.
    Executable {
        mode: u32,
    },
    Symlink {
        target: String,
    },
    Hardlink {
        target: String,
    },
    /// The file matters but could not be read; the message says why.
    Unreadable {
        message: String,
    },
}

/// Why a layer could not be analysed at all.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot open layer blob {blob}: {source}")]
    Open { blob: String, source: io::Error },
    #[error("layer is corrupt or truncated: {0}")]
    Corrupt(String),
    #[error(
        "layer expands past {limit} bytes (stored size {stored}); refusing a possible decompression bomb"
    )]
    Bomb { limit: u64, stored: u64 },
    #[error("layer {what} mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("tar entry {0:?} escapes the image root (absolute path or `..`)")]
    UnsafePath(String),
    #[error("layer uses an unsupported compression (first bytes {0})")]
    Compression(String),
}

/// What the caller knows about a layer before reading it.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Digest of the stored blob, when known (a classic `docker save` names none).
    pub digest: Option<String>,
    /// The diff_id from the image config.
    pub diff_id: String,
    pub stored_bytes: u64,
    /// Hash the uncompressed stream even when the layer is compressed.
    pub verify_diff_id: bool,
    /// The blob source verifies `digest` itself (a registry blob reader hashes what
    /// passes and fails at its end on a mismatch), so it is not hashed twice.
    pub digest_checked_by_source: bool,
}

/// The kinds of files worth reading.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Interest {
    OsRelease,
    Dpkg,
    Apk,
    Metadata,
    TopLevel,
    Record,
    EggRequires,
    Interpreter,
    PrefectFlow,
    FlowSource,
    Executable,
}

/// Executables a runtime image may need to fetch a flow's code (`git` for a `git_clone`
/// pull step), looked for in the usual `PATH` directories.
pub const WATCHED_EXECUTABLES: &[&str] = &["git"];
const BIN_DIRS: &[&str] = &[
    "usr/local/sbin",
    "usr/local/bin",
    "usr/sbin",
    "usr/bin",
    "sbin",
    "bin",
];

/// Decide from the path alone whether a file matters. This runs for every tar entry, so
/// it compares a few suffixes and never allocates.
fn classify(path: &str) -> Option<Interest> {
    let (parent, file) = path.rsplit_once('/').unwrap_or(("", path));
    if file == "os-release" {
        return Some(Interest::OsRelease);
    }
    if parent.ends_with(".dist-info") {
        return match file {
            "METADATA" => Some(Interest::Metadata),
            "top_level.txt" => Some(Interest::TopLevel),
            "RECORD" => Some(Interest::Record),
            _ => None,
        };
    }
    if parent.ends_with(".egg-info") {
        return match file {
            "PKG-INFO" => Some(Interest::Metadata),
            "top_level.txt" => Some(Interest::TopLevel),
            "requires.txt" => Some(Interest::EggRequires),
            "installed-files.txt" => Some(Interest::Record),
            _ => None,
        };
    }
    if file.ends_with(".egg-info") {
        return Some(Interest::Metadata); // a single-file egg-info is its PKG-INFO
    }
    if path == "var/lib/dpkg/status"
        || (parent == "var/lib/dpkg/status.d" && !file.ends_with(".md5sums"))
    {
        return Some(Interest::Dpkg);
    }
    if path == "lib/apk/db/installed" {
        return Some(Interest::Apk);
    }
    if let Some(rest) = path.strip_prefix("opt/prefect/") {
        if rest.starts_with("flows/") && file.ends_with(".prefect") {
            return Some(Interest::PrefectFlow);
        }
        if file.ends_with(".py") && rest != "healthcheck.py" {
            return Some(Interest::FlowSource);
        }
    }
    if WATCHED_EXECUTABLES.contains(&file) && BIN_DIRS.contains(&parent) {
        return Some(Interest::Executable);
    }
    if (file.starts_with("python") || file.starts_with("libpython") || file == "os.py")
        && python::interpreter_marker(path).is_some()
    {
        return Some(Interest::Interpreter);
    }
    None
}

/// Normalize a tar path: drop `./` and trailing `/`; refuse absolute paths and `..`.
pub(crate) fn normalize(raw: &[u8]) -> Result<String, LayerError> {
    let s = String::from_utf8_lossy(raw);
    let mut parts: Vec<&str> = Vec::new();
    if s.starts_with('/') {
        return Err(LayerError::UnsafePath(s.into_owned()));
    }
    for p in s.split('/') {
        match p {
            "" | "." => {}
            ".." => return Err(LayerError::UnsafePath(s.into_owned())),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Symlink targets resolve as the kernel resolves them (kept here for its callers).
pub use super::paths::resolve_link;

/// A reader that hashes (optionally) and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Option<Sha256>,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<R> Hashing<R> {
    fn new(inner: R, hash: bool) -> Self {
        Hashing {
            inner,
            hasher: hash.then(Sha256::new),
            bytes: 0,
        }
    }

    fn digest(&mut self) -> Option<String> {
        self.hasher
            .take()
            .map(|h| format!("sha256:{}", hex::encode(h.finalize())))
    }
}

/// A reader that fails once more than `limit` bytes went through (decompression bombs).
struct Capped<R> {
    inner: R,
    seen: u64,
    limit: u64,
    tripped: bool,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        if self.seen > self.limit {
            self.tripped = true;
            return Err(io::Error::other("expansion limit reached"));
        }
        Ok(n)
    }
}

/// The decompressor chosen from the blob's magic bytes (media types lie).
enum Decoder<R: BufRead> {
    Plain(R),
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

impl<R: BufRead> Decoder<R> {
    fn sniff(mut r: R) -> Result<Self, LayerError> {
        let head = r
            .fill_buf()
            .map_err(|e| LayerError::Corrupt(e.to_string()))?;
        Ok(match head {
            [0x1f, 0x8b, ..] => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(r)),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Decoder::Zstd(
                zstd::stream::read::Decoder::with_buffer(r)
                    .map_err(|e| LayerError::Corrupt(e.to_string()))?,
            ),
            [b'B', b'Z', b'h', ..] | [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
                return Err(LayerError::Compression(hex::encode(
                    &head[..head.len().min(6)],
                )));
            }
            _ => Decoder::Plain(r),
        })
    }

    fn is_plain(&self) -> bool {
        matches!(self, Decoder::Plain(_))
    }

    fn into_inner(self) -> R {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(r) => r.into_inner(),
            Decoder::Zstd(r) => r.finish(),
        }
    }
}

/// A layer blob's tar stream, decompressed as its magic bytes say (gzip, zstd or plain).
pub(crate) fn decompressed<'a>(
    blob: impl Read + Send + 'a,
) -> Result<Box<dyn Read + Send + 'a>, LayerError> {
    let d = Decoder::sniff(BufReader::with_capacity(256 << 10, blob))?;
    Ok(Box::new(d))
}

fn corrupt(e: io::Error) -> LayerError {
    LayerError::Corrupt(e.to_string())
}

/// Read a whole layer blob and return its facts. The blob is read exactly once; the
/// stored digest and the diff_id are checked against what the image claims.
pub fn analyse(
    blob: impl Read,
    expected: &Expected,
    limits: &Limits,
) -> Result<LayerFacts, LayerError> {
    analyse_also(blob, expected, limits, &BTreeMap::new())
}

/// Whether the analysis reads a file at this path.
pub fn is_read(path: &str) -> bool {
    classify(path).is_some()
}

/// [`analyse`], also reading the files at `also`'s keys as if they were at the paths it
/// maps them to: the targets of hard links in an upper layer (a `METADATA` linked to a
/// file below it), whose own paths are not ones the analysis reads.
pub fn analyse_also(
    blob: impl Read,
    expected: &Expected,
    limits: &Limits,
    also: &BTreeMap<String, String>,
) -> Result<LayerFacts, LayerError> {
    let stored = Hashing::new(
        blob,
        expected.digest.is_some() && !expected.digest_checked_by_source,
    );
    let decoder = Decoder::sniff(BufReader::with_capacity(256 << 10, stored))?;
    let plain = decoder.is_plain();
    // a plain tar's diff_id is its stored digest: hash it once, not twice
    let hash_unpacked = if plain {
        expected.digest.is_none()
    } else {
        expected.verify_diff_id
    };
    let unpacked = Hashing::new(decoder, hash_unpacked);
    let limit = limits
        .ratio_floor_bytes
        .max(
            limits
                .max_expansion_ratio
                .saturating_mul(expected.stored_bytes),
        )
        .min(limits.max_layer_bytes);
    let capped = Capped {
        inner: unpacked,
        seen: 0,
        limit,
        tripped: false,
    };
    let mut archive = tar::Archive::new(BufReader::with_capacity(128 << 10, capped));

    let mut facts = LayerFacts {
        diff_id: expected.diff_id.clone(),
        diff_id_verified: false,
        uncompressed_bytes: 0,
        entries: 0,
        files: BTreeMap::new(),
        whiteouts: Vec::new(),
        opaque_dirs: Vec::new(),
    };
    let walked = walk_entries(&mut archive, &mut facts, limits, also);

    // Drain what follows the tar's end-of-archive blocks so both digests cover every byte.
    let mut rest = archive.into_inner();
    let drained = walked.and_then(|()| io::copy(&mut rest, &mut io::sink()).map_err(corrupt));
    let capped = rest.into_inner();
    if capped.tripped {
        return Err(LayerError::Bomb {
            limit,
            stored: expected.stored_bytes,
        });
    }
    drained?;
    let mut unpacked = capped.inner;
    let diff_digest = unpacked.digest();
    facts.uncompressed_bytes = unpacked.bytes;
    let mut stored_reader = unpacked.inner.into_inner();
    io::copy(&mut stored_reader, &mut io::sink()).map_err(corrupt)?;
    let mut stored = stored_reader.into_inner();
    let hashed_digest = stored.digest();

    if let (Some(want), Some(got)) = (&expected.digest, &hashed_digest)
        && want != got
    {
        return Err(LayerError::DigestMismatch {
            what: "digest",
            expected: want.clone(),
            actual: got.clone(),
        });
    }
    // the stored bytes' digest, whoever checked it
    let stored_digest = hashed_digest.or_else(|| {
        expected
            .digest
            .clone()
            .filter(|_| expected.digest_checked_by_source)
    });
    let diff_id = diff_digest.or(stored_digest.filter(|_| plain));
    if let Some(got) = diff_id {
        if got != expected.diff_id {
            return Err(LayerError::DigestMismatch {
                what: "diff_id",
                expected: expected.diff_id.clone(),
                actual: got,
            });
        }
        facts.diff_id_verified = true;
    }
    Ok(facts)
}

fn walk_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    facts: &mut LayerFacts,
    limits: &Limits,
    also: &BTreeMap<String, String>,
) -> Result<(), LayerError> {
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        facts.entries += 1;
        let path = normalize(&entry.path_bytes())?;
        if path.is_empty() {
            continue;
        }
        let (parent, file) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        if let Some(name) = file.strip_prefix(".wh.") {
            if name == ".wh..opq" {
                facts.opaque_dirs.push(parent.to_string());
            } else {
                let target = if parent.is_empty() {
                    name.to_string()
                } else {
                    format!("{parent}/{name}")
                };
                facts.whiteouts.push(target);
            }
            continue;
        }
        // a hard link's target below is read as what the link's path is
        let (interest, as_path) = match classify(&path) {
            Some(i) => (i, path.clone()),
            None => match also
                .get(&path)
                .and_then(|link| Some((classify(link)?, link)))
            {
                Some((i, link)) if entry.header().entry_type().is_file() => (i, link.clone()),
                _ => continue,
            },
        };
        let kind = entry.header().entry_type();
        let fact = if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            if kind.is_symlink() {
                if interest == Interest::Interpreter {
                    interpreter_fact(&path)
                } else if interest == Interest::Executable {
                    // `/usr/local/bin/git -> …`: on PATH all the same
                    FileFact::Executable { mode: 0o777 }
                } else {
                    FileFact::Symlink { target }
                }
            } else {
                FileFact::Hardlink {
                    target: normalize(target.as_bytes())?,
                }
            }
        } else if interest == Interest::Executable && kind.is_file() {
            // presence and mode are the fact
            FileFact::Executable {
                mode: entry.header().mode().unwrap_or(0) & 0o7777,
            }
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            read_fact(&mut entry, &as_path, interest, limits)?
        } else {
            continue;
        };
        facts.files.insert(path, fact);
    }
    Ok(())
}

/// A `METADATA`/`PKG-INFO`: only its header block counts (name, version, requirements);
/// the body after the first blank line is the long description, which may be any size.
/// Read up to that line, at most `cap` bytes of headers, and leave the rest unread.
fn read_metadata_headers<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    cap: u64,
) -> Result<FileFact, LayerError> {
    let mut r = BufReader::new(entry.by_ref().take(cap + 1));
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = r.read_until(b'\n', &mut head).map_err(corrupt)?;
        if n == 0 || head[before..].iter().all(|b| b.is_ascii_whitespace()) {
            break;
        }
        if head.len() as u64 > cap {
            return Ok(FileFact::Unreadable {
                message: format!("its header block is over the {cap}-byte limit"),
            });
        }
    }
    Ok(
        match python::parse_metadata(&String::from_utf8_lossy(&head)) {
            Ok(meta) => FileFact::DistMetadata { meta },
            Err(e) => FileFact::Unreadable {
                message: e.to_string(),
            },
        },
    )
}

fn interpreter_fact(path: &str) -> FileFact {
    FileFact::Interpreter {
        minor: python::interpreter_marker(path).unwrap_or_default(),
    }
}

/// Read one interesting regular file (bounded) and parse it.
fn read_fact<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &str,
    interest: Interest,
    limits: &Limits,
) -> Result<FileFact, LayerError> {
    if interest == Interest::Interpreter {
        return Ok(interpreter_fact(path)); // presence is the fact; skip the bytes
    }
    let cap = match interest {
        Interest::Dpkg | Interest::Apk | Interest::PrefectFlow => limits.max_database_bytes,
        _ => limits.max_file_bytes,
    };
    if interest == Interest::Metadata {
        return read_metadata_headers(entry, cap);
    }
    let size = entry.size();
    if size > cap {
        return Ok(FileFact::Unreadable {
            message: format!("{size} bytes is over the {cap}-byte limit for this kind of file"),
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .by_ref()
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(corrupt)?;
    let text = || String::from_utf8_lossy(&bytes).into_owned();
    Ok(match interest {
        Interest::OsRelease => FileFact::OsRelease {
            fields: os_release::parse(&text()),
        },
        Interest::Dpkg => FileFact::DpkgStatus {
            packages: packages::parse_dpkg(&text()),
        },
        Interest::Apk => FileFact::ApkInstalled {
            packages: packages::parse_apk(&text()),
        },
        Interest::Metadata => match python::parse_metadata(&text()) {
            Ok(meta) => FileFact::DistMetadata { meta },
            Err(e) => FileFact::Unreadable {
                message: e.to_string(),
            },
        },
        Interest::TopLevel => FileFact::TopLevel {
            names: python::parse_top_level(&text()),
        },
        Interest::Record if path.ends_with("/installed-files.txt") => FileFact::Record {
            summary: python::parse_installed_files(path, &text()),
        },
        Interest::Record => FileFact::Record {
            summary: python::parse_record(&text()),
        },
        Interest::EggRequires => FileFact::EggRequires {
            requires: python::parse_egg_requires(&text()),
        },
        Interest::PrefectFlow => match prefect::read_flow_file(&bytes) {
            Ok(flow) => FileFact::PrefectFlow {
                flow: Box::new(flow),
            },
            Err(e) => FileFact::Unreadable {
                message: e.to_string(),
            },
        },
        Interest::FlowSource => FileFact::FlowSource {
            bytes: bytes.len() as u64,
            sha256: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        },
        Interest::Interpreter => unreachable!("handled above"),
        Interest::Executable => FileFact::Executable { mode: 0o644 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        assert_eq!(classify("etc/os-release"), Some(Interest::OsRelease));
        assert_eq!(classify("usr/lib/os-release"), Some(Interest::OsRelease));
        assert_eq!(classify("var/lib/dpkg/status"), Some(Interest::Dpkg));
        assert_eq!(
            classify("var/lib/dpkg/status.d/tzdata"),
            Some(Interest::Dpkg)
        );
        assert_eq!(classify("var/lib/dpkg/status.d/tzdata.md5sums"), None);
        assert_eq!(classify("var/lib/dpkg/status-old"), None);
        assert_eq!(
            classify("usr/local/lib/python3.11/site-packages/six-1.16.0.dist-info/METADATA"),
            Some(Interest::Metadata)
        );
        assert_eq!(
            classify("usr/lib/python3/dist-packages/foo-1.0.egg-info"),
            Some(Interest::Metadata)
        );
        assert_eq!(
            classify("x/foo.egg-info/requires.txt"),
            Some(Interest::EggRequires)
        );
        assert_eq!(
            classify("opt/prefect/flows/a.prefect"),
            Some(Interest::PrefectFlow)
        );
        assert_eq!(classify("opt/prefect/healthcheck.py"), None);
        assert_eq!(
            classify("opt/prefect/flows/etl.py"),
            Some(Interest::FlowSource)
        );
        assert_eq!(
            classify("usr/local/bin/python3.11"),
            Some(Interest::Interpreter)
        );
        assert_eq!(classify("usr/local/bin/pythonic"), None);
        assert_eq!(classify("usr/lib/python3.11/json/__init__.py"), None);
    }

    #[test]
    fn normalizes_and_refuses_escapes() {
        assert_eq!(normalize(b"./etc//os-release").unwrap(), "etc/os-release");
        assert_eq!(normalize(b"usr/lib/").unwrap(), "usr/lib");
        assert!(matches!(
            normalize(b"/etc/passwd"),
            Err(LayerError::UnsafePath(_))
        ));
        assert!(matches!(
            normalize(b"a/../../etc"),
            Err(LayerError::UnsafePath(_))
        ));
        assert_eq!(normalize(b"caf\xe9").unwrap(), "caf\u{fffd}");
    }

    #[test]
    fn resolves_links() {
        assert_eq!(
            resolve_link("etc/os-release", "../usr/lib/os-release").as_deref(),
            Some("usr/lib/os-release")
        );
        assert_eq!(
            resolve_link("etc/os-release", "/usr/lib/os-release").as_deref(),
            Some("usr/lib/os-release")
        );
        assert_eq!(resolve_link("a", "../../../b").as_deref(), Some("b"));
    }

    fn sample_layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, path, data).unwrap();
        };
        add("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n");
        add(
            "var/lib/dpkg/status",
            b"Package: a\nStatus: install ok installed\nVersion: 1\n\n",
        );
        add(
            "usr/lib/python3.11/site-packages/x-1.dist-info/METADATA",
            b"Name: x\nVersion: 1\n",
        );
        add(
            "usr/lib/python3.11/site-packages/x-1.dist-info/RECORD",
            b"x/__init__.py,,3\n",
        );
        add(
            "opt/prefect/flows/f.prefect",
            b"{\"flow\": \"gASVCAAAAAAAAACMBHRlc3SULg==\"}",
        );
        let tar = b.into_inner().unwrap();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, &tar).unwrap();
        e.finish().unwrap()
    }

    fn expected_for(blob: &[u8]) -> Expected {
        Expected {
            digest: None,
            diff_id: "sha256:00".into(),
            stored_bytes: blob.len() as u64,
            verify_diff_id: false,
            digest_checked_by_source: false,
        }
    }

    #[test]
    fn sample_layer_is_read_whole() {
        let blob = sample_layer();
        let mut exp = expected_for(&blob);
        exp.digest = Some(crate::scan::source::sha256_digest(&blob));
        let f = analyse(blob.as_slice(), &exp, &Limits::default()).unwrap();
        assert_eq!(f.files.len(), 5);
        assert!(!f.diff_id_verified);
        assert!(matches!(
            f.files["opt/prefect/flows/f.prefect"],
            FileFact::PrefectFlow { .. }
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Damage a valid layer anywhere: the analysis may fail, but never panics or hangs.
        #[test]
        fn damaged_layers_never_panic(pos in 0usize..4096, byte in proptest::num::u8::ANY, cut in 0usize..4096) {
            let mut blob = sample_layer();
            let p = pos % blob.len();
            blob[p] ^= byte | 1;
            blob.truncate(blob.len() - cut % blob.len());
            let _ = analyse(blob.as_slice(), &expected_for(&blob), &Limits::default());
        }

        /// Damage the tar itself (uncompressed), where headers and names live.
        #[test]
        fn damaged_tars_never_panic(pos in 0usize..8192, byte in proptest::num::u8::ANY) {
            let blob = sample_layer();
            let mut tar = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(blob.as_slice()), &mut tar).unwrap();
            let p = pos % tar.len();
            tar[p] ^= byte | 1;
            let _ = analyse(tar.as_slice(), &expected_for(&tar), &Limits::default());
        }

        #[test]
        fn metadata_parsers_never_panic(text in "\\PC{0,400}") {
            let _ = python::parse_metadata(&text);
            let _ = python::parse_record(&text);
            let _ = python::parse_egg_requires(&text);
            let _ = packages::parse_dpkg(&text);
            let _ = packages::parse_apk(&text);
            let _ = os_release::parse(&text);
        }
    }
}

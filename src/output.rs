//! Writing what the user asked for, and nothing else. Every document, report file and
//! generated folder goes through here, so the rules hold everywhere:
//!
//! - a file replaces only a regular file: never a symlink (nor what it points to), a
//!   device (`-o /dev/null` as root would replace `/dev/null`), a FIFO or a folder;
//!   `-` means standard output where a command says so;
//! - a file is written to a temporary sibling and renamed over the target, so a reader
//!   (or a full disk) never sees half of it;
//! - a folder the tool generates is staged beside its target and swapped in when it is
//!   complete (the old one stays whole until then), and it replaces only a folder that
//!   carries unsprawl's marker: never one the user made;
//! - targets are checked before the work starts ([`check_file`], [`check_folder`]), so a
//!   long scan does not end in "cannot write".

use std::io::Write;
use std::path::{Path, PathBuf};

/// The file that marks a folder as unsprawl's to replace.
pub const MARKER: &str = ".unsprawl-generated";

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "{} is not a regular file (a symlink, device, FIFO or folder): unsprawl writes only regular files; use -o - for standard output where the command allows it",
        path.display()
    )]
    NotRegular { path: PathBuf },
    #[error("{} is a symlink or not a folder: choose another -o", path.display())]
    NotAFolder { path: PathBuf },
    #[error(
        "{} exists and was not written by unsprawl (it has no {MARKER}): move it away or choose another -o",
        path.display()
    )]
    NotOurs { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A file target is absent or a regular file (not followed if a symlink).
pub fn check_file(path: &Path) -> Result<(), OutputError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => Err(OutputError::NotRegular {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Write `bytes` to `path` atomically (temp sibling + rename, mode 0644), creating the
/// folders above it.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    write_with(path, |w| w.write_all(bytes))
}

/// Write what `fill` streams to `path` atomically, as [`write_file`] does: a document of
/// hundreds of megabytes is never held whole in memory to be written.
pub fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), OutputError> {
    check_file(path)?;
    let dir = parent(path);
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = tempfile::Builder::new()
        .prefix(".unsprawl-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    let mut out = std::io::BufWriter::with_capacity(256 << 10, tmp);
    fill(&mut out).map_err(io(path))?;
    let tmp = out.into_inner().map_err(|e| OutputError::Io {
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    tmp.as_file().sync_all().map_err(io(path))?;
    // a temp file is private (0600); the output is an ordinary file like any other
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io(path))?;
    }
    tmp.persist(path).map_err(|e| OutputError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Write a document as pretty JSON (streamed, atomically), or to standard output for `-`.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, doc: &T) -> Result<(), OutputError> {
    let fill = |w: &mut dyn Write| -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *w, doc)?;
        w.write_all(b"\n")
    };
    if path == Path::new("-") {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        fill(&mut out).map_err(io(path))?;
        return out.flush().map_err(io(path));
    }
    write_with(path, fill)
}

/// A generated folder's target: absent, or a real folder with unsprawl's marker.
pub fn check_folder(dir: &Path) -> Result<(), OutputError> {
    match std::fs::symlink_metadata(dir) {
        Err(_) => Ok(()),
        Ok(m) if !m.file_type().is_dir() => Err(OutputError::NotAFolder {
            path: dir.to_path_buf(),
        }),
        Ok(_) if !dir.join(MARKER).exists() => Err(OutputError::NotOurs {
            path: dir.to_path_buf(),
        }),
        Ok(_) => Ok(()),
    }
}

/// Replace the generated folder `dir` whole: `fill` writes the new contents into a
/// staging folder beside it; only when it succeeded is the marker (saying `note`) added
/// and the staging folder swapped in. On any failure the old folder is as it was and the
/// staging folder is removed. `fill` returning `Ok(false)` means "nothing to write": the
/// old folder is then removed, and none is left.
pub fn replace_folder<E: From<OutputError>>(
    dir: &Path,
    note: &str,
    fill: impl FnOnce(&Path) -> Result<bool, E>,
) -> Result<(), E> {
    check_folder(dir)?;
    let above = parent(dir);
    std::fs::create_dir_all(above).map_err(io(above))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{name}.unsprawl-new-"))
        .tempdir_in(above)
        .map_err(io(above))?;
    let keep = fill(staging.path())?;
    if !keep {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        return Ok(());
    }
    std::fs::write(staging.path().join(MARKER), format!("{note}\n")).map_err(io(dir))?;
    let staged = staging.keep();
    if dir.exists() {
        let old = tempfile::Builder::new()
            .prefix(&format!(".{name}.unsprawl-old-"))
            .tempdir_in(above)
            .map_err(io(above))?
            .keep();
        std::fs::remove_dir(&old).map_err(io(&old))?;
        std::fs::rename(dir, &old).map_err(io(dir))?;
        if let Err(e) = std::fs::rename(&staged, dir) {
            let _ = std::fs::rename(&old, dir); // put the old one back
            let _ = std::fs::remove_dir_all(&staged);
            return Err(io(dir)(e).into());
        }
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&staged, dir).map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_never_replaces_a_symlink_fifo_or_folder() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let link = d.path().join("report.md");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = write_file(&link, b"x").unwrap_err();
        assert!(matches!(e, OutputError::NotRegular { .. }), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert!(matches!(
            write_file(d.path(), b"x"),
            Err(OutputError::NotRegular { .. })
        ));
        let fifo = d.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert!(matches!(
            write_file(&fifo, b"x"),
            Err(OutputError::NotRegular { .. })
        ));
        let file = d.path().join("a/b/doc.json");
        write_file(&file, b"1").unwrap();
        write_file(&file, b"2").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"2");
    }

    #[test]
    fn a_folder_is_swapped_in_whole_and_only_over_ours() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("runtime-images");
        let fill = |n: &'static str| {
            move |s: &Path| -> Result<bool, OutputError> {
                std::fs::write(s.join("f"), n).unwrap();
                Ok(true)
            }
        };
        replace_folder(&dir, "test", fill("one")).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "one");
        // a failing fill leaves the old folder whole, and no staging folder behind
        let r: Result<(), OutputError> = replace_folder(&dir, "test", |s| {
            std::fs::write(s.join("f"), "half").unwrap();
            Err(OutputError::NotAFolder { path: s.into() })
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "one");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no leftovers"
        );
        replace_folder(&dir, "test", fill("two")).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("f")).unwrap(), "two");
        // a folder the user made is never replaced
        let theirs = d.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join("notes.txt"), "mine").unwrap();
        assert!(matches!(
            replace_folder(&theirs, "test", fill("x")),
            Err(OutputError::NotOurs { .. })
        ));
        assert!(theirs.join("notes.txt").exists());
    }
}

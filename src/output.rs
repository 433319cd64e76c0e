//! Writing results: files atomically (a temporary file in the same directory, then a rename),
//! records spilled to a temporary file instead of memory, and stdout without failing on a
//! closed pipe.

use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a reader sees the old file or the whole new one,
/// never a part. The temporary file sits in the same directory (so the rename does not cross
/// file systems) and is removed if anything fails.
pub fn write_atomically(path: &Path, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    write_atomically_with(path, |file| Ok(file.write_all(bytes.as_ref())?))
}

/// As `write_atomically`, for content that `write` streams into the file (an export too
/// large to build in memory first).
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        anyhow::Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Writes `text` to stdout. A closed pipe (`cutover ... | head`) is not an error.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// Records kept as JSON lines in a temporary file beside the outputs instead of in memory
/// (the findings of a scan, which grow with the export), then read back in order. The file
/// is removed when the spill is dropped.
pub struct Spill {
    path: std::path::PathBuf,
    writer: Option<std::io::BufWriter<std::fs::File>>,
    /// The first write error; later records are dropped and `finish` reports it.
    error: Option<std::io::Error>,
}

impl Spill {
    /// A new spill file in `dir`.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<Spill> {
        let path = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Spill {
            path,
            writer: Some(std::io::BufWriter::new(file)),
            error: None,
        })
    }

    /// Appends a record.
    pub fn push<T: serde::Serialize>(&mut self, record: &T) {
        if self.error.is_some() {
            return;
        }
        if let Some(w) = &mut self.writer {
            let written = serde_json::to_writer(&mut *w, record)
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = written {
                self.error = Some(e);
            }
        }
    }

    /// Flushes the records written; the first write error, if any.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        if let Some(mut w) = self.writer.take()
            && let Err(e) = w.flush()
        {
            self.error.get_or_insert(e);
        }
        match self.error.take() {
            Some(e) => Err(e).with_context(|| format!("cannot write {}", self.path.display())),
            None => Ok(()),
        }
    }

    /// The records, in the order pushed (after `finish`).
    pub fn read<T: serde::de::DeserializeOwned>(
        &self,
    ) -> anyhow::Result<impl Iterator<Item = std::io::Result<T>> + use<T>> {
        use std::io::BufRead;
        let file = std::fs::File::open(&self.path)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        Ok(std::io::BufReader::new(file)
            .lines()
            .map(|line| serde_json::from_str(&line?).map_err(std::io::Error::from)))
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        self.writer = None;
        let _ = std::fs::remove_file(&self.path);
    }
}

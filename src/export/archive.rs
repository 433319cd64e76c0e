//! Reading a snapshot export ZIP without extracting it: where the tables are (a wrapper folder,
//! components' folders), each table's number, and a bounded line reader over one entry that
//! inflates as it goes and stops an entry that inflates far beyond its compressed size.

use super::{ExportError, Finding, FindingKind};
use memchr::memchr;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// The most an entry may inflate relative to its compressed size. JSONL of similar documents
/// compresses about 5 to 15 times; deflate's own ceiling is about 1,032.
pub const INFLATE_RATIO_MAX: u64 = 100;
/// Entries smaller than this when inflated are never stopped by the ratio.
pub const INFLATE_FLOOR: u64 = 1 << 20;
/// The longest line read, in bytes: a Convex document is at most 1 MiB, and its JSON (with
/// base64 bytes and escapes) stays well below this.
pub const LINE_BYTES_MAX: usize = 8 << 20;
/// Bytes of inflated data buffered per entry.
const READ_BUFFER_BYTES: usize = 256 << 10;

/// One namespace of tables: the app's own (`prefix` is the wrapper folder, often empty) or a
/// component's (`prefix` ends in `_components/<name>/`).
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    pub prefix: String,
    /// Table number -> table name, from `_tables/documents.jsonl`.
    pub tables: BTreeMap<u32, String>,
}

impl Namespace {
    /// The number of the named table.
    pub fn number_of(&self, table: &str) -> Option<u32> {
        self.tables
            .iter()
            .find(|(_, name)| name.as_str() == table)
            .map(|(n, _)| *n)
    }
}

/// An open export.
pub struct Archive {
    zip: zip::ZipArchive<BufReader<File>>,
    /// The file name as given, for messages.
    pub path: String,
    /// Entry name -> index, for entries whose names are safe.
    entries: BTreeMap<String, usize>,
    pub namespaces: Vec<Namespace>,
}

/// Whether an entry name stays inside the archive's root: no `..` component, not absolute,
/// no backslash or NUL (which other tools treat as separators or terminators).
fn safe_name(name: &str) -> bool {
    let escapes = name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name.split('/').any(|c| c == "..")
        || (name.len() > 1 && name.as_bytes()[1] == b':');
    !escapes
}

const TABLES_ENTRY: &str = "_tables/documents.jsonl";

impl Archive {
    /// Opens the export and reads its layout. Entry names that escape are findings; a file
    /// that is no ZIP, or a ZIP with no `_tables/documents.jsonl`, is unusable.
    pub fn open(path: &Path, findings: &mut Vec<Finding>) -> Result<Archive, ExportError> {
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|source| ExportError::Io {
            path: shown.clone(),
            source,
        })?;
        let zip =
            zip::ZipArchive::new(BufReader::new(file)).map_err(|e| ExportError::Unusable {
                path: shown.clone(),
                reason: format!("not a readable ZIP archive ({e})"),
            })?;
        let mut entries = BTreeMap::new();
        for i in 0..zip.len() {
            let name = match zip.name_for_index(i) {
                Some(Ok(name)) => name.into_owned(),
                _ => {
                    findings.push(Finding::entry(
                        FindingKind::Entry,
                        format!("#{i}"),
                        "the entry's name is not readable".into(),
                    ));
                    continue;
                }
            };
            if !safe_name(&name) {
                findings.push(Finding::entry(
                    FindingKind::Entry,
                    name,
                    "the entry's name escapes the archive's root; skipped".into(),
                ));
                continue;
            }
            entries.insert(name, i);
        }
        let mut archive = Archive {
            zip,
            path: shown,
            entries,
            namespaces: Vec::new(),
        };
        // The root `_tables` entry is the one with the shortest prefix outside components; a
        // wrapper folder is that prefix. Components live under it.
        let mut roots: Vec<String> = archive
            .entries
            .keys()
            .filter_map(|n| n.strip_suffix(TABLES_ENTRY))
            .filter(|p| p.is_empty() || p.ends_with('/'))
            .map(str::to_string)
            .collect();
        roots.sort_by_key(|p| (p.len(), p.clone()));
        let Some(wrapper) = roots.iter().find(|p| !p.contains("_components/")).cloned() else {
            return Err(ExportError::Unusable {
                path: archive.path.clone(),
                reason: format!("no {TABLES_ENTRY}: not a Convex snapshot export"),
            });
        };
        for prefix in roots.into_iter().filter(|p| {
            p == &wrapper
                || (p.starts_with(&wrapper) && p[wrapper.len()..].starts_with("_components/"))
        }) {
            let tables = archive.read_tables(&prefix, findings)?;
            archive.namespaces.push(Namespace { prefix, tables });
        }
        Ok(archive)
    }

    fn read_tables(
        &mut self,
        prefix: &str,
        findings: &mut Vec<Finding>,
    ) -> Result<BTreeMap<u32, String>, ExportError> {
        #[derive(serde::Deserialize)]
        struct TableLine {
            name: String,
            id: u32,
        }
        let name = format!("{prefix}{TABLES_ENTRY}");
        let mut tables = BTreeMap::new();
        let mut lines = self.lines(&name)?;
        let mut buf = Vec::new();
        loop {
            match lines.next_line(&mut buf) {
                Ok(None) => break,
                Ok(Some(Line::TooLong(n))) => findings.push(Finding::line(
                    FindingKind::BadLine,
                    &name,
                    lines.line_no,
                    format!("line of {n} bytes is longer than {LINE_BYTES_MAX}; skipped"),
                )),
                Ok(Some(Line::Read)) if buf.iter().all(u8::is_ascii_whitespace) => {}
                Ok(Some(Line::Read)) => match serde_json::from_slice::<TableLine>(&buf) {
                    Ok(t) => {
                        tables.insert(t.id, t.name);
                    }
                    Err(e) => findings.push(Finding::line(
                        FindingKind::BadLine,
                        &name,
                        lines.line_no,
                        format!("not a table line: {e}"),
                    )),
                },
                Err(e) => {
                    findings.push(Finding::line(
                        FindingKind::Entry,
                        &name,
                        lines.line_no,
                        format!("unreadable: {e}"),
                    ));
                    break;
                }
            }
        }
        Ok(tables)
    }

    /// Whether the archive has an entry of that name.
    pub fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// A line reader over the named entry.
    pub fn lines(&mut self, name: &str) -> Result<Lines<'_>, ExportError> {
        let index = *self
            .entries
            .get(name)
            .ok_or_else(|| ExportError::Unusable {
                path: self.path.clone(),
                reason: format!("no entry {name}"),
            })?;
        let file = self
            .zip
            .by_index(index)
            .map_err(|e| ExportError::Unusable {
                path: self.path.clone(),
                reason: format!("entry {name}: {e}"),
            })?;
        let limit = file
            .compressed_size()
            .saturating_mul(INFLATE_RATIO_MAX)
            .max(INFLATE_FLOOR);
        let declared = file.size();
        Ok(Lines {
            inner: BufReader::with_capacity(
                READ_BUFFER_BYTES,
                Guard {
                    inner: file,
                    read: 0,
                    limit,
                    declared,
                },
            ),
            line_no: 0,
            bytes: 0,
        })
    }
}

/// Counts inflated bytes and fails the read once they pass the entry's limit (or its
/// declared size, which a well-formed entry never passes).
struct Guard<R> {
    inner: R,
    read: u64,
    limit: u64,
    declared: u64,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(format!(
                "the entry inflates beyond {} bytes, {INFLATE_RATIO_MAX} times its compressed size; stopped (zip bomb guard)",
                self.limit
            )));
        }
        if self.read > self.declared {
            return Err(io::Error::other(format!(
                "the entry inflates beyond its declared size of {} bytes; stopped",
                self.declared
            )));
        }
        Ok(n)
    }
}

/// What `Lines::next_line` read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, in the buffer, without its newline.
    Read,
    /// A line longer than `LINE_BYTES_MAX`, skipped; its length.
    TooLong(usize),
}

/// The lines of one entry, read with a bounded buffer.
pub struct Lines<'a> {
    inner: BufReader<Guard<zip::read::ZipFile<'a, BufReader<File>>>>,
    /// The number of the line last read (1-based).
    pub line_no: u64,
    /// Inflated bytes read so far.
    pub bytes: u64,
}

impl Lines<'_> {
    /// Reads the next line into `buf` (cleared first). `Ok(None)` at the end of the entry.
    pub fn next_line(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<Line>> {
        buf.clear();
        let mut len = 0usize;
        let mut any = false;
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (take, done) = match memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            if len + take <= LINE_BYTES_MAX {
                buf.extend_from_slice(&chunk[..take]);
            } else {
                buf.clear();
            }
            len += take;
            let consumed = take + usize::from(done);
            self.inner.consume(consumed);
            self.bytes += consumed as u64;
            if done {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.line_no += 1;
        if len > LINE_BYTES_MAX {
            buf.clear();
            return Ok(Some(Line::TooLong(len)));
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Ok(Some(Line::Read))
    }
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn names_that_escape_are_unsafe() {
        assert!(safe_name("objects/documents.jsonl"));
        assert!(safe_name("wrap/_components/crm/objects/documents.jsonl"));
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a\\..\\x",
            "C:/x",
            "a/..",
            "a\0b",
        ] {
            assert!(!safe_name(bad), "{bad}");
        }
    }
}

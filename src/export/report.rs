//! Rendering a scan: `scan.md` (for people), `scan.json` (the `ScanReport` as data, its
//! findings last) and the short summary `cutover scan` prints. The findings come as a stream
//! (from the report, or from where `cutover scan` spilled them), so that rendering holds one
//! finding at a time.

use super::Finding;
use super::scan::ScanReport;
use std::io::{self, Write};

/// Findings to render, one at a time.
pub type Findings<'a> = &'a mut dyn Iterator<Item = io::Result<Finding>>;

/// The Markdown report, with the report's own findings.
pub fn markdown(r: &ScanReport) -> String {
    let mut out = Vec::new();
    write_markdown(r, &mut r.findings.iter().cloned().map(Ok), &mut out)
        .expect("writing to memory does not fail");
    String::from_utf8(out).expect("the report is UTF-8")
}

/// Writes the Markdown report.
pub fn write_markdown(r: &ScanReport, findings: Findings, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "# Scan of `{}` with plan \"{}\"", r.export, r.plan)?;
    writeln!(out)?;
    writeln!(out, "{}", verdict(r))?;
    writeln!(out)?;
    writeln!(out, "## Tables read")?;
    writeln!(out)?;
    writeln!(
        out,
        "| entry | encoding | lines | documents | bytes | complete |"
    )?;
    writeln!(out, "|---|---|---:|---:|---:|---|")?;
    for t in &r.tables {
        writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            t.entry,
            t.encoding,
            t.stats.lines,
            t.stats.documents,
            t.stats.bytes,
            if t.stats.truncated { "no" } else { "yes" }
        )?;
    }
    writeln!(out)?;
    writeln!(out, "## Documents by type / subtype / shape")?;
    writeln!(out)?;
    writeln!(out, "| type / subtype / shape | documents |")?;
    writeln!(out, "|---|---:|")?;
    for (label, n) in &r.shapes {
        writeln!(out, "| {label} | {n} |")?;
    }
    writeln!(out)?;
    writeln!(out, "## Mapping and backfill, per typed table")?;
    writeln!(out)?;
    writeln!(
        out,
        "| table | documents | map cleanly | do not map | unresolved references | batch size | batches | largest batch: documents, writes, read bytes, written bytes | over a Convex limit |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|---|")?;
    for k in &r.kinds {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {}, {}, {}, {} | {} |",
            k.kind,
            k.documents,
            k.clean,
            k.unmappable,
            k.unresolved_references,
            k.batch_size,
            k.batches,
            k.batch_documents_max,
            k.batch_writes_max,
            k.batch_read_bytes_max,
            k.batch_write_bytes_max,
            if k.batch_over_limits.is_empty() {
                "none".to_string()
            } else {
                k.batch_over_limits.join(", ")
            }
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Convex's per-transaction limits: 32,000 documents scanned, 16 MiB read, 16,000 documents and 16 MiB written. Batches are each table's documents of a kind in creation order (`_creationTime`, then `_id`), `batch size` at a time, as the backfill pages them; the largest figures are each the largest of any batch."
    )?;
    writeln!(out)?;
    writeln!(out, "## Findings")?;
    writeln!(out)?;
    let mut any = false;
    for f in findings {
        let f = f?;
        if !any {
            writeln!(out, "| kind | entry:line | _id | field path | reason |")?;
            writeln!(out, "|---|---|---|---|---|")?;
            any = true;
        }
        let place = match f.line {
            Some(l) => format!("{}:{l}", f.entry),
            None => f.entry.clone(),
        };
        writeln!(
            out,
            "| {} | `{}` | {} | {} | {} |",
            f.kind.name(),
            place,
            f.id.as_deref().map_or(String::new(), |i| format!("`{i}`")),
            f.path
                .as_deref()
                .map_or(String::new(), |p| format!("`{p}`")),
            f.reason.replace('|', "\\|")
        )?;
    }
    if !any {
        writeln!(out, "None.")?;
    }
    Ok(())
}

/// Writes the report as one JSON object: its fields, then `findings`, streamed. `pretty`
/// indents it; otherwise it is one line.
pub fn write_json(
    r: &ScanReport,
    findings: Findings,
    out: &mut dyn Write,
    pretty: bool,
) -> io::Result<()> {
    let serde_json::Value::Object(head) = serde_json::to_value(r)? else {
        unreachable!("a struct serializes as an object")
    };
    let (nl, indent) = if pretty { ("\n", "  ") } else { ("", "") };
    write!(out, "{{{nl}")?;
    for (k, v) in &head {
        let v = if pretty {
            // JSON strings hold no raw newline, so every newline is between tokens.
            serde_json::to_string_pretty(v)?.replace('\n', "\n  ")
        } else {
            serde_json::to_string(v)?
        };
        write!(
            out,
            "{indent}{}:{}{v},{nl}",
            serde_json::to_string(k)?,
            if pretty { " " } else { "" }
        )?;
    }
    write!(
        out,
        "{indent}\"findings\":{}[",
        if pretty { " " } else { "" }
    )?;
    let mut first = true;
    for f in findings {
        let f = f?;
        if !first {
            write!(out, ",")?;
        }
        first = false;
        write!(out, "{nl}{indent}{indent}{}", serde_json::to_string(&f)?)?;
    }
    if !first {
        write!(out, "{nl}{indent}")?;
    }
    write!(out, "]{nl}}}")?;
    writeln!(out)
}

fn verdict(r: &ScanReport) -> String {
    let clean: u64 = r.kinds.iter().map(|k| k.clean).sum();
    let migrating: u64 = r.kinds.iter().map(|k| k.documents).sum();
    let counts: Vec<String> = r
        .finding_counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    format!(
        "{} legacy documents read; {} of the {} that migrate map cleanly; findings: {}",
        r.documents,
        clean,
        migrating,
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        }
    )
}

/// The summary `cutover scan` prints, with the first few findings.
pub fn summary(r: &ScanReport, first: &[Finding], written: &[String]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "scan of {} (plan {:?}):", r.export, r.plan);
    let _ = writeln!(out, "  {}", verdict(r));
    for k in &r.kinds {
        let _ = writeln!(
            out,
            "  {}: {} documents, {} map, {} do not, {} unresolved references; {} batches of up to {}{}",
            k.kind,
            k.documents,
            k.clean,
            k.unmappable,
            k.unresolved_references,
            k.batches,
            k.batch_size,
            if k.batch_over_limits.is_empty() {
                String::new()
            } else {
                format!(
                    " (over Convex's limits: {})",
                    k.batch_over_limits.join(", ")
                )
            }
        );
    }
    for (i, f) in first.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {}{f}",
            if i == 0 {
                "first findings: "
            } else {
                "                "
            }
        );
    }
    if !written.is_empty() {
        let _ = writeln!(out, "  wrote {}", written.join(" and "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::FindingKind;

    #[test]
    fn json_with_streamed_findings_is_the_report_with_its_findings() {
        let mut r = ScanReport {
            export: "x.zip".into(),
            documents: 3,
            ..ScanReport::default()
        };
        r.findings = vec![
            Finding::line(
                FindingKind::BadLine,
                "objects/documents.jsonl",
                2,
                "not JSON".into(),
            ),
            Finding::entry(FindingKind::Entry, "../x".into(), "escapes".into()),
        ];
        for pretty in [false, true] {
            let mut out = Vec::new();
            write_json(
                &r,
                &mut r.findings.iter().cloned().map(Ok),
                &mut out,
                pretty,
            )
            .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["documents"], 3);
            assert_eq!(v["findings"][1]["entry"], "../x");
            assert_eq!(v["findings"].as_array().unwrap().len(), 2);
            assert_eq!(out.iter().filter(|b| **b == b'\n').count() == 1, !pretty);
        }
        let mut out = Vec::new();
        write_json(
            &ScanReport::default(),
            &mut std::iter::empty(),
            &mut out,
            true,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["findings"], serde_json::json!([]));
    }
}

//! Rendering a scan: `scan.md` (for people), `scan.json` (the `ScanReport` as data) and the
//! short summary `cutover scan` prints.

use super::scan::ScanReport;
use std::fmt::Write;

/// The Markdown report.
pub fn markdown(r: &ScanReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Scan of `{}` with plan \"{}\"", r.export, r.plan);
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", verdict(r));
    let _ = writeln!(out);
    let _ = writeln!(out, "## Tables read");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| entry | encoding | lines | documents | bytes | complete |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---|");
    for t in &r.tables {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            t.entry,
            t.encoding,
            t.stats.lines,
            t.stats.documents,
            t.stats.bytes,
            if t.stats.truncated { "no" } else { "yes" }
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "## Documents by type / subtype / shape");
    let _ = writeln!(out);
    let _ = writeln!(out, "| type / subtype / shape | documents |");
    let _ = writeln!(out, "|---|---:|");
    for (label, n) in &r.shapes {
        let _ = writeln!(out, "| {label} | {n} |");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "## Mapping and backfill, per typed table");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| table | documents | map cleanly | do not map | unresolved references | batch size | batches | largest batch: documents, writes, read bytes (at most), written bytes (at most) | over a Convex limit |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|---|");
    for k in &r.kinds {
        let _ = writeln!(
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
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Convex's per-transaction limits: 32,000 documents scanned, 16 MiB read, 16,000 documents and 16 MiB written. The byte figures are upper bounds: the batch size's largest documents together."
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "## Findings");
    let _ = writeln!(out);
    if r.findings.is_empty() {
        let _ = writeln!(out, "None.");
    } else {
        let _ = writeln!(out, "| kind | entry:line | _id | field path | reason |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for f in &r.findings {
            let place = match f.line {
                Some(l) => format!("{}:{l}", f.entry),
                None => f.entry.clone(),
            };
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} |",
                f.kind.name(),
                place,
                f.id.as_deref().map_or(String::new(), |i| format!("`{i}`")),
                f.path
                    .as_deref()
                    .map_or(String::new(), |p| format!("`{p}`")),
                f.reason.replace('|', "\\|")
            );
        }
        if r.findings_dropped > 0 {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{} more findings are counted above but not listed.",
                r.findings_dropped
            );
        }
    }
    out
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

/// The summary `cutover scan` prints.
pub fn summary(r: &ScanReport, written: &[String]) -> String {
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
    for (i, f) in r.findings.iter().enumerate().take(5) {
        let _ = writeln!(
            out,
            "  {}{f}",
            if i == 0 {
                "first findings: "
            } else {
                "                  "
            }
        );
    }
    if !written.is_empty() {
        let _ = writeln!(out, "  wrote {}", written.join(" and "));
    }
    out
}

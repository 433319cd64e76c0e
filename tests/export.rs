//! Snapshot exports: ids, both encodings, components and a wrapper folder, a scan that finds
//! exactly the generated dirty documents, the round trip generate -> scan -> check, and every
//! kind of bad input (as findings, or exit code 2, never a panic).

mod common;
use common::cutover;

use cutover::explore::{CheckOptions, check};
use cutover::export::generate::{ExportOptions, Generated, write_export};
use cutover::export::ids::ConvexId;
use cutover::export::scan::{ScanReport, scan};
use cutover::export::{FindingKind, load};
use cutover::plan::Plan;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

fn generate(documents: usize, dirty: u8, legacy: bool) -> (Vec<u8>, Generated) {
    let (w, g) = write_export(
        Cursor::new(Vec::new()),
        &ExportOptions {
            documents,
            dirty_percent: dirty,
            seed: 4,
            legacy,
        },
    )
    .expect("writes");
    (w.into_inner(), g)
}

/// A scratch directory for this test, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("export")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creates");
    dir
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("writes");
    p
}

/// The entries of a ZIP, in order.
fn entries(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = zip::ZipArchive::new(Cursor::new(zip)).expect("a ZIP");
    (0..a.len())
        .map(|i| {
            let mut f = a.by_index(i).expect("an entry");
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).expect("reads");
            (f.name().expect("a name").to_string(), bytes)
        })
        .collect()
}

fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        z.start_file(name.as_str(), o).expect("starts");
        z.write_all(bytes).expect("writes");
    }
    z.finish().expect("finishes").into_inner()
}

/// The unmappable documents a scan reports: `(id, path)`.
fn unmappable(r: &ScanReport) -> BTreeSet<(String, String)> {
    r.findings
        .iter()
        .filter(|f| f.kind == FindingKind::Unmappable)
        .map(|f| (f.id.clone().unwrap(), f.path.clone().unwrap()))
        .collect()
}

#[test]
fn generated_ids_decode_to_their_tables_and_reject_a_changed_checksum() {
    let (zip, g) = generate(300, 20, false);
    let mut tables = BTreeMap::new();
    for (name, bytes) in entries(&zip) {
        if !name.ends_with("documents.jsonl") || name.starts_with("_tables") {
            continue;
        }
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).expect("JSON");
            let id = ConvexId::decode(v["_id"].as_str().expect("an id")).expect("decodes");
            *tables.entry((name.clone(), id.table)).or_insert(0) += 1;
        }
    }
    let tables: Vec<(String, u32)> = tables.into_keys().collect();
    assert_eq!(
        tables,
        [
            ("objectLinks/documents.jsonl".to_string(), 10_002),
            ("objects/documents.jsonl".to_string(), 10_001),
            ("organizations/documents.jsonl".to_string(), 10_003),
        ]
    );
    let id = &g.dirty[0].id;
    let mut broken = id.clone().into_bytes();
    let last = broken.len() - 2;
    broken[last] = if broken[last] == b'a' { b'b' } else { b'a' };
    assert!(ConvexId::decode(std::str::from_utf8(&broken).unwrap()).is_err());
}

#[test]
fn gen_export_is_byte_identical_for_equal_arguments() {
    let (a, _) = generate(700, 10, false);
    let (b, _) = generate(700, 10, false);
    assert!(a == b, "two runs differ");
    let (c, _) = write_export(
        Cursor::new(Vec::new()),
        &ExportOptions {
            documents: 700,
            dirty_percent: 10,
            seed: 5,
            legacy: false,
        },
    )
    .unwrap();
    assert!(a != c.into_inner(), "another seed writes the same export");
}

#[test]
fn scan_finds_exactly_the_generated_dirty_documents_in_both_encodings() {
    let dir = scratch("exact");
    let plan = Plan::seed();
    let mut reports = Vec::new();
    for legacy in [false, true] {
        let (zip, g) = generate(3_000, 12, legacy);
        let path = write(&dir, &format!("legacy-{legacy}.zip"), &zip);
        let r = scan(&path, &plan).expect("scans");
        let want: BTreeSet<(String, String)> = g
            .dirty
            .iter()
            .map(|d| (d.id.clone(), d.path.to_string()))
            .collect();
        assert!(want.len() > 100, "only {} dirty documents", want.len());
        assert_eq!(unmappable(&r), want);
        for (i, k) in r.kinds.iter().enumerate() {
            let dirty = g.dirty.iter().filter(|d| d.kind.index() == i).count() as u64;
            assert!(dirty > 0, "no dirty {}", k.kind);
            assert_eq!(k.unmappable, dirty, "{}", k.kind);
            assert_eq!(k.documents, g.migrating[i] as u64, "{}", k.kind);
            assert_eq!(k.clean + k.unmappable, k.documents);
            assert_eq!(k.unresolved_references, 0);
            assert_eq!(k.batches, k.documents.div_ceil(k.batch_size as u64));
        }
        assert_eq!(r.documents, g.documents as u64);
        assert_eq!(r.finding_counts.keys().collect::<Vec<_>>(), ["unmappable"]);
        assert_eq!(
            r.tables[0].encoding,
            if legacy { "legacy" } else { "uniform" }
        );
        assert!(
            r.shapes
                .keys()
                .any(|s| s == "transaction / booking / booking")
        );
        assert!(
            r.shapes
                .keys()
                .any(|s| s == "ticket / support / support ticket")
        );
        reports.push(r);
    }
    // The two encodings carry the same documents.
    assert_eq!(reports[0].shapes, reports[1].shapes);
    assert_eq!(reports[0].kinds, reports[1].kinds);
}

#[test]
fn reading_the_legacy_export_as_uniform_would_break_every_number() {
    // The encodings differ where it matters: a bare 1830 is float64 in the legacy encoding
    // and int64 in the uniform one, which v.number() rejects.
    let (zip, _) = generate(200, 0, true);
    let mut e = entries(&zip);
    for (name, bytes) in &mut e {
        if name == "objects/generated_schema.jsonl" {
            *bytes = b"\"uniform\"\n".to_vec();
        }
    }
    let dir = scratch("misread");
    let path = write(&dir, "x.zip", &zip_of(&e));
    let r = scan(&path, &Plan::seed()).unwrap();
    let k = &r.kinds[0];
    assert_eq!((k.clean, k.unmappable), (0, k.documents));
}

#[test]
fn a_wrapper_folder_and_components_are_read() {
    let (zip, g) = generate(400, 10, false);
    let mut e = Vec::new();
    for (name, bytes) in entries(&zip) {
        e.push((format!("snapshot/{name}"), bytes.clone()));
        e.push((format!("snapshot/_components/crm/{name}"), bytes));
    }
    let dir = scratch("wrapped");
    let path = write(&dir, "w.zip", &zip_of(&e));
    let r = scan(&path, &Plan::seed()).unwrap();
    let tables: Vec<&str> = r.tables.iter().map(|t| t.entry.as_str()).collect();
    assert_eq!(
        tables,
        [
            "snapshot/objects/documents.jsonl",
            "snapshot/_components/crm/objects/documents.jsonl"
        ]
    );
    assert_eq!(r.documents, 2 * g.documents as u64);
    assert_eq!(
        r.finding_counts.get("unmappable"),
        Some(&(2 * g.dirty.len() as u64))
    );
}

#[test]
fn a_reference_to_a_deleted_event_is_reported() {
    let (zip, _) = generate(300, 0, false);
    let mut e = entries(&zip);
    let objects = &mut e
        .iter_mut()
        .find(|(n, _)| n == "objects/documents.jsonl")
        .unwrap()
        .1;
    // Delete the first event whose id some ticket references.
    let text = String::from_utf8(objects.clone()).unwrap();
    let event = text
        .lines()
        .find(|l| l.contains("\"type\":\"event\""))
        .unwrap()
        .to_string();
    let id: serde_json::Value = serde_json::from_str(&event).unwrap();
    let id = id["_id"].as_str().unwrap().to_string();
    let referencing = text
        .lines()
        .filter(|l| l.contains(&format!("\"eventId\":\"{id}\"")))
        // Products reference their event too, but do not migrate and are not checked.
        .filter(|l| !l.contains("\"type\":\"product\""))
        .count() as u64;
    assert!(referencing > 0);
    *objects = text
        .lines()
        .filter(|l| *l != event)
        .flat_map(|l| [l, "\n"])
        .collect::<String>()
        .into_bytes();
    let dir = scratch("deleted");
    let path = write(&dir, "d.zip", &zip_of(&e));
    let r = scan(&path, &Plan::seed()).unwrap();
    let found: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::UnresolvedReference)
        .collect();
    assert_eq!(found.len() as u64, referencing);
    assert!(found.iter().all(|f| f.reason.contains(&id)));
    assert!(
        found
            .iter()
            .any(|f| f.path.as_deref() == Some("customProperties.eventId"))
    );
}

#[test]
fn generate_scan_and_check_from_the_export_round_trip() {
    let dir = scratch("round_trip");
    let (zip, g) = generate(1_500, 5, false);
    let path = write(&dir, "r.zip", &zip);
    let r = scan(&path, &Plan::seed()).unwrap();
    assert_eq!(
        r.finding_counts.get("unmappable"),
        Some(&(g.dirty.len() as u64))
    );
    let loaded = load::load(&path, None, 0).unwrap();
    assert_eq!(loaded.dataset.objects.len(), g.documents);
    assert_eq!(loaded.dataset.links.len(), g.links);
    let sampled = load::load(&path, Some(200), 3).unwrap();
    assert_eq!(sampled.dataset.objects.len(), 200);
    let again = load::load(&path, Some(200), 3).unwrap();
    assert!(
        sampled
            .dataset
            .objects
            .iter()
            .zip(&again.dataset.objects)
            .all(|(a, b)| a.fields == b.fields),
        "the sample is not deterministic"
    );
    for data in [loaded.dataset, sampled.dataset] {
        let mut options = CheckOptions {
            cases: 8,
            steps: 120,
            ..CheckOptions::default()
        };
        options.sim.dataset = Some(cutover::data::Fixed(std::sync::Arc::new(data)));
        let report = check(&Plan::seed(), &options);
        assert!(
            report.counterexample.is_none(),
            "{:?}",
            report.counterexample.map(|c| c.failure)
        );
        assert!(report.batches > 0);
    }
}

#[test]
fn a_counterexample_from_an_export_replays_after_the_export_is_gone() {
    let dir = scratch("replay");
    let (zip, _) = generate(600, 5, false);
    let export = write(&dir, "e.zip", &zip);
    let saved = dir.join("ce.json");
    let (code, out, err) = cutover(&[
        "check",
        "--plan",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/plans/unsafe/backfill_stale_copy.toml"
        ),
        "--from-export",
        export.to_str().unwrap(),
        "--sample",
        "150",
        "--cases",
        "300",
        "--save",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("--from-export"), "{out}");
    std::fs::remove_file(&export).unwrap();
    let (code, out, err) = cutover(&["replay", saved.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("BROKEN"), "{out}");
    let (code, _, err) = cutover(&["replay", saved.to_str().unwrap(), "--emit-test"]);
    assert_eq!(code, 2);
    assert!(err.contains("export"), "{err}");
}

/// Runs `cutover scan` on `zip` and returns the exit code, the scan.json (if written) and
/// stderr.
fn scan_bin(name: &str, zip: &[u8]) -> (i32, Option<serde_json::Value>, String) {
    let dir = scratch(name);
    let path = write(&dir, "in.zip", zip);
    let before = std::fs::read(&path).unwrap();
    let out = dir.join("out");
    let (code, stdout, stderr) = cutover(&[
        "scan",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ne!(code, 101, "panicked: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the input changed");
    let json = std::fs::read(out.join("scan.json"))
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("scan.json is JSON"));
    if out.exists() {
        // The spilled findings are gone; only the reports are left.
        let mut left: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let want: &[&str] = if json.is_some() {
            &["scan.json", "scan.md"]
        } else {
            &[]
        };
        assert_eq!(left, want);
    }
    (code, json, format!("{stdout}{stderr}"))
}

fn findings_of(json: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn a_truncated_or_corrupt_zip_is_unusable_or_a_finding() {
    let (zip, g) = generate(800, 0, false);
    // Cut in half: no central directory, nothing can be read.
    let (code, json, out) = scan_bin("truncated", &zip[..zip.len() / 2]);
    assert_eq!(code, 2, "{out}");
    assert!(json.is_none());
    assert!(out.contains("not a readable ZIP"), "{out}");
    // Not a ZIP at all.
    let (code, _, out) = scan_bin("garbage", b"PK\x03\x04 this is not really a zip");
    assert_eq!(code, 2, "{out}");
    // A valid ZIP with damaged data inside the objects entry: the documents before the
    // damage are scanned, the damage is a finding.
    let e = entries(&zip);
    let mut stored = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in &e {
        stored
            .start_file(
                name.as_str(),
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored),
            )
            .unwrap();
        stored.write_all(bytes).unwrap();
    }
    let mut corrupt = stored.finish().unwrap().into_inner();
    let objects = &e
        .iter()
        .find(|(n, _)| n == "objects/documents.jsonl")
        .unwrap()
        .1;
    let at = corrupt
        .windows(64)
        .position(|w| w == &objects[objects.len() / 2..objects.len() / 2 + 64])
        .expect("the stored bytes are in the file");
    corrupt[at] ^= 0xff;
    let (code, json, out) = scan_bin("corrupt", &corrupt);
    assert_eq!(code, 1, "{out}");
    let json = json.expect("written");
    let entry = findings_of(&json, "entry");
    assert_eq!(entry.len(), 1, "{entry:?}");
    assert_eq!(entry[0]["entry"], "objects/documents.jsonl");
    assert!(json["documents"].as_u64().unwrap() < g.documents as u64);
}

#[test]
fn an_entry_that_escapes_is_skipped_and_reported() {
    let (zip, g) = generate(300, 0, false);
    let mut e = entries(&zip);
    e.push(("../../etc/objects/documents.jsonl".into(), b"{}\n".to_vec()));
    let (code, json, out) = scan_bin("escape", &zip_of(&e));
    assert_eq!(code, 1, "{out}");
    let json = json.unwrap();
    let f = findings_of(&json, "entry");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["entry"], "../../etc/objects/documents.jsonl");
    assert!(f[0]["reason"].as_str().unwrap().contains("escapes"));
    assert_eq!(json["documents"].as_u64(), Some(g.documents as u64));
}

#[test]
fn an_entry_that_inflates_far_beyond_its_size_is_stopped() {
    let (zip, g) = generate(300, 0, false);
    let mut e = entries(&zip);
    for (name, bytes) in &mut e {
        if name == "objects/documents.jsonl" {
            // 64 MiB of blank lines compress about a thousandfold.
            bytes.extend(std::iter::repeat_n(b'\n', 64 << 20));
        }
    }
    let (code, json, out) = scan_bin("bomb", &zip_of(&e));
    assert_eq!(code, 1, "{out}");
    let json = json.unwrap();
    let f = findings_of(&json, "entry");
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0]["reason"].as_str().unwrap().contains("zip bomb"),
        "{f:?}"
    );
    assert_eq!(json["documents"].as_u64(), Some(g.documents as u64));
}

#[test]
fn a_line_that_is_not_json_and_ids_in_the_wrong_format_are_findings() {
    let (zip, g) = generate(300, 0, false);
    let mut e = entries(&zip);
    let good = ConvexId {
        table: 10_001,
        internal: [9; 16],
    }
    .encode();
    let mut broken = good.clone().into_bytes();
    broken[20] = if broken[20] == b'a' { b'b' } else { b'a' };
    let broken = String::from_utf8(broken).unwrap();
    let other_table = ConvexId {
        table: 10_003,
        internal: [9; 16],
    }
    .encode();
    for (name, bytes) in &mut e {
        if name == "objects/documents.jsonl" {
            bytes.extend_from_slice(b"this is not JSON\n");
            for id in ["objects:1", broken.as_str(), other_table.as_str()] {
                bytes.extend_from_slice(
                    format!("{{\"_id\":\"{id}\",\"_creationTime\":1.5,\"type\":\"event\"}}\n")
                        .as_bytes(),
                );
            }
            bytes.extend_from_slice(b"{\"_creationTime\":1.5}\n");
        }
    }
    let (code, json, out) = scan_bin("lines", &zip_of(&e));
    assert_eq!(code, 1, "{out}");
    let json = json.unwrap();
    let bad_line = findings_of(&json, "bad_line");
    assert_eq!(bad_line.len(), 1);
    let lines = g.documents as u64;
    assert_eq!(bad_line[0]["line"].as_u64(), Some(lines + 1));
    assert!(
        bad_line[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("not JSON")
    );
    let bad_id = findings_of(&json, "bad_id");
    let reasons: Vec<&str> = bad_id
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert_eq!(bad_id.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("characters"), "{reasons:?}");
    assert!(reasons[1].contains("checksum"), "{reasons:?}");
    assert!(reasons[2].contains("10003"), "{reasons:?}");
    assert!(reasons[3].contains("found nothing"), "{reasons:?}");
    assert_eq!(json["documents"].as_u64(), Some(g.documents as u64));
}

#[test]
fn an_unknown_encoding_or_no_tables_entry_is_unusable() {
    let (zip, _) = generate(200, 0, false);
    let mut e = entries(&zip);
    for (name, bytes) in &mut e {
        if name == "objects/generated_schema.jsonl" {
            *bytes = b"\"columnar-v9\"\n".to_vec();
        }
    }
    let (code, json, out) = scan_bin("encoding", &zip_of(&e));
    assert_eq!(code, 2, "{out}");
    assert!(json.is_none());
    assert!(
        out.contains("unknown encoding \\\"columnar-v9\\\"") || out.contains("columnar-v9"),
        "{out}"
    );
    // Another table's unknown encoding does not matter to the scan.
    let mut e = entries(&zip);
    for (name, bytes) in &mut e {
        if name == "objectLinks/generated_schema.jsonl" {
            *bytes = b"\"columnar-v9\"\n".to_vec();
        }
    }
    let (code, _, out) = scan_bin("encoding_other", &zip_of(&e));
    assert_eq!(code, 0, "{out}");
    let e: Vec<_> = entries(&zip)
        .into_iter()
        .filter(|(n, _)| !n.starts_with("_tables"))
        .collect();
    let (code, _, out) = scan_bin("no_tables", &zip_of(&e));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("_tables/documents.jsonl"), "{out}");
}

#[test]
fn scan_writes_its_reports_and_exits_0_on_a_clean_export() {
    let (zip, g) = generate(300, 0, false);
    let (code, json, out) = scan_bin("clean", &zip);
    assert_eq!(code, 0, "{out}");
    let json = json.unwrap();
    assert_eq!(json["documents"].as_u64(), Some(g.documents as u64));
    assert!(json["findings"].as_array().unwrap().is_empty());
    assert!(out.contains("map cleanly"), "{out}");
    let md = std::fs::read_to_string(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("export/clean/out/scan.md"),
    )
    .unwrap();
    assert!(md.contains("## Findings\n\nNone."), "{md}");
    assert!(md.contains("| transactions |"), "{md}");
}

#[test]
fn scan_json_on_stdout_is_one_line_with_every_finding() {
    let (zip, g) = generate(500, 10, false);
    let dir = scratch("stdout");
    let path = write(&dir, "s.zip", &zip);
    let (code, out, err) = cutover(&[
        "scan",
        path.to_str().unwrap(),
        "--out",
        dir.join("out").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["findings"].as_array().unwrap().len(), g.dirty.len());
    let md = std::fs::read_to_string(dir.join("out/scan.md")).unwrap();
    assert_eq!(
        md.lines()
            .filter(|l| l.starts_with("| unmappable |"))
            .count(),
        g.dirty.len()
    );
}

//! `cutover gen-export`: a faithful snapshot export of generated data (`data::generate`, in
//! chunks so that memory stays flat whatever the size): ids encoded as Convex encodes them,
//! user tables numbered from 10001, `_tables/documents.jsonl`, either encoding, lines in an
//! order that is not creation order, fixed ZIP timestamps (the same arguments give the same
//! bytes), and a record of every dirty document generated, so tests can hold a scan to it.

use super::encoding::{Encoding, Shape, encode_fields};
use super::ids::{ConvexId, INTERNAL_ID_LEN, USER_TABLE_FIRST};
use crate::data::{self, Dirt, GenOptions};
use crate::domain::kind_of;
use crate::schema::Kind;
use crate::validator::parse_id;
use crate::value::{Str, Value};
use rand::{Rng as _, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::io::{Seek, Write};
use zip::write::SimpleFileOptions;

/// Documents generated per chunk: a chunk is generated, written and dropped before the next.
pub const CHUNK_DOCUMENTS: usize = 5_000;
/// Table numbers of the export's tables.
pub const OBJECTS_TABLE: u32 = USER_TABLE_FIRST;
pub const LINKS_TABLE: u32 = USER_TABLE_FIRST + 1;
pub const ORGANIZATIONS_TABLE: u32 = USER_TABLE_FIRST + 2;
/// `_creationTime` of the first generated document (2025-01-01, in ms).
const CREATION_TIME_FIRST: f64 = 1_735_689_600_000.0;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// `objects` documents, at least.
    pub documents: usize,
    pub dirty_percent: u8,
    pub seed: u64,
    /// The older encoding (int64 as strings, a shape line) instead of the uniform one.
    pub legacy: bool,
}

/// A dirty document that was generated: what a scan must report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirtyDocument {
    pub id: String,
    pub kind: Kind,
    pub dirt: Dirt,
    /// The legacy field path the mapping reports.
    pub path: &'static str,
}

/// What was written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Generated {
    pub documents: usize,
    pub organizations: usize,
    pub links: usize,
    /// Documents per kind (events, transactions, tickets) that the mapping migrates.
    pub migrating: [usize; 3],
    pub dirty: Vec<DirtyDocument>,
}

/// Why writing the export failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The ZIP writer failed.
    #[error("cannot write the ZIP: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// The underlying file failed.
    #[error("cannot write the ZIP: {0}")]
    Io(#[from] std::io::Error),
}

fn chunk_seed(seed: u64, chunk: usize) -> u64 {
    seed ^ (chunk as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Chunk `c` of the generated data (both passes generate it again, the same).
fn chunk_data(o: &ExportOptions, c: usize) -> data::Dataset {
    let n = (o.documents - c * CHUNK_DOCUMENTS).clamp(1, CHUNK_DOCUMENTS);
    data::generate(
        chunk_seed(o.seed, c),
        &GenOptions {
            documents: n,
            dirty_percent: o.dirty_percent,
        },
    )
}

/// The ids of a chunk's objects and organizations, drawn from the chunk's own stream.
fn chunk_ids(seed: u64, chunk: usize, objects: usize, orgs: usize) -> (Vec<String>, Vec<String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(chunk_seed(seed, chunk) ^ 0x1d5);
    let mut id = |table| {
        let mut internal = [0u8; INTERNAL_ID_LEN];
        rng.fill_bytes(&mut internal);
        ConvexId { table, internal }.encode()
    };
    let o = (0..objects).map(|_| id(OBJECTS_TABLE)).collect();
    let g = (0..orgs).map(|_| id(ORGANIZATIONS_TABLE)).collect();
    (o, g)
}

/// Replaces the dataset's `objects:N` and `organizations:N` references with export ids.
fn rewrite_refs(v: &mut Value, objects: &[String], orgs: &[String]) {
    match v {
        Value::String(s) => {
            let new = match parse_id(s) {
                Some(("objects", n)) => (n as usize).checked_sub(1).and_then(|i| objects.get(i)),
                Some(("organizations", n)) => (n as usize).checked_sub(1).and_then(|i| orgs.get(i)),
                _ => None,
            };
            if let Some(new) = new {
                *s = Str::from(new.as_str());
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| rewrite_refs(i, objects, orgs)),
        Value::Object(f) => f.values_mut().for_each(|i| rewrite_refs(i, objects, orgs)),
        _ => {}
    }
}

const ID: Str = Str::const_new("_id");
const CREATION_TIME: Str = Str::const_new("_creationTime");

/// Appends one document line: `_id`, `_creationTime`, then its fields.
fn line(
    enc: &Encoding,
    shape: &mut Option<Shape>,
    id: &str,
    at: f64,
    fields: &crate::value::Fields,
    out: &mut Vec<u8>,
) {
    let (id, at) = (Value::from(id), Value::Float64(at));
    let head = [(&ID, &id), (&CREATION_TIME, &at)];
    if let Some(shape) = shape {
        let mut whole = fields.clone();
        whole.insert(ID, id.clone());
        whole.insert(CREATION_TIME, at.clone());
        shape.observe(&Value::Object(whole));
    }
    encode_fields(
        head.into_iter().chain(fields.iter()),
        matches!(enc, Encoding::Legacy(_)),
        out,
    );
    out.push(b'\n');
}

/// Writes the export to `w`.
pub fn write_export<W: Write + Seek>(w: W, o: &ExportOptions) -> Result<(W, Generated), GenError> {
    let mut zip = zip::ZipWriter::new(w);
    let file = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644)
        .large_file(o.documents > 2_000_000);
    // The legacy encoding's shape is only known once every document was written, so the
    // documents come first and the `generated_schema.jsonl` entries after them.
    let uniform = Encoding::Uniform;
    let legacy_enc = Encoding::Legacy(Shape::default());
    let enc = if o.legacy { &legacy_enc } else { &uniform };
    let mut shapes: [Option<Shape>; 3] = Default::default();
    if o.legacy {
        shapes = [
            Some(Shape::default()),
            Some(Shape::default()),
            Some(Shape::default()),
        ];
    }
    let mut g = Generated::default();
    let chunks = o.documents.div_ceil(CHUNK_DOCUMENTS).max(1);
    let mut org_lines: Vec<u8> = Vec::new();
    let mut buf = Vec::with_capacity(1 << 20);

    zip.start_file("_tables/documents.jsonl", file)?;
    for (name, id) in [
        ("objects", OBJECTS_TABLE),
        ("objectLinks", LINKS_TABLE),
        ("organizations", ORGANIZATIONS_TABLE),
    ] {
        writeln!(zip, "{{\"name\":\"{name}\",\"id\":{id}}}")?;
    }

    // Pass 1: objects (and the organizations, which are few, buffered).
    zip.start_file("objects/documents.jsonl", file)?;
    let mut global = 0usize;
    for c in 0..chunks {
        let data = chunk_data(o, c);
        let (ids, org_ids) = chunk_ids(o.seed, c, data.objects.len(), data.organizations.len());
        for (name, id) in data.organizations.iter().zip(&org_ids) {
            let mut f = crate::value::Fields::new();
            f.insert("name".into(), Value::from(name.as_str()));
            line(
                enc,
                &mut shapes[2],
                id,
                CREATION_TIME_FIRST + g.organizations as f64 + 0.5,
                &f,
                &mut org_lines,
            );
            g.organizations += 1;
        }
        // Line order is not creation order: each chunk's lines are shuffled.
        let mut order: Vec<usize> = (0..data.objects.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(chunk_seed(o.seed, c) ^ SHUFFLE_SALT);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        buf.clear();
        for i in order {
            let obj = &data.objects[i];
            let mut v = Value::Object(obj.fields.clone());
            rewrite_refs(&mut v, &ids, &org_ids);
            let Value::Object(fields) = v else {
                unreachable!("an object stays an object")
            };
            let at = CREATION_TIME_FIRST + (global + i) as f64 * 10.0 + 0.25;
            line(enc, &mut shapes[0], &ids[i], at, &fields, &mut buf);
            if let Some(kind) = kind_of(&obj.fields) {
                g.migrating[kind.index()] += 1;
                if let Some((dirt, path, _)) = &obj.dirt {
                    g.dirty.push(DirtyDocument {
                        id: ids[i].clone(),
                        kind,
                        dirt: *dirt,
                        path,
                    });
                }
            }
        }
        zip.write_all(&buf)?;
        global += data.objects.len();
    }
    g.documents = global;

    // Pass 2: the links, from the same chunks generated again.
    zip.start_file("objectLinks/documents.jsonl", file)?;
    let mut links_ids = ChaCha8Rng::seed_from_u64(o.seed ^ 0x11c5);
    for c in 0..chunks {
        let data = chunk_data(o, c);
        let (ids, _) = chunk_ids(o.seed, c, data.objects.len(), data.organizations.len());
        buf.clear();
        for link in &data.links {
            let mut internal = [0u8; INTERNAL_ID_LEN];
            links_ids.fill_bytes(&mut internal);
            let id = ConvexId {
                table: LINKS_TABLE,
                internal,
            }
            .encode();
            let mut f = crate::value::Fields::new();
            f.insert("fromObjectId".into(), Value::from(ids[link.from].as_str()));
            f.insert("toObjectId".into(), Value::from(ids[link.to].as_str()));
            f.insert("linkType".into(), Value::from(link.link_type));
            line(
                enc,
                &mut shapes[1],
                &id,
                CREATION_TIME_FIRST + g.links as f64 + 0.75,
                &f,
                &mut buf,
            );
            g.links += 1;
        }
        zip.write_all(&buf)?;
    }
    zip.start_file("organizations/documents.jsonl", file)?;
    zip.write_all(&org_lines)?;

    for (table, shape) in ["objects", "objectLinks", "organizations"]
        .into_iter()
        .zip(shapes)
    {
        zip.start_file(format!("{table}/generated_schema.jsonl"), file)?;
        let e = match shape {
            Some(s) => Encoding::Legacy(s),
            None => Encoding::Uniform,
        };
        writeln!(zip, "{}", e.schema_line())?;
    }
    let w = zip.finish()?;
    Ok((w, g))
}

/// A salt for the line-order stream.
const SHUFFLE_SALT: u64 = 0x54ff1e;

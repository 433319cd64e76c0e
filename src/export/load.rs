//! `check --from-export`: the legacy documents of an export (all, or a deterministic sample)
//! as a `Dataset` the simulator starts from, with Convex ids turned into the model's
//! `table:seq` ids; and the same documents in a form a saved counterexample embeds, so that
//! it replays after the export is gone.

use super::archive::Archive;
use super::encoding::Encoding;
use super::ids::ConvexId;
use super::scan::{OBJECTS, entry_name, for_each_document, rewrite_ids, table_encoding};
use super::{ExportError, Finding};
use crate::data::{Dataset, SeedLink, SeedObject};
use crate::value::{Fields, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Sequence numbers given to references whose document is not in the export (or not in the
/// sample): far above any id the simulation allocates, so they never resolve.
pub const DANGLING_SEQ_FIRST: u32 = 3_000_000_000;
/// The link types the simulator knows (domain.md §1); other links are left out.
const LINK_TYPES: [&str; 3] = ["admits_to", "issued_from", "has_ticket"];

/// An export's documents, loaded.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub dataset: Dataset,
    /// `objects` documents in the export (before sampling).
    pub documents_total: usize,
    pub findings: Vec<Finding>,
}

/// A stable pseudo-random key of a document for sampling: SplitMix64 of the seed and id.
fn sample_key(seed: u64, id: &ConvexId) -> u64 {
    let mut x = seed ^ u64::from(id.table).rotate_left(40);
    for chunk in id.internal.chunks(8) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        x ^= u64::from_le_bytes(b);
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
    }
    x
}

/// Loads the `objects` documents of the export's app (not its components), its
/// `objectLinks` and organizations. With `sample`, keeps the `sample` documents with the
/// smallest keys for `seed`, a deterministic choice. Documents load in `_creationTime` order
/// (the export's line order is not creation order).
pub fn load(path: &Path, sample: Option<usize>, seed: u64) -> Result<Loaded, ExportError> {
    let mut findings = Vec::new();
    let mut archive = Archive::open(path, &mut findings)?;
    let unusable = |reason: String| ExportError::Unusable {
        path: path.display().to_string(),
        reason,
    };
    let Some(ns) = archive
        .namespaces
        .iter()
        .find(|ns| ns.number_of(OBJECTS).is_some())
        .cloned()
    else {
        return Err(unusable(format!("no {OBJECTS} table in _tables")));
    };
    let number = ns.number_of(OBJECTS).expect("found above");
    let Some(encoding) = table_encoding(&mut archive, &ns, OBJECTS, &mut findings)? else {
        return Err(unusable(format!("{OBJECTS}: unknown encoding")));
    };
    let mut docs: Vec<(f64, ConvexId, Fields)> = Vec::new();
    for_each_document(
        &mut archive,
        &entry_name(&ns, OBJECTS, "documents.jsonl"),
        &encoding,
        number,
        &mut |f| findings.push(f),
        |doc, _| docs.push((doc.creation_time, doc.id, doc.fields)),
    )?;
    let documents_total = docs.len();
    if let Some(n) = sample
        && n < docs.len()
    {
        docs.sort_by_key(|(_, id, _)| (sample_key(seed, id), *id));
        docs.truncate(n);
    }
    docs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let index: BTreeMap<ConvexId, usize> = docs
        .iter()
        .enumerate()
        .map(|(i, (_, id, _))| (*id, i))
        .collect();

    // Organization names, where the export has the table.
    let mut org_names: BTreeMap<ConvexId, String> = BTreeMap::new();
    if let Some(orgs) = ns.number_of("organizations") {
        let entry = entry_name(&ns, "organizations", "documents.jsonl");
        if archive.has(&entry)
            && let Some(enc) = table_encoding(&mut archive, &ns, "organizations", &mut findings)?
        {
            for_each_document(
                &mut archive,
                &entry,
                &enc,
                orgs,
                &mut |f| findings.push(f),
                |doc, _| {
                    let name = doc
                        .fields
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("?");
                    org_names.insert(doc.id, name.to_string());
                },
            )?;
        }
    }
    let mut orgs: BTreeMap<ConvexId, usize> = BTreeMap::new();
    let mut organizations = Vec::new();
    let mut dangling: BTreeMap<ConvexId, u32> = BTreeMap::new();
    let mut objects = Vec::with_capacity(docs.len());
    for (_, _, fields) in docs {
        let mut v = Value::Object(fields);
        rewrite_ids(&mut v, &ns, &mut |table, id| {
            if table == OBJECTS {
                if let Some(i) = index.get(id) {
                    return compact_str::format_compact!("objects:{}", i + 1);
                }
                let n = dangling.len() as u32;
                let seq = *dangling.entry(*id).or_insert(DANGLING_SEQ_FIRST + n);
                return compact_str::format_compact!("objects:{seq}");
            }
            if table == "organizations" {
                let n = orgs.len();
                let k = *orgs.entry(*id).or_insert_with(|| {
                    organizations.push(org_names.get(id).cloned().unwrap_or_else(|| id.encode()));
                    n
                });
                return compact_str::format_compact!("organizations:{}", k + 1);
            }
            compact_str::format_compact!("{}", id.encode())
        });
        let Value::Object(fields) = v else {
            unreachable!("an object stays an object")
        };
        objects.push(SeedObject { fields, dirt: None });
    }
    let mut links = Vec::new();
    if let Some(number) = ns.number_of("objectLinks") {
        let entry = entry_name(&ns, "objectLinks", "documents.jsonl");
        if archive.has(&entry)
            && let Some(enc) = table_encoding(&mut archive, &ns, "objectLinks", &mut findings)?
        {
            let end = |f: &Fields, name: &str| {
                f.get(name)
                    .and_then(Value::as_str)
                    .and_then(|s| ConvexId::decode(s).ok())
                    .and_then(|id| index.get(&id).copied())
            };
            for_each_document(
                &mut archive,
                &entry,
                &enc,
                number,
                &mut |f| findings.push(f),
                |doc, _| {
                    let ty = doc.fields.get("linkType").and_then(Value::as_str);
                    if let (Some(from), Some(to), Some(link_type)) = (
                        end(&doc.fields, "fromObjectId"),
                        end(&doc.fields, "toObjectId"),
                        LINK_TYPES.into_iter().find(|t| Some(*t) == ty),
                    ) {
                        links.push(SeedLink {
                            from,
                            to,
                            link_type,
                        });
                    }
                },
            )?;
        }
    }
    links.sort_by_key(|l| (l.from, l.to, l.link_type));
    if organizations.is_empty() {
        // Every case reads by organization; give a dataset without any one.
        organizations.push("(no organization)".into());
    }
    Ok(Loaded {
        dataset: Dataset {
            organizations,
            objects,
            links,
        },
        documents_total,
        findings,
    })
}

/// A dataset as a saved counterexample embeds it: each document as one JSON line in the
/// uniform encoding (int64 and float64 stay apart).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedDataset {
    pub organizations: Vec<String>,
    pub objects: Vec<String>,
    /// `(from, to, link type)`, by index into `objects`.
    pub links: Vec<(usize, usize, String)>,
}

/// Why a saved dataset cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SavedDatasetError {
    /// A document that is not a JSON object in the uniform encoding.
    #[error("dataset.objects[{index}]: {reason}")]
    Document { index: usize, reason: String },
    /// A link to a document that is not there, or of an unknown type.
    #[error("dataset.links[{index}]: {reason}")]
    Link { index: usize, reason: String },
}

impl SavedDataset {
    pub fn from_dataset(d: &Dataset) -> SavedDataset {
        SavedDataset {
            organizations: d.organizations.clone(),
            objects: d
                .objects
                .iter()
                .map(|o| {
                    let mut out = Vec::new();
                    super::encoding::encode_fields(o.fields.iter(), false, &mut out);
                    String::from_utf8(out).expect("JSON is UTF-8")
                })
                .collect(),
            links: d
                .links
                .iter()
                .map(|l| (l.from, l.to, l.link_type.to_string()))
                .collect(),
        }
    }

    /// Checks that every document and link can be used.
    pub fn check(&self) -> Result<(), SavedDatasetError> {
        for (index, text) in self.objects.iter().enumerate() {
            match Encoding::Uniform.decode(text.as_bytes()) {
                Ok(Value::Object(_)) => {}
                Ok(other) => {
                    return Err(SavedDatasetError::Document {
                        index,
                        reason: format!("a {} where a document was expected", other.type_name()),
                    });
                }
                Err(e) => {
                    return Err(SavedDatasetError::Document {
                        index,
                        reason: e.to_string(),
                    });
                }
            }
        }
        for (index, (from, to, ty)) in self.links.iter().enumerate() {
            if *from >= self.objects.len() || *to >= self.objects.len() {
                return Err(SavedDatasetError::Link {
                    index,
                    reason: "an end is not a document of the dataset".into(),
                });
            }
            if !LINK_TYPES.contains(&ty.as_str()) {
                return Err(SavedDatasetError::Link {
                    index,
                    reason: format!("unknown link type {ty:?}"),
                });
            }
        }
        Ok(())
    }

    /// The dataset. Documents or links that `check` rejects are left empty or out.
    pub fn to_dataset(&self) -> Dataset {
        Dataset {
            organizations: self.organizations.clone(),
            objects: self
                .objects
                .iter()
                .map(|text| SeedObject {
                    fields: match Encoding::Uniform.decode(text.as_bytes()) {
                        Ok(Value::Object(f)) => f,
                        _ => Fields::new(),
                    },
                    dirt: None,
                })
                .collect(),
            links: self
                .links
                .iter()
                .filter(|(from, to, _)| *from < self.objects.len() && *to < self.objects.len())
                .filter_map(|(from, to, ty)| {
                    LINK_TYPES
                        .into_iter()
                        .find(|t| t == ty)
                        .map(|link_type| SeedLink {
                            from: *from,
                            to: *to,
                            link_type,
                        })
                })
                .collect(),
        }
    }
}

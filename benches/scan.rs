//! Scan throughput: bytes of `objects` JSONL per second that `cutover scan` reads, inflates,
//! decodes, measures, checks the references of and maps with the seed plan (`export::scan`,
//! the whole command without writing the reports). The export (20,000 documents, 5% dirty,
//! both encodings) is generated once into the target directory, outside the measurement.
//! Criterion reports bytes/s of inflated JSONL.
//!
//! Run with `cargo bench --bench scan`.

/// jemalloc, as in the binary.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cutover::export::generate::{ExportOptions, write_export};
use cutover::export::scan::scan;
use cutover::plan::Plan;
use std::hint::black_box;
use std::path::PathBuf;

/// Documents of the benchmarked export.
const DOCUMENTS: usize = 20_000;

fn export(legacy: bool) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-scan");
    std::fs::create_dir_all(&dir).expect("creates the bench directory");
    let path = dir.join(format!("export-{DOCUMENTS}-legacy-{legacy}.zip"));
    let file = std::io::BufWriter::new(std::fs::File::create(&path).expect("creates"));
    let options = ExportOptions {
        documents: DOCUMENTS,
        dirty_percent: 5,
        seed: 0,
        legacy,
    };
    write_export(file, &options).expect("writes the export");
    path
}

fn bench(c: &mut Criterion) {
    let plan = Plan::seed();
    let mut group = c.benchmark_group("scan");
    group.sample_size(20);
    for legacy in [false, true] {
        let path = export(legacy);
        let report = scan(&path, &plan).expect("scans");
        let bytes = report.tables.iter().map(|t| t.stats.bytes).sum::<u64>();
        group.throughput(Throughput::Bytes(bytes));
        let name = if legacy { "legacy" } else { "uniform" };
        group.bench_with_input(BenchmarkId::new("jsonl", name), &path, |b, path| {
            b.iter(|| black_box(scan(path, &plan).expect("scans")))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Criterion benchmarks of the hot pure paths: response-to-snapshot mapping, the
//! transition diff, and rendering + encoding /metrics at 1k, 10k and 100k image sets.
//!
//! `cargo bench --bench hot_paths` for figures; CI runs it with `-- --quick`.

use std::hint::black_box;
use std::sync::Arc;

use aws_sdk_medicalimaging::operation::get_image_set::GetImageSetOutput;
use aws_sdk_medicalimaging::types::{
    ImageSetState as SdkState, ImageSetWorkflowStatus, Overrides, StorageTier as SdkTier,
};
use aws_smithy_types::DateTime;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use healthimaging_exporter::config::ImageSetTarget;
use healthimaging_exporter::config::{MetricsConfig, ShardingConfig};
use healthimaging_exporter::ids::{DatastoreId, ImageSetId, ImageSetKey, VersionId};
use healthimaging_exporter::metrics::render::{render, Detail, View};
use healthimaging_exporter::metrics::{ExporterMetrics, Exposition};
use healthimaging_exporter::model::{ImageSetState, Snapshot, StorageTier, WorkflowStatus};
use healthimaging_exporter::source::snapshot_from;
use healthimaging_exporter::store::Store;
use healthimaging_exporter::transitions::diff;

const DS: &str = "0123456789abcdef0123456789abcdef";

fn key(i: usize) -> ImageSetKey {
    ImageSetKey {
        datastore_id: DatastoreId::parse(DS).unwrap(),
        image_set_id: ImageSetId::parse(&format!("{i:032x}")).unwrap(),
    }
}

fn snapshot(i: usize, status: &str) -> Snapshot {
    Snapshot {
        version_id: VersionId::new(1 + (i % 3) as u64),
        workflow_status: Some(WorkflowStatus::from_api(status)),
        state: ImageSetState::Active,
        storage_tier: Some(if i.is_multiple_of(4) {
            StorageTier::ArchiveInstantAccess
        } else {
            StorageTier::FrequentAccess
        }),
        image_set_arn: Some(format!(
            "arn:aws:medical-imaging:us-east-1:123456789012:datastore/{DS}/imageset/{i:032x}"
        )),
        is_primary: Some(true),
        forced: None,
        message: None,
        created_at: Some(1_700_000_000.0),
        updated_at: Some(1_700_000_600.0),
        deleted_at: None,
        last_accessed_at: Some(1_700_000_900.0),
    }
}

/// A store of `n` read image sets, 1 % failed and 1 % importing.
fn store(n: usize) -> Arc<Store> {
    let targets: Vec<_> = (0..n)
        .map(|i| ImageSetTarget {
            datastore_id: key(i).datastore_id,
            image_set_id: key(i).image_set_id,
            version_id: None,
        })
        .collect();
    let store = Store::new(&targets);
    for i in 0..n {
        let status = match i % 100 {
            0 => "IMPORT_FAILED",
            1 => "IMPORTING",
            _ => "IMPORTED",
        };
        store.record_success(&key(i), snapshot(i, status), 1_700_001_000.0);
    }
    Arc::new(store)
}

fn sdk_output(i: usize) -> GetImageSetOutput {
    GetImageSetOutput::builder()
        .datastore_id(DS)
        .image_set_id(format!("{i:032x}"))
        .version_id("2")
        .image_set_state(SdkState::Active)
        .image_set_workflow_status(ImageSetWorkflowStatus::Imported)
        .created_at(DateTime::from_secs_f64(1_700_000_000.5))
        .updated_at(DateTime::from_secs_f64(1_700_000_600.25))
        .last_accessed_at(DateTime::from_secs_f64(1_700_000_900.0))
        .image_set_arn(format!(
            "arn:aws:medical-imaging:us-east-1:123456789012:datastore/{DS}/imageset/{i:032x}"
        ))
        .overrides(Overrides::builder().forced(false).build())
        .is_primary(true)
        .storage_tier(SdkTier::FrequentAccess)
        .build()
        .expect("all required fields set")
}

fn mapping_and_diff(c: &mut Criterion) {
    let k = key(7);
    c.bench_function("snapshot_from (GetImageSet output -> Snapshot)", |b| {
        b.iter_batched(
            || sdk_output(7),
            |out| snapshot_from(black_box(&k), out),
            criterion::BatchSize::SmallInput,
        )
    });
    let (old, same, changed) = (
        snapshot(1, "IMPORTING"),
        snapshot(1, "IMPORTING"),
        snapshot(2, "IMPORT_FAILED"),
    );
    c.bench_function("transitions::diff (no change)", |b| {
        b.iter(|| diff(black_box(&old), black_box(&same)))
    });
    c.bench_function("transitions::diff (version + status change)", |b| {
        b.iter(|| diff(black_box(&old), black_box(&changed)))
    });
}

fn rendering(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    group.sample_size(10);
    for n in [1_000usize, 10_000, 100_000] {
        let store = store(n);
        group.throughput(Throughput::Elements(n as u64));
        for (name, detail) in [("full", Detail::All), ("aggregates", Detail::None)] {
            group.bench_with_input(
                BenchmarkId::new(format!("store text/{name}"), n),
                &n,
                |b, _| {
                    b.iter(|| {
                        let mut out = String::new();
                        render(
                            black_box(&store.read()),
                            &View::with_detail(detail),
                            &mut out,
                        );
                        out
                    })
                },
            );
            let metrics = ExporterMetrics::new(0.005).unwrap();
            let config = MetricsConfig {
                image_set_detail: Some(detail),
                max_detailed_image_sets: usize::MAX,
                ..MetricsConfig::default()
            };
            let exposition =
                Exposition::new(store.clone(), &config, ShardingConfig::default(), &metrics)
                    .unwrap();
            group.bench_with_input(
                BenchmarkId::new(format!("/metrics body/{name}"), n),
                &n,
                |b, _| b.iter(|| black_box(&exposition).encode().unwrap()),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, mapping_and_diff, rendering);
criterion_main!(benches);

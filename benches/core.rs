//! Criterion benchmarks of the pure core on a generated 100k-row roster with the 60
//! benchmark rules, each stage beside the bare csv `ByteRecord` pass over the same bytes
//! (the floor). Run with
//! `CARGO_TARGET_DIR=/var/tmp/autoprov-target cargo bench --bench core`.

mod common;

use autoprov::api::report_out::{write_json, write_text};
use autoprov::core::accounts::{Account, AccountGroup, HeldGroup};
use autoprov::core::columns::Columns;
use autoprov::core::reconcile::{self, SyncInput};
use autoprov::core::report::Report;
use autoprov::core::roster::{self, RosterOptions};
use autoprov::core::rules::{self, CompiledRule, MatchTable, Rule, RuleId};
use autoprov::core::updates::Updates;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::collections::BTreeMap;
use std::hint::black_box;

const ROWS: usize = 100_000;
const NOW: &str = "2026-01-02T00:00:00Z";

fn floor(bytes: &[u8]) -> usize {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut fields = 0;
    while reader.read_byte_record(&mut record).expect("csv") {
        fields += record.len();
    }
    fields
}

fn core(c: &mut Criterion) {
    let bytes = common::roster(ROWS, 1);
    let rules: Vec<Rule> = common::stored_rules();
    let columns = Columns::default();
    let opts = RosterOptions {
        needed_fields: rules::needed_fields(&rules, &columns),
        ..RosterOptions::default()
    };
    let roster = roster::parse(&bytes, &opts).expect("the generated roster is valid");
    let compile = |roster| -> Vec<CompiledRule> {
        rules
            .iter()
            .map(|r| CompiledRule::compile(r, roster, &columns).expect("fields kept"))
            .collect()
    };
    let compiled = compile(&roster);
    let matching = MatchTable::build(&roster, &compiled);
    let by_id: BTreeMap<RuleId, Rule> = rules.iter().map(|r| (r.id, r.clone())).collect();
    let first = reconcile::plan_held(&roster, &matching, &by_id, &[], NOW, "bench");
    // The accounts as a store keeps them: grouped, each group sorted by employee ID.
    let written = Updates::of_sync(first.updates.clone(), &first.changes, NOW, "bench");
    let accounts: Vec<Account> = written.accounts().collect();
    let (none, stored) = (HeldGroup::split(&[]), HeldGroup::split(&accounts));
    let plan = |groups: &[HeldGroup<'_>]| {
        let read = |g: usize, f: &mut dyn FnMut(&dyn AccountGroup)| {
            f(&groups[g]);
            Ok::<(), ()>(())
        };
        let input = SyncInput {
            matching: &matching,
            rules: &by_id,
            now: NOW,
            source: "bench",
            left_out: &[],
        };
        reconcile::plan(&roster, &input, &read).expect("read")
    };

    let mut g = c.benchmark_group(format!("core_{ROWS}_rows_60_rules"));
    g.sample_size(20);
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("floor_csv_byterecord", |b| {
        b.iter(|| floor(black_box(&bytes)))
    });
    g.bench_function("parse", |b| {
        b.iter(|| roster::parse(black_box(&bytes), &opts).expect("valid"))
    });
    g.bench_function("compile_and_match", |b| {
        b.iter(|| MatchTable::build(&roster, &compile(black_box(&roster))))
    });
    g.bench_function("plan_first_import", |b| b.iter(|| plan(black_box(&none))));
    g.bench_function("plan_resync_unchanged", |b| {
        b.iter(|| plan(black_box(&stored)))
    });
    // The first import's two reports as they are staged, formatting alone (no disk).
    let mut report = Report::new("bench.csv", "sha", NOW, NOW);
    report.changes = first.changes.clone();
    g.bench_function("reports_first_import", |b| {
        b.iter(|| {
            write_text(black_box(&report), &mut std::io::sink()).expect("text");
            write_json(black_box(&report), &mut std::io::sink(), false).expect("json");
        })
    });
    g.finish();
}

criterion_group!(benches, core);
criterion_main!(benches);

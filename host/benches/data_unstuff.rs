//! DATA reading: terminator search and dot-unstuffing.
//!
//! `cargo bench -p poczta --bench data_unstuff`
//!
//! A [`DataReader`] is fed a 2 KiB, a 100 KiB and a 10 MiB message in
//! 64 KiB chunks (what the driver reads at a time), as they arrive on the
//! wire: CRLF lines of ~70 characters, one line in twelve dot-stuffed,
//! ending with `CRLF . CRLF`. Throughput is wire bytes per second.

use std::hint::black_box;
use std::time::Duration;

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use poczta::smtp::DataReader;

/// The driver's read size.
const CHUNK: usize = 64 * 1024;

/// The default `limits.max_message_size` (25 MiB).
const MAX_SIZE: usize = 25 * 1024 * 1024;

/// A message of about `size` wire bytes, dot-stuffed, with the terminator.
fn wire_message(size: usize) -> Vec<u8> {
    common::stuffed_message(
        "From: Jan Nowak <jan.nowak@example.net>\r\n\
         To: Alice Kowalska <alice.kowalska@example.test>\r\n\
         Subject: Quarterly report, draft 3\r\n\
         Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n\
         Message-ID: <20250602100000.12345@client.example.net>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n",
        size,
    )
}

/// Feeds `wire` in `CHUNK`s; returns the unstuffed content.
fn read(wire: &[u8]) -> Vec<u8> {
    let mut reader = DataReader::new(MAX_SIZE);
    for chunk in wire.chunks(CHUNK) {
        let (used, done) = reader.feed(chunk);
        if done {
            debug_assert_eq!(used, chunk.len());
            break;
        }
    }
    debug_assert!(reader.is_done());
    reader.into_bytes()
}

fn bench_data(c: &mut Criterion) {
    let mut group = c.benchmark_group("data_unstuff");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    for (name, size) in [
        ("2KiB", 2 * 1024),
        ("100KiB", 100 * 1024),
        ("10MiB", 10 * 1024 * 1024),
    ] {
        let wire = wire_message(size);
        // Sanity: the terminator is found and every stuffed dot removed.
        let content = read(&wire);
        let stuffed = wire.windows(3).filter(|w| w == b"\n..").count();
        assert_eq!(content.len(), wire.len() - 3 - stuffed, "{name}");
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &wire, |b, wire| {
            b.iter(|| read(black_box(wire)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_data);
criterion_main!(benches);

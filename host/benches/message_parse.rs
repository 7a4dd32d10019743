//! Parse-once of a received message, as the plugin layer does it before the
//! first `headers`/`body`/`deliver` hook.
//!
//! `cargo bench -p poczta --bench message_parse`
//!
//! * `message_parse/parsed_message/*`: [`ParsedMessage::parse`] (mail-parser
//!   plus the header list and the leaf parts the `message` resource
//!   serves).
//! * `message_parse/mail_parser_only/*`: `mail_parser::MessageParser` alone
//!   on the same bytes, for comparison.
//!
//! Inputs: a 2 KiB `text/plain` message, and a 100 KiB `multipart/mixed`
//! message (text part + a base64 PDF attachment).

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use poczta::plugin::ParsedMessage;

const HEADERS: &str = "Return-Path: <jan.nowak@example.net>\r\n\
Received: from mail-gw01.client.example.net (mail-gw01.client.example.net [192.0.2.10])\r\n\
\tby mx.example.test (Poczta) with ESMTPS id 7F3A2B; Mon, 2 Jun 2025 10:00:01 +0000\r\n\
Received: from [10.0.0.7] (unknown [10.0.0.7])\r\n\
\tby mail-gw01.client.example.net with ESMTPSA; Mon, 2 Jun 2025 10:00:00 +0000\r\n\
From: =?UTF-8?Q?Jan_Nowak?= <jan.nowak@example.net>\r\n\
To: Alice Kowalska <alice.kowalska@example.test>\r\n\
Cc: team@example.test\r\n\
Subject: =?UTF-8?B?UmFwb3J0IGt3YXJ0YWxueSwgd2Vyc2phIDM=?=\r\n\
Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n\
Message-ID: <20250602100000.12345@client.example.net>\r\n\
MIME-Version: 1.0\r\n";

fn text_lines(out: &mut String, size: usize) {
    let mut i = 0;
    while out.len() < size {
        let _ = write!(
            out,
            "line {i}: the quick brown fox jumps over the lazy dog, zażółć gęślą jaźń\r\n"
        );
        i += 1;
    }
}

/// About 2 KiB of `text/plain`.
fn text_message() -> Vec<u8> {
    let mut m = String::from(HEADERS);
    m.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    text_lines(&mut m, 2 * 1024);
    m.into_bytes()
}

/// About 100 KiB of `multipart/mixed`: a short text part and a base64
/// `application/pdf` attachment.
fn multipart_message() -> Vec<u8> {
    let mut m = String::from(HEADERS);
    m.push_str("Content-Type: multipart/mixed; boundary=\"=_b1_7f3a2b\"\r\n\r\n");
    m.push_str("This is a multi-part message in MIME format.\r\n\r\n--=_b1_7f3a2b\r\n");
    m.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    let start = m.len();
    text_lines(&mut m, start + 2 * 1024);
    m.push_str("\r\n--=_b1_7f3a2b\r\n");
    m.push_str(
        "Content-Type: application/pdf; name=\"report-q2.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"report-q2.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
    );
    // Pseudo-random bytes (no compressible pattern), 76-column base64.
    let target = 100 * 1024 - m.len() - 64;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bin: Vec<u8> = (0..target * 3 / 4)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bin);
    for line in b64.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        m.push_str("\r\n");
    }
    m.push_str("--=_b1_7f3a2b--\r\n");
    m.into_bytes()
}

fn bench_parse(c: &mut Criterion) {
    let inputs = [
        ("text_2KiB", Arc::new(text_message())),
        ("multipart_100KiB", Arc::new(multipart_message())),
    ];
    // Sanity: the multipart message has its two leaves and the attachment.
    let parsed = ParsedMessage::parse(Arc::clone(&inputs[1].1));
    assert_eq!(parsed.parts().len(), 2);
    assert_eq!(parsed.parts()[1].filename.as_deref(), Some("report-q2.pdf"));
    assert!(parsed.parts()[1].is_attachment);
    assert_eq!(ParsedMessage::parse(Arc::clone(&inputs[0].1)).parts().len(), 1);

    let mut group = c.benchmark_group("message_parse");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, raw) in &inputs {
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_with_input(BenchmarkId::new("parsed_message", name), raw, |b, raw| {
            b.iter(|| ParsedMessage::parse(Arc::clone(black_box(raw))))
        });
        group.bench_with_input(BenchmarkId::new("mail_parser_only", name), raw, |b, raw| {
            b.iter(|| mail_parser::MessageParser::new().parse(black_box(raw.as_slice())))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);

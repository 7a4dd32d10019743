//! SMTP command parsing and one whole pipelined transaction through the
//! sans-IO session.
//!
//! `cargo bench -p poczta --bench smtp_parse`
//!
//! * `parse_command/*`: [`parse_command`] on the lines a typical client
//!   sends (without the CRLF, as the session hands them over).
//! * `session/pipelined_transaction_2KiB`: a new [`Session`] fed one buffer
//!   holding EHLO, MAIL (SIZE, BODY), RCPT, DATA, a 2 KiB dot-stuffed
//!   message and QUIT, then polled to the end with every `Ask` answered
//!   `Accept`: the protocol cost of one message, without I/O or storage.

use std::hint::black_box;
use std::time::Duration;

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use poczta::smtp::{Answer, Event, Session, SessionConfig, parse_command};

const LINES: [(&str, &str); 4] = [
    ("ehlo", "EHLO mail-gw01.client.example.net"),
    (
        "mail_from_size_body",
        "MAIL FROM:<newsletter-bounces+alice=example.test@lists.example.net> SIZE=2048 BODY=8BITMIME",
    ),
    ("rcpt_to", "RCPT TO:<alice.kowalska@example.test>"),
    ("data", "DATA"),
];

fn bench_parse_command(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_command");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, line) in LINES {
        // Every line must parse: a benchmark of the error path would be
        // a different benchmark.
        parse_command(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e:?}"));
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(name), line.as_bytes(), |b, line| {
            b.iter(|| parse_command(black_box(line)))
        });
    }
    group.finish();
}

/// A plain-text message of about `size` bytes (CRLF lines of ~70
/// characters, some starting with a dot), already dot-stuffed for the wire
/// and followed by the terminator.
fn stuffed_message(size: usize) -> Vec<u8> {
    common::stuffed_message(
        "Received: from mail-gw01.client.example.net (mail-gw01.client.example.net [192.0.2.10])\r\n\
         \tby mx.example.test with ESMTP; Mon, 2 Jun 2025 10:00:00 +0000\r\n\
         From: Jan Nowak <jan.nowak@example.net>\r\n\
         To: Alice Kowalska <alice.kowalska@example.test>\r\n\
         Subject: Quarterly report, draft 3\r\n\
         Date: Mon, 2 Jun 2025 10:00:00 +0000\r\n\
         Message-ID: <20250602100000.12345@client.example.net>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n",
        size,
    )
}

fn transaction_bytes(message: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(message.len() + 256);
    t.extend_from_slice(b"EHLO mail-gw01.client.example.net\r\n");
    t.extend_from_slice(
        format!(
            "MAIL FROM:<jan.nowak@example.net> SIZE={} BODY=8BITMIME\r\n",
            message.len()
        )
        .as_bytes(),
    );
    t.extend_from_slice(b"RCPT TO:<alice.kowalska@example.test>\r\nDATA\r\n");
    t.extend_from_slice(message);
    t.extend_from_slice(b"QUIT\r\n");
    t
}

/// One session: feed everything, poll until it needs input, answering
/// `Accept`. Returns (replies, asks, closed).
fn run(config: &SessionConfig, input: &[u8]) -> (usize, usize, bool) {
    let mut s = Session::new(config.clone());
    s.feed(input);
    let (mut replies, mut asks, mut closed) = (0, 0, false);
    while let Some(event) = s.poll() {
        match event {
            Event::Reply(r) => {
                black_box(&r);
                replies += 1;
            }
            Event::Ask(ask) => {
                black_box(&ask);
                asks += 1;
                s.answer(Answer::Accept);
            }
            Event::Close => closed = true,
            Event::StartTls => unreachable!("STARTTLS not offered"),
        }
    }
    (replies, asks, closed)
}

fn bench_session(c: &mut Criterion) {
    let config = SessionConfig {
        hostname: "mx.example.test".into(),
        ..SessionConfig::default()
    };
    let input = transaction_bytes(&stuffed_message(2048));
    // EHLO, MAIL, RCPT, 354, message, QUIT: 6 replies; helo, mail, rcpt,
    // message: 4 asks; then close.
    assert_eq!(run(&config, &input), (6, 4, true));

    let mut group = c.benchmark_group("session");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    group.bench_function("pipelined_transaction_2KiB", |b| {
        b.iter(|| run(&config, black_box(&input)))
    });
    group.finish();
}

criterion_group!(benches, bench_parse_command, bench_session);
criterion_main!(benches);

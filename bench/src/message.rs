//! Generation of the test messages: RFC 5322 headers that differ per message
//! and a body that is built once per run, already dot-stuffed for DATA.

use std::time::{SystemTime, UNIX_EPOCH};

/// Longest body line before its CRLF; RFC 5322 recommends at most 78.
const BODY_LINE_CHARS: usize = 78;

/// Printable filler for body lines. Its length (89) is coprime with the line
/// length, so consecutive lines differ and compress less trivially.
const FILLER: &[u8] =
    b"The quick brown fox jumps over the lazy dog. 0123456789 PACK MY BOX WITH FIVE DOZEN JUGS!";

/// Every this many lines, a body line starts with a dot so that the server's
/// dot-unstuffing is exercised on every message larger than a few KiB.
const DOT_LINE_EVERY: usize = 16;

/// Builds a body of exactly `size` bytes (CRLF line endings, lines of at most
/// 78 printable characters), or `None` for the one impossible size: 1 byte
/// cannot be a CRLF-terminated line.
pub fn body(size: usize) -> Option<Vec<u8>> {
    if size == 1 {
        return None;
    }
    let full = BODY_LINE_CHARS + 2;
    let mut lengths = vec![BODY_LINE_CHARS; size / full];
    match size % full {
        0 => {}
        // One spare byte can't form a line: shorten the previous line by one
        // character and end with an empty line (79 + 2 = 80 + 1).
        1 => {
            let last = lengths.last_mut().expect("size > 1 leaves a full line");
            *last -= 1;
            lengths.push(0);
        }
        rest => lengths.push(rest - 2),
    }
    let mut out = Vec::with_capacity(size);
    let mut filler = FILLER.iter().cycle();
    for (index, &chars) in lengths.iter().enumerate() {
        let start = out.len();
        out.extend(filler.by_ref().take(chars));
        if index % DOT_LINE_EVERY == DOT_LINE_EVERY - 1 && chars > 0 {
            out[start] = b'.';
        }
        out.extend_from_slice(b"\r\n");
    }
    debug_assert_eq!(out.len(), size);
    Some(out)
}

/// Applies SMTP transparency (RFC 5321 §4.5.2): every line that starts with
/// "." gets one more, so no content line can be mistaken for the terminator.
/// `content` must use CRLF line endings.
pub fn dot_stuff(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 64 + 1);
    let mut at_line_start = true;
    for &byte in content {
        if at_line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        at_line_start = byte == b'\n';
    }
    out
}

/// Per-message header fields; everything else about a message is shared.
pub struct Headers<'a> {
    /// Envelope and header sender.
    pub from: &'a str,
    /// Envelope and header recipient.
    pub to: &'a str,
    /// 1-based sequence number, shown in Subject and Message-ID.
    pub seq: u64,
    /// Run-unique token so Message-IDs never repeat across runs.
    pub run_id: &'a str,
    /// Right-hand side of the Message-ID.
    pub domain: &'a str,
}

impl Headers<'_> {
    /// Renders the header block including the blank line that ends it.
    /// Header lines never start with ".", so they need no dot-stuffing.
    pub fn render(&self, now: SystemTime) -> Vec<u8> {
        let Headers {
            from,
            to,
            seq,
            run_id,
            domain,
        } = self;
        format!(
            "From: <{from}>\r\n\
             To: <{to}>\r\n\
             Subject: poczta-bench message {seq}\r\n\
             Date: {date}\r\n\
             Message-ID: <{seq}.{run_id}@{domain}>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n",
            date = rfc5322_date(now),
        )
        .into_bytes()
    }
}

/// Formats `time` as an RFC 5322 date in UTC, e.g. `Thu, 01 Jan 1970 00:00:00 +0000`.
pub fn rfc5322_date(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // Clocks before 1970 don't occur on a machine running a benchmark.
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's
/// `civil_from_days`; avoids a date crate for one header.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Reverses dot-stuffing the way a server does.
    fn unstuff(data: &[u8]) -> Vec<u8> {
        data.split_inclusive(|&b| b == b'\n')
            .flat_map(|line| line.strip_prefix(b".").unwrap_or(line).to_vec())
            .collect()
    }

    #[test]
    fn body_has_exact_size_and_valid_lines() {
        for size in (0..400).chain([1023, 1024, 4096, 100_000]) {
            if size == 1 {
                assert!(body(size).is_none());
                continue;
            }
            let body = body(size).unwrap();
            assert_eq!(body.len(), size, "size {size}");
            assert!(body.is_empty() || body.ends_with(b"\r\n"));
            for line in body.split_inclusive(|&b| b == b'\n') {
                let text = line.strip_suffix(b"\r\n").expect("CRLF endings");
                assert!(text.len() <= BODY_LINE_CHARS);
                assert!(text.iter().all(|b| (0x20..0x7f).contains(b)));
            }
        }
    }

    #[test]
    fn generated_body_contains_dot_lines_and_stuffs_correctly() {
        let body = body(10_000).unwrap();
        let dot_lines = body
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"."))
            .count();
        assert!(dot_lines > 0, "body should exercise dot-stuffing");

        let stuffed = dot_stuff(&body);
        assert_eq!(stuffed.len(), body.len() + dot_lines);
        for line in stuffed.split_inclusive(|&b| b == b'\n') {
            assert_ne!(line, b".\r\n", "a lone dot would end DATA early");
            if line.starts_with(b".") {
                assert!(line.starts_with(b".."));
            }
        }
        assert_eq!(unstuff(&stuffed), body);
    }

    #[test]
    fn dot_stuff_edge_cases() {
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n");
        assert_eq!(dot_stuff(b"a.b\r\n.x\r\n..\r\n"), b"a.b\r\n..x\r\n...\r\n");
        assert_eq!(dot_stuff(b""), b"");
    }

    #[test]
    fn dates_format_like_rfc5322() {
        assert_eq!(rfc5322_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 +0000");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc5322_date(t), "Tue, 14 Nov 2023 22:13:20 +0000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc5322_date(leap), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    #[test]
    fn headers_are_crlf_and_unique_per_message() {
        let render = |seq| {
            Headers {
                from: "a@x",
                to: "b@y",
                seq,
                run_id: "r1",
                domain: "bench.invalid",
            }
            .render(UNIX_EPOCH)
        };
        let one = String::from_utf8(render(1)).unwrap();
        assert!(one.ends_with("\r\n\r\n"));
        assert!(one.contains("Subject: poczta-bench message 1\r\n"));
        assert!(one.contains("Message-ID: <1.r1@bench.invalid>\r\n"));
        assert!(!one.replace("\r\n", "").contains('\n'));
        assert_ne!(render(1), render(2));
    }
}

//! Readers for message content: [`DataReader`] for `DATA` (RFC 5321
//! §4.1.1.4, §4.5.2) and [`BdatReader`] for `BDAT` chunks (RFC 3030).
//!
//! Both are incremental: they take whatever the connection delivered, say
//! how much of it belonged to the content, and never look past the end of
//! the content, so that pipelined commands behind it stay in the session's
//! buffer.

/// Reads DATA content: it ends ONLY at CRLF "." CRLF (or "." CRLF at the
/// very start), and dot-stuffing is undone: a "." at the start of a line
/// (right after CRLF, or first in the content) is removed when more text
/// follows it on the line (RFC 5321 §4.5.2).
///
/// A bare LF or bare CR is not a line ending anywhere (RFC 5321 §2.3.8), so
/// a "." after one is content: it neither ends the data nor is unstuffed.
/// This is the SMTP smuggling defence (CVE-2023-51766 class): a message
/// can only end where every conforming server sees it end. For the same
/// reason a line-start "." followed by a bare CR or a bare LF (what a
/// smuggler sends as a fake terminator) is kept verbatim rather than
/// unstuffed: nothing that looks like a terminator is silently rewritten.
/// Every other byte is kept exactly as received.
#[derive(Debug)]
pub struct DataReader {
    state: State,
    content: Vec<u8>,
    max_size: usize,
    oversized: bool,
    has_nul: bool,
    done: bool,
}

/// Where the reader stands relative to the terminator. `LineStart` is the
/// only state in which a "." is special.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of the content or right after CRLF.
    LineStart,
    /// Inside a line, last byte not a CR.
    Middle,
    /// Right after a CR (already stored), which may begin a CRLF.
    Cr,
    /// After a line-start "." that has been held back.
    Dot,
    /// After a line-start "." and a CR, both held back: an LF now ends it.
    DotCr,
}

impl DataReader {
    /// A reader keeping at most `max_size` bytes of unstuffed content.
    pub fn new(max_size: usize) -> Self {
        DataReader {
            state: State::LineStart,
            content: Vec::new(),
            max_size,
            oversized: false,
            has_nul: false,
            done: false,
        }
    }

    /// Consumes as much of `input` as belongs to the data; returns how many
    /// bytes were consumed and whether the end was reached. Bytes after the
    /// terminator are NOT consumed (they are the next pipelined command).
    /// Once the end has been reached, consumes nothing.
    pub fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        if self.done {
            return (0, true);
        }
        // Content is copied verbatim except where a line-start dot is held
        // back or dropped, so it is stored in runs: `input[run..i]` is the
        // verbatim stretch not stored yet. Most feeds store one run.
        let mut run = 0;
        let mut i = 0;
        while i < input.len() {
            match self.state {
                // The hot path: nothing up to the next CR can matter.
                State::Middle => match find_byte(b'\r', &input[i..]) {
                    Some(n) => {
                        i += n + 1;
                        self.state = State::Cr;
                    }
                    None => i = input.len(),
                },
                State::Cr => match input[i] {
                    b'\n' => {
                        i += 1;
                        self.state = State::LineStart;
                    }
                    b'\r' => i += 1,
                    _ => self.state = State::Middle,
                },
                State::LineStart => {
                    if input[i] == b'.' {
                        self.store(&input[run..i]);
                        i += 1;
                        run = i;
                        self.state = State::Dot;
                    } else {
                        self.state = State::Middle;
                    }
                }
                State::Dot => match input[i] {
                    b'\r' => {
                        i += 1;
                        run = i;
                        self.state = State::DotCr;
                    }
                    b'\n' => {
                        // ".\n" after CRLF: a fake terminator, kept as is.
                        self.store(b".");
                        self.state = State::Middle;
                    }
                    // A stuffed dot: dropped; the byte after it is content.
                    _ => self.state = State::Middle,
                },
                State::DotCr => {
                    if input[i] == b'\n' {
                        self.done = true;
                        return (i + 1, true);
                    }
                    // ".\r" not followed by LF: kept as is, and the current
                    // byte is judged as the one after a CR.
                    self.store(b".\r");
                    self.state = State::Cr;
                }
            }
        }
        self.store(&input[run..i]);
        (i, false)
    }

    /// Whether the end of the data has been reached.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// More than `max_size` unstuffed bytes arrived: content beyond the cap
    /// was discarded, not buffered.
    pub fn oversized(&self) -> bool {
        self.oversized
    }

    /// Whether a NUL byte was seen in the kept content.
    pub fn has_nul(&self) -> bool {
        self.has_nul
    }

    /// The unstuffed content INCLUDING the final CRLF before the dot
    /// (`"a\r\n.\r\n"` gives `"a\r\n"`; `".\r\n"` alone gives nothing). If
    /// [`DataReader::oversized`], only the first `max_size` bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.content
    }

    fn store(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let room = self.max_size - self.content.len();
        let kept = if bytes.len() > room {
            self.oversized = true;
            &bytes[..room]
        } else {
            bytes
        };
        if !self.has_nul && kept.contains(&0) {
            self.has_nul = true;
        }
        self.content.extend_from_slice(kept);
    }
}

/// Counts the octets of one BDAT chunk (RFC 3030 §2): exactly `size` bytes,
/// binary, no unstuffing and no terminator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BdatReader {
    remaining: u64,
}

impl BdatReader {
    /// A reader for a chunk of `size` octets.
    pub fn new(size: u64) -> Self {
        BdatReader { remaining: size }
    }

    /// Splits off the part of `input` that belongs to the chunk; returns it
    /// and whether the chunk is now complete. The rest of `input` is the
    /// next command.
    pub fn take<'a>(&mut self, input: &'a [u8]) -> (&'a [u8], bool) {
        let n = usize::try_from(self.remaining).map_or(input.len(), |r| r.min(input.len()));
        // n <= remaining by construction, and usize always fits in u64.
        self.remaining -= n as u64;
        (&input[..n], self.remaining == 0)
    }

    /// Octets of the chunk still expected.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

/// Index of the first `needle` in `haystack`.
///
/// Word-at-a-time (SWAR) in safe code, because std has no public memchr
/// and DATA content of tens of MiB is scanned here byte by byte otherwise.
pub(crate) fn find_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut chunks = haystack.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // Exact zero-byte test: the lowest flagged byte is always a real
        // zero (borrows only propagate upwards), and little-endian puts
        // the first byte of the chunk lowest.
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|p| offset + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds everything in one go; returns (content, consumed, done).
    fn read_all(input: &[u8], max: usize) -> (Vec<u8>, usize, bool) {
        let mut r = DataReader::new(max);
        let (n, done) = r.feed(input);
        (r.into_bytes(), n, done)
    }

    #[test]
    fn unstuffing_is_exact() {
        let table: &[(&[u8], &[u8])] = &[
            (b".\r\n", b""),
            (b"\r\n.\r\n", b"\r\n"),
            (b"a\r\n.\r\n", b"a\r\n"),
            (b"..x\r\n.\r\n", b".x\r\n"),
            (b"a\r\n..x\r\n.\r\n", b"a\r\n.x\r\n"),
            (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
            (b"a\r\n...\r\n.\r\n", b"a\r\n..\r\n"),
            (b".x\r\n.\r\n", b"x\r\n"),
            (b"..\r\n.\r\n", b".\r\n"),
            (b"a.b\r\n.\r\n", b"a.b\r\n"),
            (b"a\r\n. \r\n.\r\n", b"a\r\n \r\n"),
            (b"\r\n\r\n.\r\n", b"\r\n\r\n"),
            (b"x\r\r\n.\r\n", b"x\r\r\n"),
            (b"x\r\r\n..\r\n.\r\n", b"x\r\r\n.\r\n"),
            (b"8bit \xc3\xa9\t\x7f\r\n.\r\n", b"8bit \xc3\xa9\t\x7f\r\n"),
        ];
        for &(input, expected) in table {
            let (content, n, done) = read_all(input, 1 << 20);
            assert!(done, "{input:?}");
            assert_eq!(n, input.len(), "{input:?}");
            assert_eq!(content, expected, "{input:?}");
        }
    }

    #[test]
    fn smuggling_probes_are_content() {
        for probe in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\r\n.\rX",
        ] {
            let mut input = b"Subject: x\r\n\r\nbody".to_vec();
            input.extend_from_slice(probe);
            input.extend_from_slice(b"MAIL FROM:<evil@x>\r\n.\r\nQUIT\r\n");
            let mut r = DataReader::new(1 << 20);
            let (n, done) = r.feed(&input);
            assert!(done, "{probe:?}");
            assert_eq!(&input[n..], b"QUIT\r\n", "{probe:?}");
            let mut expected = b"Subject: x\r\n\r\nbody".to_vec();
            expected.extend_from_slice(probe);
            expected.extend_from_slice(b"MAIL FROM:<evil@x>\r\n");
            assert_eq!(r.into_bytes(), expected, "{probe:?}");
        }
    }

    #[test]
    fn only_a_line_of_one_dot_ends_the_data() {
        for input in [
            &b"x.\r\n"[..],
            b"x\r\n.x\r\n",
            b"x\r\n. \r\n",
            b"x\r\n..\r\n",
            b"\r\n.",
        ] {
            let (_, n, done) = read_all(input, 100);
            assert!(!done, "{input:?}");
            assert_eq!(n, input.len(), "{input:?}");
        }
    }

    #[test]
    fn probe_at_the_very_start() {
        let (content, n, done) = read_all(b".\nx\r\n.\r\n", 100);
        assert!(done);
        assert_eq!(n, 8);
        assert_eq!(content, b".\nx\r\n");
    }

    #[test]
    fn terminator_split_at_every_offset() {
        let input = b"a\r\n..b\r\n.\rc\r\n\r\n.\r\nNEXT";
        let expected = b"a\r\n.b\r\n.\rc\r\n\r\n";
        let end = input.len() - 4;
        for split in 0..=input.len() {
            let mut r = DataReader::new(1000);
            let (n1, d1) = r.feed(&input[..split]);
            let (n2, d2) = if d1 {
                (0, true)
            } else {
                assert_eq!(n1, split, "split {split}");
                r.feed(&input[split..])
            };
            assert!(d2, "split {split}");
            assert_eq!(n1 + n2, end, "split {split}");
            assert_eq!(r.into_bytes(), expected, "split {split}");
        }
    }

    #[test]
    fn byte_at_a_time() {
        let input = b"..a\r\n\n.\n\r.\r\n..\r\n.\r\n";
        let mut r = DataReader::new(1000);
        let mut consumed = 0;
        for &b in input {
            let (n, done) = r.feed(&[b]);
            consumed += n;
            if done {
                break;
            }
        }
        assert!(r.is_done());
        assert_eq!(consumed, input.len());
        assert_eq!(r.into_bytes(), b".a\r\n\n.\n\r.\r\n.\r\n");
    }

    #[test]
    fn feed_after_done_consumes_nothing() {
        let mut r = DataReader::new(10);
        assert_eq!(r.feed(b".\r\nQUIT"), (3, true));
        assert_eq!(r.feed(b"QUIT\r\n"), (0, true));
    }

    #[test]
    fn oversize_is_capped_and_flagged() {
        let cases: &[(usize, &[u8], bool, &[u8])] = &[
            (3, b"abc.\r\n", true, b"abc"),
            (5, b"abc\r\n.\r\n", false, b"abc\r\n"),
            (4, b"abc\r\n.\r\n", true, b"abc\r"),
            (0, b".\r\n", false, b""),
            (0, b"x\r\n.\r\n", true, b""),
            (2, b"..\r\n.\r\n", true, b".\r"),
        ];
        for &(max, input, over, kept) in cases {
            let mut r = DataReader::new(max);
            let (n, done) = r.feed(input);
            if input.ends_with(b"\r\n.\r\n") || input == b".\r\n" {
                assert!(done && n == input.len(), "{input:?}");
            }
            assert_eq!(r.oversized(), over, "{input:?}");
            assert_eq!(r.into_bytes(), kept, "{input:?}");
        }
    }

    #[test]
    fn oversize_keeps_scanning_for_the_terminator() {
        let mut r = DataReader::new(10);
        let big = vec![b'x'; 100_000];
        assert_eq!(r.feed(&big), (big.len(), false));
        assert_eq!(r.feed(b"\r\n.\r\nQUIT"), (5, true));
        assert!(r.oversized());
        assert_eq!(r.into_bytes().len(), 10);
    }

    #[test]
    fn nul_is_detected_anywhere() {
        for input in [
            &b"\0\r\n.\r\n"[..],
            b"a\0b\r\n.\r\n",
            b"ab\r\0\r\n.\r\n",
            b".\0\r\n.\r\n",
        ] {
            let mut r = DataReader::new(100);
            assert!(r.feed(input).1);
            assert!(r.has_nul(), "{input:?}");
        }
        let mut r = DataReader::new(100);
        r.feed(b"clean\r\n.\r\n");
        assert!(!r.has_nul());
    }

    #[test]
    fn large_message_in_big_chunks() {
        let line = b"0123456789abcdefghijklmnopqrstuvwxyz.0123456789\r\n..dot\r\n";
        let mut input = Vec::new();
        while input.len() < 4 << 20 {
            input.extend_from_slice(line);
        }
        let body_len = input.len();
        input.extend_from_slice(b".\r\n");
        let mut r = DataReader::new(8 << 20);
        let mut consumed = 0;
        for chunk in input.chunks(65_536) {
            let (n, done) = r.feed(chunk);
            consumed += n;
            if done {
                break;
            }
        }
        assert_eq!(consumed, input.len());
        let lines = body_len / line.len();
        assert_eq!(r.into_bytes().len(), body_len - lines);
    }

    /// The rules written the obvious way, on the whole input: line by line
    /// (CRLF only), a line of "." ends, a line-start dot followed by
    /// anything but CR or LF is dropped. `None` if there is no terminator.
    fn reference(input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let mut p = 0;
        loop {
            if input[p..].starts_with(b".\r\n") {
                return Some((out, p + 3));
            }
            if input.get(p) == Some(&b'.') && input.get(p + 1).is_some_and(|&b| b != b'\r' && b != b'\n') {
                p += 1;
            }
            let eol = input[p..].windows(2).position(|w| w == b"\r\n")?;
            out.extend_from_slice(&input[p..p + eol + 2]);
            p += eol + 2;
        }
    }

    #[test]
    fn random_inputs_and_splits_match_the_reference() {
        // xorshift64: deterministic, no dependency.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"..\r\r\n\naX";
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let input: Vec<u8> = (0..len).map(|_| alphabet[(next() % 8) as usize]).collect();
            let mut r = DataReader::new(1000);
            let (mut consumed, mut done) = (0, false);
            let mut rest = &input[..];
            while !rest.is_empty() && !done {
                let take = 1 + (next() as usize) % rest.len();
                let (n, d) = r.feed(&rest[..take]);
                assert!(d || n == take, "{input:?}");
                consumed += n;
                done = d;
                rest = &input[consumed..];
            }
            match reference(&input) {
                Some((content, end)) => {
                    assert!(done, "{input:?}");
                    assert_eq!(consumed, end, "{input:?}");
                    assert_eq!(r.into_bytes(), content, "{input:?}");
                }
                None => {
                    assert!(!done, "{input:?}");
                    assert_eq!(consumed, input.len(), "{input:?}");
                }
            }
        }
    }

    #[test]
    fn bdat_reader_counts_exactly() {
        let mut r = BdatReader::new(5);
        assert_eq!(r.take(b"ab"), (&b"ab"[..], false));
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.take(b""), (&b""[..], false));
        assert_eq!(r.take(b"c.\r\nQUIT"), (&b"c.\r"[..], true));
        assert_eq!(r.take(b"QUIT"), (&b""[..], true));
        let mut zero = BdatReader::new(0);
        assert_eq!(zero.take(b"x"), (&b""[..], true));
        let mut huge = BdatReader::new(u64::MAX);
        assert_eq!(huge.take(b"xyz"), (&b"xyz"[..], false));
        assert_eq!(huge.remaining(), u64::MAX - 3);
    }

    #[test]
    fn find_byte_matches_position() {
        let mut hay: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        hay.retain(|&b| b != b'\r');
        assert_eq!(find_byte(b'\r', &hay), None);
        for at in [0, 1, 7, 8, 9, 15, 16, 100, hay.len() - 1] {
            let mut h = hay.clone();
            h[at] = b'\r';
            assert_eq!(find_byte(b'\r', &h), h.iter().position(|&b| b == b'\r'), "{at}");
        }
        // Bytes just below/above the needle must not cause false hits.
        let tricky = [0x0c, 0x0e, 0x8d, 0x00, 0xff, 0x01, 0x0c, 0x0e, 0x0d];
        assert_eq!(find_byte(0x0d, &tricky), Some(8));
        assert_eq!(find_byte(0, &[1, 0, 0]), Some(1));
        assert_eq!(find_byte(b'x', b""), None);
    }
}

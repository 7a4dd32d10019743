//! Trace header builders (RFC 5321 §4.4): `Received:` and `Return-Path:`,
//! and the RFC 5322 date they need. Pure functions: the caller passes the
//! time in, so the output is reproducible in tests.
//!
//! Client-supplied text (the HELO name above all) is sanitized so that it
//! can neither start a new header line nor fake the structure of this one.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::command::ReversePath;
use super::session::TlsInfo;

/// What a `Received:` header records about one hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedInfo<'a> {
    /// The EHLO/HELO argument, as the client sent it (sanitized here).
    pub helo: &'a str,
    /// The client's IP address.
    pub client_ip: IpAddr,
    /// The client's verified reverse-DNS name, if any.
    pub client_rdns: Option<&'a str>,
    /// This server's name.
    pub hostname: &'a str,
    /// The `with` protocol: "SMTP", "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA",
    /// "UTF8SMTP"... (RFC 3848, RFC 6531 registry names):
    /// [`Envelope::protocol`](super::session::Envelope::protocol) picks it.
    pub protocol: &'a str,
    /// The queue id.
    pub id: &'a str,
    /// The single recipient, with or without its angle brackets; `None`
    /// when there are several (naming one would leak the others, RFC 5321
    /// §7.2).
    pub for_rcpt: Option<&'a str>,
    /// The TLS the message arrived under (`Envelope::tls`), written as
    /// Postfix does: `(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)`
    /// between the `from` and `by` clauses.
    pub tls: Option<&'a TlsInfo>,
}

/// Longest name (HELO, rDNS, hostname) written; a DNS name has at most 255
/// octets, and the cap keeps the header within the 998-octet line limit
/// of RFC 5322 §2.1.1 whatever the client sent.
const MAX_NAME: usize = 255;
/// Longest `for` address written; a longer one is left out (the clause is
/// optional) rather than cut, which would record a wrong address.
const MAX_FOR: usize = 900;

/// The `Received:` header, folded and CRLF-terminated, e.g.
///
/// ```text
/// Received: from helo (rdns [192.0.2.1])
///     (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)
///     by hostname (Poczta) with ESMTPSA id ID
///     for <rcpt>; Fri, 27 Nov 2026 18:15:37 +0000
/// ```
///
/// (the `using` comment only under TLS; RFC 5321 §4.4's grammar allows a
/// comment before `by`, which is where Postfix puts it and where log
/// parsers look for it). Like Postfix, the header does not name the
/// authenticated user: `with ESMTPA` says the sender authenticated, and
/// the name would leak an account to every recipient.
///
/// (folded with a TAB). IPv6 clients appear as `[IPv6:...]`; an
/// IPv4-mapped IPv6 address (a dual-stack socket) as the IPv4 address it
/// is. Without a recipient the date follows the `id` line's `;`.
pub fn received_header(info: &ReceivedInfo<'_>, unix_secs: i64) -> String {
    let mut h = String::with_capacity(192);
    h.push_str("Received: from ");
    push_name(&mut h, info.helo);
    h.push_str(" (");
    if let Some(rdns) = info.client_rdns {
        push_name(&mut h, rdns);
        h.push(' ');
    }
    push_ip_literal(&mut h, info.client_ip);
    h.push(')');
    if let Some(tls) = info.tls {
        h.push_str("\r\n\t(using ");
        push_comment(&mut h, &tls.version);
        h.push_str(" with cipher ");
        push_comment(&mut h, &tls.cipher);
        h.push(')');
    }
    h.push_str("\r\n\tby ");
    push_name(&mut h, info.hostname);
    h.push_str(" (Poczta) with ");
    push_filtered(&mut h, info.protocol, 32, |c| c.is_ascii_alphanumeric());
    if !info.id.is_empty() {
        h.push_str(" id ");
        push_filtered(&mut h, info.id, 64, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
        });
    }
    let rcpt = info
        .for_rcpt
        .map(|r| r.strip_prefix('<').and_then(|r| r.strip_suffix('>')).unwrap_or(r));
    match rcpt {
        Some(rcpt) if !rcpt.is_empty() && rcpt.len() <= MAX_FOR => {
            h.push_str("\r\n\tfor <");
            // Addresses may be UTF-8 (RFC 6532); only controls go.
            push_filtered(&mut h, rcpt, MAX_FOR, |c| !c.is_control());
            h.push_str(">; ");
        }
        _ => h.push_str(";\r\n\t"),
    }
    h.push_str(&rfc5322_date(unix_secs));
    h.push_str("\r\n");
    h
}

/// `Return-Path: <addr>\r\n`, or `Return-Path: <>\r\n` for the null path
/// (RFC 5321 §4.4).
pub fn return_path_header(from: &ReversePath) -> String {
    let mut h = String::from("Return-Path: <");
    if let ReversePath::Path(address) = from {
        push_filtered(&mut h, &address.to_string(), usize::MAX, |c| !c.is_control());
    }
    h.push_str(">\r\n");
    h
}

/// RFC 5322 §3.3 date-time in UTC, e.g. `Fri, 27 Nov 2026 18:15:37 +0000`.
///
/// Timestamps outside 1970-01-01..=9999-12-31 are clamped to that range:
/// RFC 5322 years have four digits, and an earlier time means a broken
/// clock, not a message from the past.
pub fn rfc5322_date(unix_secs: i64) -> String {
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_secs.clamp(0, LAST);
    let (days, time) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} +0000",
        // Day 0 was a Thursday.
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        time / 3600,
        time / 60 % 60,
        time % 60,
    )
}

/// Year, month (1..=12) and day (1..=31) of the `days`-th day after
/// 1970-01-01, for `days >= 0`: Howard Hinnant's `civil_from_days`, which
/// counts in 400-year eras of 146 097 days starting on March 1st so that
/// the leap day falls at the end of the counted year.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A host name (HELO argument, rDNS, our hostname): letters, digits and
/// `-._:[]` (enough for domains and address literals) are kept, anything
/// else becomes `?`, so a client cannot add spaces, comments, `;` or line
/// breaks to the trace.
fn push_name(h: &mut String, name: &str) {
    if name.is_empty() {
        h.push_str("unknown");
        return;
    }
    push_filtered(h, name, MAX_NAME, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '[' | ']')
    });
}

/// Text inside a comment: printable ASCII without the parentheses or
/// backslash that could end the comment early, at most 100 characters.
/// The TLS names come from the TLS library, not the client, but a header
/// must not depend on that.
fn push_comment(h: &mut String, text: &str) {
    push_filtered(h, text, 100, |c| {
        (' '..='~').contains(&c) && !matches!(c, '(' | ')' | '\\')
    });
}

/// Appends at most `max` characters of `s`, each replaced by `?` unless
/// `keep` accepts it.
fn push_filtered(h: &mut String, s: &str, max: usize, keep: impl Fn(char) -> bool) {
    h.extend(s.chars().take(max).map(|c| if keep(c) { c } else { '?' }));
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3 literals).
fn push_ip_literal(h: &mut String, ip: IpAddr) {
    // Writing to a String cannot fail.
    let _ = match ip {
        IpAddr::V4(v4) => write!(h, "[{v4}]"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => write!(h, "[{v4}]"),
            None => write!(h, "[IPv6:{v6}]"),
        },
    };
}

#[cfg(test)]
mod tests {
    use super::super::command::Address;
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn info<'a>() -> ReceivedInfo<'a> {
        ReceivedInfo {
            helo: "client.example",
            client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            client_rdns: Some("mail.client.example"),
            hostname: "mx.poczta.test",
            protocol: "ESMTP",
            id: "Q0001AB",
            for_rcpt: Some("user@poczta.test"),
            tls: None,
        }
    }

    const T: i64 = 1_795_803_337; // Fri, 27 Nov 2026 18:15:37 +0000

    #[test]
    fn dates() {
        let table: &[(i64, &str)] = &[
            (0, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (T, "Fri, 27 Nov 2026 18:15:37 +0000"),
            (951_868_799, "Tue, 29 Feb 2000 23:59:59 +0000"),
            (951_868_800, "Wed, 01 Mar 2000 00:00:00 +0000"),
            (1_709_208_000, "Thu, 29 Feb 2024 12:00:00 +0000"),
            (2_147_483_648, "Tue, 19 Jan 2038 03:14:08 +0000"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 +0000"),
            (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 +0000"),
            // Clamped.
            (-1, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (i64::MIN, "Thu, 01 Jan 1970 00:00:00 +0000"),
            (i64::MAX, "Fri, 31 Dec 9999 23:59:59 +0000"),
        ];
        for &(secs, expected) in table {
            assert_eq!(rfc5322_date(secs), expected, "{secs}");
        }
    }

    #[test]
    fn every_day_round_trips() {
        // Walk 1970..2500 day by day against a naive calendar.
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..(530 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "{days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn received_golden() {
        assert_eq!(
            received_header(&info(), T),
            "Received: from client.example (mail.client.example [192.0.2.1])\r\n\
             \tby mx.poczta.test (Poczta) with ESMTP id Q0001AB\r\n\
             \tfor <user@poczta.test>; Fri, 27 Nov 2026 18:15:37 +0000\r\n"
        );
    }

    fn tls13() -> TlsInfo {
        TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
        }
    }

    #[test]
    fn received_variants() {
        let tls = tls13();
        let v6 = ReceivedInfo {
            client_ip: IpAddr::V6("2001:db8::1".parse().unwrap()),
            client_rdns: None,
            for_rcpt: None,
            protocol: "ESMTPS",
            tls: Some(&tls),
            ..info()
        };
        assert_eq!(
            received_header(&v6, 0),
            "Received: from client.example ([IPv6:2001:db8::1])\r\n\
             \t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n\
             \tby mx.poczta.test (Poczta) with ESMTPS id Q0001AB;\r\n\
             \tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
        let submitted = ReceivedInfo {
            protocol: "ESMTPSA",
            tls: Some(&tls),
            ..info()
        };
        assert_eq!(
            received_header(&submitted, T),
            "Received: from client.example (mail.client.example [192.0.2.1])\r\n\
             \t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n\
             \tby mx.poczta.test (Poczta) with ESMTPSA id Q0001AB\r\n\
             \tfor <user@poczta.test>; Fri, 27 Nov 2026 18:15:37 +0000\r\n"
        );
        let mapped = ReceivedInfo {
            client_ip: IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped()),
            client_rdns: None,
            for_rcpt: Some("<a@b>"),
            ..info()
        };
        assert_eq!(
            received_header(&mapped, T),
            "Received: from client.example ([198.51.100.7])\r\n\
             \tby mx.poczta.test (Poczta) with ESMTP id Q0001AB\r\n\
             \tfor <a@b>; Fri, 27 Nov 2026 18:15:37 +0000\r\n"
        );
        let loopback = ReceivedInfo {
            client_ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
            client_rdns: None,
            ..info()
        };
        assert!(received_header(&loopback, T).contains("([IPv6:::1])"));
    }

    #[test]
    fn client_text_cannot_inject() {
        let tls = TlsInfo {
            version: "v1 (fake) \\ \r\n".into(),
            cipher: "c)".into(),
        };
        let evil = ReceivedInfo {
            helo: "x\r\nX-Injected: yes (localhost [127.0.0.1]);",
            client_rdns: None,
            for_rcpt: Some("a\r\nBcc: x@y"),
            tls: Some(&tls),
            ..info()
        };
        let h = received_header(&evil, T);
        // Exactly the folding CRLFs, each followed by a TAB, and the end.
        assert_eq!(h.matches("\r\n").count(), 4);
        assert_eq!(h.matches("\r\n\t").count(), 3);
        assert!(h.ends_with("+0000\r\n"));
        assert!(
            h.starts_with("Received: from x??X-Injected:?yes??localhost?[127.0.0.1]?? ([192.0.2.1])\r\n")
        );
        assert!(h.contains("\t(using v1 ?fake? ? ?? with cipher c?)\r\n"));
        assert!(h.contains("\tfor <a??Bcc: x@y>; "));
        let empty = ReceivedInfo { helo: "", ..info() };
        assert!(received_header(&empty, T).starts_with("Received: from unknown (mail"));
        let utf8 = ReceivedInfo {
            helo: "bücher",
            for_rcpt: Some("ü@bücher.example"),
            ..info()
        };
        let h = received_header(&utf8, T);
        assert!(h.starts_with("Received: from b?cher ("));
        assert!(h.contains("for <ü@bücher.example>;"));
    }

    #[test]
    fn long_names_are_capped() {
        let long_helo = "a".repeat(5000);
        let long_rcpt = format!("{}@x", "b".repeat(2000));
        let i = ReceivedInfo {
            helo: &long_helo,
            for_rcpt: Some(&long_rcpt),
            ..info()
        };
        let h = received_header(&i, T);
        assert!(h.split("\r\n").all(|line| line.len() <= 998));
        assert!(!h.contains("for <"));
        assert!(h.contains("Q0001AB;\r\n\tFri, 27 Nov 2026"));
    }

    #[test]
    fn return_path() {
        assert_eq!(return_path_header(&ReversePath::Null), "Return-Path: <>\r\n");
        let from = ReversePath::Path(Address {
            local: "\"a b\"".into(),
            domain: "example.org".into(),
        });
        assert_eq!(
            return_path_header(&from),
            "Return-Path: <\"a b\"@example.org>\r\n"
        );
    }
}

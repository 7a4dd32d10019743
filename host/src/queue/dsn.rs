//! RFC 3464 delivery status notifications (bounces), pure.
//!
//! [`build_dsn`] writes one `multipart/report; report-type=delivery-status`
//! message (RFC 6522) for all the recipients of a message that failed
//! together: a human-readable part, the `message/delivery-status` part and
//! the original headers as `text/rfc822-headers` (the body is not returned:
//! it may be large, and the headers identify the message).
//!
//! **The caller must send the DSN with `MAIL FROM:<>`** (RFC 5321 §4.5.5,
//! RFC 3464 §2): a null reverse path is what stops a bounce of a bounce,
//! and [`build_dsn`] returns `None` for an original sender that is null for
//! the same reason.

use crate::smtp::command::{Address, ReversePath};
use crate::smtp::received::rfc5322_date;
use crate::smtp::reply::EnhancedCode;

/// Longest line written (RFC 5322 §2.1.1 allows 998 octets plus CRLF);
/// longer server texts and original header lines are cut.
const MAX_LINE: usize = 998;

/// One recipient that will not be delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRecipient {
    /// The recipient as given in RCPT TO.
    pub recipient: Address,
    /// The RFC 3463 status, e.g. `5.1.1`, or `4.4.7` for an expired one.
    pub status: EnhancedCode,
    /// The server's reply as one line (`550 5.1.1 No such user`), when a
    /// server gave one; it becomes `Diagnostic-Code: smtp; ...`.
    pub diagnostic: Option<String>,
    /// The server that gave it (`Remote-MTA: dns; ...`).
    pub remote_mta: Option<String>,
}

/// Everything a DSN is made of.
#[derive(Clone, Debug)]
pub struct DsnInput<'a> {
    /// Our host name: `Reporting-MTA` and `MAILER-DAEMON@<it>`.
    pub reporting_mta: &'a str,
    /// The original envelope sender, to whom the DSN goes.
    pub original_sender: &'a ReversePath,
    /// The failed recipients (at least one).
    pub recipients: &'a [FailedRecipient],
    /// When the original message arrived, unix seconds.
    pub arrival: i64,
    /// When the DSN is written, unix seconds (its `Date:`).
    pub now: i64,
    /// The original message's header section (a whole message is accepted
    /// too: it is cut at the first empty line).
    pub original_headers: &'a [u8],
    /// The DSN's own message id, without angle brackets; also seeds the
    /// MIME boundary.
    pub message_id: &'a str,
}

/// The recipient of a DSN about a message from `sender`: `None` for the
/// null sender, which must never be bounced to (RFC 5321 §4.5.5).
pub fn bounce_recipient(sender: &ReversePath) -> Option<&Address> {
    match sender {
        ReversePath::Null => None,
        ReversePath::Path(a) => Some(a),
    }
}

/// The complete DSN message (CRLF line ends, no line over 998 octets), or
/// `None` when the original sender is null or no recipient failed. Send it
/// with `MAIL FROM:<>` to [`bounce_recipient`].
pub fn build_dsn(input: &DsnInput<'_>) -> Option<Vec<u8>> {
    let to = bounce_recipient(input.original_sender)?;
    if input.recipients.is_empty() {
        return None;
    }
    let host = clean(input.reporting_mta);
    let headers = original_headers(input.original_headers);

    let mut human = format!(
        "This is the mail system at host {host}.\r\n\r\n\
         Your message could not be delivered to one or more recipients.\r\n\
         It has not been delivered to the addresses below.\r\n\r\n"
    );
    for r in input.recipients {
        let reason = match (&r.diagnostic, &r.remote_mta) {
            (Some(d), Some(m)) => format!("{}: host {} said: {}", r.recipient, clean(m), clean(d)),
            (Some(d), None) => format!("{}: {}", r.recipient, clean(d)),
            (None, _) if r.status.0 == 4 => {
                format!("{}: delivery time expired (status {})", r.recipient, r.status)
            }
            (None, _) => format!("{}: delivery failed (status {})", r.recipient, r.status),
        };
        human.push_str(&line(&reason));
        human.push_str("\r\n");
    }

    let mut status = format!(
        "Reporting-MTA: dns; {host}\r\nArrival-Date: {}\r\n",
        rfc5322_date(input.arrival)
    );
    for r in input.recipients {
        status.push_str("\r\n");
        // RFC 6533's utf-8 address type for an SMTPUTF8 recipient.
        let kind = if r.recipient.is_ascii() { "rfc822" } else { "utf-8" };
        status.push_str(&line(&format!("Final-Recipient: {kind}; {}", r.recipient)));
        status.push_str(&format!("\r\nAction: failed\r\nStatus: {}\r\n", r.status));
        if let Some(m) = &r.remote_mta {
            status.push_str(&line(&format!("Remote-MTA: dns; {}", clean(m))));
            status.push_str("\r\n");
        }
        if let Some(d) = &r.diagnostic {
            status.push_str(&line(&format!("Diagnostic-Code: smtp; {}", clean(d))));
            status.push_str("\r\n");
        }
    }

    let boundary = boundary(input.message_id, &[human.as_bytes(), status.as_bytes(), &headers]);
    let mut out = Vec::with_capacity(human.len() + status.len() + headers.len() + 1024);
    let top = format!(
        "From: MAILER-DAEMON@{host}\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {}\r\n\
         Message-ID: <{}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\
         \r\n\
         This is a MIME-encapsulated delivery status notification.\r\n\
         \r\n--{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n",
        rfc5322_date(input.now),
        clean(input.message_id),
    );
    out.extend_from_slice(top.as_bytes());
    out.extend_from_slice(human.as_bytes());
    out.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n").as_bytes(),
    );
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n").as_bytes());
    if !headers.is_ascii() {
        out.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&headers);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Some(out)
}

/// Text from outside (server replies, names) with control characters
/// replaced: a CR or LF would forge header or status fields.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// `s` cut to [`MAX_LINE`] bytes on a character boundary.
fn line(s: &str) -> String {
    let mut end = s.len().min(MAX_LINE);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The header section of `raw`, CRLF-terminated lines, none over
/// [`MAX_LINE`], without the empty line that ends it.
fn original_headers(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 16);
    for l in raw.split(|&b| b == b'\n') {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if l.is_empty() {
            break;
        }
        let l: Vec<u8> = l.iter().map(|&b| if b == b'\r' { b'?' } else { b }).collect();
        out.extend_from_slice(&l[..l.len().min(MAX_LINE)]);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A boundary that occurs in none of the parts (RFC 2046 §5.1.1).
fn boundary(message_id: &str, parts: &[&[u8]]) -> String {
    let seed: String = message_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(40)
        .collect();
    (0u32..)
        .map(|n| format!("=_poczta_{seed}_{n}"))
        .find(|b| {
            !parts
                .iter()
                .any(|p| p.windows(b.len()).any(|w| w == b.as_bytes()))
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    fn addr(s: &str) -> Address {
        let (local, domain) = s.split_once('@').unwrap();
        Address {
            local: local.into(),
            domain: domain.into(),
        }
    }

    fn failed() -> Vec<FailedRecipient> {
        vec![
            FailedRecipient {
                recipient: addr("bob@there.example"),
                status: EnhancedCode(5, 1, 1),
                diagnostic: Some("550 5.1.1 No such user".into()),
                remote_mta: Some("mx.there.example".into()),
            },
            FailedRecipient {
                recipient: addr("carol@slow.example"),
                status: EnhancedCode(4, 4, 7),
                diagnostic: None,
                remote_mta: None,
            },
        ]
    }

    const HEADERS: &[u8] =
        b"From: a@here.example\r\nTo: bob@there.example\nSubject: hi\r\nX-Long: AAAA\r\n\r\nbody text\r\n";

    fn build(sender: &ReversePath, recipients: &[FailedRecipient], headers: &[u8]) -> Option<Vec<u8>> {
        build_dsn(&DsnInput {
            reporting_mta: "mx.here.example",
            original_sender: sender,
            recipients,
            arrival: 1_700_000_000,
            now: 1_700_086_400,
            original_headers: headers,
            message_id: "dsn.1@mx.here.example",
        })
    }

    #[test]
    fn golden_structure() {
        let sender = ReversePath::Path(addr("alice@here.example"));
        let long_header = [b"X-Huge: ".as_slice(), &[b'x'; 3000], b"\r\n", HEADERS].concat();
        let bytes = build(&sender, &failed(), &long_header).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();

        // CRLF only, and no line over 998 octets.
        assert!(
            !bytes
                .windows(2)
                .enumerate()
                .any(|(i, w)| w[1] == b'\n' && w[0] != b'\r' || (i == 0 && w[0] == b'\n'))
        );
        assert!(!bytes.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n'));
        assert!(text.split("\r\n").all(|l| l.len() <= 998));
        assert!(!text.contains("body text"));

        let msg = MessageParser::default().parse(&bytes).unwrap();
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        assert_eq!(
            msg.from().and_then(|f| f.first()).and_then(|a| a.address()),
            Some("MAILER-DAEMON@mx.here.example")
        );
        assert_eq!(
            msg.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-replied")
        );
        assert_eq!(msg.message_id(), Some("dsn.1@mx.here.example"));
        let ct = msg.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));

        let parts = msg.parts[0].sub_parts().unwrap();
        assert_eq!(parts.len(), 3);
        let part = |i: usize| &msg.parts[parts[i] as usize];
        let types: Vec<_> = (0..3)
            .map(|i| {
                let ct = part(i).content_type().unwrap();
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
            })
            .collect();
        assert_eq!(
            types,
            ["text/plain", "message/delivery-status", "text/rfc822-headers"]
        );

        let human = part(0).text_contents().unwrap();
        assert!(
            human.contains("bob@there.example: host mx.there.example said: 550 5.1.1 No such user"),
            "{human}"
        );
        assert!(
            human.contains("carol@slow.example: delivery time expired"),
            "{human}"
        );

        let status = std::str::from_utf8(part(1).contents()).unwrap();
        let groups: Vec<&str> = status.trim_end().split("\r\n\r\n").collect();
        assert_eq!(
            groups,
            [
                "Reporting-MTA: dns; mx.here.example\r\nArrival-Date: Tue, 14 Nov 2023 22:13:20 +0000",
                "Final-Recipient: rfc822; bob@there.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\
                 Remote-MTA: dns; mx.there.example\r\nDiagnostic-Code: smtp; 550 5.1.1 No such user",
                "Final-Recipient: rfc822; carol@slow.example\r\nAction: failed\r\nStatus: 4.4.7",
            ]
        );

        let headers = part(2).text_contents().unwrap();
        assert!(
            headers.contains("From: a@here.example\r\nTo: bob@there.example\r\nSubject: hi\r\n"),
            "{headers}"
        );
        assert!(headers.contains(&format!("X-Huge: {}\r\n", "x".repeat(990))));
    }

    #[test]
    fn never_bounce_a_bounce() {
        assert!(build(&ReversePath::Null, &failed(), HEADERS).is_none());
        assert!(bounce_recipient(&ReversePath::Null).is_none());
        let sender = ReversePath::Path(addr("alice@here.example"));
        assert!(build(&sender, &[], HEADERS).is_none());
        assert_eq!(bounce_recipient(&sender), Some(&addr("alice@here.example")));
    }

    #[test]
    fn server_text_cannot_forge_fields() {
        let sender = ReversePath::Path(addr("alice@here.example"));
        let mut f = failed();
        f[0].diagnostic = Some("550 no\r\nAction: delivered".into());
        let bytes = build(&sender, &f, HEADERS).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("Diagnostic-Code: smtp; 550 no??Action: delivered\r\n"));
        assert!(!text.contains("\r\nAction: delivered"));
    }

    #[test]
    fn boundary_avoids_the_content() {
        let b = boundary("id", &[b"--=_poczta_id_0 inside"]);
        assert_eq!(b, "=_poczta_id_1");
    }
}

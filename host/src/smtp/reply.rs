//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 2034,
//! RFC 3463).
//!
//! Every reply the session sends is built by a named constructor here, so
//! that the wording and the codes of the whole dialogue can be reviewed in
//! one place and `session.rs` carries no reply literals.

use std::fmt::{self, Write as _};

/// RFC 3463 enhanced status code `class.subject.detail`.
///
/// [`EnhancedCode::NONE`] marks the replies that RFC 2034 §4 says must not
/// carry one: the greeting, the EHLO/HELO replies and the 354 intermediate
/// reply (only 2xx/4xx/5xx replies to other commands carry one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnhancedCode(pub u8, pub u16, pub u16);

impl EnhancedCode {
    /// "No enhanced code on the wire". Class 0 is never a valid RFC 3463
    /// class (only 2, 4 and 5 are), so it cannot collide with a real code.
    pub const NONE: EnhancedCode = EnhancedCode(0, 0, 0);

    /// Whether this is [`EnhancedCode::NONE`].
    pub fn is_none(self) -> bool {
        self == Self::NONE
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply: a three-digit code, an enhanced code and one or more
/// lines of text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The RFC 5321 reply code (200..=599).
    pub code: u16,
    /// The RFC 3463 enhanced code, or [`EnhancedCode::NONE`].
    pub enhanced: EnhancedCode,
    /// The text lines; an empty vector is sent as one line without text.
    pub lines: Vec<String>,
}

/// Longest text (in bytes) echoed back from the client in a reply: RFC 5321
/// §4.5.3.1.5 limits a reply line to 512 octets including code and CRLF, and
/// 255 is the longest domain name the echo could legitimately be.
const MAX_ECHO: usize = 255;

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, enhanced: EnhancedCode, text: impl Into<String>) -> Reply {
        Reply::multiline(code, enhanced, vec![text.into()])
    }

    /// A reply of several lines (sent as `code-` lines then a `code ` line).
    pub fn multiline(code: u16, enhanced: EnhancedCode, lines: Vec<String>) -> Reply {
        debug_assert!((200..=599).contains(&code), "reply code {code} out of range");
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// 2xx or 3xx: the command succeeded or the server waits for more.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// 4xx: transient failure, the client may retry.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: permanent failure.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// 4xx or 5xx.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Serializes the reply as `250-..\r\n250 ..\r\n`, with the enhanced
    /// code on every line (RFC 2034 §4) unless it is [`EnhancedCode::NONE`].
    ///
    /// Control characters in the text are replaced by `?`: some texts echo
    /// client input, and a CR or LF there would forge extra reply lines.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() {
            &empty
        } else {
            &self.lines
        };
        let code = self.code.min(999).to_string();
        let enhanced = if self.enhanced.is_none() {
            String::new()
        } else {
            self.enhanced.to_string()
        };
        for (i, line) in lines.iter().enumerate() {
            out.extend_from_slice(code.as_bytes());
            if i + 1 < lines.len() {
                out.push(b'-');
            } else if !(enhanced.is_empty() && line.is_empty()) || self.code == 334 {
                // RFC 5321 §4.2: the SP of the last line only comes with
                // text, except in a SASL challenge, where RFC 4954 §4's
                // `"334" SP [base64] CRLF` wants it even when empty.
                out.push(b' ');
            }
            out.extend_from_slice(enhanced.as_bytes());
            if !enhanced.is_empty() && !line.is_empty() {
                out.push(b' ');
            }
            out.extend(line.bytes().map(|b| if b < 0x20 || b == 0x7f { b'?' } else { b }));
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a new buffer; see [`Reply::write_to`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_to(&mut out);
        out
    }

    // --- Connection-level replies -----------------------------------------

    /// `220 <hostname> ESMTP Poczta`. No enhanced code (RFC 2034 §4).
    pub fn greeting(hostname: &str) -> Reply {
        Reply::new(220, EnhancedCode::NONE, format!("{hostname} ESMTP Poczta"))
    }

    /// The EHLO reply: `250-<hostname> Hello <client>` followed by one line
    /// per extension keyword. No enhanced code (RFC 2034 §4).
    pub fn ehlo(hostname: &str, client: &str, extensions: &[String]) -> Reply {
        let mut lines = Vec::with_capacity(extensions.len() + 1);
        lines.push(format!("{hostname} Hello {}", truncate(client, MAX_ECHO)));
        lines.extend(extensions.iter().cloned());
        Reply::multiline(250, EnhancedCode::NONE, lines)
    }

    /// The single-line HELO reply. No enhanced code (RFC 2034 §4).
    pub fn helo(hostname: &str, client: &str) -> Reply {
        Reply::new(
            250,
            EnhancedCode::NONE,
            format!("{hostname} Hello {}", truncate(client, MAX_ECHO)),
        )
    }

    /// `221 2.0.0 <hostname> closing`: the answer to QUIT.
    pub fn closing(hostname: &str) -> Reply {
        Reply::new(221, EnhancedCode(2, 0, 0), format!("{hostname} closing"))
    }

    /// `421 4.4.2 <hostname> Error: timeout exceeded`.
    pub fn idle_timeout(hostname: &str) -> Reply {
        Reply::new(
            421,
            EnhancedCode(4, 4, 2),
            format!("{hostname} Error: timeout exceeded"),
        )
    }

    /// `421 4.3.2 <hostname> Service shutting down`.
    pub fn shutting_down(hostname: &str) -> Reply {
        Reply::new(
            421,
            EnhancedCode(4, 3, 2),
            format!("{hostname} Service shutting down"),
        )
    }

    /// `421 4.7.0 Too many errors`: sent right after the error reply that
    /// reached the session's error limit, before closing.
    pub fn too_many_errors() -> Reply {
        Reply::new(421, EnhancedCode(4, 7, 0), "Too many errors")
    }

    /// `421 4.7.0 Too many connections, try again later`.
    pub fn too_many_connections() -> Reply {
        Reply::new(
            421,
            EnhancedCode(4, 7, 0),
            "Too many connections, try again later",
        )
    }

    // --- Positive replies -------------------------------------------------

    /// `250 2.0.0 OK` (NOOP, RSET, a stored message without a queue id).
    pub fn ok() -> Reply {
        Reply::new(250, EnhancedCode(2, 0, 0), "OK")
    }

    /// `250 2.1.0 Sender OK`.
    pub fn sender_ok() -> Reply {
        Reply::new(250, EnhancedCode(2, 1, 0), "Sender OK")
    }

    /// `250 2.1.5 Recipient OK`.
    pub fn recipient_ok() -> Reply {
        Reply::new(250, EnhancedCode(2, 1, 5), "Recipient OK")
    }

    /// `250 2.0.0 OK queued as <id>`.
    pub fn queued(id: &str) -> Reply {
        Reply::new(250, EnhancedCode(2, 0, 0), format!("OK queued as {id}"))
    }

    /// `250 2.0.0 <n> octets received`: a non-final BDAT chunk was accepted.
    pub fn chunk_received(octets: u64) -> Reply {
        Reply::new(250, EnhancedCode(2, 0, 0), format!("{octets} octets received"))
    }

    /// `354 End data with <CR><LF>.<CR><LF>`. No enhanced code: RFC 2034
    /// defines them for 2xx/4xx/5xx only.
    pub fn start_data() -> Reply {
        Reply::new(354, EnhancedCode::NONE, "End data with <CR><LF>.<CR><LF>")
    }

    /// `252 2.5.0`: VRFY never confirms or denies a mailbox (RFC 5321
    /// §3.5.3, §7.3), so it cannot be used to harvest addresses.
    pub fn cannot_verify() -> Reply {
        Reply::new(
            252,
            EnhancedCode(2, 5, 0),
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }

    /// `214 2.0.0` with a short pointer to the supported commands.
    pub fn help() -> Reply {
        Reply::new(
            214,
            EnhancedCode(2, 0, 0),
            "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP; see RFC 5321",
        )
    }

    // --- Command syntax and sequence errors -------------------------------

    /// `500 5.5.2 Command unrecognized`.
    pub fn unknown_command() -> Reply {
        Reply::new(500, EnhancedCode(5, 5, 2), "Command unrecognized")
    }

    /// `500 5.5.2 Line too long` (RFC 5321 §4.5.3.1.4).
    pub fn line_too_long() -> Reply {
        Reply::new(500, EnhancedCode(5, 5, 2), "Line too long")
    }

    /// `500 5.5.2 <text>`: a command line that cannot even be tokenized
    /// (NUL or other control bytes, invalid UTF-8).
    pub fn bad_characters(text: impl Into<String>) -> Reply {
        Reply::new(500, EnhancedCode(5, 5, 2), text)
    }

    /// `501 5.5.4 <text>`: syntax error in the arguments.
    pub fn syntax(text: impl Into<String>) -> Reply {
        Reply::new(501, EnhancedCode(5, 5, 4), text)
    }

    /// `501 5.1.7 Bad sender address syntax`.
    pub fn bad_sender_syntax() -> Reply {
        Reply::new(501, EnhancedCode(5, 1, 7), "Bad sender address syntax")
    }

    /// `501 5.1.3 Bad recipient address syntax`.
    pub fn bad_recipient_syntax() -> Reply {
        Reply::new(501, EnhancedCode(5, 1, 3), "Bad recipient address syntax")
    }

    /// `555 5.5.4 <text>`: a MAIL/RCPT parameter that is not recognized or
    /// cannot be implemented (RFC 5321 §4.1.1.11).
    pub fn parameter_unsupported(text: impl Into<String>) -> Reply {
        Reply::new(555, EnhancedCode(5, 5, 4), text)
    }

    /// `503 5.5.1 <text>`: command out of sequence.
    pub fn bad_sequence(text: impl Into<String>) -> Reply {
        Reply::new(503, EnhancedCode(5, 5, 1), text)
    }

    /// `503 5.5.1 Send EHLO or HELO first` (RFC 5321 §4.1.4).
    pub fn need_helo() -> Reply {
        Reply::bad_sequence("Send EHLO or HELO first")
    }

    /// `503 5.5.1 Need MAIL command`.
    pub fn need_mail() -> Reply {
        Reply::bad_sequence("Need MAIL command")
    }

    /// `503 5.5.1 Need RCPT command`: DATA/BDAT without an accepted
    /// recipient.
    pub fn need_rcpt() -> Reply {
        Reply::bad_sequence("Need RCPT command")
    }

    /// `503 5.5.1 Nested MAIL command`: MAIL inside a transaction.
    pub fn nested_mail() -> Reply {
        Reply::bad_sequence("Nested MAIL command")
    }

    /// `503 5.5.1`: DATA in a transaction that already used BDAT (RFC 3030
    /// §4 forbids mixing them).
    pub fn data_after_bdat() -> Reply {
        Reply::bad_sequence("DATA not allowed after BDAT")
    }

    /// `503 5.5.1`: RCPT once the message data has begun with BDAT.
    pub fn rcpt_after_bdat() -> Reply {
        Reply::bad_sequence("RCPT not allowed after BDAT")
    }

    /// `502 5.5.1 <text>`: command recognized but not implemented.
    pub fn not_implemented(text: impl Into<String>) -> Reply {
        Reply::new(502, EnhancedCode(5, 5, 1), text)
    }

    /// `502 5.5.1 EXPN not supported`: there are no mailing lists to
    /// expand, and expanding aliases would leak addresses (RFC 5321 §7.3).
    pub fn expn_disabled() -> Reply {
        Reply::not_implemented("EXPN not supported")
    }

    /// `502 5.5.1 STARTTLS not available` (not advertised).
    pub fn starttls_unavailable() -> Reply {
        Reply::not_implemented("STARTTLS not available")
    }

    /// `502 5.5.1 AUTH not available`: this listener does not offer AUTH.
    pub fn auth_unavailable() -> Reply {
        Reply::not_implemented("AUTH not available")
    }

    /// `503 5.5.1 Mail transaction in progress`: STARTTLS or AUTH between
    /// MAIL and the end of the message (RFC 4954 §4 forbids AUTH there, and
    /// the reset after STARTTLS would silently drop the transaction).
    pub fn transaction_in_progress() -> Reply {
        Reply::bad_sequence("Mail transaction in progress")
    }

    // --- STARTTLS (RFC 3207) ----------------------------------------------

    /// `220 2.0.0 Ready to start TLS`: the client starts the handshake next.
    pub fn starttls_ready() -> Reply {
        Reply::new(220, EnhancedCode(2, 0, 0), "Ready to start TLS")
    }

    /// `503 5.5.1 TLS already active`: STARTTLS inside TLS (RFC 3207 §4.2:
    /// it is not advertised again, and a second handshake is not offered).
    pub fn tls_already_active() -> Reply {
        Reply::bad_sequence("TLS already active")
    }

    /// `530 5.7.0 Must issue a STARTTLS command first`: MAIL on a listener
    /// that requires AUTH, from a client that cannot authenticate before
    /// TLS (Postfix's wording for `smtpd_tls_auth_only`).
    pub fn must_starttls() -> Reply {
        Reply::new(530, EnhancedCode(5, 7, 0), "Must issue a STARTTLS command first")
    }

    // --- AUTH (RFC 4954) ----------------------------------------------------

    /// `334 <challenge>`: a SASL continuation, the base64 challenge as text
    /// (`334 ` with nothing after the space for an empty one). No enhanced
    /// code: RFC 2034 defines them for 2xx/4xx/5xx only.
    pub fn auth_challenge(challenge: &str) -> Reply {
        Reply::new(334, EnhancedCode::NONE, challenge)
    }

    /// `235 2.7.0 Authentication successful`.
    pub fn auth_succeeded() -> Reply {
        Reply::new(235, EnhancedCode(2, 7, 0), "Authentication successful")
    }

    /// `535 5.7.8 Authentication credentials invalid`: wrong user name or
    /// password (one answer for both, so names cannot be probed), or an
    /// authorization identity naming someone else. The driver rejects with
    /// it too.
    pub fn auth_failed() -> Reply {
        Reply::new(535, EnhancedCode(5, 7, 8), "Authentication credentials invalid")
    }

    /// `454 4.7.0 Temporary authentication failure`: the credentials could
    /// not be checked now (store unavailable); for the driver's `Reject`.
    pub fn auth_temporary_failure() -> Reply {
        Reply::new(454, EnhancedCode(4, 7, 0), "Temporary authentication failure")
    }

    /// `503 5.5.1 Already authenticated` (RFC 4954 §4: a second AUTH after
    /// a successful one is refused).
    pub fn already_authenticated() -> Reply {
        Reply::bad_sequence("Already authenticated")
    }

    /// `504 5.5.4 Unrecognized authentication type`.
    pub fn unknown_mechanism() -> Reply {
        Reply::new(504, EnhancedCode(5, 5, 4), "Unrecognized authentication type")
    }

    /// `538 5.7.11 Encryption required for requested authentication
    /// mechanism`: AUTH in plaintext where only TLS allows it.
    pub fn encryption_required() -> Reply {
        Reply::new(
            538,
            EnhancedCode(5, 7, 11),
            "Encryption required for requested authentication mechanism",
        )
    }

    /// `530 5.7.0 Authentication required`: MAIL before AUTH on a
    /// submission listener (RFC 6409 §4.3, RFC 4954 §6).
    pub fn auth_required() -> Reply {
        Reply::new(530, EnhancedCode(5, 7, 0), "Authentication required")
    }

    /// `501 5.0.0 Authentication cancelled`: the client answered a
    /// challenge with `*` (RFC 4954 §4).
    pub fn auth_cancelled() -> Reply {
        Reply::new(501, EnhancedCode(5, 0, 0), "Authentication cancelled")
    }

    /// `501 5.5.2 Cannot Base64-decode Client responses` (RFC 4954 §4's
    /// example wording).
    pub fn auth_bad_base64() -> Reply {
        Reply::new(
            501,
            EnhancedCode(5, 5, 2),
            "Cannot Base64-decode Client responses",
        )
    }

    /// `501 5.5.2 Malformed authentication data`: base64 that does not
    /// decode to what the mechanism expects (e.g. PLAIN without its NULs,
    /// an empty password).
    pub fn auth_malformed() -> Reply {
        Reply::new(501, EnhancedCode(5, 5, 2), "Malformed authentication data")
    }

    /// `500 5.5.6 Authentication Exchange line is too long` (RFC 4954 §6),
    /// after discarding the line.
    pub fn auth_line_too_long() -> Reply {
        Reply::new(
            500,
            EnhancedCode(5, 5, 6),
            "Authentication Exchange line is too long",
        )
    }

    // --- Envelope and message errors --------------------------------------

    /// `550 5.7.1 Relay access denied`.
    pub fn relay_denied() -> Reply {
        Reply::new(550, EnhancedCode(5, 7, 1), "Relay access denied")
    }

    /// `550 5.1.1 Mailbox unavailable`. The address is deliberately not
    /// echoed: the client knows what it sent, and logs should not be fed
    /// attacker-chosen text through replies.
    pub fn no_such_user() -> Reply {
        Reply::new(550, EnhancedCode(5, 1, 1), "Mailbox unavailable")
    }

    /// `452 4.5.3 Too many recipients` (RFC 5321 §4.5.3.1.10: a transient
    /// code, so the client retries the rest in another transaction).
    pub fn too_many_recipients() -> Reply {
        Reply::new(452, EnhancedCode(4, 5, 3), "Too many recipients")
    }

    /// `552 5.3.4 Message size exceeds fixed maximum message size`.
    pub fn message_too_big() -> Reply {
        Reply::new(
            552,
            EnhancedCode(5, 3, 4),
            "Message size exceeds fixed maximum message size",
        )
    }

    /// `554 5.6.0 Message contains NUL characters`.
    pub fn message_has_nul() -> Reply {
        Reply::new(554, EnhancedCode(5, 6, 0), "Message contains NUL characters")
    }

    /// `553 5.6.7`: a non-ASCII address without the SMTPUTF8 parameter on
    /// MAIL (RFC 6531 §3.4).
    pub fn smtputf8_required() -> Reply {
        Reply::new(553, EnhancedCode(5, 6, 7), "Non-ASCII address requires SMTPUTF8")
    }

    /// `451 4.3.0 Local error, try again later`.
    pub fn local_error_temp() -> Reply {
        Reply::new(451, EnhancedCode(4, 3, 0), "Local error, try again later")
    }

    /// `451 4.3.0 Local error, try again later`: storing failed; same reply
    /// as [`Reply::local_error_temp`], named for the driver's call site.
    pub fn storage_failure() -> Reply {
        Reply::local_error_temp()
    }

    /// `452 4.3.1 Insufficient system storage`.
    pub fn storage_full() -> Reply {
        Reply::new(452, EnhancedCode(4, 3, 1), "Insufficient system storage")
    }
}

impl fmt::Display for Reply {
    /// One-line form for logs, e.g. `550 5.7.1 Relay access denied`;
    /// the lines of a multi-line reply are joined with ` / `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.enhanced.is_none() {
            write!(f, " {}", self.enhanced)?;
        }
        for (i, line) in self.lines.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { " / " })?;
            for c in line.chars() {
                f.write_char(if c.is_control() { '?' } else { c })?;
            }
        }
        Ok(())
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(r: &Reply) -> String {
        String::from_utf8(r.to_bytes()).unwrap()
    }

    #[test]
    fn single_line_wire_form() {
        let cases: &[(Reply, &str)] = &[
            (Reply::ok(), "250 2.0.0 OK\r\n"),
            (Reply::relay_denied(), "550 5.7.1 Relay access denied\r\n"),
            (Reply::no_such_user(), "550 5.1.1 Mailbox unavailable\r\n"),
            (
                Reply::storage_failure(),
                "451 4.3.0 Local error, try again later\r\n",
            ),
            (Reply::storage_full(), "452 4.3.1 Insufficient system storage\r\n"),
            (Reply::queued("Q1"), "250 2.0.0 OK queued as Q1\r\n"),
            (
                Reply::too_many_connections(),
                "421 4.7.0 Too many connections, try again later\r\n",
            ),
            (Reply::greeting("mx.example"), "220 mx.example ESMTP Poczta\r\n"),
            (Reply::start_data(), "354 End data with <CR><LF>.<CR><LF>\r\n"),
            (
                Reply::idle_timeout("mx"),
                "421 4.4.2 mx Error: timeout exceeded\r\n",
            ),
            (
                Reply::shutting_down("mx"),
                "421 4.3.2 mx Service shutting down\r\n",
            ),
            (Reply::closing("mx"), "221 2.0.0 mx closing\r\n"),
            (Reply::new(250, EnhancedCode(2, 0, 0), ""), "250 2.0.0\r\n"),
            (Reply::new(250, EnhancedCode::NONE, ""), "250\r\n"),
            (
                Reply::multiline(250, EnhancedCode::NONE, vec!["a".into(), String::new()]),
                "250-a\r\n250\r\n",
            ),
            (
                Reply::multiline(250, EnhancedCode(2, 0, 0), vec![]),
                "250 2.0.0\r\n",
            ),
            (Reply::starttls_ready(), "220 2.0.0 Ready to start TLS\r\n"),
            (Reply::auth_challenge(""), "334 \r\n"),
            (Reply::auth_challenge("VXNlcm5hbWU6"), "334 VXNlcm5hbWU6\r\n"),
            (Reply::auth_succeeded(), "235 2.7.0 Authentication successful\r\n"),
            (
                Reply::auth_failed(),
                "535 5.7.8 Authentication credentials invalid\r\n",
            ),
            (
                Reply::encryption_required(),
                "538 5.7.11 Encryption required for requested authentication mechanism\r\n",
            ),
            (
                Reply::unknown_mechanism(),
                "504 5.5.4 Unrecognized authentication type\r\n",
            ),
            (Reply::auth_required(), "530 5.7.0 Authentication required\r\n"),
            (Reply::auth_cancelled(), "501 5.0.0 Authentication cancelled\r\n"),
        ];
        for (reply, expected) in cases {
            assert_eq!(wire(reply), *expected, "{reply:?}");
        }
    }

    #[test]
    fn multiline_wire_form_has_code_on_every_line() {
        let r = Reply::multiline(
            250,
            EnhancedCode(2, 0, 0),
            vec!["one".into(), "two".into(), "three".into()],
        );
        assert_eq!(wire(&r), "250-2.0.0 one\r\n250-2.0.0 two\r\n250 2.0.0 three\r\n");
    }

    #[test]
    fn ehlo_has_no_enhanced_code() {
        let r = Reply::ehlo("mx", "client", &["PIPELINING".into(), "8BITMIME".into()]);
        assert_eq!(
            wire(&r),
            "250-mx Hello client\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
        assert_eq!(wire(&Reply::helo("mx", "c")), "250 mx Hello c\r\n");
    }

    #[test]
    fn echoed_text_is_truncated_on_a_char_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let r = Reply::helo("mx", &long);
        let text = &r.lines[0];
        assert!(text.len() <= "mx Hello ".len() + MAX_ECHO);
        assert!(text.ends_with('é'));
    }

    #[test]
    fn control_characters_cannot_forge_lines() {
        let r = Reply::new(250, EnhancedCode(2, 0, 0), "a\r\n250 b\0");
        assert_eq!(wire(&r), "250 2.0.0 a??250 b?\r\n");
        assert_eq!(r.to_string(), "250 2.0.0 a??250 b?");
    }

    #[test]
    fn classification() {
        let table: &[(u16, bool, bool, bool)] = &[
            (220, true, false, false),
            (354, true, false, false),
            (421, false, true, false),
            (452, false, true, false),
            (500, false, false, true),
            (554, false, false, true),
        ];
        for &(code, pos, trans, perm) in table {
            let r = Reply::new(code, EnhancedCode::NONE, "x");
            assert_eq!(
                (r.is_positive(), r.is_transient(), r.is_permanent()),
                (pos, trans, perm),
                "{code}"
            );
            assert_eq!(r.is_error(), trans || perm);
        }
    }

    #[test]
    fn display_is_one_line() {
        assert_eq!(Reply::relay_denied().to_string(), "550 5.7.1 Relay access denied");
        assert_eq!(Reply::greeting("mx").to_string(), "220 mx ESMTP Poczta");
        let r = Reply::multiline(250, EnhancedCode(2, 0, 0), vec!["a".into(), "b".into()]);
        assert_eq!(r.to_string(), "250 2.0.0 a / b");
        assert_eq!(EnhancedCode(5, 3, 4).to_string(), "5.3.4");
    }
}

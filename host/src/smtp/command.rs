//! Parsing of one SMTP command line (RFC 5321 §4.1, with the ESMTP
//! parameters of RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8 and the
//! RFC 3030 BDAT verb).
//!
//! The parser is state-free: whether a command is allowed at this point of
//! the dialogue, and whether an address is acceptable (SMTPUTF8, routing), is
//! the session's business. Here only the grammar is checked, strictly as RFC
//! 5321 §4.1.2 (extended by RFC 6531 §3.3) writes it, with three documented
//! leniencies that real clients need: any number of spaces after the verb
//! and after `FROM:`/`TO:`, and trailing spaces or tabs at the end of the
//! line, are ignored.

use std::fmt;
use std::net::Ipv6Addr;

use super::reply::Reply;

/// One parsed SMTP command.
///
/// `Debug` is written by hand so that the `AUTH` argument (which carries a
/// SASL initial response, i.e. credentials) never ends up in a log line.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO name` (RFC 5321 §4.1.1.1). The argument is kept as sent (the
    /// rest of the line): RFC 5321 §4.1.4 forbids refusing a session over
    /// the name, so its syntax is left to the HELO policy.
    Ehlo(String),
    /// `HELO name` (RFC 5321 §4.1.1.1); as for [`Command::Ehlo`].
    Helo(String),
    /// `MAIL FROM:<reverse-path> [params]` (RFC 5321 §4.1.1.2).
    Mail {
        /// The reverse-path; `<>` is [`ReversePath::Null`].
        from: ReversePath,
        /// The ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<forward-path> [params]` (RFC 5321 §4.1.1.3).
    Rcpt {
        /// The recipient, with any source route dropped.
        to: Address,
        /// The ESMTP parameters (none are supported).
        params: RcptParams,
    },
    /// `DATA` (RFC 5321 §4.1.1.4).
    Data,
    /// `BDAT size [LAST]` (RFC 3030 §2).
    Bdat {
        /// Octets of message data that follow the command line.
        size: u64,
        /// Whether this is the final chunk.
        last: bool,
    },
    /// `RSET` (RFC 5321 §4.1.1.5).
    Rset,
    /// `NOOP [string]` (RFC 5321 §4.1.1.9); the argument is ignored.
    Noop,
    /// `QUIT` (RFC 5321 §4.1.1.10).
    Quit,
    /// `VRFY string` (RFC 5321 §4.1.1.6).
    Vrfy(String),
    /// `EXPN string` (RFC 5321 §4.1.1.7).
    Expn(String),
    /// `HELP [string]` (RFC 5321 §4.1.1.8).
    Help(Option<String>),
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH ...` (RFC 4954): the raw rest of the line, handled by the
    /// SASL layer rather than by this parser.
    Auth(String),
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Ehlo(n) => f.debug_tuple("Ehlo").field(n).finish(),
            Command::Helo(n) => f.debug_tuple("Helo").field(n).finish(),
            Command::Mail { from, params } => f
                .debug_struct("Mail")
                .field("from", from)
                .field("params", params)
                .finish(),
            Command::Rcpt { to, params } => f
                .debug_struct("Rcpt")
                .field("to", to)
                .field("params", params)
                .finish(),
            Command::Data => f.write_str("Data"),
            Command::Bdat { size, last } => f
                .debug_struct("Bdat")
                .field("size", size)
                .field("last", last)
                .finish(),
            Command::Rset => f.write_str("Rset"),
            Command::Noop => f.write_str("Noop"),
            Command::Quit => f.write_str("Quit"),
            Command::Vrfy(s) => f.debug_tuple("Vrfy").field(s).finish(),
            Command::Expn(s) => f.debug_tuple("Expn").field(s).finish(),
            Command::Help(s) => f.debug_tuple("Help").field(s).finish(),
            Command::StartTls => f.write_str("StartTls"),
            Command::Auth(_) => f.debug_tuple("Auth").field(&"<redacted>").finish(),
        }
    }
}

/// A mailbox `local@domain` as written by the client.
///
/// Neither part is case-folded: the local part is case-sensitive (RFC 5321
/// §2.4) and the domain is compared with [`Address::domain_eq`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Address {
    /// The local part exactly as written, a quoted one with its quotes and
    /// backslashes (`"a b"`), so that it can be sent on unchanged.
    pub local: String,
    /// The domain or address literal (`[192.0.2.1]`, `[IPv6:...]`) as
    /// written; empty only for the bare `<postmaster>` recipient.
    pub domain: String,
}

impl Address {
    /// The bare `postmaster` recipient of RFC 5321 §4.1.1.3, which has no
    /// domain and means "this server's postmaster".
    pub fn postmaster() -> Address {
        Address {
            local: "postmaster".to_owned(),
            domain: String::new(),
        }
    }

    /// Whether the domain is `d`, compared ASCII case-insensitively.
    ///
    /// A trailing dot is not stripped on either side: `example.com.` is a
    /// different string from `example.com`, and the parser never produces
    /// one (RFC 5321's Domain has no trailing dot).
    pub fn domain_eq(&self, d: &str) -> bool {
        self.domain.eq_ignore_ascii_case(d)
    }

    /// Whether both parts are pure ASCII, i.e. usable without SMTPUTF8.
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.domain.is_empty() {
            f.write_str(&self.local)
        } else {
            write!(f, "{}@{}", self.local, self.domain)
        }
    }
}

/// The argument of `MAIL FROM:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`: bounces and other notifications (RFC 5321 §4.5.5).
    Null,
    /// A real sender mailbox.
    Path(Address),
}

impl ReversePath {
    /// Whether the path is usable without SMTPUTF8 (`<>` always is).
    pub fn is_ascii(&self) -> bool {
        match self {
            ReversePath::Null => true,
            ReversePath::Path(a) => a.is_ascii(),
        }
    }
}

/// The `BODY=` parameter (RFC 6152). `BINARYMIME` (RFC 3030) is not
/// advertised, so it is refused like any unknown value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// The supported ESMTP parameters of `MAIL FROM:`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870): the client's size estimate. A value too large
    /// for `u64` is kept as `u64::MAX`, which is "too big" all the same.
    pub size: Option<u64>,
    /// `BODY=` (RFC 6152).
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531 §3.4).
    pub smtputf8: bool,
}

/// The ESMTP parameters of `RCPT TO:`. DSN (RFC 3461) is not advertised, so
/// every parameter, `NOTIFY` and `ORCPT` included, is refused with 555 as
/// RFC 5321 §4.1.1.11 asks; the struct exists so that one can be added
/// without changing [`Command::Rcpt`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptParams {}

/// Why a command line was refused. Each maps to its reply with
/// [`ParseError::reply`]; the `Display` text is the reply text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A NUL or another control byte other than TAB in the line.
    #[error("Invalid characters in command")]
    InvalidCharacters,
    /// The line is not valid UTF-8 (RFC 6531 allows UTF-8, nothing else).
    #[error("Invalid UTF-8 in command")]
    InvalidUtf8,
    /// The verb is not one this server knows.
    #[error("Command unrecognized")]
    UnknownCommand,
    /// Missing, extra or malformed arguments; the text says which form
    /// was expected.
    #[error("{0}")]
    Syntax(&'static str),
    /// The `MAIL FROM:` path is not an RFC 5321 Reverse-path.
    #[error("Bad sender address syntax")]
    BadSender,
    /// The `RCPT TO:` path is not an RFC 5321 Forward-path.
    #[error("Bad recipient address syntax")]
    BadRecipient,
    /// `SIZE=` without a value or with something other than digits.
    #[error("Invalid SIZE value")]
    InvalidSize,
    /// `BODY=` with a value other than 7BIT or 8BITMIME.
    #[error("Unsupported BODY type")]
    UnsupportedBody,
    /// The same parameter twice on one command.
    #[error("Duplicate {0} parameter")]
    DuplicateParameter(&'static str),
    /// A parameter that is not supported (upper-cased, at most 64 bytes).
    #[error("Unsupported parameter {0}")]
    UnknownParameter(String),
    /// The BDAT size is not 1 to 20 digits fitting in 64 bits.
    #[error("Invalid chunk size")]
    InvalidChunkSize,
}

impl ParseError {
    /// The reply that reports this error to the client.
    pub fn reply(&self) -> Reply {
        let text = self.to_string();
        match self {
            ParseError::InvalidCharacters | ParseError::InvalidUtf8 => Reply::bad_characters(text),
            ParseError::UnknownCommand => Reply::unknown_command(),
            ParseError::BadSender => Reply::bad_sender_syntax(),
            ParseError::BadRecipient => Reply::bad_recipient_syntax(),
            ParseError::UnsupportedBody | ParseError::UnknownParameter(_) => {
                Reply::parameter_unsupported(text)
            }
            ParseError::Syntax(_)
            | ParseError::InvalidSize
            | ParseError::DuplicateParameter(_)
            | ParseError::InvalidChunkSize => Reply::syntax(text),
        }
    }
}

/// Parses one complete command line (without the CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    // Checked on bytes before anything else: a NUL or a bare CR in a
    // command line is either an attack or a broken client, never a
    // command worth interpreting.
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ParseError::InvalidCharacters);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::InvalidUtf8)?;
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, args) = match line.split_once(' ') {
        Some((verb, args)) => (verb, args.trim_start_matches(' ')),
        None => (line, ""),
    };
    // The longest verb is STARTTLS; anything longer is unknown, and this
    // keeps the upper-cased copy tiny whatever the client sends.
    if verb.len() > "STARTTLS".len() {
        return Err(ParseError::UnknownCommand);
    }
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" => Ok(Command::Ehlo(required(args, "Syntax: EHLO hostname")?)),
        "HELO" => Ok(Command::Helo(required(args, "Syntax: HELO hostname")?)),
        "MAIL" => parse_mail(args),
        "RCPT" => parse_rcpt(args),
        "DATA" => no_args(args, Command::Data, "Syntax: DATA"),
        "BDAT" => parse_bdat(args),
        "RSET" => no_args(args, Command::Rset, "Syntax: RSET"),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(args, Command::Quit, "Syntax: QUIT"),
        "VRFY" => Ok(Command::Vrfy(required(args, "Syntax: VRFY address")?)),
        "EXPN" => Ok(Command::Expn(required(args, "Syntax: EXPN list")?)),
        "HELP" => Ok(Command::Help((!args.is_empty()).then(|| args.to_owned()))),
        "STARTTLS" => no_args(args, Command::StartTls, "Syntax: STARTTLS"),
        "AUTH" => Ok(Command::Auth(args.to_owned())),
        _ => Err(ParseError::UnknownCommand),
    }
}

fn required(args: &str, usage: &'static str) -> Result<String, ParseError> {
    if args.is_empty() {
        Err(ParseError::Syntax(usage))
    } else {
        Ok(args.to_owned())
    }
}

fn no_args(args: &str, cmd: Command, usage: &'static str) -> Result<Command, ParseError> {
    if args.is_empty() {
        Ok(cmd)
    } else {
        Err(ParseError::Syntax(usage))
    }
}

fn parse_mail(args: &str) -> Result<Command, ParseError> {
    let rest = strip_prefix_ci(args, "FROM:")
        .ok_or(ParseError::Syntax("Syntax: MAIL FROM:<address>"))?
        .trim_start_matches(' ');
    let (path, rest) = parse_path(rest, PathKind::Reverse).ok_or(ParseError::BadSender)?;
    let from = match path {
        Some(address) => ReversePath::Path(address),
        None => ReversePath::Null,
    };
    let mut params = MailParams::default();
    let (mut seen_size, mut seen_body) = (false, false);
    for param in esmtp_params(rest, ParseError::BadSender)? {
        let (keyword, value) = param?;
        if keyword.eq_ignore_ascii_case("SIZE") {
            if std::mem::replace(&mut seen_size, true) {
                return Err(ParseError::DuplicateParameter("SIZE"));
            }
            params.size = Some(parse_size(value)?);
        } else if keyword.eq_ignore_ascii_case("BODY") {
            if std::mem::replace(&mut seen_body, true) {
                return Err(ParseError::DuplicateParameter("BODY"));
            }
            let value = value.ok_or(ParseError::Syntax("Syntax: BODY=7BIT|8BITMIME"))?;
            params.body = Some(if value.eq_ignore_ascii_case("7BIT") {
                Body::SevenBit
            } else if value.eq_ignore_ascii_case("8BITMIME") {
                Body::EightBitMime
            } else {
                return Err(ParseError::UnsupportedBody);
            });
        } else if keyword.eq_ignore_ascii_case("SMTPUTF8") {
            if params.smtputf8 {
                return Err(ParseError::DuplicateParameter("SMTPUTF8"));
            }
            if value.is_some() {
                return Err(ParseError::Syntax("SMTPUTF8 takes no value"));
            }
            params.smtputf8 = true;
        } else {
            return Err(unknown_parameter(keyword));
        }
    }
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(args: &str) -> Result<Command, ParseError> {
    let rest = strip_prefix_ci(args, "TO:")
        .ok_or(ParseError::Syntax("Syntax: RCPT TO:<address>"))?
        .trim_start_matches(' ');
    let (path, rest) = parse_path(rest, PathKind::Forward).ok_or(ParseError::BadRecipient)?;
    let to = path.ok_or(ParseError::BadRecipient)?;
    // The syntax of every parameter is checked first, so that a malformed
    // one is reported as 501 rather than as an unsupported 555.
    let params = esmtp_params(rest, ParseError::BadRecipient)?.collect::<Result<Vec<_>, _>>()?;
    if let Some((keyword, _)) = params.first() {
        return Err(unknown_parameter(keyword));
    }
    Ok(Command::Rcpt {
        to,
        params: RcptParams {},
    })
}

fn parse_bdat(args: &str) -> Result<Command, ParseError> {
    const USAGE: &str = "Syntax: BDAT size [LAST]";
    let mut words = args.split(' ').filter(|w| !w.is_empty());
    let size = words.next().ok_or(ParseError::Syntax(USAGE))?;
    // 20 digits is the most that can fit a u64; the parse still catches
    // the 20-digit values above u64::MAX.
    if size.len() > 20 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::InvalidChunkSize);
    }
    let size = size.parse().map_err(|_| ParseError::InvalidChunkSize)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(ParseError::Syntax(USAGE)),
    };
    if words.next().is_some() {
        return Err(ParseError::Syntax(USAGE));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_size(value: Option<&str>) -> Result<u64, ParseError> {
    let value = value.ok_or(ParseError::InvalidSize)?;
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::InvalidSize);
    }
    // Only overflow can fail now: such a size is over any limit anyway.
    Ok(value.parse().unwrap_or(u64::MAX))
}

fn unknown_parameter(keyword: &str) -> ParseError {
    // Keywords are validated ASCII, so byte truncation is a char boundary.
    let keyword = &keyword[..keyword.len().min(64)];
    ParseError::UnknownParameter(keyword.to_ascii_uppercase())
}

type Param<'a> = Result<(&'a str, Option<&'a str>), ParseError>;

/// Splits what follows the closing `>` of a path into `esmtp-param`s
/// (RFC 5321 §4.1.2), checking the syntax of each as it goes. `bad_path` is
/// the error when something is glued to the `>`.
fn esmtp_params(rest: &str, bad_path: ParseError) -> Result<impl Iterator<Item = Param<'_>>, ParseError> {
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(bad_path);
    }
    Ok(rest.split(' ').filter(|p| !p.is_empty()).map(|param| {
        let (keyword, value) = match param.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (param, None),
        };
        // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
        let keyword_ok = keyword.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && keyword.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        // esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 (RFC 6531 §3.3);
        // SP and controls cannot occur here any more, TAB still can.
        let value_ok = value.is_none_or(|v| !v.is_empty() && v.bytes().all(|b| b > b' ' && b != b'='));
        if keyword_ok && value_ok {
            Ok((keyword, value))
        } else {
            Err(ParseError::Syntax("Invalid command parameter syntax"))
        }
    }))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PathKind {
    /// `MAIL FROM:`: `<>` allowed.
    Reverse,
    /// `RCPT TO:`: the bare `<postmaster>` allowed.
    Forward,
}

/// Parses `Path` (or `<>` / `<postmaster>` where allowed) at the start of
/// `s`; returns the address (`None` for `<>`) and what follows the `>`.
fn parse_path(s: &str, kind: PathKind) -> Option<(Option<Address>, &str)> {
    let mut c = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    if !c.eat(b'<') {
        return None;
    }
    if c.eat(b'>') {
        return (kind == PathKind::Reverse).then_some((None, &s[c.i..]));
    }
    // A-d-l: a source route, accepted and ignored (RFC 5321 §4.1.1.3 and
    // Appendix C: "servers MUST be prepared to encounter" it).
    let routed = c.peek() == Some(b'@');
    if routed {
        loop {
            if !c.eat(b'@') {
                return None;
            }
            domain(&mut c)?;
            if c.eat(b':') {
                break;
            }
            if !c.eat(b',') {
                return None;
            }
        }
    }
    let local_start = c.i;
    let quoted = c.peek() == Some(b'"');
    if quoted {
        quoted_string(&mut c)?;
    } else {
        dot_string(&mut c)?;
    }
    let local = &s[local_start..c.i];
    if kind == PathKind::Forward
        && !routed
        && !quoted
        && c.peek() == Some(b'>')
        && local.eq_ignore_ascii_case("postmaster")
    {
        c.i += 1;
        return Some((Some(Address::postmaster()), &s[c.i..]));
    }
    if !c.eat(b'@') {
        return None;
    }
    let domain_start = c.i;
    if c.peek() == Some(b'[') {
        address_literal(&mut c)?;
    } else {
        domain(&mut c)?;
    }
    let domain = &s[domain_start..c.i];
    if !c.eat(b'>') {
        return None;
    }
    let address = Address {
        local: local.to_owned(),
        domain: domain.to_owned(),
    };
    Some((Some(address), &s[c.i..]))
}

/// A byte cursor over a `str`. It only ever stops on ASCII bytes, because
/// every rule below consumes non-ASCII bytes (UTF-8 sequences) whole, so
/// its positions are always char boundaries of the `str`.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.i += 1;
        }
        hit
    }

    /// Advances over bytes matching `f`; returns how many.
    fn skip_while(&mut self, f: impl Fn(u8) -> bool) -> usize {
        let n = self.s[self.i..].iter().take_while(|&&b| f(b)).count();
        self.i += n;
        n
    }
}

/// `atext` (RFC 5322 §3.2.3) extended with UTF-8 (RFC 6531 §3.3).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// `Dot-string = Atom *("." Atom)`: no leading, trailing or double dot.
fn dot_string(c: &mut Cursor<'_>) -> Option<()> {
    loop {
        if c.skip_while(is_atext) == 0 {
            return None;
        }
        if !c.eat(b'.') {
            return Some(());
        }
    }
}

/// `Quoted-string = DQUOTE *QcontentSMTP DQUOTE`.
fn quoted_string(c: &mut Cursor<'_>) -> Option<()> {
    if !c.eat(b'"') {
        return None;
    }
    loop {
        match c.peek()? {
            b'"' => {
                c.i += 1;
                return Some(());
            }
            // quoted-pairSMTP = %d92 %d32-126
            b'\\' => {
                c.i += 1;
                if !(32..=126).contains(&c.peek()?) {
                    return None;
                }
                c.i += 1;
            }
            // qtextSMTP = %d32-33 / %d35-91 / %d93-126 / UTF8-non-ascii
            32..=126 | 0x80.. => c.i += 1,
            _ => return None,
        }
    }
}

/// `Domain = sub-domain *("." sub-domain)`, sub-domain being a letter-digit-
/// hyphen label not starting or ending with a hyphen, or a U-label (RFC 6531
/// §3.3, whose IDNA validity is left to whoever resolves it).
fn domain(c: &mut Cursor<'_>) -> Option<()> {
    loop {
        let start = c.i;
        if c.skip_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80) == 0 {
            return None;
        }
        let label = &c.s[start..c.i];
        if label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            return None;
        }
        if !c.eat(b'.') {
            return Some(());
        }
    }
}

/// `address-literal = "[" ( IPv4 / "IPv6:" IPv6 / General ) "]"`.
///
/// General-address-literals need an IANA-registered tag and IPv6 is the
/// only one there is, so any other tag is refused.
fn address_literal(c: &mut Cursor<'_>) -> Option<()> {
    if !c.eat(b'[') {
        return None;
    }
    let start = c.i;
    // dcontent = %d33-90 / %d94-126
    c.skip_while(|b| matches!(b, 33..=90 | 94..=126));
    let content = std::str::from_utf8(&c.s[start..c.i]).ok()?;
    if !c.eat(b']') {
        return None;
    }
    let valid = match content.split_once(':') {
        Some((tag, ip)) => tag.eq_ignore_ascii_case("IPv6") && ip.parse::<Ipv6Addr>().is_ok(),
        None => is_ipv4_literal(content),
    };
    valid.then_some(())
}

/// `IPv4-address-literal = Snum 3("." Snum)`, Snum being 1 to 3 digits
/// worth 0..=255. Written out because `Ipv4Addr`'s parser refuses leading
/// zeros, which Snum allows.
fn is_ipv4_literal(s: &str) -> bool {
    let mut count = 0;
    for part in s.split('.') {
        count += 1;
        if part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|b| b.is_ascii_digit())
            || part.parse::<u16>().map_or(true, |n| n > 255)
        {
            return false;
        }
    }
    count == 4
}

#[cfg(test)]
mod tests {
    use super::super::reply::EnhancedCode;
    use super::*;

    fn addr(local: &str, domain: &str) -> Address {
        Address {
            local: local.into(),
            domain: domain.into(),
        }
    }

    fn mail(local: &str, domain: &str) -> Command {
        Command::Mail {
            from: ReversePath::Path(addr(local, domain)),
            params: MailParams::default(),
        }
    }

    fn rcpt(local: &str, domain: &str) -> Command {
        Command::Rcpt {
            to: addr(local, domain),
            params: RcptParams {},
        }
    }

    fn parse(line: &str) -> Result<Command, ParseError> {
        parse_command(line.as_bytes())
    }

    #[test]
    fn simple_verbs_any_case() {
        let table: &[(&str, Command)] = &[
            ("EHLO client.example", Command::Ehlo("client.example".into())),
            ("ehlo [192.0.2.1]", Command::Ehlo("[192.0.2.1]".into())),
            ("HeLo x", Command::Helo("x".into())),
            ("DATA", Command::Data),
            ("data", Command::Data),
            ("RSET", Command::Rset),
            ("RSET  \t", Command::Rset),
            ("NOOP", Command::Noop),
            ("NOOP anything at all", Command::Noop),
            ("QUIT", Command::Quit),
            ("VRFY someone", Command::Vrfy("someone".into())),
            ("EXPN list", Command::Expn("list".into())),
            ("HELP", Command::Help(None)),
            ("HELP MAIL", Command::Help(Some("MAIL".into()))),
            ("STARTTLS", Command::StartTls),
            ("starttls", Command::StartTls),
            ("AUTH PLAIN AGFAAGI=", Command::Auth("PLAIN AGFAAGI=".into())),
            ("AUTH", Command::Auth(String::new())),
            ("BDAT 0 LAST", Command::Bdat { size: 0, last: true }),
            (
                "BDAT 1000",
                Command::Bdat {
                    size: 1000,
                    last: false,
                },
            ),
            ("bdat 12 last", Command::Bdat { size: 12, last: true }),
            (
                "BDAT 18446744073709551615",
                Command::Bdat {
                    size: u64::MAX,
                    last: false,
                },
            ),
        ];
        for (line, expected) in table {
            assert_eq!(parse(line).as_ref(), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn mail_and_rcpt_paths() {
        let table: &[(&str, Command)] = &[
            ("MAIL FROM:<a@b.example>", mail("a", "b.example")),
            ("MAIL FROM: <a@b.example>", mail("a", "b.example")),
            ("mail from:<A.B+c@Example.COM>", mail("A.B+c", "Example.COM")),
            (
                "MAIL FROM:<>",
                Command::Mail {
                    from: ReversePath::Null,
                    params: MailParams::default(),
                },
            ),
            ("RCPT TO:<u@x.example>", rcpt("u", "x.example")),
            ("RCPT TO: <u@x.example>", rcpt("u", "x.example")),
            ("RCPT TO:<postmaster>", rcpt("postmaster", "")),
            ("rcpt to:<PostMaster>", rcpt("postmaster", "")),
            ("RCPT TO:<postmaster@x.example>", rcpt("postmaster", "x.example")),
            // Source routes are dropped.
            (
                "RCPT TO:<@a.example,@b.example:u@c.example>",
                rcpt("u", "c.example"),
            ),
            ("MAIL FROM:<@a.example:u@c.example>", mail("u", "c.example")),
            // Quoted local parts keep their quotes.
            ("RCPT TO:<\"a b\"@x.example>", rcpt("\"a b\"", "x.example")),
            ("RCPT TO:<\"a@b\"@x.example>", rcpt("\"a@b\"", "x.example")),
            ("RCPT TO:<\"a>b\"@x.example>", rcpt("\"a>b\"", "x.example")),
            ("RCPT TO:<\"a\\\"b\"@x.example>", rcpt("\"a\\\"b\"", "x.example")),
            ("RCPT TO:<\"\"@x.example>", rcpt("\"\"", "x.example")),
            // Address literals.
            ("RCPT TO:<u@[192.0.2.1]>", rcpt("u", "[192.0.2.1]")),
            ("RCPT TO:<u@[010.0.2.255]>", rcpt("u", "[010.0.2.255]")),
            ("RCPT TO:<u@[IPv6:2001:db8::1]>", rcpt("u", "[IPv6:2001:db8::1]")),
            (
                "RCPT TO:<u@[ipv6:::ffff:192.0.2.1]>",
                rcpt("u", "[ipv6:::ffff:192.0.2.1]"),
            ),
            // Non-ASCII is the session's business (SMTPUTF8).
            ("RCPT TO:<ünï@bücher.example>", rcpt("ünï", "bücher.example")),
            ("RCPT TO:<\"ü x\"@x.example>", rcpt("\"ü x\"", "x.example")),
            ("RCPT TO:<a-b@1-2.x-y.example>", rcpt("a-b", "1-2.x-y.example")),
            (
                "RCPT TO:<!#$%&'*+-/=?^_`{|}~@x>",
                rcpt("!#$%&'*+-/=?^_`{|}~", "x"),
            ),
            // Trailing white space is forgiven.
            ("RCPT TO:<u@x> ", rcpt("u", "x")),
        ];
        for (line, expected) in table {
            assert_eq!(parse(line).as_ref(), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn mail_parameters() {
        let with = |size, body, smtputf8| Command::Mail {
            from: ReversePath::Path(addr("a", "b")),
            params: MailParams { size, body, smtputf8 },
        };
        let table: &[(&str, Command)] = &[
            ("MAIL FROM:<a@b> SIZE=1000", with(Some(1000), None, false)),
            ("MAIL FROM:<a@b> size=0", with(Some(0), None, false)),
            (
                "MAIL FROM:<a@b> SIZE=99999999999999999999999",
                with(Some(u64::MAX), None, false),
            ),
            (
                "MAIL FROM:<a@b> BODY=7BIT",
                with(None, Some(Body::SevenBit), false),
            ),
            (
                "MAIL FROM:<a@b> body=8bitmime",
                with(None, Some(Body::EightBitMime), false),
            ),
            ("MAIL FROM:<a@b> SMTPUTF8", with(None, None, true)),
            (
                "MAIL FROM:<a@b>  SMTPUTF8  BODY=8BITMIME SIZE=5",
                with(Some(5), Some(Body::EightBitMime), true),
            ),
        ];
        for (line, expected) in table {
            assert_eq!(parse(line).as_ref(), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn errors_map_to_exact_replies() {
        let table: &[(&[u8], u16, EnhancedCode)] = &[
            // Control bytes and encoding.
            (b"NOOP\0", 500, EnhancedCode(5, 5, 2)),
            (b"MAIL FROM:<a\0@b>", 500, EnhancedCode(5, 5, 2)),
            (b"NO\rOP", 500, EnhancedCode(5, 5, 2)),
            (b"NOOP \x7f", 500, EnhancedCode(5, 5, 2)),
            (b"HELO \xff\xfe", 500, EnhancedCode(5, 5, 2)),
            // Unknown verbs.
            (b"FOO", 500, EnhancedCode(5, 5, 2)),
            (b"", 500, EnhancedCode(5, 5, 2)),
            (b" NOOP", 500, EnhancedCode(5, 5, 2)),
            (b"MAILFROM:<a@b>", 500, EnhancedCode(5, 5, 2)),
            (b"STARTTLSX", 500, EnhancedCode(5, 5, 2)),
            // Missing or extra arguments.
            (b"EHLO", 501, EnhancedCode(5, 5, 4)),
            (b"EHLO   ", 501, EnhancedCode(5, 5, 4)),
            (b"HELO", 501, EnhancedCode(5, 5, 4)),
            (b"DATA x", 501, EnhancedCode(5, 5, 4)),
            (b"RSET x", 501, EnhancedCode(5, 5, 4)),
            (b"QUIT now", 501, EnhancedCode(5, 5, 4)),
            (b"STARTTLS x", 501, EnhancedCode(5, 5, 4)),
            (b"VRFY", 501, EnhancedCode(5, 5, 4)),
            (b"EXPN", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL TO:<a@b>", 501, EnhancedCode(5, 5, 4)),
            (b"RCPT FROM:<a@b>", 501, EnhancedCode(5, 5, 4)),
            (b"RCPT", 501, EnhancedCode(5, 5, 4)),
            // Bad sender paths.
            (b"MAIL FROM:a@b", 501, EnhancedCode(5, 1, 7)),
            (b"MAIL FROM:<a@b", 501, EnhancedCode(5, 1, 7)),
            (b"MAIL FROM:<a b@c>", 501, EnhancedCode(5, 1, 7)),
            (b"MAIL FROM:< a@b>", 501, EnhancedCode(5, 1, 7)),
            (b"MAIL FROM:<@b>", 501, EnhancedCode(5, 1, 7)),
            (b"MAIL FROM:<ab>", 501, EnhancedCode(5, 1, 7)),
            (b"MAIL FROM:<postmaster>", 501, EnhancedCode(5, 1, 7)),
            (b"MAIL FROM:<a@b>x", 501, EnhancedCode(5, 1, 7)),
            (b"MAIL FROM:<a@b>SIZE=1", 501, EnhancedCode(5, 1, 7)),
            // Bad recipient paths.
            (b"RCPT TO:<>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:u@x", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@x", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<@x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@@x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<a@b@c>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<.u@x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u.@x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u..v@x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@x.>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@.x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@x..y>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@-x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@x->", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@x_y>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@x\ty>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u(c)@x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<\"unterminated@x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<\"a\"b@x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<\"a\tb\"@x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@[1.2.3]>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@[1.2.3.256]>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@[1.2.3.4.5]>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@[1.2.3.0004]>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@[IPv6:zz::1]>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@[IPv6:2001:db8::1%eth0]>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@[x-tag:stuff]>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<u@[1.2.3.4>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<@a,b:u@x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<@a:postmaster>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<@a;u@x>", 501, EnhancedCode(5, 1, 3)),
            (b"RCPT TO:<\"postmaster\">", 501, EnhancedCode(5, 1, 3)),
            // ESMTP parameters.
            (b"MAIL FROM:<a@b> SIZE=abc", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> SIZE=-1", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> SIZE", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> SIZE=", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> SIZE=1 SIZE=2", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> BODY=BINARYMIME", 555, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> BODY=8BIT", 555, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> BODY", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> SMTPUTF8=yes", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> SMTPUTF8 SMTPUTF8", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> AUTH=<>", 555, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> X-FOO", 555, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> -X", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> A=B=C", 501, EnhancedCode(5, 5, 4)),
            (b"MAIL FROM:<a@b> A=\tB", 501, EnhancedCode(5, 5, 4)),
            (b"RCPT TO:<u@x> NOTIFY=NEVER", 555, EnhancedCode(5, 5, 4)),
            (b"RCPT TO:<u@x> ORCPT=rfc822;u@x", 555, EnhancedCode(5, 5, 4)),
            (b"RCPT TO:<u@x> =x", 501, EnhancedCode(5, 5, 4)),
            // BDAT.
            (b"BDAT", 501, EnhancedCode(5, 5, 4)),
            (b"BDAT x", 501, EnhancedCode(5, 5, 4)),
            (b"BDAT -1", 501, EnhancedCode(5, 5, 4)),
            (b"BDAT 1 FIRST", 501, EnhancedCode(5, 5, 4)),
            (b"BDAT 1 LAST x", 501, EnhancedCode(5, 5, 4)),
            (b"BDAT 18446744073709551616", 501, EnhancedCode(5, 5, 4)),
            (b"BDAT 000000000000000000001", 501, EnhancedCode(5, 5, 4)),
        ];
        for &(line, code, enhanced) in table {
            let err = parse_command(line).expect_err(&String::from_utf8_lossy(line));
            let reply = err.reply();
            assert_eq!(
                (reply.code, reply.enhanced),
                (code, enhanced),
                "{:?} -> {err:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            ParseError::InvalidCharacters.reply().to_string(),
            "500 5.5.2 Invalid characters in command"
        );
        assert_eq!(
            ParseError::UnknownCommand.reply().to_string(),
            "500 5.5.2 Command unrecognized"
        );
        assert_eq!(
            parse("MAIL FROM:<a@b> x-foo=1").unwrap_err().reply().to_string(),
            "555 5.5.4 Unsupported parameter X-FOO"
        );
    }

    #[test]
    fn address_helpers() {
        let a = addr("User", "Example.COM");
        assert!(a.domain_eq("example.com"));
        assert!(a.domain_eq("EXAMPLE.com"));
        assert!(!a.domain_eq("example.com."));
        assert!(!addr("u", "example.com.").domain_eq("example.com"));
        assert!(!a.domain_eq("ample.com"));
        assert_eq!(a.to_string(), "User@Example.COM");
        assert_eq!(Address::postmaster().to_string(), "postmaster");
        assert_eq!(addr("\"a b\"", "x").to_string(), "\"a b\"@x");
        assert!(a.is_ascii());
        assert!(!addr("ü", "x").is_ascii());
        assert!(!addr("u", "ü").is_ascii());
        assert!(ReversePath::Null.is_ascii());
        assert!(!ReversePath::Path(addr("ü", "x")).is_ascii());
    }

    #[test]
    fn auth_is_redacted_in_debug() {
        let cmd = parse("AUTH PLAIN c2VjcmV0").unwrap();
        assert!(!format!("{cmd:?}").contains("c2VjcmV0"));
    }
}

//! Parsing of one POP3 command line (RFC 1939 §3, RFC 2449, RFC 2595,
//! RFC 5034).
//!
//! The parser is deliberately state-free: whether a command is allowed at
//! this point of the dialogue is the session's business, so that a command
//! in the wrong state gets "not valid now" rather than "unknown".

use std::fmt;

/// One parsed POP3 command.
///
/// `Debug` is written by hand so that credentials (`PASS`, the `AUTH`
/// initial response) never end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name` (RFC 1939 §7).
    User(String),
    /// `PASS string` (RFC 1939 §7): everything after the first space,
    /// verbatim, because passwords may contain spaces.
    Pass(String),
    /// `APOP name digest` (RFC 1939 §7). Recognised only so that it can be
    /// refused explicitly; its arguments are not kept.
    Apop,
    /// `AUTH [mechanism [initial-response]]` (RFC 5034).
    Auth {
        /// The SASL mechanism, upper-cased: RFC 4422 names are upper case
        /// and clients are not consistent about it. `None` is the bare
        /// `AUTH` that asks for the mechanism list.
        mechanism: Option<String>,
        /// The initial response exactly as sent (base64, or `=` for an
        /// empty one, RFC 5034 §4).
        initial: Option<String>,
    },
    /// `STAT` (RFC 1939 §5).
    Stat,
    /// `LIST [msg]` (RFC 1939 §5).
    List(Option<u32>),
    /// `RETR msg` (RFC 1939 §5).
    Retr(u32),
    /// `DELE msg` (RFC 1939 §5).
    Dele(u32),
    /// `NOOP` (RFC 1939 §5).
    Noop,
    /// `RSET` (RFC 1939 §5).
    Rset,
    /// `QUIT` (RFC 1939 §4 and §6).
    Quit,
    /// `TOP msg n` (RFC 1939 §7): message number, then body line count
    /// (which may be 0).
    Top(u32, u32),
    /// `UIDL [msg]` (RFC 1939 §7).
    Uidl(Option<u32>),
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `STLS` (RFC 2595 §4).
    Stls,
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::User(name) => f.debug_tuple("User").field(name).finish(),
            Command::Pass(_) => f.debug_tuple("Pass").field(&"<redacted>").finish(),
            Command::Apop => f.write_str("Apop"),
            Command::Auth { mechanism, initial } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field("initial", &initial.as_ref().map(|_| "<redacted>"))
                .finish(),
            Command::Stat => f.write_str("Stat"),
            Command::List(n) => f.debug_tuple("List").field(n).finish(),
            Command::Retr(n) => f.debug_tuple("Retr").field(n).finish(),
            Command::Dele(n) => f.debug_tuple("Dele").field(n).finish(),
            Command::Noop => f.write_str("Noop"),
            Command::Rset => f.write_str("Rset"),
            Command::Quit => f.write_str("Quit"),
            Command::Top(n, lines) => f.debug_tuple("Top").field(n).field(lines).finish(),
            Command::Uidl(n) => f.debug_tuple("Uidl").field(n).finish(),
            Command::Capa => f.write_str("Capa"),
            Command::Stls => f.write_str("Stls"),
        }
    }
}

/// Why a command line could not be parsed.
///
/// The `Display` text is what the session sends after `-ERR `, so it is
/// phrased for the client and never echoes the client's input back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line was empty or held only spaces.
    #[error("Empty command")]
    Empty,
    /// The keyword is not a POP3 command this server knows.
    #[error("Unknown command")]
    UnknownCommand,
    /// The line holds a NUL or another ASCII control character.
    #[error("Invalid characters in command")]
    ControlCharacter,
    /// The line is not valid UTF-8.
    #[error("Command is not valid UTF-8")]
    InvalidUtf8,
    /// A required argument is absent.
    #[error("Missing argument")]
    MissingArgument,
    /// More arguments than the command takes.
    #[error("Too many arguments")]
    TooManyArguments,
    /// A message number that is not 1-based decimal or does not fit in 32
    /// bits.
    #[error("Invalid message number")]
    InvalidMessageNumber,
    /// The `TOP` line count is not decimal or does not fit in 32 bits.
    #[error("Invalid line count")]
    InvalidLineCount,
}

/// Parses one complete command line, without its CRLF.
///
/// Keywords are case-insensitive. Message numbers are 1-based decimal:
/// `0`, non-digits (including a sign) and values beyond `u32` are syntax
/// errors. `PASS` takes the rest of the line verbatim, since passwords may
/// contain spaces (RFC 1939 §7, PASS note). Other arguments are separated by
/// one or more spaces; trailing spaces are tolerated because some clients
/// send them.
///
/// # Errors
///
/// A [`ParseError`] saying what is wrong with the line; its `Display` text
/// is meant for the `-ERR` response.
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    // Checked before anything else so that a NUL or a stray CR can never
    // reach a password check, a user name or a log line, whatever the
    // command.
    if line.iter().any(u8::is_ascii_control) {
        return Err(ParseError::ControlCharacter);
    }
    let line = std::str::from_utf8(line).map_err(|_| ParseError::InvalidUtf8)?;
    if line.bytes().all(|b| b == b' ') {
        return Err(ParseError::Empty);
    }
    let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
    // Every POP3 keyword is 3 or 4 characters (RFC 2449 §3); checking the
    // length first keeps the upper-casing below to a tiny allocation.
    if !(3..=4).contains(&keyword.len()) {
        return Err(ParseError::UnknownCommand);
    }
    let keyword = keyword.to_ascii_uppercase();

    if keyword == "PASS" {
        if rest.is_empty() {
            return Err(ParseError::MissingArgument);
        }
        return Ok(Command::Pass(rest.to_owned()));
    }

    let mut args = rest.split(' ').filter(|arg| !arg.is_empty());
    let command = match keyword.as_str() {
        "USER" => Command::User(required(args.next())?.to_owned()),
        "APOP" => {
            // Never supported, so its arguments are not worth validating:
            // the session refuses it whatever they are.
            return Ok(Command::Apop);
        }
        "AUTH" => Command::Auth {
            mechanism: args.next().map(str::to_ascii_uppercase),
            initial: args.next().map(str::to_owned),
        },
        "STAT" => Command::Stat,
        "LIST" => Command::List(args.next().map(message_number).transpose()?),
        "RETR" => Command::Retr(message_number(required(args.next())?)?),
        "DELE" => Command::Dele(message_number(required(args.next())?)?),
        "NOOP" => Command::Noop,
        "RSET" => Command::Rset,
        "QUIT" => Command::Quit,
        "TOP" => {
            let number = message_number(required(args.next())?)?;
            let lines = line_count(required(args.next())?)?;
            Command::Top(number, lines)
        }
        "UIDL" => Command::Uidl(args.next().map(message_number).transpose()?),
        "CAPA" => Command::Capa,
        "STLS" => Command::Stls,
        _ => return Err(ParseError::UnknownCommand),
    };
    if args.next().is_some() {
        return Err(ParseError::TooManyArguments);
    }
    Ok(command)
}

fn required(arg: Option<&str>) -> Result<&str, ParseError> {
    arg.ok_or(ParseError::MissingArgument)
}

/// Parses an unsigned decimal number made of ASCII digits only.
///
/// `u32::from_str` alone would also accept a leading `+`, which RFC 1939's
/// grammar does not allow.
fn decimal(arg: &str) -> Option<u32> {
    if arg.bytes().all(|b| b.is_ascii_digit()) {
        arg.parse().ok()
    } else {
        None
    }
}

fn message_number(arg: &str) -> Result<u32, ParseError> {
    decimal(arg)
        .filter(|&n| n != 0)
        .ok_or(ParseError::InvalidMessageNumber)
}

fn line_count(arg: &str) -> Result<u32, ParseError> {
    decimal(arg).ok_or(ParseError::InvalidLineCount)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(mechanism: Option<&str>, initial: Option<&str>) -> Command {
        Command::Auth {
            mechanism: mechanism.map(str::to_owned),
            initial: initial.map(str::to_owned),
        }
    }

    #[test]
    fn parses_every_command() {
        let cases: &[(&[u8], Command)] = &[
            (b"USER alice", Command::User("alice".into())),
            (b"user alice", Command::User("alice".into())),
            (b"USER alice ", Command::User("alice".into())),
            (b"PASS secret", Command::Pass("secret".into())),
            (b"PASS two words ", Command::Pass("two words ".into())),
            (b"PASS  leading", Command::Pass(" leading".into())),
            (b"pAsS z\xc3\xb3\xc5\x82w", Command::Pass("zółw".into())),
            (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb", Command::Apop),
            (b"APOP", Command::Apop),
            (b"AUTH", auth(None, None)),
            (b"AUTH plain", auth(Some("PLAIN"), None)),
            (b"AUTH PLAIN AGEAYg==", auth(Some("PLAIN"), Some("AGEAYg=="))),
            (b"AUTH PLAIN =", auth(Some("PLAIN"), Some("="))),
            (b"STAT", Command::Stat),
            (b"stat", Command::Stat),
            (b"LIST", Command::List(None)),
            (b"LIST 2", Command::List(Some(2))),
            (b"LIST  2 ", Command::List(Some(2))),
            (b"LIST 007", Command::List(Some(7))),
            (b"RETR 1", Command::Retr(1)),
            (b"RETR 4294967295", Command::Retr(u32::MAX)),
            (b"DELE 3", Command::Dele(3)),
            (b"NOOP", Command::Noop),
            (b"RSET", Command::Rset),
            (b"QUIT", Command::Quit),
            (b"Quit", Command::Quit),
            (b"TOP 1 0", Command::Top(1, 0)),
            (b"top 2 10", Command::Top(2, 10)),
            (b"UIDL", Command::Uidl(None)),
            (b"UIDL 1", Command::Uidl(Some(1))),
            (b"CAPA", Command::Capa),
            (b"STLS", Command::Stls),
        ];
        for (line, expected) in cases {
            assert_eq!(
                parse_command(line).as_ref(),
                Ok(expected),
                "{}",
                line.escape_ascii()
            );
        }
    }

    #[test]
    fn rejects_malformed_lines() {
        use ParseError::*;
        let cases: &[(&[u8], ParseError)] = &[
            (b"", Empty),
            (b"   ", Empty),
            (b"XYZZY", UnknownCommand),
            (b"LAST", UnknownCommand),
            (b"NO", UnknownCommand),
            (b" STAT", UnknownCommand),
            (b"STAT\0", ControlCharacter),
            (b"PASS se\0cret", ControlCharacter),
            (b"USER a\tb", ControlCharacter),
            (b"NOOP\r", ControlCharacter),
            (b"NOOP\x7f", ControlCharacter),
            (b"PASS \xff\xfe", InvalidUtf8),
            (b"USER", MissingArgument),
            (b"PASS", MissingArgument),
            (b"PASS ", MissingArgument),
            (b"RETR", MissingArgument),
            (b"DELE", MissingArgument),
            (b"TOP 1", MissingArgument),
            (b"TOP", MissingArgument),
            (b"USER a b", TooManyArguments),
            (b"STAT 1", TooManyArguments),
            (b"NOOP x", TooManyArguments),
            (b"LIST 1 2", TooManyArguments),
            (b"TOP 1 2 3", TooManyArguments),
            (b"AUTH PLAIN abc def", TooManyArguments),
            (b"RETR 0", InvalidMessageNumber),
            (b"RETR 00", InvalidMessageNumber),
            (b"RETR -1", InvalidMessageNumber),
            (b"RETR +1", InvalidMessageNumber),
            (b"RETR x", InvalidMessageNumber),
            (b"RETR 1x", InvalidMessageNumber),
            (b"RETR 4294967296", InvalidMessageNumber),
            (b"LIST 0", InvalidMessageNumber),
            (b"UIDL abc", InvalidMessageNumber),
            (b"DELE 99999999999999999999", InvalidMessageNumber),
            (b"TOP 0 1", InvalidMessageNumber),
            (b"TOP 1 x", InvalidLineCount),
            (b"TOP 1 -1", InvalidLineCount),
            (b"TOP 1 4294967296", InvalidLineCount),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_command(line), Err(*expected), "{}", line.escape_ascii());
        }
    }

    #[test]
    fn debug_redacts_credentials() {
        let pass = format!("{:?}", Command::Pass("hunter2".into()));
        assert!(!pass.contains("hunter2"), "{pass}");
        let auth = format!("{:?}", auth(Some("PLAIN"), Some("AGFsaWNlAGh1bnRlcjI=")));
        assert!(!auth.contains("AGFsaWNl"), "{auth}");
        assert!(auth.contains("PLAIN"), "{auth}");
    }
}

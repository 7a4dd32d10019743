//! SASL for the servers' `AUTH` commands: the PLAIN (RFC 4616) and LOGIN
//! (draft-murchison-sasl-login) mechanisms, decoded from the base64 lines
//! that carry them (RFC 4954 for SMTP, RFC 5034 for POP3).
//!
//! Pure, like the protocol cores that use it: bytes in, credentials out. The
//! framing around the exchange differs between the protocols (SMTP sends
//! `334 <challenge>`, POP3 `+ <challenge>`; the line lengths and the error
//! replies are theirs), so this module stops at the mechanism: an
//! [`Exchange`] says which challenge to send next and turns the client's
//! lines into [`Credentials`]. Verifying them is the driver's business.
//!
//! Both mechanisms send the password in clear inside the base64, which is
//! why the cores offer them only under TLS (or on explicit configuration).

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Base64 for SASL responses. The RFCs ask for padded base64, but some
/// clients drop the padding; accepting both lets no invalid credential
/// through, since the mechanism's structure is checked after decoding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// LOGIN's first challenge, base64 of `Username:` (what every
/// implementation sends, and some clients check).
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// LOGIN's second challenge, base64 of `Password:`.
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// A supported SASL mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616: one message `[authzid] NUL authcid NUL passwd`.
    Plain,
    /// The obsolete but ubiquitous LOGIN: user name, then password, each
    /// answering a challenge. Outlook and many appliances know nothing else.
    Login,
}

impl Mechanism {
    /// The mechanism named `name`, case-insensitively (RFC 4422 §3.1 names
    /// are upper case, clients are not consistent); `None` if unsupported.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    /// The registered name, `PLAIN` or `LOGIN`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// What a successful exchange yields. `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The authorization identity: empty (act as `username`) or equal to
    /// `username`; anything else is refused during decoding, since acting
    /// as another user (proxy authorization) is not supported.
    pub authzid: String,
    /// The authentication identity: not empty, no control characters.
    pub username: String,
    /// The password: not empty.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why an exchange failed before any password was checked. The protocol
/// layers map each to their own reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client answered a challenge with `*` (RFC 4954 §4, RFC 5034 §4).
    #[error("Authentication cancelled")]
    Cancelled,
    /// The line is not base64.
    #[error("Invalid base64 data")]
    BadBase64,
    /// The decoded message does not have the mechanism's structure: not
    /// exactly two NULs for PLAIN, not UTF-8, an empty user name or
    /// password (RFC 4616's `1*SAFE`), or a control character in the user
    /// name (it ends up in logs).
    #[error("Malformed authentication data")]
    Malformed,
    /// PLAIN's authorization identity names someone else.
    #[error("Authorization identity must be empty or match the user")]
    AuthzidMismatch,
}

/// The next move of an exchange.
#[derive(Debug)]
pub enum Step {
    /// Send [`Exchange::challenge`] and feed the client's next line to
    /// [`Exchange::respond`].
    Challenge(Exchange),
    /// The exchange is complete: verify these.
    Done(Credentials),
    /// The exchange is over, unsuccessfully.
    Failed(SaslError),
}

/// An exchange waiting for the client's next line.
#[derive(Debug)]
pub struct Exchange {
    state: State,
}

enum State {
    /// PLAIN without an initial response: the whole message is next.
    Plain,
    /// LOGIN: the user name is next.
    LoginUser,
    /// LOGIN: the password is next.
    LoginPassword(String),
}

impl fmt::Debug for State {
    // The user name is harmless, but a half-finished exchange in a log
    // line is noise; the state's name is what a test failure needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Plain => "Plain",
            State::LoginUser => "LoginUser",
            State::LoginPassword(_) => "LoginPassword",
        })
    }
}

impl Exchange {
    /// Starts `mechanism`, with the initial response if the `AUTH` command
    /// carried one: its text exactly as sent, `=` standing for an empty
    /// response (RFC 4954 §4, RFC 5034 §4).
    pub fn start(mechanism: Mechanism, initial: Option<&[u8]>) -> Step {
        let initial = initial.map(|i| if i == b"=" { &[][..] } else { i });
        let exchange = Exchange {
            state: match mechanism {
                Mechanism::Plain => State::Plain,
                Mechanism::Login => State::LoginUser,
            },
        };
        match initial {
            Some(response) => exchange.respond(response),
            None => Step::Challenge(exchange),
        }
    }

    /// The base64 challenge to send now (empty for PLAIN: RFC 4616 has the
    /// client speak first, and the server sends an empty challenge when it
    /// did not).
    pub fn challenge(&self) -> &'static str {
        match self.state {
            State::Plain => "",
            State::LoginUser => LOGIN_USERNAME_CHALLENGE,
            State::LoginPassword(_) => LOGIN_PASSWORD_CHALLENGE,
        }
    }

    /// Takes the client's line (without its CRLF) in answer to the current
    /// challenge. `*` cancels.
    pub fn respond(self, line: &[u8]) -> Step {
        if line == b"*" {
            return Step::Failed(SaslError::Cancelled);
        }
        let decoded = match decode_base64(line) {
            Ok(decoded) => decoded,
            Err(e) => return Step::Failed(e),
        };
        let result = match self.state {
            State::Plain => decode_plain(&decoded),
            State::LoginUser => match login_field(decoded).and_then(checked_username) {
                Ok(user) => {
                    return Step::Challenge(Exchange {
                        state: State::LoginPassword(user),
                    });
                }
                Err(e) => Err(e),
            },
            State::LoginPassword(username) => login_field(decoded).map(|password| Credentials {
                authzid: String::new(),
                username,
                password,
            }),
        };
        match result {
            Ok(credentials) => Step::Done(credentials),
            Err(e) => Step::Failed(e),
        }
    }
}

/// Decodes one base64 SASL line (padded or not; an empty line is empty).
///
/// # Errors
///
/// [`SaslError::BadBase64`].
pub fn decode_base64(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    BASE64.decode(line).map_err(|_| SaslError::BadBase64)
}

/// Decodes an RFC 4616 PLAIN message, `[authzid] NUL authcid NUL passwd`.
///
/// # Errors
///
/// [`SaslError::Malformed`] for a message that is not three UTF-8 fields,
/// an empty user name or password, or a control character in the user
/// name; [`SaslError::AuthzidMismatch`] for an authzid other than the user.
pub fn decode_plain(decoded: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let utf8 = |bytes| std::str::from_utf8(bytes).map_err(|_| SaslError::Malformed);
    let (authzid, username, password) = (utf8(authzid)?, utf8(authcid)?, utf8(password)?);
    let username = checked_username(username.to_owned())?;
    if password.is_empty() {
        return Err(SaslError::Malformed);
    }
    // Acting as another user is not supported: the store has no notion of
    // proxy rights, so only "as myself" is accepted.
    if !authzid.is_empty() && authzid != username {
        return Err(SaslError::AuthzidMismatch);
    }
    Ok(Credentials {
        authzid: authzid.to_owned(),
        username,
        password: password.to_owned(),
    })
}

/// One LOGIN field: UTF-8 and not empty. NUL is refused too: it has no
/// place in a name or password and would confuse whatever stores them.
fn login_field(decoded: Vec<u8>) -> Result<String, SaslError> {
    let field = String::from_utf8(decoded).map_err(|_| SaslError::Malformed)?;
    if field.is_empty() || field.contains('\0') {
        return Err(SaslError::Malformed);
    }
    Ok(field)
}

/// The user name ends up in logs and `Received:` headers; the command
/// parsers refuse control characters, and base64 must not be a way
/// around that.
fn checked_username(username: String) -> Result<String, SaslError> {
    if username.is_empty() || username.chars().any(char::is_control) {
        return Err(SaslError::Malformed);
    }
    Ok(username)
}

/// Base64 of `bytes`, padded: for challenges, and for tests that play the
/// client.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        encode_base64(s.as_bytes())
    }

    fn creds(authzid: &str, username: &str, password: &str) -> Credentials {
        Credentials {
            authzid: authzid.into(),
            username: username.into(),
            password: password.into(),
        }
    }

    /// Runs an exchange to its end, answering each challenge with the next
    /// line; returns the challenges sent and the outcome.
    fn run(mechanism: Mechanism, initial: Option<&str>, lines: &[&str]) -> (Vec<&'static str>, Step) {
        let mut challenges = Vec::new();
        let mut step = Exchange::start(mechanism, initial.map(str::as_bytes));
        let mut lines = lines.iter();
        while let Step::Challenge(exchange) = step {
            challenges.push(exchange.challenge());
            let Some(line) = lines.next() else {
                return (challenges, Step::Challenge(exchange));
            };
            step = exchange.respond(line.as_bytes());
        }
        assert!(lines.next().is_none(), "lines left over");
        (challenges, step)
    }

    fn outcome(step: Step) -> Result<Credentials, SaslError> {
        match step {
            Step::Done(c) => Ok(c),
            Step::Failed(e) => Err(e),
            Step::Challenge(e) => panic!("unfinished: {e:?}"),
        }
    }

    #[test]
    fn mechanism_names() {
        let table = [
            ("PLAIN", Some(Mechanism::Plain)),
            ("plain", Some(Mechanism::Plain)),
            ("Login", Some(Mechanism::Login)),
            ("CRAM-MD5", None),
            ("", None),
            ("PLAINX", None),
        ];
        for (name, expected) in table {
            assert_eq!(Mechanism::from_name(name), expected, "{name}");
        }
        assert_eq!(Mechanism::Login.name(), "LOGIN");
        assert_eq!(LOGIN_USERNAME_CHALLENGE, b64("Username:"));
        assert_eq!(LOGIN_PASSWORD_CHALLENGE, b64("Password:"));
    }

    #[test]
    fn plain_messages() {
        use SaslError::*;
        let table: &[(&[u8], Result<Credentials, SaslError>)] = &[
            (b"\0alice\0secret", Ok(creds("", "alice", "secret"))),
            (b"alice\0alice\0secret", Ok(creds("alice", "alice", "secret"))),
            (b"\0alice\0two words \0", Err(Malformed)),
            (b"\0alice\0pass word", Ok(creds("", "alice", "pass word"))),
            ("\0zółw\0hasło".as_bytes(), Ok(creds("", "zółw", "hasło"))),
            (b"bob\0alice\0secret", Err(AuthzidMismatch)),
            (b"\0\0secret", Err(Malformed)),
            (b"\0alice\0", Err(Malformed)),
            (b"alice\0secret", Err(Malformed)),
            (b"", Err(Malformed)),
            (b"\0a\x01b\0secret", Err(Malformed)),
            (b"\0a\nb\0secret", Err(Malformed)),
            (b"\0\xff\0secret", Err(Malformed)),
            (b"\0alice\0\xfe", Err(Malformed)),
        ];
        for (message, expected) in table {
            assert_eq!(&decode_plain(message), expected, "{}", message.escape_ascii());
        }
    }

    #[test]
    fn plain_exchanges() {
        let alice = b64("\0alice\0secret");
        // With an initial response: no challenge at all.
        let (challenges, step) = run(Mechanism::Plain, Some(&alice), &[]);
        assert!(challenges.is_empty());
        assert_eq!(outcome(step), Ok(creds("", "alice", "secret")));
        // Without: one empty challenge.
        let (challenges, step) = run(Mechanism::Plain, None, &[&alice]);
        assert_eq!(challenges, [""]);
        assert_eq!(outcome(step), Ok(creds("", "alice", "secret")));
        // Unpadded base64 is accepted.
        let (_, step) = run(Mechanism::Plain, Some(alice.trim_end_matches('=')), &[]);
        assert_eq!(outcome(step), Ok(creds("", "alice", "secret")));
        // "=" is an empty initial response, which PLAIN cannot use.
        let (_, step) = run(Mechanism::Plain, Some("="), &[]);
        assert_eq!(outcome(step), Err(SaslError::Malformed));
        // Cancel, bad base64, an empty line.
        for (line, error) in [
            ("*", SaslError::Cancelled),
            ("not base64!", SaslError::BadBase64),
            ("AGFsaWNl=AHNlY3JldA", SaslError::BadBase64),
            ("", SaslError::Malformed),
        ] {
            let (_, step) = run(Mechanism::Plain, None, &[line]);
            assert_eq!(outcome(step), Err(error), "{line:?}");
        }
    }

    #[test]
    fn login_exchanges() {
        let (user, pass) = (b64("alice"), b64("secret"));
        let (challenges, step) = run(Mechanism::Login, None, &[&user, &pass]);
        assert_eq!(challenges, [LOGIN_USERNAME_CHALLENGE, LOGIN_PASSWORD_CHALLENGE]);
        assert_eq!(outcome(step), Ok(creds("", "alice", "secret")));
        // The user name as initial response skips the first challenge.
        let (challenges, step) = run(Mechanism::Login, Some(&user), &[&pass]);
        assert_eq!(challenges, [LOGIN_PASSWORD_CHALLENGE]);
        assert_eq!(outcome(step), Ok(creds("", "alice", "secret")));
        let table: &[(&[&str], SaslError)] = &[
            (&["*"], SaslError::Cancelled),
            (&["YWxpY2U=", "*"], SaslError::Cancelled),
            (&["%%%"], SaslError::BadBase64),
            (&["YWxpY2U=", "%%%"], SaslError::BadBase64),
            (&[""], SaslError::Malformed),
            (&["YWxpY2U=", ""], SaslError::Malformed),
            // "a\nb" as user name, "\xff" as password, NUL in a password.
            (&["YQpi"], SaslError::Malformed),
            (&["YWxpY2U=", "/w=="], SaslError::Malformed),
            (&["YWxpY2U=", "YQBi"], SaslError::Malformed),
        ];
        for (lines, error) in table {
            let (_, step) = run(Mechanism::Login, None, lines);
            assert_eq!(outcome(step), Err(*error), "{lines:?}");
        }
        // "=" as initial response is an empty user name.
        let (_, step) = run(Mechanism::Login, Some("="), &[]);
        assert_eq!(outcome(step), Err(SaslError::Malformed));
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = format!("{:?}", creds("", "alice", "hunter2"));
        assert!(c.contains("alice") && !c.contains("hunter2"), "{c}");
        let step = Exchange::start(Mechanism::Login, Some(b64("alice").as_bytes()));
        assert!(!format!("{step:?}").contains("alice"));
    }
}

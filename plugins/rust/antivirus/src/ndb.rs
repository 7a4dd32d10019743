//! ClamAV extended body signatures (`.ndb`): `Name:Target:Offset:HexSignature`.
//!
//! Supported in the hex signature: hex bytes, `??` (any byte), `a?` / `?a`
//! (nibble wildcards), `*` (any number of bytes), `{n}`, `{n-m}`, `{-m}`,
//! `{n-}` (bounded gaps) and `(aa|bb|…)` alternatives of equal length.
//! Offsets: `*`, `n`, `n,m` (start within `n..=n+m`), `EOF-n`. Targets: 0
//! (any), 1 (PE), 6 (ELF), 9 (Mach-O); 2–5 and 7 (OLE2, HTML, mail,
//! graphics, normalised text) are matched against every scanned object, as
//! this plugin does not normalise. Signatures using anything else
//! (`EP+n`, `Sx`, min/max engine fields do not matter) are refused at load
//! with a reason, so an admin sees which lines are not active.

use std::fmt;

/// Why a line is not a usable signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NdbError(pub String);

impl fmt::Display for NdbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which objects a signature applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Any object.
    Any,
    /// PE executables (MZ + PE header).
    Pe,
    /// ELF executables.
    Elf,
    /// Mach-O executables.
    MachO,
}

/// Where the match must start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// Anywhere.
    Any,
    /// At `start..=start+shift`.
    At { start: usize, shift: usize },
    /// `n` bytes before the end.
    FromEnd(usize),
}

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A byte compared under a mask (`0xff` exact, `0xf0`/`0x0f` nibble, `0` any).
    Byte { value: u8, mask: u8 },
    /// One of several byte strings of equal length.
    Alt(Vec<Vec<u8>>),
    /// Skip `min..=max` bytes (`max` = None: unbounded).
    Gap { min: usize, max: Option<usize> },
}

impl Token {
    fn width(&self) -> usize {
        match self {
            Token::Byte { .. } => 1,
            Token::Alt(a) => a[0].len(),
            Token::Gap { .. } => 0,
        }
    }
}

/// A compiled body signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySig {
    /// The signature name reported on a match.
    pub name: String,
    /// Object type it applies to.
    pub target: Target,
    /// Where the match starts.
    pub offset: Offset,
    tokens: Vec<Token>,
}

/// Backtracking steps allowed per signature per object: a pathological
/// pattern (many `*`) on a large object gives up instead of stalling the hook.
const STEP_BUDGET: u64 = 2_000_000;

impl BodySig {
    /// Parses one `.ndb` line.
    pub fn parse(line: &str) -> Result<BodySig, NdbError> {
        let fields: Vec<&str> = line.trim().split(':').collect();
        if fields.len() < 4 {
            return Err(NdbError("expected Name:Target:Offset:HexSignature".into()));
        }
        let name = fields[0].trim();
        if name.is_empty() {
            return Err(NdbError("empty name".into()));
        }
        let target = match fields[1].trim() {
            "0" | "2" | "3" | "4" | "5" | "7" => Target::Any,
            "1" => Target::Pe,
            "6" => Target::Elf,
            "9" => Target::MachO,
            t => return Err(NdbError(format!("target {t} is not supported"))),
        };
        let offset = parse_offset(fields[2].trim())?;
        let tokens = compile(fields[3].trim())?;
        Ok(BodySig {
            name: name.to_string(),
            target,
            offset,
            tokens,
        })
    }

    /// Whether the signature matches `data` (of object type `kind`).
    pub fn matches(&self, data: &[u8], kind: Target) -> bool {
        if self.target != Target::Any && self.target != kind {
            return false;
        }
        let (first, last) = match self.offset {
            Offset::Any => (0, data.len()),
            Offset::At { start, shift } => (start, start.saturating_add(shift)),
            Offset::FromEnd(n) => match data.len().checked_sub(n) {
                Some(s) => (s, s),
                None => return false,
            },
        };
        let mut budget = STEP_BUDGET;
        let last = last.min(data.len());
        let mut start = first;
        while start <= last {
            // Cheap skip to the next place the first byte can match.
            if let Some(Token::Byte { value, mask: 0xff }) = self.tokens.first() {
                match data[start..].iter().position(|b| b == value) {
                    Some(p) if start + p <= last => start += p,
                    _ => return false,
                }
            }
            if match_at(&self.tokens, data, start, &mut budget) {
                return true;
            }
            if budget == 0 {
                return false;
            }
            start += 1;
        }
        false
    }
}

fn parse_offset(s: &str) -> Result<Offset, NdbError> {
    let num = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| NdbError(format!("offset {s:?} is not supported")))
    };
    if s == "*" {
        Ok(Offset::Any)
    } else if let Some(n) = s.strip_prefix("EOF-") {
        Ok(Offset::FromEnd(num(n)?))
    } else if let Some((a, b)) = s.split_once(',') {
        Ok(Offset::At {
            start: num(a)?,
            shift: num(b)?,
        })
    } else {
        Ok(Offset::At {
            start: num(s)?,
            shift: 0,
        })
    }
}

fn hex_nibble(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn compile(hex: &str) -> Result<Vec<Token>, NdbError> {
    let b = hex.as_bytes();
    let bad = |what: &str| NdbError(format!("hex signature: {what}"));
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'*' => {
                tokens.push(Token::Gap { min: 0, max: None });
                i += 1;
            }
            b'{' => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'}')
                    .ok_or_else(|| bad("unclosed {"))?
                    + i;
                let inner = &hex[i + 1..end];
                let n = |t: &str| {
                    t.trim()
                        .parse::<usize>()
                        .map_err(|_| bad(&format!("gap {{{inner}}}")))
                };
                let gap = match inner.split_once('-') {
                    None => {
                        let v = n(inner)?;
                        Token::Gap { min: v, max: Some(v) }
                    }
                    Some(("", m)) => Token::Gap {
                        min: 0,
                        max: Some(n(m)?),
                    },
                    Some((a, "")) => Token::Gap {
                        min: n(a)?,
                        max: None,
                    },
                    Some((a, m)) => {
                        let (a, m) = (n(a)?, n(m)?);
                        if a > m {
                            return Err(bad(&format!("gap {{{inner}}}: min > max")));
                        }
                        Token::Gap { min: a, max: Some(m) }
                    }
                };
                tokens.push(gap);
                i = end + 1;
            }
            b'(' => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b')')
                    .ok_or_else(|| bad("unclosed ("))?
                    + i;
                let mut alts = Vec::new();
                for alt in hex[i + 1..end].split('|') {
                    let ab = alt.as_bytes();
                    if ab.is_empty() || ab.len() % 2 != 0 {
                        return Err(bad(&format!("alternative {alt:?}")));
                    }
                    let bytes = ab
                        .chunks(2)
                        .map(|p| Some(hex_nibble(p[0])? << 4 | hex_nibble(p[1])?))
                        .collect::<Option<Vec<u8>>>()
                        .ok_or_else(|| bad(&format!("alternative {alt:?} (only plain hex bytes)")))?;
                    alts.push(bytes);
                }
                if alts.iter().any(|a| a.len() != alts[0].len()) {
                    return Err(bad("alternatives of different lengths"));
                }
                tokens.push(Token::Alt(alts));
                i = end + 1;
            }
            _ => {
                if i + 1 >= b.len() {
                    return Err(bad("odd number of hex digits"));
                }
                let (h, l) = (b[i], b[i + 1]);
                let tok = match (h, l) {
                    (b'?', b'?') => Token::Byte { value: 0, mask: 0 },
                    (b'?', l) => Token::Byte {
                        value: hex_nibble(l).ok_or_else(|| bad("bad digit"))?,
                        mask: 0x0f,
                    },
                    (h, b'?') => Token::Byte {
                        value: hex_nibble(h).ok_or_else(|| bad("bad digit"))? << 4,
                        mask: 0xf0,
                    },
                    (h, l) => Token::Byte {
                        value: hex_nibble(h).ok_or_else(|| bad("bad digit"))? << 4
                            | hex_nibble(l).ok_or_else(|| bad("bad digit"))?,
                        mask: 0xff,
                    },
                };
                tokens.push(tok);
                i += 2;
            }
        }
    }
    let fixed: usize = tokens.iter().map(Token::width).sum();
    let exact = tokens
        .iter()
        .filter(|t| matches!(t, Token::Byte { mask: 0xff, .. } | Token::Alt(_)))
        .count();
    // ClamAV's rule: a signature needs some real bytes, or it matches everything.
    if fixed == 0 || exact < 2 {
        return Err(bad("needs at least two fixed bytes"));
    }
    if matches!(tokens.first(), Some(Token::Gap { .. })) || matches!(tokens.last(), Some(Token::Gap { .. })) {
        return Err(bad("cannot start or end with a gap"));
    }
    Ok(tokens)
}

/// Whether `tokens` match `data` starting exactly at `pos`.
fn match_at(tokens: &[Token], data: &[u8], mut pos: usize, budget: &mut u64) -> bool {
    for (k, t) in tokens.iter().enumerate() {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        match t {
            Token::Byte { value, mask } => match data.get(pos) {
                Some(b) if b & mask == *value => pos += 1,
                _ => return false,
            },
            Token::Alt(alts) => match alts.iter().find(|a| data[pos.min(data.len())..].starts_with(a)) {
                Some(a) => pos += a.len(),
                None => return false,
            },
            Token::Gap { min, max } => {
                let rest = &tokens[k + 1..];
                let lo = pos.saturating_add(*min);
                let hi = max.map_or(data.len(), |m| pos.saturating_add(m).min(data.len()));
                let mut p = lo;
                while p <= hi {
                    if match_at(rest, data, p, budget) {
                        return true;
                    }
                    if *budget == 0 {
                        return false;
                    }
                    p += 1;
                }
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(s: &str) -> BodySig {
        BodySig::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn plain_hex_anywhere() {
        let s = sig("Test.Hello:0:*:68656c6c6f");
        assert!(s.matches(b"say hello there", Target::Any));
        assert!(!s.matches(b"say hell o", Target::Any));
        assert!(!s.matches(b"", Target::Any));
        assert!(
            s.matches(b"hello", Target::Pe),
            "target 0 applies to every object"
        );
    }

    #[test]
    fn wildcards() {
        assert!(sig("A:0:*:6162??64").matches(b"xxabZdxx", Target::Any));
        assert!(!sig("A:0:*:6162??64").matches(b"abd", Target::Any));
        assert!(sig("N:0:*:616?63").matches(b"a\x6fc", Target::Any));
        assert!(!sig("N:0:*:616?63").matches(b"a\x7fc", Target::Any));
        assert!(sig("N:0:*:61?263").matches(b"a\xf2c", Target::Any));
        let star = sig("S:0:*:6162*7879");
        assert!(star.matches(b"ab.........xy", Target::Any));
        assert!(star.matches(b"abxy", Target::Any));
        assert!(!star.matches(b"xyab", Target::Any));
        let range = sig("R:0:*:6162{2-4}7879");
        assert!(!range.matches(b"ab1xy", Target::Any));
        assert!(range.matches(b"ab12xy", Target::Any));
        assert!(range.matches(b"ab1234xy", Target::Any));
        assert!(!range.matches(b"ab12345xy", Target::Any));
        assert!(sig("E:0:*:6162{3}7879").matches(b"ab123xy", Target::Any));
        assert!(!sig("E:0:*:6162{3}7879").matches(b"ab12xy", Target::Any));
        assert!(sig("U:0:*:6162{-2}7879").matches(b"abxy", Target::Any));
        assert!(!sig("U:0:*:6162{-2}7879").matches(b"ab123xy", Target::Any));
        assert!(sig("L:0:*:6162{2-}7879").matches(b"ab123456789xy", Target::Any));
        assert!(!sig("L:0:*:6162{2-}7879").matches(b"ab1xy", Target::Any));
        let alt = sig("Alt:0:*:61(62|63)64");
        assert!(alt.matches(b"abd", Target::Any) && alt.matches(b"acd", Target::Any));
        assert!(!alt.matches(b"aed", Target::Any));
    }

    #[test]
    fn backtracking_through_bounded_gaps() {
        // The first "cd" after "ab" is too far from "ef"; a later one is not.
        let s = sig("B:0:*:6162*6364{0-1}6566");
        assert!(!s.matches(b"ab cd.... cd  ef", Target::Any));
        assert!(s.matches(b"ab cd.... cd.ef", Target::Any));
        assert!(s.matches(b"ab cd.... cdef", Target::Any));
    }

    #[test]
    fn offsets_and_targets() {
        let at0 = sig("O:0:0:4d5a");
        assert!(at0.matches(b"MZ....", Target::Any));
        assert!(!at0.matches(b".MZ...", Target::Any));
        let shift = sig("O:0:2,3:4142");
        assert!(shift.matches(b"..AB", Target::Any));
        assert!(shift.matches(b".....AB", Target::Any));
        assert!(!shift.matches(b"......AB", Target::Any));
        assert!(!shift.matches(b".AB", Target::Any));
        let eof = sig("O:0:EOF-2:4142");
        assert!(eof.matches(b"....AB", Target::Any));
        assert!(!eof.matches(b"...AB.", Target::Any));
        assert!(!eof.matches(b"A", Target::Any));
        let pe = sig("P:1:*:4142");
        assert!(pe.matches(b"AB", Target::Pe));
        assert!(!pe.matches(b"AB", Target::Any));
        assert!(!pe.matches(b"AB", Target::Elf));
    }

    #[test]
    fn refused_lines_say_why() {
        for bad in [
            "",
            "Name:0:*",
            ":0:*:4142",
            "N:12:*:4142",
            "N:0:EP+0:4142",
            "N:0:*:414",
            "N:0:*:41zz",
            "N:0:*:??41",
            "N:0:*:*4142",
            "N:0:*:4142*",
            "N:0:*:41{3-1}42",
            "N:0:*:41{x}42",
            "N:0:*:41(42|4344)45",
            "N:0:*:41(4",
        ] {
            assert!(BodySig::parse(bad).is_err(), "{bad:?} should be refused");
        }
        // Extra fields (min/max engine level) are accepted and ignored.
        assert!(BodySig::parse("N:0:*:41424344:73:255").is_ok());
    }

    #[test]
    fn pathological_patterns_stop_at_the_budget() {
        let s = sig("P:0:*:61*61*61*61*61*61*61*62");
        let data = vec![b'a'; 20_000];
        assert!(!s.matches(&data, Target::Any));
    }
}

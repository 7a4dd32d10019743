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
//!
//! Matching is a backtracking walk from each possible start, which costs
//! work at every offset of the object. Most signatures cannot match most
//! objects, so each carries, from load time, the longest run of fixed bytes
//! any match must contain; when that literal is not in the part of the
//! object a match could cover, the walk is skipped. The literal is only a
//! necessary condition: when it is present the walk decides, exactly as
//! without it.

use std::fmt;

use memchr::{memchr, memchr2, memchr3, memmem};

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

/// A byte string every match of a signature contains, with its searcher
/// built once (a signature is tried against every scanned object).
#[derive(Debug, Clone)]
struct Literal(memmem::Finder<'static>);

impl PartialEq for Literal {
    fn eq(&self, other: &Literal) -> bool {
        self.0.needle() == other.0.needle()
    }
}

impl Eq for Literal {}

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
    /// The longest run of fixed bytes in the pattern (none when every fixed
    /// byte sits in an alternative of several).
    literal: Option<Literal>,
    /// The most bytes a match spans; none with an unbounded gap.
    max_len: Option<usize>,
    /// The distinct first bytes of the alternatives when the pattern starts
    /// with an alternative, so starts that begin none of them are skipped.
    lead: Vec<u8>,
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
        let literal = longest_fixed_run(&tokens).map(|l| Literal(memmem::Finder::new(&l).into_owned()));
        let max_len = tokens.iter().try_fold(0usize, |n, t| match t {
            Token::Gap { max, .. } => n.checked_add((*max)?),
            t => n.checked_add(t.width()),
        });
        let mut lead: Vec<u8> = match tokens.first() {
            Some(Token::Alt(alts)) => alts.iter().map(|a| a[0]).collect(),
            _ => Vec::new(),
        };
        lead.sort_unstable();
        lead.dedup();
        Ok(BodySig {
            name: name.to_string(),
            target,
            offset,
            tokens,
            literal,
            max_len,
            lead,
        })
    }

    /// The literal the prefilter looks for, if the signature has one.
    pub fn literal(&self) -> Option<&[u8]> {
        self.literal.as_ref().map(|l| l.0.needle())
    }

    /// Whether a match starting in `first..=last` is possible at all: the
    /// literal must occur where such a match could reach.
    fn may_match(&self, data: &[u8], first: usize, last: usize) -> bool {
        let Some(literal) = &self.literal else {
            return true;
        };
        let end = match self.max_len {
            Some(n) => last.saturating_add(n).min(data.len()),
            None => data.len(),
        };
        data.get(first..end)
            .is_some_and(|region| literal.0.find(region).is_some())
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
        let last = last.min(data.len());
        if !self.may_match(data, first, last) {
            return false;
        }
        let mut budget = STEP_BUDGET;
        let mut start = first;
        while start <= last {
            // Cheap skip to the next place the first byte can match.
            if let Some(Token::Byte { value, mask: 0xff }) = self.tokens.first() {
                match memchr(*value, &data[start..]) {
                    Some(p) if start + p <= last => start += p,
                    _ => return false,
                }
            }
            // The same for a leading alternative. `match_at` would spend one
            // step on each skipped start, so they are charged to the budget:
            // a pathological signature gives up exactly where it did before.
            if !self.lead.is_empty() {
                let rest = &data[start..];
                let next = match *self.lead.as_slice() {
                    [a] => memchr(a, rest),
                    [a, b] => memchr2(a, b, rest),
                    [a, b, c] => memchr3(a, b, c, rest),
                    _ => Some(0),
                };
                let Some(p) = next.filter(|p| start + p <= last) else {
                    return false;
                };
                if p as u64 >= budget {
                    return false;
                }
                budget -= p as u64;
                start += p;
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

/// The longest run of bytes every match has in a row: exact bytes, and
/// alternatives of one choice.
fn longest_fixed_run(tokens: &[Token]) -> Option<Vec<u8>> {
    let mut best: Vec<u8> = Vec::new();
    let mut run: Vec<u8> = Vec::new();
    for t in tokens {
        match t {
            Token::Byte { value, mask: 0xff } => run.push(*value),
            Token::Alt(alts) if alts.len() == 1 => run.extend(&alts[0]),
            _ => run.clear(),
        }
        if run.len() > best.len() {
            best.clone_from(&run);
        }
    }
    (!best.is_empty()).then_some(best)
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

    /// The matcher as it was before the prefilter and the leading-
    /// alternative skip: the optimised one must agree with it everywhere,
    /// budget exhaustion included.
    fn reference_matches(s: &BodySig, data: &[u8], kind: Target) -> bool {
        if s.target != Target::Any && s.target != kind {
            return false;
        }
        let (first, last) = match s.offset {
            Offset::Any => (0, data.len()),
            Offset::At { start, shift } => (start, start.saturating_add(shift)),
            Offset::FromEnd(n) => match data.len().checked_sub(n) {
                Some(x) => (x, x),
                None => return false,
            },
        };
        let mut budget = STEP_BUDGET;
        let last = last.min(data.len());
        let mut start = first;
        while start <= last {
            if let Some(Token::Byte { value, mask: 0xff }) = s.tokens.first() {
                match data[start..].iter().position(|b| b == value) {
                    Some(p) if start + p <= last => start += p,
                    _ => return false,
                }
            }
            if match_at(&s.tokens, data, start, &mut budget) {
                return true;
            }
            if budget == 0 {
                return false;
            }
            start += 1;
        }
        false
    }

    #[test]
    fn literals_are_the_longest_fixed_runs() {
        assert_eq!(sig("A:0:*:6162??636465").literal(), Some(&b"cde"[..]));
        assert_eq!(sig("A:0:*:61(62)63*6465").literal(), Some(&b"abc"[..]));
        assert_eq!(sig("A:0:*:(6162|6364)(6566|6768)").literal(), None);
        assert_eq!(sig("A:0:*:6?62{2}63").literal(), Some(&b"b"[..]));
        let s = sig("Example.Script.DownloadCradle:0:*:(4945|6965)(58|78){1-64}446f776e6c6f6164537472696e67");
        assert_eq!(s.literal(), Some(&b"DownloadString"[..]));
        assert_eq!(
            (s.max_len, s.lead.as_slice()),
            (Some(2 + 1 + 64 + 14), &b"Ii"[..])
        );
        assert_eq!(sig("A:0:*:6162*6364").max_len, None);
    }

    #[test]
    fn prefilter_and_skips_never_change_results() {
        let sigs = [
            "Plain:0:*:616263",
            "Nibble:0:*:6?6263",
            "Alt:0:*:(6162|6263|6361)64",
            "Alt4:0:*:(61|62|63|64)6161",
            "Alt1:0:*:(61)(62|63)6364",
            "Gaps:0:*:(6162|6261){1-3}63??64",
            "Star:0:*:61*6263*64",
            "Open:0:*:6162{2-}6364",
            "Upto:0:*:63{-4}(6161|6262)",
            "At:0:3,5:(6162|6361)63",
            "AtStar:0:2:61*6364",
            "Eof:0:EOF-4:6162??",
            "Eof2:0:EOF-3:(61|62)6263",
            "Pe:1:*:616263",
            "Cradle:0:*:(4945|6965)(58|78){1-64}446f776e6c6f6164537472696e67",
        ];
        let sigs: Vec<BodySig> = sigs.iter().map(|s| sig(s)).collect();
        // A tiny alphabet, so that partial and full matches are common.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut hits = 0;
        for round in 0..4000 {
            let len = (next() % 40) as usize;
            let data: Vec<u8> = (0..len).map(|_| b"abcd"[(next() % 4) as usize]).collect();
            let mut data = data;
            if round % 50 == 0 {
                data.extend(b"..IeX then DownloadString");
            }
            for s in &sigs {
                for kind in [Target::Any, Target::Pe] {
                    let want = reference_matches(s, &data, kind);
                    hits += usize::from(want);
                    assert_eq!(
                        s.matches(&data, kind),
                        want,
                        "{} on {:?}",
                        s.name,
                        String::from_utf8_lossy(&data)
                    );
                }
            }
        }
        assert!(hits > 1000, "the inputs exercise matches too ({hits})");
    }

    #[test]
    fn skips_charge_the_budget_as_the_walk_did() {
        // A leading alternative, far apart, then a pattern that exhausts the
        // budget: the skipped starts must cost what failed starts cost.
        let s = sig("P:0:*:(61|7a)*61*61*61*61*62");
        for gap in [0, 10, 1_000, 50_000] {
            let mut data = vec![b'.'; gap];
            data.extend(vec![b'a'; 300]);
            data.push(b'b');
            assert_eq!(
                s.matches(&data, Target::Any),
                reference_matches(&s, &data, Target::Any),
                "{gap}"
            );
        }
        // Skips and failed starts add up across the object.
        let s = sig("Q:0:*:(61|7a)62");
        let mut data = [vec![b'.'; 1000], b"a".to_vec()].concat().repeat(2100);
        data.extend(b"ab");
        assert!(
            !reference_matches(&s, &data, Target::Any),
            "out of budget before the match"
        );
        assert!(!s.matches(&data, Target::Any));
        data.drain(..200 * 1001);
        assert!(reference_matches(&s, &data, Target::Any), "within budget");
        assert!(s.matches(&data, Target::Any));
    }

    #[test]
    fn pathological_patterns_stop_at_the_budget() {
        let s = sig("P:0:*:61*61*61*61*61*61*61*62");
        let data = vec![b'a'; 20_000];
        assert!(!s.matches(&data, Target::Any));
    }
}

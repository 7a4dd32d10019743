//! The scanner: one decoded object (a MIME part, or a zip member) at a time,
//! recursing into zip archives.
//!
//! Order of checks for an object: the EICAR test string, the signature
//! database, then — for attachments and archive members only, never for the
//! text of a message — the sniffed type (PE/ELF/Mach-O executables, shebang
//! scripts), then the members of a zip (their names, encryption, content).

use memchr::memmem;

use crate::ndb::Target;
use crate::sigs::SigDb;
use crate::zip::{self, ExtractError};

/// The EICAR test string, split so this source file is not itself "infected"
/// for a scanner that looks at the repository.
pub(crate) const EICAR_HEAD: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$";
pub(crate) const EICAR_TAIL: &[u8] = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// ClamAV's name for it.
pub const EICAR_NAME: &str = "Eicar-Test-Signature";

/// Extensions blocked by default: executables, scripts and installers
/// Windows runs on a double click, shortcuts, and disk images used to carry
/// them past filters.
pub const DEFAULT_BLOCKED: &[&str] = &[
    "exe",
    "scr",
    "com",
    "pif",
    "bat",
    "cmd",
    "cpl",
    "dll",
    "js",
    "jse",
    "vbs",
    "vbe",
    "wsf",
    "wsh",
    "wsc",
    "jar",
    "msi",
    "msp",
    "mst",
    "hta",
    "lnk",
    "url",
    "scf",
    "inf",
    "reg",
    "ps1",
    "psm1",
    "psd1",
    "chm",
    "msc",
    "sct",
    "gadget",
    "application",
    "appx",
    "appxbundle",
    "msix",
    "iso",
    "img",
    "vhd",
    "vhdx",
];

/// Extensions a double-extension disguise pretends to be.
const DECOY: &[&str] = &[
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "rtf", "txt", "csv", "jpg", "jpeg",
    "png", "gif", "bmp", "tif", "tiff", "zip", "rar", "7z", "htm", "html", "mp3", "mp4", "wav", "avi", "mov",
    "eml",
];

/// What the scanner blocks besides signatures.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Lower-case extensions without the dot.
    pub blocked_extensions: Vec<String>,
    /// Block sniffed executables and shebang scripts in attachments.
    pub block_executables: bool,
    /// Block `name.<decoy>.<blocked>` names and right-to-left override tricks.
    pub block_double_extensions: bool,
    /// Block encrypted archive members (they cannot be scanned).
    pub block_encrypted: bool,
    /// Block what cannot be scanned: unsupported methods, over the size
    /// limits, nested deeper than `max_depth`.
    pub block_unscannable: bool,
    /// Look inside zip archives.
    pub scan_archives: bool,
    /// Nesting depth of archives looked into (1 = a zip, not a zip in it).
    pub max_depth: usize,
    /// Bytes inflated per message, all members together.
    pub max_inflated: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            blocked_extensions: DEFAULT_BLOCKED.iter().map(|s| s.to_string()).collect(),
            block_executables: true,
            block_double_extensions: true,
            block_encrypted: true,
            block_unscannable: false,
            scan_archives: true,
            max_depth: 3,
            max_inflated: 32 << 20,
        }
    }
}

/// A detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Signature or rule name, e.g. `Eicar-Test-Signature`,
    /// `Heuristics.DoubleExtension`, `Policy.BlockedExtension.exe`.
    pub name: String,
    /// Where: e.g. `part 2 (files.zip) > invoice.pdf.exe`.
    pub location: String,
}

/// Whether `hay` contains `needle`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memmem::find(hay, needle).is_some()
}

/// Whether `data` holds the EICAR test string (anywhere: in a text part it
/// is usually surrounded by other text).
pub fn has_eicar(data: &[u8]) -> bool {
    // Non-overlapping occurrences are all of them: the head has no prefix
    // that is also its suffix, so two copies cannot overlap.
    memmem::find_iter(data, EICAR_HEAD).any(|p| data[p + EICAR_HEAD.len()..].starts_with(EICAR_TAIL))
}

/// What an object's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// MZ with a PE header.
    Pe,
    /// MZ without a reachable PE header (DOS executable, or a truncated PE).
    Mz,
    /// ELF.
    Elf,
    /// Mach-O (32/64-bit, either byte order).
    MachO,
    /// A `#!` script.
    Script,
    /// None of those.
    Other,
}

/// Sniffs `data` by magic numbers.
pub fn sniff(data: &[u8]) -> Sniffed {
    if data.starts_with(b"MZ") && data.len() >= 64 {
        let lfanew = u32::from_le_bytes([data[60], data[61], data[62], data[63]]) as usize;
        return match data.get(lfanew..lfanew.saturating_add(4)) {
            Some(b"PE\0\0") => Sniffed::Pe,
            _ => Sniffed::Mz,
        };
    }
    if data.starts_with(b"\x7fELF") {
        return Sniffed::Elf;
    }
    if [
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
    ]
    .iter()
    .any(|m| data.starts_with(m))
    {
        return Sniffed::MachO;
    }
    if data.starts_with(b"#!") {
        return Sniffed::Script;
    }
    Sniffed::Other
}

fn target_of(s: Sniffed) -> Target {
    match s {
        Sniffed::Pe => Target::Pe,
        Sniffed::Elf => Target::Elf,
        Sniffed::MachO => Target::MachO,
        _ => Target::Any,
    }
}

/// The extensions of a file name, lower-cased, last first; Windows ignores
/// trailing dots and spaces, so they are dropped first.
fn extensions(name: &str) -> Vec<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let base = base.trim_end_matches(['.', ' ']).to_lowercase();
    let mut parts: Vec<&str> = base.split('.').collect();
    if parts.len() < 2 {
        return Vec::new();
    }
    parts.remove(0);
    parts.iter().rev().map(|e| e.trim().to_string()).collect()
}

impl Policy {
    /// The finding for a file name, if its name alone is blocked.
    pub fn check_name(&self, name: &str) -> Option<String> {
        if self.block_double_extensions && name.contains(['\u{202e}', '\u{202d}', '\u{200f}']) {
            return Some("Heuristics.Filename.RTLO".into());
        }
        let exts = extensions(name);
        let last = exts.first()?;
        if !self.blocked_extensions.iter().any(|b| b == last) {
            return None;
        }
        // A decoy extension before the real one, or a run of spaces before the
        // last dot that pushes the real one out of view.
        let padded = name
            .trim_end_matches(['.', ' '])
            .rsplit_once('.')
            .is_some_and(|(head, _)| head.ends_with("   "));
        if self.block_double_extensions
            && (exts.get(1).is_some_and(|e| DECOY.contains(&e.as_str())) || padded)
        {
            return Some("Heuristics.DoubleExtension".into());
        }
        Some(format!("Policy.BlockedExtension.{last}"))
    }
}

/// Scans the objects of one message; keeps the per-message inflate budget.
pub struct Scanner<'a> {
    policy: &'a Policy,
    db: &'a SigDb,
    inflated: usize,
    /// Things not scanned and not blocked (for the log).
    pub skipped: Vec<String>,
}

impl<'a> Scanner<'a> {
    /// A scanner with a fresh budget.
    pub fn new(policy: &'a Policy, db: &'a SigDb) -> Scanner<'a> {
        Scanner {
            policy,
            db,
            inflated: 0,
            skipped: Vec::new(),
        }
    }

    fn found(name: impl Into<String>, location: &str) -> Option<Finding> {
        Some(Finding {
            name: name.into(),
            location: location.to_string(),
        })
    }

    /// Scans one object. `attachment`: a file (attachment or archive member),
    /// where type sniffing applies; `depth`: archive nesting so far.
    pub fn scan(&mut self, data: &[u8], attachment: bool, depth: usize, location: &str) -> Option<Finding> {
        if has_eicar(data) {
            return Self::found(EICAR_NAME, location);
        }
        let sniffed = sniff(data);
        if let Some(name) = self.db.scan(data, target_of(sniffed)) {
            return Self::found(name, location);
        }
        if attachment && self.policy.block_executables {
            let rule = match sniffed {
                Sniffed::Pe => Some("Heuristics.Executable.PE"),
                Sniffed::Mz => Some("Heuristics.Executable.MZ"),
                Sniffed::Elf => Some("Heuristics.Executable.ELF"),
                Sniffed::MachO => Some("Heuristics.Executable.MachO"),
                Sniffed::Script => Some("Heuristics.Script.Shebang"),
                Sniffed::Other => None,
            };
            if let Some(rule) = rule {
                return Self::found(rule, location);
            }
        }
        if self.policy.scan_archives && zip::is_zip(data) {
            return self.scan_zip(data, depth, location);
        }
        None
    }

    fn unscannable(&mut self, why: String, location: &str) -> Option<Finding> {
        if self.policy.block_unscannable {
            return Self::found(format!("Heuristics.Unscannable.{why}"), location);
        }
        self.skipped.push(format!("{location}: {why}"));
        None
    }

    fn scan_zip(&mut self, data: &[u8], depth: usize, location: &str) -> Option<Finding> {
        if depth >= self.policy.max_depth {
            return self.unscannable("ArchiveDepth".into(), location);
        }
        for entry in zip::entries(data) {
            let here = format!("{location} > {}", clean(&entry.name));
            for name in std::iter::once(&entry.name).chain(entry.local_name.as_ref()) {
                if let Some(rule) = self.policy.check_name(name) {
                    return Self::found(rule, &here);
                }
            }
            if entry.name.ends_with('/') {
                continue;
            }
            let left = self.policy.max_inflated.saturating_sub(self.inflated);
            match entry.extract(left) {
                Ok(content) => {
                    self.inflated += content.len();
                    if let Some(f) = self.scan(&content, true, depth + 1, &here) {
                        return Some(f);
                    }
                }
                Err(ExtractError::Encrypted) if self.policy.block_encrypted => {
                    return Self::found("Heuristics.Encrypted.Zip", &here);
                }
                Err(ExtractError::Encrypted) => self.skipped.push(format!("{here}: encrypted")),
                Err(ExtractError::TooLarge) => {
                    if let Some(f) = self.unscannable("ExceedsMax".into(), &here) {
                        return Some(f);
                    }
                }
                Err(ExtractError::Method(m)) => {
                    if let Some(f) = self.unscannable(format!("Method{m}"), &here) {
                        return Some(f);
                    }
                }
                Err(ExtractError::Corrupt) => {
                    if let Some(f) = self.unscannable("Corrupt".into(), &here) {
                        return Some(f);
                    }
                }
            }
        }
        None
    }
}

/// A name for logs and replies: control characters (and the direction
/// overrides) replaced, length capped.
pub fn clean(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() || ('\u{200e}'..='\u{202e}').contains(&c) {
                '?'
            } else {
                c
            }
        })
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zip::tests::build;

    fn eicar() -> Vec<u8> {
        [EICAR_HEAD, EICAR_TAIL].concat()
    }

    /// EICAR with padding, so that deflate really encodes it (a 68-byte
    /// input is kept as a stored block, readable in the raw archive).
    fn eicar_padded() -> Vec<u8> {
        [eicar(), vec![b' '; 2000]].concat()
    }

    fn pe() -> Vec<u8> {
        let mut b = vec![0u8; 256];
        b[..2].copy_from_slice(b"MZ");
        b[60..64].copy_from_slice(&128u32.to_le_bytes());
        b[128..132].copy_from_slice(b"PE\0\0");
        b
    }

    #[test]
    fn eicar_anywhere() {
        assert!(has_eicar(&eicar()));
        let mut text = b"Hello,\r\n\r\nthe test file: ".to_vec();
        text.extend(eicar());
        text.extend(b"\r\nbye\r\n");
        assert!(has_eicar(&text));
        assert!(!has_eicar(EICAR_TAIL));
        assert!(!has_eicar(&eicar()[..60]));
        let mut two_heads = EICAR_HEAD.to_vec();
        two_heads.extend(eicar());
        assert!(has_eicar(&two_heads));
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(&pe()), Sniffed::Pe);
        let mut mz = pe();
        mz[128] = b'X';
        assert_eq!(sniff(&mz), Sniffed::Mz);
        assert_eq!(sniff(b"MZ short"), Sniffed::Other, "too short for a header");
        assert_eq!(sniff(b"\x7fELF\x02\x01\x01"), Sniffed::Elf);
        assert_eq!(sniff(&[0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]), Sniffed::MachO);
        assert_eq!(sniff(b"#!/bin/sh\nrm -rf ~\n"), Sniffed::Script);
        assert_eq!(sniff(b"%PDF-1.7\n"), Sniffed::Other);
    }

    #[test]
    fn file_names() {
        let p = Policy::default();
        assert_eq!(
            p.check_name("setup.exe").as_deref(),
            Some("Policy.BlockedExtension.exe")
        );
        assert_eq!(
            p.check_name("SETUP.EXE").as_deref(),
            Some("Policy.BlockedExtension.exe")
        );
        assert_eq!(
            p.check_name("evil.exe. . ").as_deref(),
            Some("Policy.BlockedExtension.exe")
        );
        assert_eq!(
            p.check_name("dir/run.ps1").as_deref(),
            Some("Policy.BlockedExtension.ps1")
        );
        assert_eq!(
            p.check_name("invoice.pdf.exe").as_deref(),
            Some("Heuristics.DoubleExtension")
        );
        assert_eq!(
            p.check_name("photo.JPG.scr").as_deref(),
            Some("Heuristics.DoubleExtension")
        );
        assert_eq!(
            p.check_name("invoice.pdf                    .exe").as_deref(),
            Some("Heuristics.DoubleExtension")
        );
        assert_eq!(
            p.check_name("report\u{202e}fdp.exe").as_deref(),
            Some("Heuristics.Filename.RTLO")
        );
        assert_eq!(p.check_name("invoice.pdf"), None);
        assert_eq!(p.check_name("archive.tar.gz"), None);
        assert_eq!(p.check_name("exe"), None, "no extension");
        assert_eq!(p.check_name("my.exe.pdf"), None, "the last extension counts");
        let off = Policy {
            block_double_extensions: false,
            ..Policy::default()
        };
        assert_eq!(
            off.check_name("invoice.pdf.exe").as_deref(),
            Some("Policy.BlockedExtension.exe")
        );
    }

    #[test]
    fn executables_only_block_as_attachments() {
        let (p, db) = (Policy::default(), SigDb::default());
        let mut s = Scanner::new(&p, &db);
        assert_eq!(
            s.scan(&pe(), true, 0, "part 1").unwrap().name,
            "Heuristics.Executable.PE"
        );
        assert_eq!(
            s.scan(b"#!/bin/sh\necho hi\n", false, 0, "part 1"),
            None,
            "inline text"
        );
        assert_eq!(
            s.scan(b"#!/bin/sh\n", true, 0, "part 2").unwrap().name,
            "Heuristics.Script.Shebang"
        );
        let lax = Policy {
            block_executables: false,
            ..Policy::default()
        };
        assert_eq!(Scanner::new(&lax, &db).scan(&pe(), true, 0, "p"), None);
    }

    #[test]
    fn inside_zips() {
        let (p, db) = (Policy::default(), SigDb::default());
        let z = build(&[("readme.txt", b"fine", 0, 0), ("test.com", &eicar_padded(), 8, 0)]);
        let f = Scanner::new(&p, &db).scan(&z, true, 0, "part 2 (x.zip)").unwrap();
        assert_eq!(f.name, "Policy.BlockedExtension.com", "the name is checked first");
        assert_eq!(f.location, "part 2 (x.zip) > test.com");
        let z = build(&[
            ("readme.txt", b"fine", 0, 0),
            ("eicar.txt", &eicar_padded(), 8, 0),
        ]);
        assert!(!has_eicar(&z), "not visible in the raw archive");
        let f = Scanner::new(&p, &db).scan(&z, true, 0, "part 2 (x.zip)").unwrap();
        assert_eq!(
            (f.name.as_str(), f.location.as_str()),
            (EICAR_NAME, "part 2 (x.zip) > eicar.txt")
        );
        // A zip in a zip.
        let inner = build(&[("e.txt", &eicar_padded(), 8, 0)]);
        let outer = build(&[("inner.zip", &inner, 8, 0)]);
        let f = Scanner::new(&p, &db).scan(&outer, true, 0, "a").unwrap();
        assert_eq!(
            (f.name.as_str(), f.location.as_str()),
            (EICAR_NAME, "a > inner.zip > e.txt")
        );
        // An executable member without a telling name.
        let z = build(&[("data.bin", &pe(), 8, 0)]);
        assert_eq!(
            Scanner::new(&p, &db).scan(&z, true, 0, "a").unwrap().name,
            "Heuristics.Executable.PE"
        );
        // Clean archives pass.
        let z = build(&[("a.txt", b"hello", 8, 0), ("docs/", b"", 0, 0)]);
        assert_eq!(Scanner::new(&p, &db).scan(&z, true, 0, "a"), None);
    }

    #[test]
    fn encrypted_depth_and_bombs() {
        let db = SigDb::default();
        let p = Policy::default();
        let z = build(&[("secret.txt", b"zzzz", 0, 1)]);
        assert_eq!(
            Scanner::new(&p, &db).scan(&z, true, 0, "a").unwrap().name,
            "Heuristics.Encrypted.Zip"
        );
        let lax = Policy {
            block_encrypted: false,
            ..Policy::default()
        };
        let mut s = Scanner::new(&lax, &db);
        assert_eq!(s.scan(&z, true, 0, "a"), None);
        assert_eq!(s.skipped, ["a > secret.txt: encrypted"]);

        // Nesting deeper than max_depth is skipped, or blocked on request.
        let mut z = build(&[("e.txt", &eicar_padded(), 8, 0)]);
        for _ in 0..3 {
            z = build(&[("n.zip", &z, 8, 0)]);
        }
        let mut s = Scanner::new(&p, &db);
        assert_eq!(s.scan(&z, true, 0, "a"), None);
        assert_eq!(s.skipped.len(), 1, "{:?}", s.skipped);
        let strict = Policy {
            block_unscannable: true,
            ..Policy::default()
        };
        assert_eq!(
            Scanner::new(&strict, &db).scan(&z, true, 0, "a").unwrap().name,
            "Heuristics.Unscannable.ArchiveDepth"
        );

        // A bomb: 1 MiB of zeros inflated against a 64 KiB budget.
        let bomb = build(&[("zeros.txt", &vec![0u8; 1 << 20], 8, 0)]);
        let small = Policy {
            max_inflated: 64 << 10,
            block_unscannable: true,
            ..Policy::default()
        };
        assert_eq!(
            Scanner::new(&small, &db).scan(&bomb, true, 0, "a").unwrap().name,
            "Heuristics.Unscannable.ExceedsMax"
        );
    }

    #[test]
    fn signatures_apply_to_members() {
        let mut db = SigDb::default();
        db.load("t.ndb", "Test.Member:0:*:7365637265742d6d61726b");
        let p = Policy::default();
        let z = build(&[("notes.txt", b"has a secret-mark inside", 8, 0)]);
        assert_eq!(
            Scanner::new(&p, &db).scan(&z, true, 0, "a").unwrap().name,
            "Test.Member"
        );
        assert_eq!(
            Scanner::new(&p, &db)
                .scan(b"a secret-mark", false, 0, "a")
                .unwrap()
                .name,
            "Test.Member"
        );
    }

    #[test]
    fn names_are_cleaned_for_replies() {
        assert_eq!(clean("a\r\nb\u{202e}c"), "a??b?c");
        assert_eq!(clean(&"x".repeat(500)).len(), 120);
    }
}

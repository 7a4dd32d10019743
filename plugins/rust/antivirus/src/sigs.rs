//! The signature database: ClamAV hash signatures (`.hdb`/`.hsb`:
//! `Hash:Size:Name`, MD5, SHA-1 or SHA-256 told apart by length, size `*`
//! for any) and body signatures (`.ndb`, see [`crate::ndb`]), read from the
//! plugin's assets. One file may mix both kinds: a line is told apart by its
//! shape, so asset names are free.

use std::collections::HashMap;

use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

use crate::ndb::{BodySig, Target};

/// Hash algorithms of hash signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algo {
    /// 32 hex digits.
    Md5,
    /// 40 hex digits.
    Sha1,
    /// 64 hex digits.
    Sha256,
}

/// A loaded signature set.
#[derive(Debug, Default)]
pub struct SigDb {
    /// `(algo, size or None for any) → hash → name`.
    hashes: HashMap<(Algo, Option<u64>), HashMap<Vec<u8>, String>>,
    body: Vec<BodySig>,
    /// Lines that were refused, with the reason (`source:line: reason`).
    pub refused: Vec<String>,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl SigDb {
    /// Loads every line of `text` (from asset `source`): comments (`#`) and
    /// blank lines are skipped, bad lines go to [`SigDb::refused`].
    pub fn load(&mut self, source: &str, text: &str) {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Err(why) = self.add_line(line) {
                self.refused.push(format!("{source}:{}: {why}", n + 1));
            }
        }
    }

    fn add_line(&mut self, line: &str) -> Result<(), String> {
        let fields: Vec<&str> = line.split(':').collect();
        // Hash:Size:Name[:FLevel]: a hex hash of a known length first.
        let algo = match fields[0].len() {
            32 => Some(Algo::Md5),
            40 => Some(Algo::Sha1),
            64 => Some(Algo::Sha256),
            _ => None,
        };
        if let (Some(algo), Some(hash)) = (algo, unhex(fields[0])) {
            if !(3..=5).contains(&fields.len()) || fields[2].trim().is_empty() {
                return Err("expected Hash:Size:Name".into());
            }
            let size = match fields[1] {
                "*" => None,
                s => Some(s.parse::<u64>().map_err(|_| format!("size {s:?}"))?),
            };
            self.hashes
                .entry((algo, size))
                .or_default()
                .insert(hash, fields[2].to_string());
            return Ok(());
        }
        self.body.push(BodySig::parse(line).map_err(|e| e.to_string())?);
        Ok(())
    }

    /// Number of hash and body signatures loaded.
    pub fn len(&self) -> usize {
        self.hashes.values().map(HashMap::len).sum::<usize>() + self.body.len()
    }

    /// Whether nothing is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of the first signature matching `data`, if any. Hashes are
    /// computed only for algorithms that have a signature of this size.
    pub fn scan(&self, data: &[u8], kind: Target) -> Option<String> {
        let size = data.len() as u64;
        // Indexed by `Algo as usize`: each digest is computed at most once.
        let mut digests: [Option<Vec<u8>>; 3] = [None, None, None];
        for ((algo, sz), table) in &self.hashes {
            if sz.is_some_and(|s| s != size) {
                continue;
            }
            let d = digests[*algo as usize].get_or_insert_with(|| match algo {
                Algo::Md5 => Md5::digest(data).to_vec(),
                Algo::Sha1 => Sha1::digest(data).to_vec(),
                Algo::Sha256 => Sha256::digest(data).to_vec(),
            });
            if let Some(name) = table.get(d.as_slice()) {
                return Some(name.clone());
            }
        }
        self.body
            .iter()
            .find(|s| s.matches(data, kind))
            .map(|s| s.name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_signatures_of_each_algorithm() {
        let mut db = SigDb::default();
        // Digests of "abc".
        db.load(
            "t.hdb",
            "# comment\n\
             900150983cd24fb0d6963f7d28e17f72:3:Test.Md5\n\
             a9993e364706816aba3e25717850c26c9cd0d89d:3:Test.Sha1\n\
             ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad:*:Test.Sha256\n",
        );
        assert!(db.refused.is_empty(), "{:?}", db.refused);
        assert_eq!(db.len(), 3);
        let found = db.scan(b"abc", Target::Any);
        assert!(
            matches!(found.as_deref(), Some("Test.Md5" | "Test.Sha1" | "Test.Sha256")),
            "{found:?}"
        );
        assert!(db.scan(b"abd", Target::Any).is_none());
        // Size must match for sized signatures.
        let mut md5_only = SigDb::default();
        md5_only.load("t.hdb", "900150983cd24fb0d6963f7d28e17f72:4:Wrong.Size\n");
        assert!(md5_only.scan(b"abc", Target::Any).is_none());
        let mut any = SigDb::default();
        any.load(
            "t.hsb",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad:*:Any.Size:73",
        );
        assert_eq!(any.scan(b"abc", Target::Any).as_deref(), Some("Any.Size"));
        let mut sha1 = SigDb::default();
        sha1.load("t.hsb", "A9993E364706816ABA3E25717850C26C9CD0D89D:3:Upper.Case");
        assert_eq!(sha1.scan(b"abc", Target::Any).as_deref(), Some("Upper.Case"));
    }

    #[test]
    fn mixed_file_and_refusals() {
        let mut db = SigDb::default();
        db.load(
            "mixed",
            "Body.Test:0:*:6869646465\n\
             900150983cd24fb0d6963f7d28e17f72:x:Bad.Size\n\
             900150983cd24fb0d6963f7d28e17f72:3\n\
             Bad.Body:0:*:6\n\
             \n",
        );
        assert_eq!(db.len(), 1);
        assert_eq!(db.refused.len(), 3, "{:?}", db.refused);
        assert!(db.refused[0].starts_with("mixed:2: "), "{:?}", db.refused);
        assert_eq!(
            db.scan(b"the hidden one", Target::Any).as_deref(),
            Some("Body.Test")
        );
        assert!(db.scan(b"nothing", Target::Any).is_none());
        assert!(SigDb::default().is_empty());
    }

    #[test]
    fn shipped_example_set_loads_cleanly() {
        let mut db = SigDb::default();
        db.load("example.hdb", include_str!("../signatures/example.hdb"));
        db.load("example.ndb", include_str!("../signatures/example.ndb"));
        assert!(db.refused.is_empty(), "{:?}", db.refused);
        assert!(db.len() >= 3);
        assert_eq!(
            db.scan(b"xx POCZTA-TEST-SIGNATURE-NDB yy", Target::Any)
                .as_deref(),
            Some("Poczta.Test.Ndb")
        );
        let hit = db.scan(b"POCZTA-TEST-SIGNATURE-HDB\n", Target::Any);
        assert!(
            hit.as_deref().is_some_and(|n| n.starts_with("Poczta.Test.Hdb")),
            "{hit:?}"
        );
        assert_eq!(
            db.scan(b"POCZTA-TEST-SIGNATURE-HDB\n\n", Target::Any),
            None,
            "size differs"
        );
    }
}

//! A small, defensive zip reader: enough to look inside attachments.
//!
//! Entries come from the central directory (found through the end-of-
//! central-directory record), with each entry's local header read for the
//! data offset; when there is no usable central directory (a truncated or
//! crafted archive), the local headers are walked from the start instead.
//! Methods: stored (0) and deflate (8, via `miniz_oxide`); anything else is
//! reported as unsupported so the caller can decide. Zip64 archives are not
//! read (their 0xFFFFFFFF sizes are reported as unsupported entries).
//!
//! Nothing here trusts the archive: every offset and length is checked, and
//! inflating stops at a caller-given limit (zip bombs).

use std::borrow::Cow;

/// The local file header signature `PK\x03\x04`.
pub const LOCAL_SIG: &[u8; 4] = b"PK\x03\x04";
const CENTRAL_SIG: &[u8; 4] = b"PK\x01\x02";
const EOCD_SIG: &[u8; 4] = b"PK\x05\x06";
const LOCAL_LEN: usize = 30;
const CENTRAL_LEN: usize = 46;
const EOCD_LEN: usize = 22;
/// More entries than this are not listed (a crafted directory can claim 65535).
pub const MAX_ENTRIES: usize = 4096;

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The name from the central directory (or the local header when walking).
    pub name: String,
    /// The local header's name when it differs from the central one (a trick
    /// to show a scanner one name and an extractor another).
    pub local_name: Option<String>,
    /// General-purpose flag bit 0: the entry is encrypted.
    pub encrypted: bool,
    /// Compression method (0 stored, 8 deflate, …).
    pub method: u16,
    /// Declared uncompressed size.
    pub size: u64,
    /// The compressed bytes.
    pub data: &'a [u8],
}

/// Why an entry's content cannot be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtractError {
    /// Encrypted (traditional PKWARE or AES).
    Encrypted,
    /// A method other than stored/deflate.
    Method(u16),
    /// Inflates to more than the limit.
    TooLarge,
    /// Broken deflate data.
    Corrupt,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Whether `data` looks like a zip archive (starts with a local header, or
/// is an empty archive).
pub fn is_zip(data: &[u8]) -> bool {
    data.starts_with(LOCAL_SIG) || data.starts_with(EOCD_SIG)
}

fn name_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The entries of an archive, best effort; empty when nothing is readable.
pub fn entries(data: &[u8]) -> Vec<Entry<'_>> {
    match central_entries(data) {
        Some(e) if !e.is_empty() => e,
        _ => local_entries(data),
    }
}

fn find_eocd(data: &[u8]) -> Option<usize> {
    let min = data.len().saturating_sub(EOCD_LEN + u16::MAX as usize);
    let last = data.len().checked_sub(EOCD_LEN)?;
    memchr::memmem::rfind(&data[min..last + EOCD_SIG.len()], EOCD_SIG).map(|p| min + p)
}

/// Where an entry's data starts, from its local header at `off`, and the
/// local header's name.
fn local_data(data: &[u8], off: usize) -> Option<(usize, String)> {
    if !data.get(off..)?.starts_with(LOCAL_SIG) {
        return None;
    }
    let name_len = u16_at(data, off + 26)? as usize;
    let extra_len = u16_at(data, off + 28)? as usize;
    let name = name_of(data.get(off + LOCAL_LEN..off + LOCAL_LEN + name_len)?);
    Some((off + LOCAL_LEN + name_len + extra_len, name))
}

fn central_entries(data: &[u8]) -> Option<Vec<Entry<'_>>> {
    let eocd = find_eocd(data)?;
    let count = u16_at(data, eocd + 10)? as usize;
    let mut at = u32_at(data, eocd + 16)? as usize;
    let mut out = Vec::new();
    for _ in 0..count.min(MAX_ENTRIES) {
        if !data.get(at..)?.starts_with(CENTRAL_SIG) {
            break;
        }
        let flags = u16_at(data, at + 8)?;
        let method = u16_at(data, at + 10)?;
        let csize = u32_at(data, at + 20)?;
        let usize_ = u32_at(data, at + 24)?;
        let name_len = u16_at(data, at + 28)? as usize;
        let extra_len = u16_at(data, at + 30)? as usize;
        let comment_len = u16_at(data, at + 32)? as usize;
        let local = u32_at(data, at + 42)? as usize;
        let name = name_of(data.get(at + CENTRAL_LEN..at + CENTRAL_LEN + name_len)?);
        at += CENTRAL_LEN + name_len + extra_len + comment_len;
        let (start, lname) = match local_data(data, local) {
            Some(x) => x,
            None => continue,
        };
        // Zip64 markers: sizes live in an extra field this reader does not parse.
        let zip64 = csize == u32::MAX || usize_ == u32::MAX;
        let end = start.saturating_add(csize as usize).min(data.len());
        out.push(Entry {
            local_name: (lname != name).then_some(lname),
            name,
            encrypted: flags & 1 != 0,
            method: if zip64 { u16::MAX } else { method },
            size: u64::from(usize_),
            data: data.get(start..end).unwrap_or(&[]),
        });
    }
    Some(out)
}

fn local_entries(data: &[u8]) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while out.len() < MAX_ENTRIES {
        let Some((start, name)) = local_data(data, at) else {
            break;
        };
        let (Some(flags), Some(method), Some(csize), Some(usize_)) = (
            u16_at(data, at + 6),
            u16_at(data, at + 8),
            u32_at(data, at + 18),
            u32_at(data, at + 22),
        ) else {
            break;
        };
        let end = start.saturating_add(csize as usize).min(data.len());
        out.push(Entry {
            name,
            local_name: None,
            encrypted: flags & 1 != 0,
            // Bit 3: sizes follow the data, so this walk cannot know where
            // the data ends; the entry is listed (name checks) but unreadable.
            method: if flags & 8 != 0 { u16::MAX } else { method },
            size: u64::from(usize_),
            data: data.get(start..end).unwrap_or(&[]),
        });
        if flags & 8 != 0 || end <= at {
            break;
        }
        at = end;
    }
    out
}

impl<'a> Entry<'a> {
    /// The entry's content, inflated up to `limit` bytes; a stored entry is
    /// borrowed from the archive rather than copied.
    pub fn extract(&self, limit: usize) -> Result<Cow<'a, [u8]>, ExtractError> {
        if self.encrypted {
            return Err(ExtractError::Encrypted);
        }
        match self.method {
            0 if self.data.len() > limit => Err(ExtractError::TooLarge),
            0 => Ok(Cow::Borrowed(self.data)),
            8 => miniz_oxide::inflate::decompress_to_vec_with_limit(self.data, limit)
                .map(Cow::Owned)
                .map_err(|e| match e.status {
                    miniz_oxide::inflate::TINFLStatus::HasMoreOutput => ExtractError::TooLarge,
                    _ => ExtractError::Corrupt,
                }),
            m => Err(ExtractError::Method(m)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a zip from `(name, content, method, flags)`; method 8 content is
    /// deflated here. For tests of this reader and of the scanner.
    pub(crate) fn build(files: &[(&str, &[u8], u16, u16)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, content, method, flags) in files {
            let packed = if *method == 8 {
                miniz_oxide::deflate::compress_to_vec(content, 6)
            } else {
                content.to_vec()
            };
            let offset = out.len() as u32;
            out.extend_from_slice(LOCAL_SIG);
            out.extend_from_slice(&20u16.to_le_bytes());
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 8]); // time, date, crc (not checked)
            out.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            out.extend_from_slice(&(content.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&packed);

            central.extend_from_slice(CENTRAL_SIG);
            central.extend_from_slice(&[20, 0, 20, 0]);
            central.extend_from_slice(&flags.to_le_bytes());
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0; 8]);
            central.extend_from_slice(&(packed.len() as u32).to_le_bytes());
            central.extend_from_slice(&(content.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]); // extra, comment, disk, attrs
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(EOCD_SIG);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn stored_and_deflated_entries() {
        let text = b"hello hello hello hello hello hello".repeat(20);
        let z = build(&[("a.txt", b"plain", 0, 0), ("b/c.txt", &text, 8, 0)]);
        assert!(is_zip(&z));
        let e = entries(&z);
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].name.as_str(), e[0].method), ("a.txt", 0));
        assert_eq!(*e[0].extract(1 << 20).unwrap(), *b"plain");
        assert_eq!((e[1].name.as_str(), e[1].method), ("b/c.txt", 8));
        assert!(e[1].data.len() < text.len(), "really deflated");
        assert_eq!(e[1].extract(1 << 20).unwrap(), text);
        assert_eq!(e[1].extract(10), Err(ExtractError::TooLarge), "bomb limit");
        assert_eq!(e[0].extract(2), Err(ExtractError::TooLarge));
    }

    #[test]
    fn encrypted_and_unsupported() {
        let z = build(&[("secret.exe", b"xxxx", 0, 1), ("x.bin", b"yyyy", 12, 0)]);
        let e = entries(&z);
        assert!(e[0].encrypted);
        assert_eq!(e[0].extract(100), Err(ExtractError::Encrypted));
        assert_eq!(e[1].extract(100), Err(ExtractError::Method(12)));
    }

    #[test]
    fn without_central_directory_walks_local_headers() {
        let z = build(&[("one.txt", b"1", 0, 0), ("two.exe", b"22", 8, 0)]);
        let cd = find_eocd(&z).unwrap();
        let cd_start = u32_at(&z, cd + 16).unwrap() as usize;
        let truncated = &z[..cd_start];
        let e = entries(truncated);
        assert_eq!(
            e.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["one.txt", "two.exe"]
        );
        assert_eq!(*e[1].extract(100).unwrap(), *b"22");
    }

    #[test]
    fn local_name_differing_from_central_is_reported() {
        let mut z = build(&[("good.txt", b"x", 0, 0)]);
        // Rename in the local header only.
        let p = z.windows(8).position(|w| w == b"good.txt").unwrap();
        z[p..p + 8].copy_from_slice(b"evil.exe");
        let e = entries(&z);
        assert_eq!(e[0].name, "good.txt");
        assert_eq!(e[0].local_name.as_deref(), Some("evil.exe"));
    }

    #[test]
    fn garbage_and_truncation_never_panic() {
        let z = build(&[("a.txt", b"content here", 8, 0), ("b.txt", b"more", 0, 0)]);
        for cut in 0..z.len() {
            for e in entries(&z[..cut]) {
                let _ = e.extract(1000);
            }
        }
        let mut flipped = z.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            for e in entries(&flipped) {
                let _ = e.extract(1000);
            }
            flipped[i] ^= 0xff;
        }
        assert!(entries(b"PK\x03\x04").is_empty());
        assert!(!is_zip(b"MZ"));
    }
}

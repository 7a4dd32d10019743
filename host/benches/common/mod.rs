//! Inputs shared by the benches (a directory module, so cargo does not
//! take it for a bench target of its own).

use std::fmt::Write as _;

/// `headers` (ending in the blank line) followed by CRLF lines of about 70
/// characters, every twelfth starting with a dot, until `size` bytes;
/// dot-stuffed for the wire and followed by the terminator.
pub fn stuffed_message(headers: &str, size: usize) -> Vec<u8> {
    let mut msg = String::with_capacity(size + headers.len() + 128);
    msg.push_str(headers);
    let mut i = 0u64;
    while msg.len() < size {
        if i % 12 == 5 {
            // ".line" in the content travels as "..line" on the wire.
            let _ = write!(
                msg,
                "..line {i} starts with a dot and must be unstuffed by the server\r\n"
            );
        } else {
            let _ = write!(
                msg,
                "line {i}: the quick brown fox jumps over the lazy dog, 0123456789\r\n"
            );
        }
        i += 1;
    }
    msg.push_str(".\r\n");
    msg.into_bytes()
}

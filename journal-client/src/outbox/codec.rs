//! Byte layouts of the local log: a stored record (the sled value, also the
//! payload of a write-ahead frame), a write-ahead frame, and the sled keys.
//!
//! Stored record: `version u8 = 1`, `boot_epoch u64 BE`, `seq u64 BE`,
//! `prev_hash [32]`, `hash [32]`, then the record's JSON.
//! Frame: `len u32 LE` (of the payload), `crc32 u32 LE` (of the payload),
//! payload. A frame that is cut short or fails its checksum ends the file.

use policy_proto::journal::RecordEnvelope;

use super::LogError;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 8 + 8 + 32 + 32;
const FRAME_HEADER: usize = 8;

/// Key prefix of records (followed by the big-endian seq); metadata keys
/// start with 0 and sort before every record.
pub const RECORD: u8 = 1;

pub const KEY_BOOT_EPOCH: &[u8] = b"\x00boot_epoch";
pub const KEY_AGENT_ID: &[u8] = b"\x00agent_id";
/// seq and hash of the newest acknowledged record: the chain head once
/// every record has been deleted.
pub const KEY_ACKED: &[u8] = b"\x00acked";

/// The sled key of record `seq`: ordered like the seqs.
pub fn record_key(seq: u64) -> [u8; 9] {
    let mut key = [RECORD; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// A record as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub boot_epoch: u64,
    pub seq: u64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    pub json: Vec<u8>,
}

impl Stored {
    /// Encodes into `out` (cleared first).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(HEADER + self.json.len());
        out.push(VERSION);
        out.extend_from_slice(&self.boot_epoch.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.prev_hash);
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.json);
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, LogError> {
        let corrupt = |reason| LogError::Corrupt { reason };
        if bytes.len() < HEADER {
            return Err(corrupt("stored record shorter than its header"));
        }
        if bytes[0] != VERSION {
            return Err(corrupt("unknown stored record version"));
        }
        Ok(Self {
            boot_epoch: be_u64(&bytes[1..9]),
            seq: be_u64(&bytes[9..17]),
            prev_hash: array32(&bytes[17..49]),
            hash: array32(&bytes[49..81]),
            json: bytes[HEADER..].to_vec(),
        })
    }

    /// The seq of an encoded record without decoding the rest.
    pub fn peek_seq(bytes: &[u8]) -> Option<u64> {
        bytes.get(9..17).map(be_u64)
    }

    /// Whether `hash` is the SHA-256 of the JSON.
    pub fn is_intact(&self) -> bool {
        hex::encode(self.hash) == crate::record_hash(&self.json)
    }

    pub fn into_envelope(self, agent_id: &str) -> RecordEnvelope {
        RecordEnvelope {
            agent_id: agent_id.to_owned(),
            boot_epoch: self.boot_epoch,
            seq: self.seq,
            prev_hash: hex::encode(self.prev_hash),
            hash: hex::encode(self.hash),
            record_json: self.json,
        }
    }
}

/// Parses a lower-case hex SHA-256.
pub fn parse_hash(hex_hash: &str) -> Result<[u8; 32], LogError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut out).map_err(|_| LogError::Corrupt {
        reason: "hash is not 64 hex digits",
    })?;
    Ok(out)
}

/// Appends the frame of `payload` to `out`.
pub fn frame_into(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The payloads of the intact frames at the start of `bytes`, and whether a
/// torn or corrupt tail followed them.
pub fn read_frames(bytes: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(header) = rest.get(..FRAME_HEADER) else {
            return (out, true);
        };
        let len = le_u32(&header[..4]) as usize;
        let crc = le_u32(&header[4..8]);
        if len == 0 {
            // A payload is never empty: zeros where frames were expected.
            return (out, true);
        }
        let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
            return (out, true);
        };
        if crc32(payload) != crc {
            return (out, true);
        }
        out.push(payload);
        rest = &rest[FRAME_HEADER + len..];
    }
    (out, false)
}

pub fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(b)
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = bytes.len().min(4);
    b[..n].copy_from_slice(&bytes[..n]);
    u32::from_le_bytes(b)
}

fn array32(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let n = bytes.len().min(32);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// CRC-32 (IEEE), as zlib computes it.
pub fn crc32(bytes: &[u8]) -> u32 {
    // CRC-32 (IEEE, zlib's): the SIMD implementation of crc32fast, on every
    // decision's path.
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn stored(seq: u64) -> Stored {
        let json = format!(r#"{{"seq":{seq}}}"#).into_bytes();
        Stored {
            boot_epoch: 3,
            seq,
            prev_hash: [7; 32],
            hash: parse_hash(&crate::record_hash(&json)).unwrap(),
            json,
        }
    }

    #[test]
    fn crc32_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn stored_round_trip() {
        let s = stored(42);
        let mut buf = Vec::new();
        s.encode_into(&mut buf);
        assert_eq!(Stored::peek_seq(&buf), Some(42));
        let back = Stored::decode(&buf).unwrap();
        assert_eq!(back, s);
        assert!(back.is_intact());
        let env = back.into_envelope("a1");
        assert_eq!(env.seq, 42);
        assert_eq!(env.prev_hash, hex::encode([7u8; 32]));
        assert!(matches!(
            Stored::decode(&buf[..10]),
            Err(LogError::Corrupt { .. })
        ));
    }

    #[test]
    fn torn_and_corrupt_tails_end_the_frames() {
        let mut file = Vec::new();
        for seq in 1..=3 {
            let mut payload = Vec::new();
            stored(seq).encode_into(&mut payload);
            frame_into(&payload, &mut file);
        }
        let (frames, torn) = read_frames(&file);
        assert_eq!((frames.len(), torn), (3, false));
        for cut in 1..20 {
            let (frames, torn) = read_frames(&file[..file.len() - cut]);
            assert_eq!((frames.len(), torn), (2, true), "cut {cut}");
        }
        let mut flipped = file.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(read_frames(&flipped).0.len(), 2);
        // A zeroed tail (a file extended but not written) is torn too.
        let mut zeroed = file.clone();
        zeroed.extend_from_slice(&[0u8; 100]);
        let (frames, torn) = read_frames(&zeroed);
        assert_eq!((frames.len(), torn), (3, true));
    }

    #[test]
    fn record_keys_sort_by_seq() {
        assert!(record_key(255) < record_key(256));
        assert!(record_key(1).as_slice() > KEY_ACKED);
        assert!(KEY_BOOT_EPOCH[0] < RECORD && KEY_AGENT_ID[0] < RECORD);
    }
}

//! Wire format of `/skymesh/sync/1`: one request and one response per stream.
//!
//! Every integer is big-endian. Each side writes its message and closes its half, so a reader
//! reads to EOF with a hard limit ([`MAX_REQUEST_BYTES`], [`MAX_RESPONSE_BYTES`]) and then
//! decodes with [`decode_request`] / [`decode_response`], which never panic, never allocate more
//! than the input length, and refuse trailing bytes (one encoding per message).
//!
//! Request:
//!
//! ```text
//! 0x01 GetItems  ‖ flags u8 (bit 0: salt present; other bits 0)
//!                ‖ [salt_len u8 (≤ 64) ‖ salt]       (only with bit 0)
//!                ‖ epoch u64 ‖ cursor u64 ‖ limit u16 (1..=MAX_PAGE_ITEMS)
//! 0x02 Push      ‖ count u16 (1..=MAX_PUSH_ITEMS) ‖ (len u32 ‖ item)*
//! ```
//!
//! Response:
//!
//! ```text
//! 0x00 Page      ‖ epoch u64 ‖ next_cursor u64 ‖ last_change u64 ‖ has_more u8 (0|1)
//!                ‖ count u16 (≤ MAX_PAGE_ITEMS) ‖ (len u32 ‖ item)*
//! 0x01 Ack       ‖ stored u16 ‖ duplicate u16 ‖ refused u16      (answer to Push)
//! 0x02 Refused   ‖ reason u8 (1 rate limited, 2 not allowed, 3 bad request)
//! ```
//!
//! `item` is the binary item encoding of `dht::Item` (≤ [`MAX_ITEM_BYTES`]); it is decoded by
//! [`dht::Item::decode_for_verification`] here, so a message that decodes holds only
//! well-formed items. Nothing about an item is trusted yet: signatures (which also prove the
//! signer key a curve point), values and seqs are the acceptance rules' job (`dht::rules`),
//! applied by whoever stores them.
//!
//! **Cursor.** `(epoch, cursor)` is a position in the *serving* store's change sequence
//! (`dht::Cursor`), not an item seq. The epoch names one incarnation of that sequence (the
//! serving node picks a new one every start, because its in-memory change numbers restart). A
//! server that receives a foreign epoch serves from the start and answers with its own epoch.
//!
//! **Limits.** A page holds at most [`MAX_PAGE_ITEMS`] items and, apart from its first item, at
//! most [`MAX_PAGE_BYTES`] bytes of items; the server clamps the requested limit. A push holds at
//! most [`MAX_PUSH_ITEMS`] items and [`MAX_PAGE_BYTES`] bytes (first item excepted, likewise).
use dht::item::MAX_VALUE_LEN_LIMIT;
use dht::salt::MAX_SALT_LEN;
use dht::{Item, Salt};

/// Protocol id.
pub const PROTOCOL_NAME: &str = "/skymesh/sync/1";

/// Most items in one page: the store's own listing limit (`dht::store::MAX_LIST_LIMIT`, 1000, the
/// Go `GetItems` default). At ~200 bytes per real item a full page is ~200 KiB.
pub const MAX_PAGE_ITEMS: u16 = 1000;

/// Item bytes in one page or push beyond its first item: 4 MiB (the Go frame cap), so a page of
/// large (64 KiB) values still holds 64 of them while a reader never buffers much.
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// Largest encoded item: fixed fields (113 bytes) + salt (64) + writer (33) + the hard value
/// limit ([`MAX_VALUE_LEN_LIMIT`], 4 MiB).
pub const MAX_ITEM_BYTES: usize = 113 + MAX_SALT_LEN + 33 + MAX_VALUE_LEN_LIMIT;

/// Most items in one push: pushes carry fresh writes, batched while the previous push to the
/// same peer is in flight; 256 keeps one push under ~64 KiB for real items.
pub const MAX_PUSH_ITEMS: u16 = 256;

/// Largest request: a push at its byte limit plus one item and the length prefixes.
pub const MAX_REQUEST_BYTES: usize =
    3 + MAX_PAGE_BYTES + MAX_ITEM_BYTES + 4 * MAX_PUSH_ITEMS as usize;

/// Largest response: a page at its byte limit plus one item and the length prefixes.
pub const MAX_RESPONSE_BYTES: usize =
    28 + MAX_PAGE_BYTES + MAX_ITEM_BYTES + 4 * MAX_PAGE_ITEMS as usize;

/// Ask for items changed after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetItems {
    /// Only items with this salt (`None`: all).
    pub salt: Option<Salt>,
    /// Epoch of the serving store the cursor belongs to (0: none yet).
    pub epoch: u64,
    /// Items changed after this change number (0: from the start).
    pub cursor: u64,
    /// Most items wanted (the server clamps to 1..=[`MAX_PAGE_ITEMS`]).
    pub limit: u16,
}

/// A request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A page of the responder's store.
    GetItems(GetItems),
    /// Fresh writes forwarded by a full node.
    Push(Vec<Item>),
}

/// One page of the serving store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Epoch of the serving store (see the module doc).
    pub epoch: u64,
    /// Resume from here: change number of the last item, or the start cursor when empty.
    pub next_cursor: u64,
    /// The serving store's last change number when the page was cut (for progress display).
    pub last_change: u64,
    /// More matching items exist after `next_cursor`.
    pub has_more: bool,
    /// Items in change order.
    pub items: Vec<Item>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseReason {
    /// Per-peer request limit reached; retry later.
    RateLimited,
    /// The requester may not do this (penalised, or pushing without being a known full node).
    NotAllowed,
    /// The request was well-formed but not servable (e.g. the store failed).
    BadRequest,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Answer to [`Request::GetItems`].
    Page(Page),
    /// Answer to [`Request::Push`]: what the receiver did with the items.
    Ack {
        /// Stored (new or replacing).
        stored: u16,
        /// Already held (deduplicated).
        duplicate: u16,
        /// Refused by the acceptance rules.
        refused: u16,
    },
    /// The request was refused.
    Refused(RefuseReason),
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message ended inside a field.
    #[error("truncated reading {field}")]
    Truncated {
        /// The field.
        field: &'static str,
    },
    /// Unknown message kind.
    #[error("unknown message kind {kind:#04x}")]
    Kind {
        /// The kind byte.
        kind: u8,
    },
    /// Reserved flag bits set, or a boolean that is not 0 or 1.
    #[error("bad flags {flags:#04x}")]
    Flags {
        /// The byte.
        flags: u8,
    },
    /// Salt longer than 64 bytes.
    #[error("salt of {len} bytes")]
    Salt {
        /// Declared length.
        len: usize,
    },
    /// A count or limit outside its range.
    #[error("{field} is {value}, allowed {min}..={max}")]
    Range {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// Lowest allowed.
        min: u64,
        /// Highest allowed.
        max: u64,
    },
    /// The items exceed the byte limit.
    #[error("items take {bytes} bytes, above the limit")]
    TooLarge {
        /// Bytes of items seen.
        bytes: usize,
    },
    /// An item is malformed.
    #[error("item {index}: {source}")]
    Item {
        /// Position in the message.
        index: usize,
        /// Why.
        #[source]
        source: dht::DecodeError,
    },
    /// Unknown refusal reason.
    #[error("unknown refusal reason {reason}")]
    Reason {
        /// The byte.
        reason: u8,
    },
    /// A page's cursor fields contradict each other (`next_cursor > last_change`).
    #[error("page cursor {next} beyond the store's last change {last}")]
    Cursor {
        /// next_cursor.
        next: u64,
        /// last_change.
        last: u64,
    },
    /// Bytes remain after the message.
    #[error("{extra} trailing bytes")]
    Trailing {
        /// How many.
        extra: usize,
    },
}

/// Why a message cannot be encoded (it would break the limits its reader enforces).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Too many items.
    #[error("{count} items, at most {max}")]
    TooMany {
        /// Items given.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// A push with no items.
    #[error("empty push")]
    Empty,
    /// The items exceed [`MAX_PAGE_BYTES`] beyond the first one, or an item exceeds
    /// [`MAX_ITEM_BYTES`].
    #[error("items take {bytes} bytes, above the limit")]
    TooLarge {
        /// Bytes of items.
        bytes: usize,
    },
    /// A limit of 0 or above [`MAX_PAGE_ITEMS`].
    #[error("limit {limit} outside 1..={max}", max = MAX_PAGE_ITEMS)]
    Limit {
        /// The limit.
        limit: u16,
    },
}

const KIND_GET_ITEMS: u8 = 0x01;
const KIND_PUSH: u8 = 0x02;
const KIND_PAGE: u8 = 0x00;
const KIND_ACK: u8 = 0x01;
const KIND_REFUSED: u8 = 0x02;
const FLAG_SALT: u8 = 0x01;

/// Whether `sizes` (encoded item lengths, in order) fit one message: each ≤ [`MAX_ITEM_BYTES`],
/// and everything after the first item within [`MAX_PAGE_BYTES`]. Returns the total.
fn check_sizes(sizes: impl Iterator<Item = usize>) -> Result<usize, usize> {
    let mut total = 0usize;
    let mut rest = 0usize;
    for (i, n) in sizes.enumerate() {
        total = total.saturating_add(n);
        if i > 0 {
            rest = rest.saturating_add(n);
        }
        if n > MAX_ITEM_BYTES || rest > MAX_PAGE_BYTES {
            return Err(total);
        }
    }
    Ok(total)
}

/// How many of `sizes` (in order) fit one page or push: at least one, then while the bytes after
/// the first stay within [`MAX_PAGE_BYTES`]. Used by servers to cut pages and by pushers to cut
/// batches.
pub fn fitting(sizes: impl IntoIterator<Item = usize>) -> usize {
    let mut n = 0usize;
    let mut rest = 0usize;
    for (i, size) in sizes.into_iter().enumerate() {
        if i > 0 {
            rest = rest.saturating_add(size);
            if rest > MAX_PAGE_BYTES {
                break;
            }
        }
        n += 1;
    }
    n
}

fn put_items(out: &mut Vec<u8>, items: &[Item]) {
    for item in items {
        // Item lengths are checked against MAX_ITEM_BYTES (< u32::MAX) before this is called.
        let n = u32::try_from(item.encoded_len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        item.encode_into(out);
    }
}

/// Encodes a request.
pub fn encode_request(req: &Request) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    match req {
        Request::GetItems(g) => {
            if g.limit == 0 || g.limit > MAX_PAGE_ITEMS {
                return Err(EncodeError::Limit { limit: g.limit });
            }
            out.push(KIND_GET_ITEMS);
            match &g.salt {
                Some(salt) => {
                    out.push(FLAG_SALT);
                    // Salt ≤ 64 bytes by type.
                    out.push(u8::try_from(salt.len()).unwrap_or(u8::MAX));
                    out.extend_from_slice(salt.as_bytes());
                }
                None => out.push(0),
            }
            out.extend_from_slice(&g.epoch.to_be_bytes());
            out.extend_from_slice(&g.cursor.to_be_bytes());
            out.extend_from_slice(&g.limit.to_be_bytes());
        }
        Request::Push(items) => {
            if items.is_empty() {
                return Err(EncodeError::Empty);
            }
            let count = u16::try_from(items.len())
                .ok()
                .filter(|&c| c <= MAX_PUSH_ITEMS)
                .ok_or(EncodeError::TooMany {
                    count: items.len(),
                    max: MAX_PUSH_ITEMS.into(),
                })?;
            let bytes = check_sizes(items.iter().map(Item::encoded_len))
                .map_err(|bytes| EncodeError::TooLarge { bytes })?;
            out.reserve(3 + bytes + 4 * items.len());
            out.push(KIND_PUSH);
            out.extend_from_slice(&count.to_be_bytes());
            put_items(&mut out, items);
        }
    }
    Ok(out)
}

/// Encodes a response.
pub fn encode_response(res: &Response) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    match res {
        Response::Page(p) => {
            let count = u16::try_from(p.items.len())
                .ok()
                .filter(|&c| c <= MAX_PAGE_ITEMS)
                .ok_or(EncodeError::TooMany {
                    count: p.items.len(),
                    max: MAX_PAGE_ITEMS.into(),
                })?;
            let bytes = check_sizes(p.items.iter().map(Item::encoded_len))
                .map_err(|bytes| EncodeError::TooLarge { bytes })?;
            out.reserve(28 + bytes + 4 * p.items.len());
            out.push(KIND_PAGE);
            out.extend_from_slice(&p.epoch.to_be_bytes());
            out.extend_from_slice(&p.next_cursor.to_be_bytes());
            out.extend_from_slice(&p.last_change.to_be_bytes());
            out.push(u8::from(p.has_more));
            out.extend_from_slice(&count.to_be_bytes());
            put_items(&mut out, &p.items);
        }
        Response::Ack {
            stored,
            duplicate,
            refused,
        } => {
            out.push(KIND_ACK);
            out.extend_from_slice(&stored.to_be_bytes());
            out.extend_from_slice(&duplicate.to_be_bytes());
            out.extend_from_slice(&refused.to_be_bytes());
        }
        Response::Refused(reason) => {
            out.push(KIND_REFUSED);
            out.push(match reason {
                RefuseReason::RateLimited => 1,
                RefuseReason::NotAllowed => 2,
                RefuseReason::BadRequest => 3,
            });
        }
    }
    Ok(out)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn items(&mut self, count: usize) -> Result<Vec<Item>, DecodeError> {
        // Each item takes at least 4 bytes of length prefix: never reserve more than the input
        // could hold.
        let mut items = Vec::with_capacity(count.min(self.buf.len() / 4));
        let mut rest = 0usize;
        for index in 0..count {
            let len = self.u32("item length")? as usize;
            if len > MAX_ITEM_BYTES {
                return Err(DecodeError::TooLarge { bytes: len });
            }
            if index > 0 {
                rest = rest.saturating_add(len);
                if rest > MAX_PAGE_BYTES {
                    return Err(DecodeError::TooLarge { bytes: rest });
                }
            }
            let bytes = self.take(len, "item")?;
            let item = Item::decode_for_verification(bytes)
                .map_err(|source| DecodeError::Item { index, source })?;
            items.push(item);
        }
        Ok(items)
    }

    fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing {
                extra: self.buf.len(),
            })
        }
    }
}

fn range(field: &'static str, value: u16, min: u16, max: u16) -> Result<usize, DecodeError> {
    if value < min || value > max {
        return Err(DecodeError::Range {
            field,
            value: value.into(),
            min: min.into(),
            max: max.into(),
        });
    }
    Ok(value.into())
}

/// Decodes a request (see the module doc).
pub fn decode_request(bytes: &[u8]) -> Result<Request, DecodeError> {
    let mut r = Reader { buf: bytes };
    let req = match r.u8("kind")? {
        KIND_GET_ITEMS => {
            let flags = r.u8("flags")?;
            if flags & !FLAG_SALT != 0 {
                return Err(DecodeError::Flags { flags });
            }
            let salt = if flags & FLAG_SALT != 0 {
                let len = usize::from(r.u8("salt length")?);
                if len > MAX_SALT_LEN {
                    return Err(DecodeError::Salt { len });
                }
                let salt = Salt::new(r.take(len, "salt")?.to_vec())
                    .map_err(|e| DecodeError::Salt { len: e.len })?;
                Some(salt)
            } else {
                None
            };
            let epoch = r.u64("epoch")?;
            let cursor = r.u64("cursor")?;
            let limit = r.u16("limit")?;
            range("limit", limit, 1, MAX_PAGE_ITEMS)?;
            Request::GetItems(GetItems {
                salt,
                epoch,
                cursor,
                limit,
            })
        }
        KIND_PUSH => {
            let count = r.u16("count")?;
            let count = range("count", count, 1, MAX_PUSH_ITEMS)?;
            Request::Push(r.items(count)?)
        }
        kind => return Err(DecodeError::Kind { kind }),
    };
    r.finish()?;
    Ok(req)
}

/// Decodes a response (see the module doc).
pub fn decode_response(bytes: &[u8]) -> Result<Response, DecodeError> {
    let mut r = Reader { buf: bytes };
    let res = match r.u8("kind")? {
        KIND_PAGE => {
            let epoch = r.u64("epoch")?;
            let next_cursor = r.u64("next cursor")?;
            let last_change = r.u64("last change")?;
            let has_more = match r.u8("has_more")? {
                0 => false,
                1 => true,
                flags => return Err(DecodeError::Flags { flags }),
            };
            if next_cursor > last_change {
                return Err(DecodeError::Cursor {
                    next: next_cursor,
                    last: last_change,
                });
            }
            let count = r.u16("count")?;
            let count = range("count", count, 0, MAX_PAGE_ITEMS)?;
            let items = r.items(count)?;
            Response::Page(Page {
                epoch,
                next_cursor,
                last_change,
                has_more,
                items,
            })
        }
        KIND_ACK => Response::Ack {
            stored: r.u16("stored")?,
            duplicate: r.u16("duplicate")?,
            refused: r.u16("refused")?,
        },
        KIND_REFUSED => Response::Refused(match r.u8("reason")? {
            1 => RefuseReason::RateLimited,
            2 => RefuseReason::NotAllowed,
            3 => RefuseReason::BadRequest,
            reason => return Err(DecodeError::Reason { reason }),
        }),
        kind => return Err(DecodeError::Kind { kind }),
    };
    r.finish()?;
    Ok(res)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keys::SecKey;

    fn item(n: u64) -> Item {
        let sk = SecKey::from_seed(format!("k{}", n % 7).as_bytes());
        Item::sign(&sk, Salt::new(b"x".to_vec()).unwrap(), n, vec![n as u8; 10]).unwrap()
    }

    #[test]
    fn round_trips() {
        let reqs = [
            Request::GetItems(GetItems {
                salt: None,
                epoch: 0,
                cursor: 0,
                limit: 1,
            }),
            Request::GetItems(GetItems {
                salt: Some(Salt::new(b"svc".to_vec()).unwrap()),
                epoch: 9,
                cursor: u64::MAX,
                limit: MAX_PAGE_ITEMS,
            }),
            Request::Push(vec![item(1), item(2)]),
        ];
        for req in reqs {
            assert_eq!(decode_request(&encode_request(&req).unwrap()).unwrap(), req);
        }
        let resps = [
            Response::Page(Page {
                epoch: 3,
                next_cursor: 7,
                last_change: 9,
                has_more: true,
                items: vec![item(3), item(4)],
            }),
            Response::Page(Page {
                epoch: 3,
                next_cursor: 0,
                last_change: 0,
                has_more: false,
                items: vec![],
            }),
            Response::Ack {
                stored: 1,
                duplicate: 2,
                refused: 3,
            },
            Response::Refused(RefuseReason::RateLimited),
            Response::Refused(RefuseReason::NotAllowed),
            Response::Refused(RefuseReason::BadRequest),
        ];
        for res in resps {
            assert_eq!(
                decode_response(&encode_response(&res).unwrap()).unwrap(),
                res
            );
        }
    }

    #[test]
    fn hex_snapshot_of_get_items() {
        let req = Request::GetItems(GetItems {
            salt: Some(Salt::new(b"tp".to_vec()).unwrap()),
            epoch: 1,
            cursor: 2,
            limit: 3,
        });
        assert_eq!(
            encode_request(&req).unwrap(),
            [
                &[0x01, 0x01, 0x02, b't', b'p'][..],
                &1u64.to_be_bytes(),
                &2u64.to_be_bytes(),
                &3u16.to_be_bytes()
            ]
            .concat()
        );
    }

    #[test]
    fn refuses_bad_messages() {
        // Limit 0 and above the maximum.
        let mut b = encode_request(&Request::GetItems(GetItems {
            salt: None,
            epoch: 0,
            cursor: 0,
            limit: 1,
        }))
        .unwrap();
        let n = b.len();
        b[n - 2..].copy_from_slice(&0u16.to_be_bytes());
        assert!(matches!(decode_request(&b), Err(DecodeError::Range { .. })));
        b[n - 2..].copy_from_slice(&(MAX_PAGE_ITEMS + 1).to_be_bytes());
        assert!(decode_request(&b).is_err());
        // Trailing byte.
        b[n - 2..].copy_from_slice(&1u16.to_be_bytes());
        b.push(0);
        assert!(matches!(
            decode_request(&b),
            Err(DecodeError::Trailing { extra: 1 })
        ));
        // Unknown flags, empty push, unknown kind.
        assert!(decode_request(&[0x01, 0x02]).is_err());
        assert!(decode_request(&[0x02, 0, 0]).is_err());
        assert!(decode_request(&[0x7f]).is_err());
        assert!(decode_request(&[]).is_err());
        // A page whose count promises more items than present.
        let mut p = vec![KIND_PAGE];
        p.extend_from_slice(&[0; 24]);
        p.push(0);
        p.extend_from_slice(&5u16.to_be_bytes());
        assert!(matches!(
            decode_response(&p),
            Err(DecodeError::Truncated { .. })
        ));
        // next_cursor beyond last_change.
        let bad = encode_response(&Response::Page(Page {
            epoch: 1,
            next_cursor: 2,
            last_change: 2,
            has_more: false,
            items: vec![],
        }))
        .unwrap();
        let mut bad2 = bad.clone();
        bad2[16] = 3; // next_cursor low byte = 3 > last_change 2
        assert!(matches!(
            decode_response(&bad2),
            Err(DecodeError::Cursor { .. })
        ));
        // has_more not 0/1.
        let mut bad3 = bad;
        bad3[25] = 2;
        assert!(matches!(
            decode_response(&bad3),
            Err(DecodeError::Flags { .. })
        ));
        // An item length above the hard limit is refused before reading it.
        let mut huge = vec![KIND_PUSH, 0, 1];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_request(&huge),
            Err(DecodeError::TooLarge { .. })
        ));
        // A damaged item.
        let mut push = encode_request(&Request::Push(vec![item(1)])).unwrap();
        push[7] = 9; // item version byte
        assert!(matches!(
            decode_request(&push),
            Err(DecodeError::Item { index: 0, .. })
        ));
    }

    /// Writes well-formed messages (real signed items) as fuzz seeds into `$SYNC_FUZZ_SEEDS`
    /// (`tests/fuzz/corpus/sync_wire`); does nothing without it.
    #[test]
    fn write_fuzz_seeds() {
        let Ok(dir) = std::env::var("SYNC_FUZZ_SEEDS") else {
            return;
        };
        let msgs = [
            encode_request(&Request::Push(vec![item(1), item(2)])).unwrap(),
            encode_request(&Request::GetItems(GetItems {
                salt: Some(Salt::new(b"svc".to_vec()).unwrap()),
                epoch: 1,
                cursor: 5,
                limit: 10,
            }))
            .unwrap(),
            encode_response(&Response::Page(Page {
                epoch: 1,
                next_cursor: 9,
                last_change: 20,
                has_more: true,
                items: vec![item(3), item(4), item(5)],
            }))
            .unwrap(),
            encode_response(&Response::Ack {
                stored: 1,
                duplicate: 0,
                refused: 2,
            })
            .unwrap(),
        ];
        for (i, m) in msgs.iter().enumerate() {
            std::fs::write(format!("{dir}/seed-{i}"), m).unwrap();
        }
    }

    #[test]
    fn encoder_enforces_limits() {
        assert_eq!(
            encode_request(&Request::Push(vec![])),
            Err(EncodeError::Empty)
        );
        let many = vec![item(1); usize::from(MAX_PUSH_ITEMS) + 1];
        assert!(matches!(
            encode_request(&Request::Push(many)),
            Err(EncodeError::TooMany { .. })
        ));
        let sizes = [10, MAX_PAGE_BYTES - 10, 11];
        assert_eq!(fitting(sizes), 2);
        assert_eq!(fitting([MAX_PAGE_BYTES * 2]), 1);
        assert_eq!(fitting(std::iter::empty()), 0);
    }
}

#[cfg(test)]
mod proptests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        /// Arbitrary bytes never panic either decoder; whatever decodes re-encodes to the same
        /// bytes (one encoding per message).
        #[test]
        fn decoders_total_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(req) = decode_request(&bytes) {
                prop_assert_eq!(encode_request(&req).unwrap(), bytes.clone());
            }
            if let Ok(res) = decode_response(&bytes) {
                prop_assert_eq!(encode_response(&res).unwrap(), bytes);
            }
        }

        /// Well-formed prefixes with random tails never panic.
        #[test]
        fn structured_garbage(kind in 0u8..4, count in any::<u16>(), tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = vec![kind];
            b.extend_from_slice(&count.to_be_bytes());
            b.extend_from_slice(&tail);
            let _ = decode_request(&b);
            let _ = decode_response(&b);
        }

        #[test]
        fn get_items_round_trip(salt in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=64)),
                                epoch in any::<u64>(), cursor in any::<u64>(), limit in 1u16..=MAX_PAGE_ITEMS) {
            let req = Request::GetItems(GetItems {
                salt: salt.map(|s| Salt::new(s).unwrap()),
                epoch,
                cursor,
                limit,
            });
            prop_assert_eq!(decode_request(&encode_request(&req).unwrap()).unwrap(), req);
        }
    }
}

//! `/skymesh/get/1`: the byte layout of the one-round-trip read protocol served by every node
//! (full nodes are the ones asked first), and its strict, never-panicking decoders. Pure: the
//! libp2p codec that moves these bytes over a stream lives in `dht/node` (`dhtnode::codec`).
//!
//! One request and one response per stream; the writer closes its side after the message, so
//! each side reads to EOF with a hard byte limit.
//!
//! Request (at most [`MAX_REQUEST_BYTES`]):
//!
//! | bytes | content |
//! |---|---|
//! | 1 | kind: `0x01` Get, `0x02` FullNodes |
//! | 32 | target (Get only): SHA-256(pk ‖ salt) |
//!
//! Response (at most [`MAX_RESPONSE_BYTES`]):
//!
//! | bytes | content |
//! |---|---|
//! | 1 | kind: `0x00` NotFound, `0x01` Found, `0x02` Items, `0x03` Refused (rate limit) |
//! | 4 | Found: item length (u32 BE), then the encoded item |
//! | 2 | Items: count (u16 BE, ≤ [`MAX_ITEMS_PER_RESPONSE`]), then per item u32 BE length + encoded item |
//!
//! Nothing in a response is trusted: the reader checks every item against the target it asked
//! for and verifies the signature before use (`dhtnode::ItemStore::check`).

/// Largest request: kind byte plus a 32-byte target.
pub const MAX_REQUEST_BYTES: usize = 33;

/// Largest response: 1 MiB. A full `Items` answer is at most [`MAX_ITEMS_PER_RESPONSE`] adverts
/// of well under 1 KiB each; a single item is bounded by the item model's value limit (64 KiB).
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Most items in one `Items` response (adverts are small; 256 full nodes is far more than the
/// deployment has).
pub const MAX_ITEMS_PER_RESPONSE: usize = 256;

const REQ_GET: u8 = 0x01;
const REQ_FULL_NODES: u8 = 0x02;
const RES_NOT_FOUND: u8 = 0x00;
const RES_FOUND: u8 = 0x01;
const RES_ITEMS: u8 = 0x02;
const RES_REFUSED: u8 = 0x03;

/// A read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The item stored under this target, if any.
    Get([u8; 32]),
    /// The fresh `fullnode` adverts the responder holds.
    FullNodes,
}

/// A read response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Nothing stored under the target.
    NotFound,
    /// The encoded item (unverified until the reader checks it).
    Found(Vec<u8>),
    /// Encoded items (unverified).
    Items(Vec<Vec<u8>>),
    /// The responder refused the request (per-peer limit).
    Refused,
}

/// Why bytes are not a valid `/skymesh/get/1` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// An unknown request kind, or a FullNodes request with a body.
    #[error("bad request")]
    BadRequest,
    /// A Get request whose target is not 32 bytes.
    #[error("bad target length {len}")]
    TargetLength {
        /// The length found.
        len: usize,
    },
    /// An unknown response kind.
    #[error("bad response kind {kind:#04x}")]
    ResponseKind {
        /// The kind byte found.
        kind: u8,
    },
    /// The message ends inside `field`.
    #[error("truncated in {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// An Items response announcing more than [`MAX_ITEMS_PER_RESPONSE`].
    #[error("too many items: {count}")]
    TooMany {
        /// The count announced.
        count: usize,
    },
    /// Bytes after the message.
    #[error("{bytes} trailing bytes")]
    Trailing {
        /// How many.
        bytes: usize,
    },
}

/// Why a response cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// More than [`MAX_ITEMS_PER_RESPONSE`] items.
    #[error("too many items: {count}")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// An item longer than a u32 length can say.
    #[error("item too large: {bytes} bytes")]
    ItemTooLarge {
        /// Its length.
        bytes: usize,
    },
    /// The response would exceed [`MAX_RESPONSE_BYTES`].
    #[error("response too large: {bytes} bytes")]
    TooLarge {
        /// Its length.
        bytes: usize,
    },
}

/// Encodes a request.
pub fn encode_request(req: &Request) -> Vec<u8> {
    match req {
        Request::Get(t) => {
            let mut v = Vec::with_capacity(MAX_REQUEST_BYTES);
            v.push(REQ_GET);
            v.extend_from_slice(t);
            v
        }
        Request::FullNodes => vec![REQ_FULL_NODES],
    }
}

/// Decodes a request.
pub fn decode_request(b: &[u8]) -> Result<Request, DecodeError> {
    match b.split_first() {
        Some((&REQ_GET, t)) => {
            let t: [u8; 32] = t
                .try_into()
                .map_err(|_| DecodeError::TargetLength { len: t.len() })?;
            Ok(Request::Get(t))
        }
        Some((&REQ_FULL_NODES, [])) => Ok(Request::FullNodes),
        _ => Err(DecodeError::BadRequest),
    }
}

fn put_item(v: &mut Vec<u8>, item: &[u8]) -> Result<(), EncodeError> {
    let n =
        u32::try_from(item.len()).map_err(|_| EncodeError::ItemTooLarge { bytes: item.len() })?;
    v.extend_from_slice(&n.to_be_bytes());
    v.extend_from_slice(item);
    Ok(())
}

/// Encodes a response; fails when it would exceed the limits.
pub fn encode_response(res: &Response) -> Result<Vec<u8>, EncodeError> {
    let mut v = Vec::new();
    match res {
        Response::NotFound => v.push(RES_NOT_FOUND),
        Response::Found(item) => {
            v.push(RES_FOUND);
            put_item(&mut v, item)?;
        }
        Response::Items(items) => {
            let count = items.len();
            let n = u16::try_from(count)
                .ok()
                .filter(|_| count <= MAX_ITEMS_PER_RESPONSE)
                .ok_or(EncodeError::TooMany { count })?;
            v.push(RES_ITEMS);
            v.extend_from_slice(&n.to_be_bytes());
            for item in items {
                put_item(&mut v, item)?;
            }
        }
        Response::Refused => v.push(RES_REFUSED),
    }
    if v.len() > MAX_RESPONSE_BYTES {
        return Err(EncodeError::TooLarge { bytes: v.len() });
    }
    Ok(v)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn item(&mut self) -> Result<Vec<u8>, DecodeError> {
        let raw: [u8; 4] =
            self.take(4, "item length")?
                .try_into()
                .map_err(|_| DecodeError::Truncated {
                    field: "item length",
                })?;
        let n = usize::try_from(u32::from_be_bytes(raw))
            .map_err(|_| DecodeError::Truncated { field: "item" })?;
        Ok(self.take(n, "item")?.to_vec())
    }
}

/// Decodes a response.
pub fn decode_response(b: &[u8]) -> Result<Response, DecodeError> {
    let mut r = Reader(b);
    let kind = r.take(1, "kind")?[0];
    let res = match kind {
        RES_NOT_FOUND => Response::NotFound,
        RES_FOUND => Response::Found(r.item()?),
        RES_ITEMS => {
            let raw: [u8; 2] = r
                .take(2, "count")?
                .try_into()
                .map_err(|_| DecodeError::Truncated { field: "count" })?;
            let count = usize::from(u16::from_be_bytes(raw));
            if count > MAX_ITEMS_PER_RESPONSE {
                return Err(DecodeError::TooMany { count });
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(r.item()?);
            }
            Response::Items(items)
        }
        RES_REFUSED => Response::Refused,
        kind => return Err(DecodeError::ResponseKind { kind }),
    };
    if !r.0.is_empty() {
        return Err(DecodeError::Trailing { bytes: r.0.len() });
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Bytes from annotated hex: whitespace and `#` comments to the end of a line are ignored
    /// (the iroh-relay `check_expected_bytes` style).
    fn annotated_hex(s: &str) -> Vec<u8> {
        let digits: String = s
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        assert_eq!(digits.len() % 2, 0, "odd hex digit count");
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn request_bytes() {
        let target: [u8; 32] = std::array::from_fn(|i| i as u8);
        let get = encode_request(&Request::Get(target));
        assert_eq!(
            get,
            annotated_hex(
                "01                                # kind: Get
                 000102030405060708090a0b0c0d0e0f  # target (32 bytes), first half
                 101112131415161718191a1b1c1d1e1f  # target, second half"
            )
        );
        assert_eq!(get.len(), MAX_REQUEST_BYTES);
        assert_eq!(decode_request(&get).unwrap(), Request::Get(target));
        let full = encode_request(&Request::FullNodes);
        assert_eq!(full, annotated_hex("02  # kind: FullNodes (no body)"));
        assert_eq!(decode_request(&full).unwrap(), Request::FullNodes);
    }

    #[test]
    fn response_bytes() {
        let cases = [
            (Response::NotFound, "00  # kind: NotFound"),
            (Response::Refused, "03  # kind: Refused (per-peer limit)"),
            (
                Response::Found(vec![0xaa, 0xbb, 0xcc]),
                "01        # kind: Found
                 00000003  # item length, u32 BE
                 aabbcc    # the encoded item (opaque here)",
            ),
            (
                Response::Items(vec![vec![0x11], Vec::new(), vec![0x22, 0x33]]),
                "02        # kind: Items
                 0003      # count, u16 BE
                 00000001  # item 0 length
                 11        # item 0
                 00000000  # item 1 length (empty)
                 00000002  # item 2 length
                 2233      # item 2",
            ),
        ];
        for (res, hex) in cases {
            let bytes = encode_response(&res).unwrap();
            assert_eq!(bytes, annotated_hex(hex), "{res:?}");
            assert_eq!(decode_response(&bytes).unwrap(), res);
        }
    }

    #[test]
    fn round_trips() {
        for req in [Request::Get([7; 32]), Request::FullNodes] {
            assert_eq!(decode_request(&encode_request(&req)).unwrap(), req);
        }
        for res in [
            Response::NotFound,
            Response::Refused,
            Response::Found(vec![1, 2, 3]),
            Response::Items(vec![vec![1], vec![], vec![9; 300]]),
        ] {
            assert_eq!(
                decode_response(&encode_response(&res).unwrap()).unwrap(),
                res
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            decode_request(&[0x01, 1, 2]),
            Err(DecodeError::TargetLength { len: 2 })
        );
        assert_eq!(decode_request(&[0x02, 0]), Err(DecodeError::BadRequest));
        assert_eq!(decode_request(&[]), Err(DecodeError::BadRequest));
        assert!(decode_response(&[0x01, 0, 0, 0, 9, 1]).is_err());
        assert_eq!(
            decode_response(&[0x00, 0]),
            Err(DecodeError::Trailing { bytes: 1 })
        );
        assert_eq!(
            decode_response(&[0x02, 0xff, 0xff]),
            Err(DecodeError::TooMany { count: 0xffff })
        );
        assert!(decode_response(&[]).is_err());
        assert_eq!(
            decode_response(&[0x09]),
            Err(DecodeError::ResponseKind { kind: 9 })
        );
        let too_many = Response::Items(vec![Vec::new(); MAX_ITEMS_PER_RESPONSE + 1]);
        assert!(matches!(
            encode_response(&too_many),
            Err(EncodeError::TooMany { .. })
        ));
        let too_large = Response::Found(vec![0; MAX_RESPONSE_BYTES]);
        assert!(matches!(
            encode_response(&too_large),
            Err(EncodeError::TooLarge { .. })
        ));
    }
}

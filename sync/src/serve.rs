//! The serving side: cut one page of a store for a [`GetItems`] request. Pure: the caller owns
//! the store and the clock.
//!
//! - The requested limit is clamped to 1..=[`MAX_PAGE_ITEMS`] (and the store's own
//!   `dht::store::MAX_LIST_LIMIT`).
//! - Beyond its first item a page carries at most [`crate::wire::MAX_PAGE_BYTES`] of items; a
//!   page cut short by bytes says `has_more` and its `next_cursor` is the change number of its
//!   last item, so the reader resumes exactly there.
//! - A request whose epoch is not the store's is served from the start (its cursor belongs to
//!   another incarnation of the change sequence).
use dht::store::MAX_LIST_LIMIT;
use dht::{BackendError, Cursor, Item, Store};

use crate::wire::{GetItems, MAX_PAGE_ITEMS, Page, fitting};

/// The page of `store` (whose change sequence has epoch `epoch`) that answers `req`.
pub fn page(store: &dyn Store, epoch: u64, req: &GetItems) -> Result<Page, BackendError> {
    let limit = usize::from(req.limit.clamp(1, MAX_PAGE_ITEMS)).min(MAX_LIST_LIMIT);
    let cursor = if req.epoch == epoch {
        Cursor::from_u64(req.cursor)
    } else {
        Cursor::START
    };
    let last_change = store.stats().last_change.as_u64();
    let mut listed = store.list_since(req.salt.as_ref(), cursor, limit)?;
    let fit = fitting(listed.items.iter().map(Item::encoded_len));
    if fit < listed.items.len() {
        // Cut by bytes: list again up to the last item that fits, so that `next_cursor` is its
        // change number (the store computes cursors; we never guess them).
        listed = store.list_since(req.salt.as_ref(), cursor, fit)?;
        listed.has_more = true;
    }
    Ok(Page {
        epoch,
        next_cursor: listed.next_cursor.as_u64(),
        last_change: last_change.max(listed.next_cursor.as_u64()),
        has_more: listed.has_more,
        items: listed.items,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use dht::{MemoryStore, Salt, Timestamp};
    use keys::SecKey;

    fn fill(store: &mut MemoryStore, n: u64, value_len: usize) {
        for i in 0..n {
            let sk = SecKey::from_seed(format!("serve{i}").as_bytes());
            let salt = Salt::new(if i % 2 == 0 { &b"a"[..] } else { &b"b"[..] }).unwrap();
            let item = Item::sign(&sk, salt, 1, vec![1; value_len]).unwrap();
            store.put(item, Timestamp::from_unix_millis(1)).unwrap();
        }
    }

    fn req(epoch: u64, cursor: u64, limit: u16) -> GetItems {
        GetItems {
            salt: None,
            epoch,
            cursor,
            limit,
        }
    }

    #[test]
    fn pages_in_change_order_and_clamps() {
        let mut s = MemoryStore::new(dht::Config::default());
        fill(&mut s, 10, 4);
        let p = page(&s, 5, &req(5, 0, 4)).unwrap();
        assert_eq!((p.items.len(), p.next_cursor, p.has_more), (4, 4, true));
        assert_eq!(p.last_change, 10);
        let p = page(&s, 5, &req(5, 8, 1000)).unwrap();
        assert_eq!((p.items.len(), p.next_cursor, p.has_more), (2, 10, false));
        let p = page(&s, 5, &req(5, 10, 1000)).unwrap();
        assert_eq!((p.items.len(), p.next_cursor, p.has_more), (0, 10, false));
        // Foreign epoch: from the start.
        let p = page(&s, 5, &req(4, 8, 3)).unwrap();
        assert_eq!((p.items.len(), p.next_cursor, p.epoch), (3, 3, 5));
        // Salt filter.
        let mut r = req(5, 0, 100);
        r.salt = Some(Salt::new(&b"b"[..]).unwrap());
        let p = page(&s, 5, &r).unwrap();
        assert_eq!(p.items.len(), 5);
        assert!(p.items.iter().all(|i| i.salt.as_bytes() == b"b"));
    }

    #[test]
    fn byte_budget_cuts_pages() {
        let cfg = dht::Config::default();
        let mut s = MemoryStore::new(cfg);
        // 200 items of 60 KiB: 12 MiB in all, so pages of ~4 MiB.
        fill(&mut s, 200, 60 * 1024);
        let mut cursor = 0;
        let mut seen = 0;
        let mut pages = 0;
        loop {
            let p = page(&s, 1, &req(1, cursor, 1000)).unwrap();
            let bytes: usize = p.items.iter().skip(1).map(Item::encoded_len).sum();
            assert!(bytes <= crate::wire::MAX_PAGE_BYTES);
            crate::wire::encode_response(&crate::wire::Response::Page(p.clone())).unwrap();
            seen += p.items.len();
            cursor = p.next_cursor;
            pages += 1;
            if !p.has_more {
                break;
            }
        }
        assert_eq!(seen, 200);
        assert!(pages >= 3, "{pages} pages");
    }
}

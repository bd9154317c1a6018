//! GetItems bulk sync (issue "GetItems bulk sync and full-node convergence"): the page protocol
//! and a sans-io puller. Being built; see `sync/README.md`.
#![deny(missing_docs)]

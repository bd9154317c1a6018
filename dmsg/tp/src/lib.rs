//! Visor transports over DMSG, published as `tp` items (issue "Transports"). Being built.
#![deny(missing_docs)]

//! dmsg proto

//! DMSG without central discovery: servers and clients meet through the DHT. Being built.
#![deny(missing_docs)]

//! Why the server refused a stream: the DMSG code counted in metrics and a description for
//! the log (the dialer only sees its stream reset, or the destination's signed refusal).
use std::fmt;

use dmsg_proto::ErrorCode;

use crate::error::StreamError;

/// Why a stream was refused: the DMSG code counted in metrics, and what happened.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: ErrorCode,
    what: &'static str,
    source: Option<StreamError>,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, what: &'static str) -> Refusal {
        Refusal {
            code,
            what,
            source: None,
        }
    }

    pub(crate) fn from(code: ErrorCode, what: &'static str, e: StreamError) -> Refusal {
        Refusal {
            code,
            what,
            source: Some(e),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {e}", self.what),
            None => f.write_str(self.what),
        }
    }
}

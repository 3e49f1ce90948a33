//! Pure math over samples: growth of resettable counters,
//! latency distributions from moments, cumulative histograms, top-N with
//! hysteresis. No I/O here, so everything is tested with plain values.

pub(crate) mod cardinality;
pub(crate) mod counter;
pub mod histogram;
pub mod latency;
pub(crate) mod tail;

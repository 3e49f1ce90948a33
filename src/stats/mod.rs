//! Pure math over samples: growth of resettable counters,
//! latency distributions from moments, cumulative histograms, top-N with
//! hysteresis. No I/O here, so everything is tested with plain values.

pub mod cardinality;
pub mod counter;
pub mod histogram;
pub mod latency;
pub mod tail;

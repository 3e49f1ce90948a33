//! Pure math over samples: deltas and resets, running totals. No I/O here,
//! so everything is tested with plain values.

pub mod counter;

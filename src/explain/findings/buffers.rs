//! Buffer usage: a statement that read more from outside shared_buffers
//! than it found in it.
//!
//! Reported once, for the root node (whose counters include its children's),
//! and only as information: one cold run says little on its own.

use serde_json::{Map, Value};

use super::plan::{fmt_num, node_label, num, subtree_relation};
use super::{Finding, Severity};

/// A cold scan of 1,000 blocks (8 MB) is where reads become noticeable.
const READS_MIN_BLOCKS: f64 = 1_000.0;

pub(super) fn reads_dominate_hits(root: &Map<String, Value>) -> Option<Finding> {
    let reads = num(root, "Shared Read Blocks")?;
    let hits = num(root, "Shared Hit Blocks")?;
    if reads <= hits || reads < READS_MIN_BLOCKS {
        return None;
    }
    Some(Finding {
        id: "reads_dominate_hits",
        severity: Severity::Info,
        node_path: node_label(root),
        relation: subtree_relation(root),
        explanation: format!(
            "{} blocks read from outside shared_buffers vs {} hits: the working set was not cached",
            fmt_num(reads),
            fmt_num(hits)
        ),
        action: "if this repeats, the working set does not fit shared_buffers: \
                 raise it, or read less (indexes, narrower rows)"
            .to_owned(),
    })
}

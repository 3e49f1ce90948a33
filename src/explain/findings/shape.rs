//! The plan-shape hash: the same plan with other numbers hashes equal, a
//! plan change (say, a new index being used) hashes differently.
//!
//! Only structure goes in (node types, relations, indexes, join types,
//! parent relationships, the tree); costs, rows, times, filters and aliases
//! do not. Not a heuristic: nothing here judges the plan.

use serde_json::{Map, Value};

use super::MAX_DEPTH;
use super::plan::{children, root_node, text, top_level};

/// A stable 64-bit hash of the plan's shape, as 16 hex digits.
///
/// Covers node types, relation names, index names, join types, parent relationships
/// and the tree structure; nothing else (no costs, rows, times, filters, aliases).
pub fn shape_hash(plan: &Value) -> String {
    let mut canonical = String::new();
    if let Some(root) = top_level(plan).and_then(root_node) {
        write_shape(root, &mut canonical, 0);
    }
    format!("{:016x}", fnv1a_64(canonical.as_bytes()))
}

/// Appends a canonical, unambiguous description of the subtree: every field is
/// length-prefixed so no relation name can forge a separator.
fn write_shape(node: &Map<String, Value>, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    out.push('(');
    for key in [
        "Node Type",
        "Relation Name",
        "Index Name",
        "Join Type",
        "Parent Relationship",
    ] {
        let value = text(node, key).unwrap_or("");
        out.push_str(&format!("{}:{value};", value.len()));
    }
    children(node).for_each(|child| write_shape(child, out, depth + 1));
    out.push(')');
}

/// 64-bit FNV-1a: tiny, and stable across Rust releases (unlike `DefaultHasher`).
pub(super) fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

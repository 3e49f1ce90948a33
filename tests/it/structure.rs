//! The shape of the source, checked: no import cycle between files, no
//! import up the layers (data flows one way: connection → collectors →
//! store → outputs → HTTP and the command line), no file past ~800 lines
//! before its unit tests, and no reference to documents outside the
//! repository. Read from `src/` as text; nothing is compiled.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines a source file may have before its unit tests.
const MAX_LINES: usize = 800;

/// Each module's layer, by the longest matching module path: a module may
/// import only from its own layer or below. Plain data that several layers
/// pass around sits at the bottom, whatever folder it is in.
const LAYERS: &[(&str, u8)] = &[
    // Foundations: pure, or plain data.
    ("metric", 0),
    ("stats", 0),
    ("sql", 0),
    ("state_file", 0),
    ("cli", 0),
    ("shutdown", 0),
    ("logs", 0),
    ("web", 0),
    ("explain", 0),
    ("collect::statements::report", 0),
    ("collect::vacuum::report", 0),
    ("collect::schema::report", 0),
    ("collect::active_sessions::report", 0),
    ("collect::amcheck::report", 0),
    ("collect::backup::report", 0),
    ("collect::redis::report", 0),
    // Reaching a server.
    ("connection", 1),
    // What the user asked for.
    ("config", 2),
    // The store.
    ("snapshot", 3),
    // Collectors, and what reads the store without writing it.
    ("collect", 4),
    // The log reader: files, a state file and the log settings of a target.
    ("logs::reader", 4),
    ("explain::runner", 4),
    ("notify", 4),
    ("saturation", 4),
    // Workers and the schedule: run collectors, write the store.
    ("explain::worker", 5),
    ("schedule", 5),
    // Outputs.
    ("exposition", 6),
    ("report", 6),
    ("page", 6),
    ("history", 6),
    // Composition root, HTTP and the command line.
    ("registry", 7),
    ("agent", 8),
    ("supervisor", 8),
    ("http", 9),
    ("commands", 9),
    // The terminal view runs an agent's supervisor (or reads an agent);
    // the demo runs the daemon's command on a throwaway server.
    ("top", 9),
    ("demo", 10),
];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .filter(|(prefix, _)| module == *prefix || module.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("module {module} has no layer in tests/it/structure.rs"))
}

/// Every library module: its path (`collect::statements::query`) and file.
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut modules = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "main") && parts.len() == 1 {
            continue; // the binary: argument parsing only
        }
        if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
            parts.pop();
        }
        if parts.last().is_some_and(|p| p == "tests") {
            continue; // unit tests in a file of their own: compiled for tests only
        }
        modules.insert(parts.join("::"), file);
    }
    modules
}

/// The source before its unit tests, without comments.
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &[String], body: &str, out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut part = String::new();
    let mut parts = Vec::new();
    for ch in body.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut part));
                continue;
            }
            _ => {}
        }
        part.push(ch);
    }
    parts.push(part);
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if let (Some(open), Some(close)) = (part.find('{'), part.rfind('}'))
            && open < close
        {
            let mut next = prefix.to_vec();
            next.extend(
                part[..open]
                    .split("::")
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
            expand(&next, &part[open + 1..close], out);
        } else {
            let path = part.split(" as ").next().unwrap_or(part);
            let mut full = prefix.to_vec();
            full.extend(
                path.split("::")
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
            out.push(full);
        }
    }
}

/// The module a path starting with `crate`, `super` or `self` names, seen
/// from `here`.
fn resolve(path: &[String], here: &str, modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    let (mut base, rest): (Vec<String>, &[String]) = match path.first()?.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "super" | "self" => {
            let mut base: Vec<String> = here
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let mut rest = path;
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
            (base, rest)
        }
        _ => return None,
    };
    base.extend(rest.iter().cloned());
    (0..=base.len())
        .rev()
        .map(|n| base[..n].join("::"))
        .find(|m| modules.contains_key(m))
}

/// Which modules each module imports (`use` and inline paths).
fn imports(modules: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (module, file) in modules {
        let code = code(file);
        let mut paths = Vec::new();
        for statement in code.split(';') {
            let Some(i) = statement.find("use ") else {
                continue;
            };
            let is_use = statement[..i]
                .chars()
                .last()
                .is_none_or(|c| c.is_whitespace() || c == '{' || c == '}');
            let body = &statement[i + 4..];
            if is_use && body.matches('{').count() == body.matches('}').count() {
                expand(&[], body, &mut paths);
            }
        }
        let bytes = code.as_bytes();
        for start in ["crate::", "super::", "self::"] {
            for (i, _) in code.match_indices(start) {
                let word_start =
                    i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
                if !word_start {
                    continue;
                }
                let end = code[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .map_or(code.len(), |e| i + e);
                paths.push(
                    code[i..end]
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                );
            }
        }
        let deps: BTreeSet<String> = paths
            .iter()
            .filter_map(|p| resolve(p, module, modules))
            // The crate root only holds the `desc!` macro.
            .filter(|m| m != module && !m.is_empty())
            .collect();
        graph.insert(module.clone(), deps);
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

#[test]
fn no_import_cycle_and_no_import_up_the_layers() {
    let modules = modules();
    let graph = imports(&modules);
    assert!(
        graph.contains_key("collect") && graph["agent"].contains("schedule"),
        "{graph:#?}"
    );
    let cycles = cycles(&graph);
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
    let upward: Vec<String> = graph
        .iter()
        .flat_map(|(from, deps)| deps.iter().map(move |to| (from, to)))
        .filter(|(from, to)| layer(from) < layer(to))
        .map(|(from, to)| {
            format!(
                "{from} (layer {}) imports {to} (layer {})",
                layer(from),
                layer(to)
            )
        })
        .collect();
    assert!(upward.is_empty(), "imports up the layers: {upward:#?}");
}

#[test]
fn no_file_is_past_its_length_before_unit_tests() {
    let long: Vec<String> = modules()
        .values()
        .filter_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            let before_tests = text
                .find("#[cfg(test)]")
                .map_or(text.as_str(), |i| &text[..i]);
            let lines = before_tests.lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", file.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:#?}");
}

#[test]
fn the_source_refers_to_no_document_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = modules().into_values().collect();
    for dir in ["docs", "alerts", "packaging", "dashboards"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if entry.path().is_file() {
                files.push(entry.path());
            }
        }
    }
    files.push(root.join("README.md"));
    let found: Vec<String> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f).is_ok_and(|t| {
                t.contains("SPEC §") || t.contains("SPEC.md") || t.contains("STYLE.md")
            })
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        found.is_empty(),
        "references to documents outside the repository: {found:#?}"
    );
}

#[test]
fn test_modules_import_only_the_harness() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "harness") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut files = Vec::new();
    walk(&dir, &mut files);
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("main.rs")) {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let module: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // (An empty name is this file's own text about paths.)
            if !module.is_empty() && module != "harness" {
                found.push(format!("{}: crate::{module}", file.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "test modules importing each other: {found:#?}"
    );
}

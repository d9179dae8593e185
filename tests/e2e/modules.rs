//! The module graph of every crate has no cycle (ARCHITECTURE.md, "Arrows point one way"):
//! a module that uses another never is, directly or through others, used by it. Read from
//! the sources, so a new `use super::*` or a helper called back up fails here, naming the
//! cycle.
//!
//! A module's references are the paths it names outside comments and its `#[cfg(test)]`
//! tail: `crate::a::b`, `super::x`, `self::x` and a child's name followed by `::` (`use
//! finish::*`). Each resolves to the longest module path it starts with. The crate root
//! (`lib.rs`, `main.rs`) is left out: it is the crate's facade, re-exporting what its modules
//! define, and every module may name what it declares (`crate::StepError`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every crate whose modules are checked, relative to the workspace root.
const CRATES: &[&str] = &[
    "shared/core/src",
    "shared/adapters/src",
    "shared/steps/src",
    "shared/local/src",
    "shared/cli/src",
    "shared/sim/src",
    "shared/bench/src",
    "shared/fuzz/src",
    "functions/greenlight-lambda/src",
];

/// Module path (`decide::finish`; the root is "") → file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                parts.clear();
            }
            // Test modules (`mod tests;` files) use their parent by design.
            if parts.last().is_some_and(|p| p == "tests") {
                continue;
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The code of a module: comments dropped, and everything from its `#[cfg(test)]` on.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `code` with every brace group of a path spelt out: `crate::{a::{b, c}, d}` becomes
/// `crate::a::b, crate::a::c, crate::d`.
fn expand_groups(code: &str) -> String {
    let is_path_char = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut code = code.to_string();
    while let Some(open) = code.find("::{") {
        let start = code[..open]
            .char_indices()
            .rev()
            .find(|(_, c)| !is_path_char(*c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let prefix = code[start..open].to_string();
        let (mut depth, mut close) = (0, code.len());
        for (i, c) in code[open + 2..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 1 => {
                    close = open + 2 + i;
                    break;
                }
                '}' => depth -= 1,
                _ => {}
            }
        }
        let inner = &code[open + 3..close.min(code.len())];
        let (mut items, mut depth, mut from) = (Vec::new(), 0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&inner[from..i]);
                    from = i + 1;
                }
                _ => {}
            }
        }
        items.push(&inner[from..]);
        let spelt: Vec<String> = items
            .iter()
            .map(|item| item.trim())
            .filter(|item| !item.is_empty())
            .map(|item| match item {
                "self" => prefix.clone(),
                item => format!("{prefix}::{item}"),
            })
            .collect();
        code.replace_range(start..(close + 1).min(code.len()), &spelt.join(", "));
    }
    code
}

/// The `a::b::c` paths in `code` (brace groups spelt out; a glob ends in `*`), each split
/// into parts.
fn paths(code: &str) -> Vec<Vec<String>> {
    let code = expand_groups(code);
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = is_ident(chars[i])
            && (i == 0 || !is_ident(chars[i - 1]))
            && !(i >= 2 && chars[i - 2] == ':' && chars[i - 1] == ':');
        if !starts {
            i += 1;
            continue;
        }
        let mut parts = Vec::new();
        let mut end = i;
        loop {
            let from = end;
            while end < chars.len() && is_ident(chars[end]) {
                end += 1;
            }
            parts.push(chars[from..end].iter().collect::<String>());
            let colons = end + 1 < chars.len() && chars[end] == ':' && chars[end + 1] == ':';
            match chars.get(end + 2) {
                Some(c) if colons && is_ident(*c) => end += 2,
                Some('*') if colons => {
                    parts.push("*".into());
                    break;
                }
                _ => break,
            }
        }
        if parts.len() > 1 {
            out.push(parts);
        }
        i = end.max(i + 1);
    }
    out
}

/// The modules each module uses, within its crate (the root left out).
fn edges(mods: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let longest = |parts: &[String]| -> Option<String> {
        (1..=parts.len())
            .rev()
            .map(|k| parts[..k].join("::"))
            .find(|m| mods.contains_key(m))
    };
    let mut graph = BTreeMap::new();
    for (module, file) in mods.iter().filter(|(m, _)| !m.is_empty()) {
        let here: Vec<String> = module.split("::").map(str::to_string).collect();
        let mut uses = BTreeSet::new();
        for path in paths(&code(file)) {
            let target = match path[0].as_str() {
                "crate" => longest(&path[1..]),
                "super" | "self" => {
                    let mut base = here.clone();
                    let mut rest = &path[..];
                    while let Some(step) = rest.first().filter(|s| *s == "super" || *s == "self") {
                        if *step == "super" {
                            base.pop();
                        }
                        rest = &rest[1..];
                    }
                    let dir = base.clone();
                    base.extend(rest.iter().cloned());
                    longest(&base).or_else(|| (!dir.is_empty()).then(|| dir.join("::")))
                }
                child => {
                    let mut candidate = here.clone();
                    candidate.push(child.to_string());
                    mods.contains_key(&candidate.join("::")).then(|| candidate.join("::"))
                }
            };
            if let Some(target) = target.filter(|t| !t.is_empty() && t != module) {
                uses.insert(target);
            }
        }
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle in `graph`, as the modules along it, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, done, path) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_crate_has_a_module_import_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for krate in CRATES {
        let mods = modules(&root.join(krate));
        assert!(mods.contains_key(""), "{krate}: no crate root found");
        let graph = edges(&mods);
        if let Some(found) = cycle(&graph) {
            panic!("{krate}: modules use each other in a cycle: {}", found.join(" -> "));
        }
    }
}

/// The checker itself finds what it is for: the engine ↔ start cycle as it stood before
/// `engine::drive` ran queued starts on its own work stack, a child that uses its parent's
/// helpers while the parent dispatches to it, and no cycle where the arrows point one way.
#[test]
fn the_cycle_check_finds_a_cycle_through_crate_super_and_child_paths() {
    let dir = std::env::temp_dir().join(format!("greenlight-modules-{}", std::process::id()));
    let write = |rel: &str, text: &str| {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod engine;\npub mod start;\npub mod decide;\n");
    write(
        "engine.rs",
        "use crate::start::start_request;\n// crate::nothing here\n",
    );
    write("start.rs", "use crate::engine::{drive, output};\n");
    write(
        "decide/mod.rs",
        "mod finish;\nuse finish::*;\n#[cfg(test)]\nmod tests { use super::*; }\n",
    );
    write("decide/finish.rs", "use super::*;\n");
    let mods = modules(&dir);
    let graph = edges(&mods);
    assert_eq!(graph["engine"], BTreeSet::from(["start".to_string()]));
    assert_eq!(graph["start"], BTreeSet::from(["engine".to_string()]));
    assert_eq!(graph["decide"], BTreeSet::from(["decide::finish".to_string()]));
    assert_eq!(graph["decide::finish"], BTreeSet::from(["decide".to_string()]));
    assert!(cycle(&graph).is_some());
    // One way: engine no longer names start; finish imports from a sibling, not its parent.
    write("engine.rs", "// start::start_request was here\npub fn drive() {}\n");
    write("decide/types.rs", "pub struct Effect;\n");
    write("decide/finish.rs", "use super::types::Effect;\n");
    let graph = edges(&modules(&dir));
    assert_eq!(cycle(&graph), None, "{graph:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

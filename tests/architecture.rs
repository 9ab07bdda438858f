//! The layering docs/ARCHITECTURE.md promises, checked on the source: no import cycle between
//! the folders of `src/`, and none between the files of one folder (`super::x` / `crate::f::x`
//! paths outside test modules), so each module can be read, and tested, below the ones that use it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The text of a file without its `#[cfg(test)]` modules (tests may reach anywhere).
fn non_test_text(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// `ident` words following `prefix` in `text`.
fn names_after<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.match_indices(prefix).filter_map(move |(i, _)| {
        let rest = &text[i + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        (end > 0).then(|| &rest[..end])
    })
}

/// The strongly connected groups of more than one node (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        for w in &s.graph[v] {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                group.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.found.push(group);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Top-level module of a file under src/ (`phases/run/mod.rs` -> `phases`, `shell.rs` -> `shell`).
fn top_module(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

#[test]
fn the_folders_of_src_import_each_other_without_cycles() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src()) {
        let from = top_module(&file);
        if from == "main" || from == "lib" {
            continue;
        }
        let text = non_test_text(&file);
        let uses: BTreeSet<String> = names_after(&text, "crate::")
            .filter(|to| *to != from)
            .map(str::to_owned)
            .collect();
        graph.entry(from).or_default().extend(uses);
    }
    let names: Vec<String> = graph.keys().cloned().collect();
    for targets in graph.values_mut() {
        targets.retain(|t| names.contains(t));
    }
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles between folders of src/: {found:?}"
    );
}

#[test]
fn the_files_of_each_folder_import_each_other_without_cycles() {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(src()).unwrap() {
        let folder = entry.unwrap().path();
        if !folder.is_dir() {
            continue;
        }
        let folder_name = folder.file_name().unwrap().to_string_lossy().into_owned();
        // Modules of the folder: files (`x.rs`) and sub-folders (`x/`), each one node.
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if name == "mod" || !(path.is_dir() || path.extension().is_some_and(|e| e == "rs")) {
                continue;
            }
            let files = if path.is_dir() {
                rust_files(&path)
            } else {
                vec![path]
            };
            let mut uses = BTreeSet::new();
            for file in files {
                let text = non_test_text(&file);
                let own = format!("crate::{folder_name}::");
                uses.extend(names_after(&text, "super::").map(str::to_owned));
                uses.extend(names_after(&text, &own).map(str::to_owned));
            }
            uses.remove(&name);
            graph.insert(name, uses);
        }
        let names: Vec<String> = graph.keys().cloned().collect();
        for targets in graph.values_mut() {
            targets.retain(|t| names.contains(t));
        }
        for group in cycles(&graph) {
            problems.push(format!("{folder_name}: {group:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles inside folders of src/: {problems:?}"
    );
}

//! Tidy checks on the source tree (like rust-analyzer's `tidy`): the module dependency rules
//! that ARCHITECTURE.md states, checked on every test run so the map cannot go stale.
//!
//! A module's dependencies are the `crate::<module>` paths in its non-test code (test modules
//! at the bottom of a file, `tests.rs` files and `tests/` folders are skipped). The rules:
//! - no import cycle between the top-level modules of `coordinator`, `shared` or `witness`;
//! - `coordinator::dns` and `coordinator::failover` import nothing above themselves: only the
//!   utilities listed in `BELOW_EVERYTHING` (`subprocess`), which import nothing of the crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// `(from, to) -> where`: one edge per pair of top-level modules, with the first place seen.
type Graph = BTreeMap<(String, String), String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "tests") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs")
            && p.file_name().is_some_and(|n| n != "tests.rs")
        {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`dns/rfc2136.rs` → `dns`); `None` for the crate
/// root (`lib.rs`, `main.rs`), which wires everything together.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The module names right after each `crate::` (also inside `crate::{a, b::c}`).
fn crate_refs(code: &str) -> Vec<(usize, String)> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                let mut depth = 0usize;
                let mut start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && !c.is_whitespace() => {
                            start = false;
                            let id = ident(&group[j..]);
                            if !id.is_empty() {
                                out.push((n + 1, id));
                            }
                        }
                        _ => {}
                    }
                }
            } else {
                let id = ident(after);
                if !id.is_empty() {
                    out.push((n + 1, id));
                }
            }
            rest = after;
        }
    }
    out
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let Some(from) = top_module(src, &f) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).expect("readable source");
        // Unit tests sit at the bottom of a file behind `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (line, to) in crate_refs(code) {
            if to != from && to != "self" {
                g.entry((from.clone(), to))
                    .or_insert_with(|| format!("{}:{line}", f.display()));
            }
        }
    }
    g
}

fn cycles(g: &Graph) -> Vec<String> {
    let mut adj: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, to) in g.keys() {
        adj.entry(from).or_default().insert(to);
    }
    let mut found = Vec::new();
    for (a, b) in g.keys() {
        // Is there a path back from b to a?
        let mut stack = vec![b.as_str()];
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if n == a {
                found.push(format!(
                    "{a} -> {b} ({}) and a path back from {b} to {a}",
                    g[&(a.clone(), b.clone())]
                ));
                break;
            }
            if seen.insert(n) {
                stack.extend(adj.get(n).into_iter().flatten().copied());
            }
        }
    }
    found
}

fn src(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src")
}

#[test]
fn no_import_cycle_between_modules() {
    let mut problems = Vec::new();
    for krate in ["coordinator", "shared", "witness"] {
        for c in cycles(&graph(&src(krate))) {
            problems.push(format!("{krate}: {c}"));
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles:\n{}",
        problems.join("\n")
    );
}

/// Utilities below every other module: they import nothing of the crate, so `dns` and
/// `failover` may use them.
const BELOW_EVERYTHING: &[&str] = &["subprocess"];

#[test]
fn dns_and_failover_import_nothing_above_themselves() {
    let g = graph(&src("coordinator"));
    let mut bad: Vec<String> = g
        .iter()
        .filter(|((from, to), _)| {
            (from == "dns" || from == "failover") && !BELOW_EVERYTHING.contains(&to.as_str())
        })
        .map(|((from, to), at)| format!("{from} imports crate::{to} at {at}"))
        .collect();
    for ((from, to), at) in &g {
        if BELOW_EVERYTHING.contains(&from.as_str()) {
            bad.push(format!(
                "{from} is meant to be below everything but imports crate::{to} at {at}"
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    let refs = crate_refs(
        "use crate::{store::Store, dns::{A, B}, failover};\nlet x = crate::config::load(p);\n// crate::ignored\n",
    );
    let names: Vec<&str> = refs.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["store", "dns", "failover", "config"]);
    let mut g = Graph::new();
    g.insert(("a".into(), "b".into()), "x:1".into());
    g.insert(("b".into(), "c".into()), "y:1".into());
    assert!(cycles(&g).is_empty());
    g.insert(("c".into(), "a".into()), "z:1".into());
    assert_eq!(cycles(&g).len(), 3);
}

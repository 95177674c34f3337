//! The module import graph of every crate has no circle.
//!
//! Crates cannot import each other in a circle (Cargo refuses), but modules inside one crate
//! can, and a circle there is how a flat crate grows back: once `a` uses `b` and `b` uses
//! `a`, nothing says which one is the lower layer. This reads every crate's sources, takes an
//! edge from a top-level module to each top-level module it names — through `crate::` and
//! `super::` paths (resolved against the file's module and any inline `mod x { … }`), in `use`
//! groups too, and, in a file that glob-imports the crate root, through bare `sibling::`
//! paths — and fails naming the modules of any circle. Comments and literals are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every crate's source root, from the workspace root.
fn crate_roots(workspace: &Path) -> Vec<PathBuf> {
    let mut roots = vec![workspace.join("proxy/src"), workspace.join("control/src")];
    let crates = std::fs::read_dir(workspace.join("crates")).expect("crates/ exists");
    for entry in crates {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() {
            roots.push(src);
        }
    }
    roots.sort();
    roots
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`lib`/`main` for the crate root).
fn top_module(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The source with comments removed and string and char literals emptied (a `//` inside
/// `"http://…"` is no comment, and `crate::x` inside a string is no path).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let word_before = |i: usize| i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r' && !word_before(i) && matches!(b.get(i + 1), Some(b'"' | b'#')) {
            // A raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            while b.get(j) == Some(&b'#') {
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', j - i - 1));
            j += 1;
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.extend_from_slice(b"\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.extend_from_slice(b"\"\"");
        } else if b[i] == b'\'' && (b.get(i + 1) == Some(&b'\\') || b.get(i + 2) == Some(&b'\'')) {
            // A char literal ('x', '\n', '\''); a lifetime ('a) is left as it is.
            let mut j = i + 1;
            if b[j] == b'\\' {
                j += 2;
            }
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            i = j + 1;
            out.extend_from_slice(b"' '");
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ident_at(code: &str, i: usize) -> String {
    code[i..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Whether a path starts at `i` (not in the middle of `a::crate::b` or an identifier).
fn path_start(b: &[u8], i: usize) -> bool {
    i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':')
}

/// The top-level modules `src` (a file of module `module`, e.g. `[driver, gate]`) names
/// through `crate::` and `super::` paths; and, when it glob-imports the crate root
/// (`use super::*` at the top level, `use crate::*`), through bare `sibling::` paths.
fn referenced(src: &str, module: &[String], siblings: &BTreeSet<String>) -> BTreeSet<String> {
    let code = code_only(src);
    let b = code.as_bytes();
    let mut out = BTreeSet::new();
    let mut inline: Vec<(String, usize)> = Vec::new(); // inline `mod x {` and their depth
    let mut depth = 0usize;
    let mut root_glob = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' {
            depth += 1;
        } else if b[i] == b'}' {
            depth = depth.saturating_sub(1);
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
        } else if path_start(b, i) && code[i..].starts_with("mod ") {
            let name = ident_at(&code, i + 4);
            if code[i + 4 + name.len()..].trim_start().starts_with('{') {
                inline.push((name, depth));
            }
        } else if path_start(b, i)
            && (code[i..].starts_with("crate::") || code[i..].starts_with("super::"))
        {
            // The module the path is relative to: the file's, then its inline modules.
            let mut here: Vec<String> = module.to_vec();
            here.extend(inline.iter().map(|(n, _)| n.clone()));
            let mut j = i;
            if code[j..].starts_with("crate::") {
                here.clear();
                j += "crate::".len();
            } else {
                while code[j..].starts_with("super::") {
                    here.pop();
                    j += "super::".len();
                }
            }
            let names = if code[j..].starts_with('{') {
                group_heads(&code[j + 1..])
            } else if code[j..].starts_with('*') {
                root_glob |= here.is_empty();
                Vec::new()
            } else {
                vec![ident_at(&code, j)]
            };
            for n in names {
                let top = here.first().cloned().unwrap_or(n);
                if !top.is_empty() {
                    out.insert(top);
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    if root_glob {
        for s in siblings {
            let pat = format!("{s}::");
            if code.match_indices(&pat).any(|(k, _)| path_start(b, k)) {
                out.insert(s.clone());
            }
        }
    }
    out
}

/// The names at depth 0 of a `{a::X, b, c::{..}}` group (given what follows the `{`).
fn group_heads(group: &str) -> Vec<String> {
    let (mut depth, mut item, mut out) = (0usize, String::new(), Vec::new());
    for ch in group.chars() {
        match ch {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(first_segment(&item));
                item.clear();
                continue;
            }
            _ => {}
        }
        item.push(ch);
    }
    out.push(first_segment(&item));
    out.retain(|n| !n.is_empty() && n != "self");
    out
}

/// A file's module path: `driver/gate.rs` → `[driver, gate]`, `driver/mod.rs` → `[driver]`,
/// `lib.rs` → `[]`.
fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Top-level module -> the top-level modules it uses, for one crate.
fn graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| top_module(root, f)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = top_module(root, f);
        let src = std::fs::read_to_string(f).unwrap();
        let siblings: BTreeSet<String> = modules.iter().filter(|m| **m != from).cloned().collect();
        for to in referenced(&src, &module_path(root, f), &siblings) {
            if to != from && modules.contains(&to) && to != "lib" && to != "main" {
                g.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    g
}

/// Strongly connected components of more than one module (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.g.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out.sort();
    t.out
}

#[test]
fn no_crate_has_a_module_import_circle() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let roots = crate_roots(workspace);
    assert!(roots.len() >= 9, "found only {roots:?}");
    let mut found = Vec::new();
    for root in &roots {
        for c in circles(&graph(root)) {
            found.push(format!("{}: {}", root.display(), c.join(" <-> ")));
        }
    }
    assert!(
        found.is_empty(),
        "module import circles (move the shared item down a layer):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_a_circle_and_grouped_imports() {
    let dir = std::env::temp_dir().join(format!("vireo-arch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("b")).unwrap();
    std::fs::write(dir.join("lib.rs"), "pub mod a;\npub mod b;\npub mod c;\n").unwrap();
    std::fs::write(dir.join("a.rs"), "use crate::{c::X, b::{self, Y}};\n").unwrap();
    std::fs::write(
        dir.join("b/mod.rs"),
        "// crate::c in a comment is no edge\nconst U: &str = \"http://x\"; fn g() { crate::a::g() }\n",
    )
    .unwrap();
    std::fs::write(dir.join("b/inner.rs"), "fn f() { super::super::d::h() }\n").unwrap();
    std::fs::write(
        dir.join("c.rs"),
        "pub struct X;\nmod tests { use super::*; fn t() { let s = \"crate::e\"; } }\n",
    )
    .unwrap();
    std::fs::write(dir.join("d.rs"), "use super::*;\nfn h() { e::k() }\n").unwrap();
    std::fs::write(dir.join("e.rs"), "use super::d::h;\n").unwrap();
    std::fs::write(dir.join("f.rs"), "mod inner { use super::helper; }\n").unwrap();
    let g = graph(&dir);
    assert_eq!(g["a"], BTreeSet::from(["b".to_string(), "c".to_string()]));
    // `http://` in a string is no comment; `super::super::d` from b/inner.rs is d.
    assert_eq!(g["b"], BTreeSet::from(["a".to_string(), "d".to_string()]));
    // `use super::*` inside an inline module is c's own; a path inside a string is none.
    assert!(!g.contains_key("c"), "{g:?}");
    // A root glob makes bare sibling paths edges: d uses e; e uses d through super::.
    assert_eq!(g["d"], BTreeSet::from(["e".to_string()]));
    assert_eq!(g["e"], BTreeSet::from(["d".to_string()]));
    assert!(!g.contains_key("f"), "{g:?}");
    assert_eq!(
        circles(&g),
        vec![
            vec!["a".to_string(), "b".to_string()],
            vec!["d".to_string(), "e".to_string()]
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

//! The source tree's shape, checked: module imports form no cycle (between a
//! crate's top-level modules, and between the files of one folder), and a
//! non-test source file over 400 lines says at its top why it is that long.
//! Reads the files; runs in milliseconds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "contract",
    "listener",
    "webhook",
    "credential-agent",
    "pod-identity",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/` (`a/b.rs` and `a/b/mod.rs` -> `a::b`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn is_test_file(parts: &[String]) -> bool {
    parts
        .last()
        .is_some_and(|p| p == "tests" || p == "testing" || p.ends_with("_tests"))
}

/// The text before the file's `#[cfg(test)]` module, if any.
fn non_test_text(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Module paths a file refers to: `crate::a::b` and `super::x`.
fn references(module: &[String], text: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let idents = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty() && p.chars().next().is_some_and(|c| c.is_lowercase()))
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        out.insert(idents(&text[i + "crate::".len()..]));
    }
    for (i, _) in text.match_indices("super::") {
        let rest = idents(&text[i + "super::".len()..]);
        if rest.first().is_some_and(|p| p == "super" || p.is_empty()) {
            continue;
        }
        let mut m = module[..module.len().saturating_sub(1)].to_vec();
        m.extend(rest);
        out.insert(m);
    }
    out.retain(|m| !m.is_empty());
    out
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn module_imports_form_no_cycle() {
    let mut failures = Vec::new();
    for krate in CRATES {
        let src = root().join(krate).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        // Edges at each level: between top-level modules, and between the
        // children of one parent module.
        let mut graphs: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for f in &all {
            let module = module_of(&src, f);
            if module.is_empty() || module.iter().any(|p| p == "main") || is_test_file(&module) {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            for target in references(&module, non_test_text(&text)) {
                // The deepest common parent decides the level of the edge.
                let common = module
                    .iter()
                    .zip(&target)
                    .take_while(|(a, b)| a == b)
                    .count();
                if common >= module.len() || common >= target.len() {
                    continue; // a module and its own parent or child
                }
                graphs
                    .entry(module[..common].to_vec())
                    .or_default()
                    .entry(module[common].clone())
                    .or_default()
                    .insert(target[common].clone());
            }
        }
        for (parent, g) in &graphs {
            if let Some(cycle) = find_cycle(g) {
                failures.push(format!(
                    "{krate}::{}: {}",
                    parent.join("::"),
                    cycle.join(" -> ")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "import cycles:\n{}",
        failures.join("\n")
    );
}

#[test]
fn long_files_say_why() {
    let mut failures = Vec::new();
    for krate in CRATES.iter().chain(&["tests"]) {
        let src = root().join(krate).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        for f in all {
            if is_test_file(&module_of(&src, &f)) {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let lines = non_test_text(&text).lines().count();
            let head: String = text.lines().take_while(|l| l.starts_with("//")).collect();
            if lines > 410
                && !(head.contains("Long because")
                    || head.contains("Over 400 lines")
                    || head.contains("About 400 lines"))
            {
                failures.push(format!("{} ({lines} lines)", f.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "files over 400 lines without a sentence at the top saying why:\n{}",
        failures.join("\n")
    );
}

/// Places in `text` where a `Result`'s error type is `String`: the
/// generic arguments of every `Result<...>` whose last argument is `String`.
fn string_errors(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("Result<") {
        // The generic arguments, up to the matching '>'.
        let mut depth = 0usize;
        let mut end = None;
        for (j, c) in text[i + "Result".len()..].char_indices() {
            match c {
                '<' | '(' => depth += 1,
                '>' | ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i + "Result".len() + j);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else { continue };
        let args = &text[i + "Result<".len()..end];
        // The last top-level argument.
        let mut depth = 0usize;
        let mut last = 0;
        for (j, c) in args.char_indices() {
            match c {
                '<' | '(' => depth += 1,
                '>' | ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => last = j + 1,
                _ => {}
            }
        }
        if last > 0 && args[last..].trim() == "String" {
            out.push(text[..i].matches('\n').count() + 1);
        }
    }
    out
}

/// Library code keeps error types: no `Result<_, String>` outside tests.
#[test]
fn library_errors_are_typed() {
    let mut failures = Vec::new();
    for krate in CRATES {
        let src = root().join(krate).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        for f in all {
            let module = module_of(&src, &f);
            if is_test_file(&module) || module.iter().any(|p| p == "main") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            for line in string_errors(non_test_text(&text)) {
                failures.push(format!("{}:{line}", f.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "Result<_, String> in library code (give the error a type):\n{}",
        failures.join("\n")
    );
}

/// clap stays at the edge: its types and derives only in `args.rs` and
/// `main.rs` of each crate.
#[test]
fn clap_stays_in_args_and_main() {
    let mut failures = Vec::new();
    for krate in CRATES {
        let src = root().join(krate).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        for f in all {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            if name == "args.rs" || name == "main.rs" || is_test_file(&module_of(&src, &f)) {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            if non_test_text(&text).contains("clap::") {
                failures.push(f.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "clap used outside args.rs / main.rs:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_checker_finds_string_errors() {
    assert_eq!(string_errors("fn a() -> Result<(), String> {}"), [1]);
    assert_eq!(
        string_errors("fn a() -> Result<Vec<(u8, u8)>,\n String> {}"),
        [1]
    );
    assert_eq!(
        string_errors("type R<T> = std::result::Result<T, String>;"),
        [1]
    );
    assert!(string_errors("fn a() -> Result<String, Error> {}").is_empty());
    assert!(string_errors("fn a() -> Result<String> {}").is_empty());
    assert!(string_errors("fn a() -> Result<Option<String>, E> {}").is_empty());
}

#[test]
fn the_checker_finds_a_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert!(find_cycle(&g).is_some());
    let refs = references(
        &["x".into(), "y".into()],
        "use crate::cache::Key;\nuse super::z::W;",
    );
    assert!(refs.contains(&vec!["cache".to_string()]));
    assert!(refs.contains(&vec!["x".to_string(), "z".to_string()]));
}

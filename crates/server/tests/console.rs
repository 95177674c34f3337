//! The console's third-party files are exactly the ones `console/vendor/VENDORED.md` lists:
//! each file's SHA-256 matches its row, and no file is there without one (a changed or added
//! byte fails here until the table says where it came from).

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

fn vendor() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("console/vendor")
}

/// `file → sha256` from the table's rows (`| \`file\` | … | \`sha256\` |`).
fn listed() -> BTreeMap<String, String> {
    let table = std::fs::read_to_string(vendor().join("VENDORED.md")).unwrap();
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let file = cells[1].trim_matches('`').to_string();
            let sha = cells[cells.len() - 2].trim_matches('`').to_string();
            (file, sha)
        })
        .collect()
}

#[test]
fn every_vendored_file_is_listed_with_its_sha256() {
    let listed = listed();
    assert!(listed.len() >= 5, "{listed:?}");
    for (file, want) in &listed {
        let bytes = std::fs::read(vendor().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let got: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            &got, want,
            "{file}: its bytes are not the ones VENDORED.md records"
        );
    }
    for entry in std::fs::read_dir(vendor()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            assert_eq!(name, "licenses", "an unexpected directory in vendor/");
            continue;
        }
        assert!(
            name == "VENDORED.md" || listed.contains_key(&name),
            "vendor/{name} is not listed in VENDORED.md"
        );
    }
}

/// Every file under `console/` but the tests and the vendoring notes is embedded and served:
/// a new screen cannot be forgotten in `ASSETS` (the page would fail to load it).
#[test]
fn every_console_file_is_embedded() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("console");
    let mut on_disk = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                if rel != "test" {
                    stack.push(path);
                }
            } else if rel != "vendor/VENDORED.md" {
                on_disk.push(rel);
            }
        }
    }
    on_disk.sort();
    let mut embedded: Vec<String> = vireo_server::console::ASSETS
        .iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(embedded[0], "index.html", "the page comes first");
    embedded.sort();
    assert_eq!(embedded, on_disk);
}

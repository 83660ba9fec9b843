//! The committed `schema/` against what the code generates, and every method's types exported.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;

fn files_under(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_path_buf();
                found.insert(relative, fs::read_to_string(&path).unwrap());
            }
        }
    }
    found
}

/// The committed `schema/` must match the code. Regenerate with
/// `cargo run -- schema --out schema`.
#[test]
fn committed_schemas_match_the_code() {
    let fresh = tempfile::tempdir().unwrap();
    write_all(fresh.path()).unwrap();
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
    let expected = files_under(fresh.path());
    let actual = files_under(&committed);
    let expected_names: Vec<_> = expected.keys().collect();
    let actual_names: Vec<_> = actual.keys().collect();
    assert_eq!(
        actual_names, expected_names,
        "schema/ files differ; run `cargo run -- schema --out schema`"
    );
    for (name, text) in &expected {
        assert!(
            actual[name] == *text,
            "schema/{} is stale; run `cargo run -- schema --out schema`",
            name.display()
        );
    }
}

#[test]
fn every_method_names_exported_types() {
    let fresh = tempfile::tempdir().unwrap();
    write_all(fresh.path()).unwrap();
    for spec in METHODS {
        for name in spec.params.iter().chain(spec.result.iter()) {
            assert!(
                fresh
                    .path()
                    .join("json")
                    .join(format!("{name}.json"))
                    .exists(),
                "{name}"
            );
            assert!(
                fresh
                    .path()
                    .join("typescript")
                    .join(format!("{name}.ts"))
                    .exists(),
                "{name}"
            );
        }
    }
}

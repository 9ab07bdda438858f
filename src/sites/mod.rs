//! A set of site inventories named on the command line: files, folders of `*.toml` and glob
//! patterns expanded to one sorted list of inventory files, each named once.

use std::path::{Path, PathBuf};

/// Why the inventory arguments name no usable set of files.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputsError {
    #[error("{arg}: no such file or folder")]
    Missing { arg: String },
    #[error("{arg}: the folder holds no *.toml inventory")]
    EmptyFolder { arg: String },
    #[error("{arg}: the pattern matches no file")]
    NoMatch { arg: String },
    #[error("{arg}: not a valid glob pattern: {reason}")]
    BadPattern { arg: String, reason: String },
    #[error("{arg}: cannot read the folder: {reason}")]
    Unreadable { arg: String, reason: String },
}

/// Expand `args` in order: a file is taken as is; a folder gives its `*.toml` files (not
/// recursive: a shared include file belongs in a parent or sibling folder); an argument with
/// `*`, `?` or `[` is a glob matched below its literal leading folders. A file named twice is
/// kept once, at its first place.
pub fn expand(args: &[String]) -> Result<Vec<PathBuf>, InputsError> {
    let mut files: Vec<PathBuf> = Vec::new();
    for arg in args {
        let found = if is_pattern(arg) {
            glob(arg)?
        } else {
            let path = PathBuf::from(arg);
            if path.is_dir() {
                let tomls = toml_files_in(&path, arg)?;
                if tomls.is_empty() {
                    return Err(InputsError::EmptyFolder { arg: arg.clone() });
                }
                tomls
            } else if path.is_file() {
                vec![path]
            } else {
                return Err(InputsError::Missing { arg: arg.clone() });
            }
        };
        for file in found {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    Ok(files)
}

fn is_pattern(arg: &str) -> bool {
    arg.contains(['*', '?', '['])
}

fn toml_files_in(dir: &Path, arg: &str) -> Result<Vec<PathBuf>, InputsError> {
    let entries = std::fs::read_dir(dir).map_err(|e| InputsError::Unreadable {
        arg: arg.to_owned(),
        reason: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Files below the pattern's literal leading folders that match it, sorted. `**` crosses
/// folders; `*` does not.
fn glob(arg: &str) -> Result<Vec<PathBuf>, InputsError> {
    let matcher = globset::GlobBuilder::new(arg)
        .literal_separator(true)
        .build()
        .map_err(|e| InputsError::BadPattern {
            arg: arg.to_owned(),
            reason: e.kind().to_string(),
        })?
        .compile_matcher();
    let base: PathBuf = Path::new(arg)
        .components()
        .take_while(|c| !is_pattern(&c.as_os_str().to_string_lossy()))
        .collect();
    let root = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base.clone()
    };
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Match as the user wrote it: without a leading `./` when the pattern had none.
            let shown = if base.as_os_str().is_empty() {
                path.strip_prefix(".").unwrap_or(&path).to_path_buf()
            } else {
                path.clone()
            };
            if path.is_dir() {
                stack.push(path);
            } else if matcher.is_match(&shown) {
                found.push(shown);
            }
        }
    }
    if found.is_empty() {
        return Err(InputsError::NoMatch {
            arg: arg.to_owned(),
        });
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sites/eu")).unwrap();
        for f in [
            "sites/b.toml",
            "sites/a.toml",
            "sites/eu/c.toml",
            "sites/notes.md",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        dir
    }

    fn arg(dir: &tempfile::TempDir, rel: &str) -> String {
        dir.path().join(rel).display().to_string()
    }

    #[test]
    fn a_folder_gives_its_toml_files_sorted_not_recursively() {
        let dir = tree();
        let files = expand(&[arg(&dir, "sites")]).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap()).collect();
        assert_eq!(names, ["a.toml", "b.toml"]);
    }

    #[test]
    fn globs_match_below_their_literal_folder_and_files_are_named_once() {
        let dir = tree();
        let files = expand(&[arg(&dir, "sites/**/*.toml"), arg(&dir, "sites/a.toml")]).unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap()).collect();
        assert_eq!(names, ["a.toml", "b.toml", "c.toml"]);
        let star = expand(&[arg(&dir, "sites/*.toml")]).unwrap();
        assert_eq!(star.len(), 2, "`*` does not cross folders: {star:?}");
    }

    #[test]
    fn missing_inputs_are_named() {
        let dir = tree();
        assert_eq!(
            expand(&[arg(&dir, "nope.toml")]),
            Err(InputsError::Missing {
                arg: arg(&dir, "nope.toml")
            })
        );
        assert!(matches!(
            expand(&[arg(&dir, "sites/*.yaml")]),
            Err(InputsError::NoMatch { .. })
        ));
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        assert!(matches!(
            expand(&[arg(&dir, "empty")]),
            Err(InputsError::EmptyFolder { .. })
        ));
    }
}

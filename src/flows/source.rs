//! Flow source files in a git checkout (`--flows-repo`): which file defines each flow,
//! and what it imports. Python is parsed with a real parser (rustpython-parser), never
//! with regular expressions, and never run.
//!
//! A file defines a flow by `Flow("name", …)` (Prefect 1, also `with Flow("name") as f:`)
//! or by a `@flow` / `@flow(name="…")` decorated function (Prefect 2/3; the default name
//! is the function's name with `_` as `-`).

use std::collections::BTreeSet;
use std::path::Path;

use rustpython_parser::Parse;
use rustpython_parser::ast::{self, Expr, Stmt};
use serde::{Deserialize, Serialize};

const MAX_FILE_BYTES: u64 = 2 << 20;
const MAX_FILES: usize = 20_000;
const SKIP_DIRS: &[&str] = &[
    ".git",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    "site-packages",
    ".tox",
    "build",
    "dist",
];

/// What one Python file of the repository says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PyFile {
    /// Relative to the repository root, `/`-separated.
    pub path: String,
    /// Top-level modules of absolute imports (`import a.b`, `from a import b` → `a`).
    pub imports: BTreeSet<String>,
    /// Flow names the file defines.
    pub flows: Vec<String>,
    /// Functions decorated with `@flow` (what a Prefect 2/3 entrypoint names).
    #[serde(default)]
    pub flow_functions: Vec<String>,
    /// Why the file could not be parsed, if it could not.
    pub error: Option<String>,
}

/// Every `.py` file under `root` (bounded; virtualenvs and VCS dirs skipped).
pub fn read_repo(root: &Path) -> Result<Vec<PyFile>, String> {
    if !root.is_dir() {
        return Err(format!("--flows-repo {}: not a directory", root.display()));
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                if !SKIP_DIRS.contains(&name.as_str()) {
                    stack.push(p);
                }
            } else if kind.is_file() && name.ends_with(".py") {
                if out.len() >= MAX_FILES {
                    return Err(format!(
                        "{} has more than {MAX_FILES} Python files",
                        root.display()
                    ));
                }
                let rel = p
                    .strip_prefix(root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(read_file(&p, rel));
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

impl PyFile {
    /// A file nothing is known of yet.
    fn empty(path: String) -> PyFile {
        PyFile {
            path,
            imports: BTreeSet::new(),
            flows: Vec::new(),
            flow_functions: Vec::new(),
            error: None,
        }
    }
}

fn read_file(p: &Path, rel: String) -> PyFile {
    let mut f = PyFile::empty(rel);
    match std::fs::metadata(p) {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            f.error = Some(format!("{} bytes: too large to be a flow file", m.len()));
            return f;
        }
        Err(e) => {
            f.error = Some(e.to_string());
            return f;
        }
        _ => {}
    }
    match std::fs::read(p) {
        Ok(b) => analyse(f.path, &String::from_utf8_lossy(&b)),
        Err(e) => {
            f.error = Some(e.to_string());
            f
        }
    }
}

/// What the Python source `text` of the file at `rel` imports and which flows it
/// defines (also used on file contents read from a git commit).
pub fn analyse(rel: String, text: &str) -> PyFile {
    let mut f = PyFile::empty(rel);
    match ast::Suite::parse(text, &f.path) {
        Ok(suite) => {
            let mut v = Visit::default();
            v.stmts(&suite);
            f.imports = v.imports;
            f.flows = v.flows;
            f.flow_functions = v.flow_functions;
        }
        Err(e) => f.error = Some(format!("not valid Python: {e}")),
    }
    f
}

#[derive(Default)]
struct Visit {
    imports: BTreeSet<String>,
    flows: Vec<String>,
    flow_functions: Vec<String>,
}

fn const_str(e: &Expr) -> Option<String> {
    match e {
        Expr::Constant(c) => match &c.value {
            ast::Constant::Str(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `Flow`, `prefect.Flow` → "Flow"; `flow`, `prefect.flow` → "flow".
fn callee_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Name(n) => Some(n.id.as_str()),
        Expr::Attribute(a) => Some(a.attr.as_str()),
        _ => None,
    }
}

fn keyword_str(call: &ast::ExprCall, key: &str) -> Option<String> {
    call.keywords
        .iter()
        .find(|k| k.arg.as_ref().is_some_and(|a| a.as_str() == key))
        .and_then(|k| const_str(&k.value))
}

impl Visit {
    fn stmts(&mut self, body: &[Stmt]) {
        for s in body {
            self.stmt(s);
        }
    }

    fn expr(&mut self, e: &Expr) {
        if let Expr::Call(call) = e
            && callee_name(&call.func) == Some("Flow")
            && let Some(name) = call
                .args
                .first()
                .and_then(const_str)
                .or_else(|| keyword_str(call, "name"))
        {
            self.flows.push(name);
        }
    }

    fn function(&mut self, name: &str, decorators: &[Expr], body: &[Stmt]) {
        for d in decorators {
            match d {
                Expr::Call(call) if callee_name(&call.func) == Some("flow") => {
                    self.flows
                        .push(keyword_str(call, "name").unwrap_or_else(|| name.replace('_', "-")));
                    self.flow_functions.push(name.to_string());
                }
                d if callee_name(d) == Some("flow") => {
                    self.flows.push(name.replace('_', "-"));
                    self.flow_functions.push(name.to_string());
                }
                _ => {}
            }
        }
        self.stmts(body);
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Import(i) => {
                for a in &i.names {
                    let top = a.name.as_str().split('.').next().unwrap_or("");
                    self.imports.insert(top.to_string());
                }
            }
            Stmt::ImportFrom(i) => {
                let relative = i.level.as_ref().is_some_and(|l| l.to_u32() > 0);
                if let (false, Some(m)) = (relative, &i.module) {
                    let top = m.as_str().split('.').next().unwrap_or("");
                    self.imports.insert(top.to_string());
                }
            }
            Stmt::FunctionDef(f) => self.function(f.name.as_str(), &f.decorator_list, &f.body),
            Stmt::AsyncFunctionDef(f) => self.function(f.name.as_str(), &f.decorator_list, &f.body),
            Stmt::ClassDef(c) => self.stmts(&c.body),
            Stmt::Assign(a) => self.expr(&a.value),
            Stmt::AnnAssign(a) => {
                if let Some(v) = &a.value {
                    self.expr(v);
                }
            }
            Stmt::Expr(e) => self.expr(&e.value),
            Stmt::With(w) => {
                for item in &w.items {
                    self.expr(&item.context_expr);
                }
                self.stmts(&w.body);
            }
            Stmt::If(i) => {
                self.stmts(&i.body);
                self.stmts(&i.orelse);
            }
            Stmt::Try(t) => {
                self.stmts(&t.body);
                for h in &t.handlers {
                    let ast::ExceptHandler::ExceptHandler(h) = h;
                    self.stmts(&h.body);
                }
                self.stmts(&t.orelse);
                self.stmts(&t.finalbody);
            }
            Stmt::For(f) => self.stmts(&f.body),
            Stmt::While(w) => self.stmts(&w.body),
            _ => {}
        }
    }
}

/// Is `module` code of the repository itself (`mod.py` or `mod/` at the root or beside
/// the flow file)?
pub fn is_local(module: &str, flow_path: &str, files: &[PyFile]) -> bool {
    let dir = flow_path
        .rsplit_once('/')
        .map(|(d, _)| format!("{d}/"))
        .unwrap_or_default();
    [String::new(), dir].iter().any(|base| {
        let file = format!("{base}{module}.py");
        let pkg = format!("{base}{module}/");
        files
            .iter()
            .any(|f| f.path == file || f.path.starts_with(&pkg))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_flows_and_imports() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("flows")).unwrap();
        std::fs::write(
            dir.path().join("flows/a.py"),
            "import json\nimport yaml.loader\nfrom prefect import Flow, task\nfrom . import sibling\nfrom mylib.transforms import double\n\nwith Flow(\"flow-a\") as flow:\n    pass\nother = Flow(name=\"flow-b\")\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("flows/etl.py"),
            "from prefect import flow\nimport pandas as pd\n\n@flow(name=\"etl\")\ndef main():\n    pass\n\n@flow\ndef nightly_load():\n    pass\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("broken.py"), "def (:\n").unwrap();
        let files = read_repo(dir.path()).unwrap();
        let a = files.iter().find(|f| f.path == "flows/a.py").unwrap();
        assert_eq!(a.flows, vec!["flow-a", "flow-b"]);
        assert_eq!(
            a.imports.iter().map(String::as_str).collect::<Vec<_>>(),
            vec!["json", "mylib", "prefect", "yaml"]
        );
        let etl = files.iter().find(|f| f.path == "flows/etl.py").unwrap();
        assert_eq!(etl.flows, vec!["etl", "nightly-load"]);
        let broken = files.iter().find(|f| f.path == "broken.py").unwrap();
        assert!(
            broken
                .error
                .as_deref()
                .unwrap()
                .contains("not valid Python")
        );
    }
}

//! The optional source rewrite, for teams that register from CI: a unified diff of the
//! flow file (as it is at the reference) that replaces `Docker(...)` storage with
//! `Git(...)` and points the run config's `image` at the runtime image. Edits are made by
//! the parser's byte ranges, so the rest of the file is untouched; a file with no
//! `Docker(...)` call (storage set by a registration script) gets no patch.

use rustpython_ast::Visitor;
use rustpython_parser::Parse;
use rustpython_parser::ast::{self, Expr, Ranged};
use serde_json::Value;

use super::GitTarget;
use super::gitref::RefKind;

/// What the rewrite found in the file.
#[derive(Default)]
struct Found {
    docker_calls: Vec<(usize, usize)>,
    run_configs: Vec<RunConfigCall>,
    /// End of each `from prefect.storage… import … Docker` statement.
    storage_imports: Vec<usize>,
    imports_git: bool,
}

/// A run config constructor call in the file.
struct RunConfigCall {
    name: String,
    /// Where its callee ends (the "(" follows).
    after_callee: usize,
    /// The byte range of its `image=` value.
    image: Option<(usize, usize)>,
    has_args: bool,
}

fn callee(e: &Expr) -> Option<&str> {
    match e {
        Expr::Name(n) => Some(n.id.as_str()),
        Expr::Attribute(a) => Some(a.attr.as_str()),
        _ => None,
    }
}

impl Visitor for Found {
    fn visit_expr_call(&mut self, call: ast::ExprCall) {
        let range = (
            call.range().start().to_usize(),
            call.range().end().to_usize(),
        );
        match callee(&call.func) {
            Some("Docker") => self.docker_calls.push(range),
            Some(
                name @ ("KubernetesRun" | "DockerRun" | "ECSRun" | "VertexRun" | "LocalRun"
                | "UniversalRun"),
            ) => {
                let image = call
                    .keywords
                    .iter()
                    .find(|k| k.arg.as_ref().is_some_and(|a| a.as_str() == "image"))
                    .map(|k| {
                        (
                            k.value.range().start().to_usize(),
                            k.value.range().end().to_usize(),
                        )
                    });
                let has_args = !call.args.is_empty() || !call.keywords.is_empty();
                self.run_configs.push(RunConfigCall {
                    name: name.to_string(),
                    after_callee: call.func.range().end().to_usize(),
                    image,
                    has_args,
                });
            }
            _ => {}
        }
        self.generic_visit_expr_call(call);
    }

    // the generated visitor does not descend into these two
    fn visit_keyword(&mut self, node: ast::Keyword) {
        self.visit_expr(node.value);
    }

    fn visit_withitem(&mut self, node: ast::WithItem) {
        self.visit_expr(node.context_expr);
    }

    fn visit_stmt_import_from(&mut self, node: ast::StmtImportFrom) {
        let from_storage = node
            .module
            .as_ref()
            .is_some_and(|m| m.as_str().starts_with("prefect.storage") || m.as_str() == "prefect");
        let names: Vec<&str> = node.names.iter().map(|a| a.name.as_str()).collect();
        if from_storage && names.contains(&"Git") {
            self.imports_git = true;
        }
        if from_storage && names.contains(&"Docker") {
            self.storage_imports.push(node.range().end().to_usize());
        }
    }
}

/// A Python string literal (JSON's escapes are valid Python).
fn py(s: &str) -> String {
    serde_json::to_string(s).expect("a string")
}

/// The `Git(...)` call for this flow.
fn git_call(git: &GitTarget, flow_path: &str) -> String {
    let mut args = vec![
        format!("repo={}", py(&git.repo)),
        format!("flow_path={}", py(flow_path)),
        format!("repo_host={}", py(&git.repo_host)),
    ];
    args.push(match git.git_ref.kind {
        RefKind::Branch => format!("branch_name={}", py(&git.git_ref.name)),
        RefKind::Tag => format!("tag={}", py(&git.git_ref.name)),
    });
    if let Some(s) = &git.token_secret {
        args.push(format!("git_token_secret_name={}", py(s)));
    }
    if let Some(u) = &git.token_username {
        args.push(format!("git_token_username={}", py(u)));
    }
    format!("Git({})", args.join(", "))
}

/// The rewritten file and notes, or `None` when the file sets no Docker storage.
pub fn rewrite(
    path: &str,
    text: &str,
    git: &GitTarget,
    flow_path: &str,
    run_config: &Value,
) -> Result<Option<(String, Vec<String>)>, String> {
    if !text.contains("Docker") {
        return Ok(None);
    }
    let suite = ast::Suite::parse(text, path).map_err(|e| format!("{path}: {e}"))?;
    let mut found = Found::default();
    for s in suite {
        found.visit_stmt(s);
    }
    if found.docker_calls.is_empty() {
        return Ok(None);
    }
    let mut notes = vec![];
    let mut edits: Vec<(usize, usize, String)> = found
        .docker_calls
        .iter()
        .map(|&(a, b)| (a, b, git_call(git, flow_path)))
        .collect();
    let image = run_config
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("");
    let new_type = run_config.get("type").and_then(Value::as_str).unwrap_or("");
    match found.run_configs.as_slice() {
        [] => notes.push(format!(
            "the file sets no run config: give the flow run_config={new_type}(image={})",
            py(image)
        )),
        [rc] if rc.name == new_type => match rc.image {
            Some((a, b)) => edits.push((a, b, py(image))),
            None => {
                // insert right after the "(" that follows the callee
                let open = text[rc.after_callee..]
                    .find('(')
                    .map(|i| rc.after_callee + i + 1)
                    .ok_or_else(|| format!("{path}: a {} call without \"(\"", rc.name))?;
                let sep = if rc.has_args { ", " } else { "" };
                edits.push((open, open, format!("image={}{sep}", py(image))));
            }
        },
        [RunConfigCall { name, .. }] => notes.push(format!(
            "the file's {name} names no image: change it to {new_type}(image={}) by hand",
            py(image)
        )),
        _ => notes
            .push("the file has several run configs: set image on the flow's own by hand".into()),
    }
    if !found.imports_git {
        match found.storage_imports.first() {
            Some(&end) => edits.push((end, end, "\nfrom prefect.storage import Git".into())),
            None => {
                notes.push("add `from prefect.storage import Git` where Docker is imported".into())
            }
        }
    }
    edits.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
    let mut out = text.to_string();
    for (a, b, with) in edits {
        if b > text.len() || a > b {
            return Err(format!("{path}: an edit outside the file"));
        }
        out.replace_range(a..b, &with);
    }
    Ok(Some((out, notes)))
}

/// A unified diff of `old` → `new` for `path` (`git apply` reads it).
pub fn unified(path: &str, old: &str, new: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::gitref::GitRef;
    use serde_json::json;

    fn git() -> GitTarget {
        GitTarget {
            url: "https://git.example.com/platform/flows.git".into(),
            repo_host: "git.example.com".into(),
            repo: "platform/flows".into(),
            token_secret: Some("GIT_TOKEN".into()),
            token_username: None,
            git_ref: GitRef {
                kind: RefKind::Tag,
                name: "v1".into(),
                decided_by: "test".into(),
                annotated: false,
                commit: "0".repeat(40),
                notes: vec![],
            },
        }
    }

    #[test]
    fn docker_storage_becomes_git_and_the_image_moves() {
        let src = "from prefect import Flow\nfrom prefect.storage import Docker\nfrom prefect.run_configs import KubernetesRun\n\nwith Flow(\"etl\", storage=Docker(registry_url=\"r\", python_dependencies=[\"pandas\"]),\n          run_config=KubernetesRun(image=\"old:1\", labels=[\"k8s\"])) as flow:\n    pass\n";
        let rc = json!({"type": "KubernetesRun", "image": "rt:3.11-abc"});
        let (new, notes) = rewrite("f.py", src, &git(), "flows/f.py", &rc)
            .unwrap()
            .unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert!(new.contains("storage=Git(repo=\"platform/flows\", flow_path=\"flows/f.py\", repo_host=\"git.example.com\", tag=\"v1\", git_token_secret_name=\"GIT_TOKEN\")"), "{new}");
        assert!(
            new.contains("KubernetesRun(image=\"rt:3.11-abc\", labels=[\"k8s\"])"),
            "{new}"
        );
        assert!(
            new.contains("from prefect.storage import Docker\nfrom prefect.storage import Git\n")
        );
        assert!(ast::Suite::parse(&new, "f.py").is_ok(), "still Python");
        let d = unified("flows/f.py", src, &new);
        assert!(d.starts_with("--- a/flows/f.py\n+++ b/flows/f.py\n"), "{d}");
    }

    #[test]
    fn a_run_config_without_image_gets_one_and_no_docker_means_no_patch() {
        let src = "flow.storage = Docker()\nflow.run_config = DockerRun()\n";
        let rc = json!({"type": "DockerRun", "image": "rt"});
        let (new, notes) = rewrite("f.py", src, &git(), "f.py", &rc).unwrap().unwrap();
        assert!(
            new.contains("flow.run_config = DockerRun(image=\"rt\")"),
            "{new}"
        );
        assert!(notes[0].contains("import Git"), "{notes:?}");
        let rc = json!({"type": "KubernetesRun", "image": "rt"});
        let (_, notes) = rewrite(
            "f.py",
            "s = Docker()\nr = LocalRun()\n",
            &git(),
            "f.py",
            &rc,
        )
        .unwrap()
        .unwrap();
        assert!(notes[0].contains("LocalRun names no image"), "{notes:?}");
        assert!(
            rewrite("f.py", "x = 1\n", &git(), "f.py", &rc)
                .unwrap()
                .is_none()
        );
    }
}

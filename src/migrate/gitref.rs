//! Which git reference the migrated flows load their code from, and reading a flow file
//! at that reference (read with `gix`, no `git` binary needed).
//!
//! The rule (what Prefect 1's `Git` storage users set it from in CI): `BUILD_TAG` → `GIT_BRANCH` →
//! the checkout's active branch. `BUILD_TAG` counts only when the repository has such a
//! tag (Jenkins sets it to a build id on every build). A detached HEAD (the usual CI
//! checkout) falls back to the CI systems' variables, then to one tag exactly on HEAD,
//! and otherwise refuses: a guessed reference would break every flow at run time.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `branch` floats (runs get the branch head at run time); `tag` pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefKind {
    Branch,
    Tag,
}

/// The reference chosen, why, and the commit it names in the checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitRef {
    pub kind: RefKind,
    pub name: String,
    /// What decided it (`BUILD_TAG`, `GIT_BRANCH`, `active branch`, `--ref-from`, …).
    pub decided_by: String,
    /// The commit the flow files were verified at.
    pub commit: String,
    /// A tag that is an annotated tag object, not a lightweight ref to a commit: Prefect
    /// 1.4.1 Git storage cannot check those out (`'Tag' object has no attribute 'tree'`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub annotated: bool,
    /// Things the user should know (a `BUILD_TAG` that is no tag, an unpushed branch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Why no reference could be decided or read, naming the repository and what fixes it.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("--ref-from {0:?}: expected env, branch=NAME or tag=NAME")]
    RefFrom(String),
    #[error("--flows-repo {dir}: not in a git repository ({message})")]
    NotARepository { dir: String, message: String },
    #[error("--flows-repo {dir}: a bare repository has no checkout")]
    Bare { dir: String },
    #[error("cannot read HEAD: {0}")]
    Head(String),
    #[error("{by} names {kind} {name:?}, which {root} does not have")]
    Missing {
        by: String,
        kind: &'static str,
        name: String,
        root: String,
    },
    #[error("{root} has no commit yet")]
    Unborn { root: String },
    #[error(
        "HEAD of {root} is detached at {commit:.12} with no tag on it, and no CI variable \
         (BUILD_TAG, GIT_BRANCH, CI_COMMIT_TAG/CI_COMMIT_BRANCH, GITHUB_REF_TYPE/GITHUB_REF_NAME, \
         TAG_NAME, BRANCH_NAME) names a branch or tag: pass --ref-from branch=NAME or tag=NAME"
    )]
    Undecided { root: String, commit: String },
    #[error("HEAD of {root} has several tags ({tags}): pass --ref-from tag=NAME")]
    SeveralTags { root: String, tags: String },
    /// A commit, tree or file that could not be read (the text says which).
    #[error("{0}")]
    Read(String),
}

/// `--ref-from`: the rule over the environment, or an explicit branch or tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefFrom {
    Env,
    Branch(String),
    Tag(String),
}

impl std::str::FromStr for RefFrom {
    type Err = GitError;
    fn from_str(s: &str) -> Result<Self, GitError> {
        match s.split_once('=') {
            None if s == "env" => Ok(RefFrom::Env),
            Some(("branch", b)) if !b.is_empty() => Ok(RefFrom::Branch(b.to_string())),
            Some(("tag", t)) if !t.is_empty() => Ok(RefFrom::Tag(t.to_string())),
            _ => Err(GitError::RefFrom(s.to_string())),
        }
    }
}

/// What HEAD is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    Branch(String),
    Detached(String),
    Unborn,
}

/// Path (from the repository root) → object, and whether it is a file.
type PathMap = std::collections::HashMap<String, (gix::ObjectId, bool)>;

/// A git checkout holding the flows (`--flows-repo`, or a folder inside one).
pub struct Checkout {
    repo: gix::Repository,
    /// Every path of each commit read so far, with its object and whether it is a blob
    /// (all flow files are read at one commit: its trees are decoded once, not per file).
    paths: std::cell::RefCell<std::collections::HashMap<gix::ObjectId, std::rc::Rc<PathMap>>>,
    /// The folder given, relative to the repository root (`""` at the root).
    prefix: String,
    pub root: PathBuf,
}

impl Checkout {
    pub fn open(dir: &Path) -> Result<Checkout, GitError> {
        let repo = gix::discover(dir).map_err(|e| GitError::NotARepository {
            dir: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let root = repo
            .workdir()
            .ok_or_else(|| GitError::Bare {
                dir: dir.display().to_string(),
            })?
            .to_path_buf();
        let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let prefix = abs(dir)
            .strip_prefix(abs(&root))
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        Ok(Checkout {
            repo,
            paths: Default::default(),
            prefix,
            root,
        })
    }

    /// A path relative to `--flows-repo` as a path relative to the repository root.
    pub fn repo_path(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    pub fn head(&self) -> Result<Head, GitError> {
        let head = self
            .repo
            .head()
            .map_err(|e| GitError::Head(e.to_string()))?;
        if head.is_unborn() {
            return Ok(Head::Unborn);
        }
        if let Some(name) = head.referent_name() {
            let full = name.as_bstr().to_string();
            return Ok(Head::Branch(
                full.strip_prefix("refs/heads/")
                    .unwrap_or(&full)
                    .to_string(),
            ));
        }
        let id = head.id().map(|i| i.to_string()).unwrap_or_default();
        Ok(Head::Detached(id))
    }

    /// The commit a full reference name points at (tags peeled), if it exists.
    fn commit_of(&self, full: &str) -> Option<String> {
        let mut r = self.repo.try_find_reference(full).ok()??;
        r.peel_to_commit().ok().map(|c| c.id.to_string())
    }

    pub fn tag_commit(&self, tag: &str) -> Option<String> {
        self.commit_of(&format!("refs/tags/{tag}"))
    }

    /// Whether `refs/tags/{tag}` points at a tag object (`git tag -a`).
    pub fn tag_is_annotated(&self, tag: &str) -> bool {
        let Ok(Some(r)) = self.repo.try_find_reference(&format!("refs/tags/{tag}")) else {
            return false;
        };
        let Some(id) = r.target().try_id().map(|i| i.to_owned()) else {
            return false;
        };
        self.repo
            .find_object(id)
            .is_ok_and(|o| o.kind == gix::object::Kind::Tag)
    }

    /// The branch as the remote has it (what runs will clone), else the local branch.
    pub fn branch_commit(&self, branch: &str) -> Option<String> {
        self.commit_of(&format!("refs/remotes/origin/{branch}"))
            .or_else(|| self.commit_of(&format!("refs/heads/{branch}")))
    }

    /// Tags whose commit is `commit`, sorted.
    pub fn tags_at(&self, commit: &str) -> Vec<String> {
        let Ok(platform) = self.repo.references() else {
            return vec![];
        };
        let Ok(tags) = platform.tags() else {
            return vec![];
        };
        let mut out: Vec<String> = tags
            .filter_map(Result::ok)
            .filter_map(|mut r| {
                let name = r.name().as_bstr().to_string();
                let id = r.peel_to_commit().ok()?.id.to_string();
                (id == commit).then(|| name.trim_start_matches("refs/tags/").to_string())
            })
            .collect();
        out.sort();
        out
    }

    /// Every path of `commit` (decoded once per commit).
    fn paths(&self, commit: &str) -> Result<std::rc::Rc<PathMap>, GitError> {
        let id = gix::ObjectId::from_hex(commit.as_bytes())
            .map_err(|e| GitError::Read(format!("bad commit id {commit}: {e}")))?;
        if let Some(m) = self.paths.borrow().get(&id) {
            return Ok(m.clone());
        }
        let root = self
            .repo
            .find_commit(id)
            .and_then(|c| c.tree_id())
            .map_err(|e| GitError::Read(format!("cannot read commit {commit}: {e}")))?
            .detach();
        let mut map = PathMap::new();
        let mut stack = vec![(String::new(), root)];
        while let Some((prefix, tree_id)) = stack.pop() {
            let tree = self.repo.find_tree(tree_id).map_err(|e| {
                GitError::Read(format!("cannot read a tree of commit {commit}: {e}"))
            })?;
            let decoded = tree.decode().map_err(|e| {
                GitError::Read(format!("cannot decode a tree of commit {commit}: {e}"))
            })?;
            for e in &decoded.entries {
                let path = format!("{prefix}{}", e.filename);
                let oid = e.oid.to_owned();
                if e.mode.is_tree() {
                    stack.push((format!("{path}/"), oid));
                }
                map.insert(path, (oid, e.mode.is_blob()));
            }
        }
        let map = std::rc::Rc::new(map);
        self.paths.borrow_mut().insert(id, map.clone());
        Ok(map)
    }

    /// Whether `path` (a file or a folder) exists at `commit`.
    pub fn exists_at(&self, commit: &str, path: &str) -> bool {
        self.paths(commit).is_ok_and(|m| m.contains_key(path))
    }

    /// The bytes of `path` (relative to the repository root) at `commit`; `None` when the
    /// commit has no such file.
    pub fn read_at(&self, commit: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        let Some(&(id, true)) = self.paths(commit)?.get(path) else {
            return Ok(None);
        };
        let obj = self
            .repo
            .find_object(id)
            .map_err(|e| GitError::Read(format!("cannot read {path} at {commit}: {e}")))?;
        Ok(Some(obj.detach().data))
    }
}

/// Strip what Jenkins and others put before a branch name.
pub fn normalise_branch(b: &str) -> &str {
    ["refs/remotes/origin/", "refs/heads/", "origin/"]
        .iter()
        .find_map(|p| b.strip_prefix(p))
        .unwrap_or(b)
}

/// Decide the reference. `env` reads an environment variable (empty counts as unset).
pub fn decide(
    from: &RefFrom,
    env: &dyn Fn(&str) -> Option<String>,
    co: &Checkout,
) -> Result<GitRef, GitError> {
    let root = co.root.display().to_string();
    let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let mut notes = Vec::new();
    let missing = |by: &str, kind, name: &str| GitError::Missing {
        by: by.to_string(),
        kind,
        name: name.to_string(),
        root: root.clone(),
    };
    let tag = |name: &str, by: &str, notes: Vec<String>| -> Result<GitRef, GitError> {
        let commit = co
            .tag_commit(name)
            .ok_or_else(|| missing(by, "tag", name))?;
        Ok(GitRef {
            kind: RefKind::Tag,
            name: name.to_string(),
            decided_by: by.to_string(),
            commit,
            annotated: co.tag_is_annotated(name),
            notes,
        })
    };
    let branch = |name: &str, by: &str, mut notes: Vec<String>| -> Result<GitRef, GitError> {
        let commit = co
            .branch_commit(name)
            .ok_or_else(|| missing(by, "branch", name))?;
        let remote = co.commit_of(&format!("refs/remotes/origin/{name}"));
        let local = co.commit_of(&format!("refs/heads/{name}"));
        match (&remote, &local) {
            (None, _) => notes.push(format!(
                "branch {name} has no origin/{name} here: make sure it is pushed before flows run"
            )),
            (Some(r), Some(l)) if r != l => notes.push(format!(
                "local branch {name} differs from origin/{name}: flows will run origin's {r:.12}"
            )),
            _ => {}
        }
        Ok(GitRef {
            kind: RefKind::Branch,
            name: name.to_string(),
            decided_by: by.to_string(),
            commit,
            annotated: false,
            notes,
        })
    };
    match from {
        RefFrom::Branch(b) => return branch(normalise_branch(b), "--ref-from", notes),
        RefFrom::Tag(t) => return tag(t, "--ref-from", notes),
        RefFrom::Env => {}
    }
    if let Some(t) = var("BUILD_TAG") {
        if co.tag_commit(&t).is_some() {
            return tag(&t, "BUILD_TAG", notes);
        }
        notes.push(format!(
            "BUILD_TAG={t} is not a tag of the repository (Jenkins sets it to a build id); ignored"
        ));
    }
    if let Some(b) = var("GIT_BRANCH") {
        return branch(normalise_branch(&b), "GIT_BRANCH", notes);
    }
    let detached_at = match co.head()? {
        Head::Branch(b) => return branch(&b, "active branch", notes),
        Head::Unborn => return Err(GitError::Unborn { root }),
        Head::Detached(c) => c,
    };
    // CI checkouts are detached: the CI system says what it checked out
    if let Some(t) = var("CI_COMMIT_TAG") {
        return tag(&t, "CI_COMMIT_TAG", notes);
    }
    if let Some(b) = var("CI_COMMIT_BRANCH") {
        return branch(&b, "CI_COMMIT_BRANCH", notes);
    }
    if let (Some(kind), Some(name)) = (var("GITHUB_REF_TYPE"), var("GITHUB_REF_NAME")) {
        match kind.as_str() {
            "tag" => return tag(&name, "GITHUB_REF_NAME", notes),
            "branch" => return branch(&name, "GITHUB_REF_NAME", notes),
            _ => {}
        }
    }
    if let Some(t) = var("TAG_NAME") {
        return tag(&t, "TAG_NAME", notes);
    }
    if let Some(b) = var("BRANCH_NAME") {
        return branch(normalise_branch(&b), "BRANCH_NAME", notes);
    }
    match co.tags_at(&detached_at).as_slice() {
        [one] => tag(one, "the tag on HEAD", notes),
        [] => Err(GitError::Undecided {
            root,
            commit: detached_at,
        }),
        many => Err(GitError::SeveralTags {
            root,
            tags: many.join(", "),
        }),
    }
}

//! The planning policy, as data: `rules/default.toml` (embedded) merged with a team's
//! own files. A wrong file gets an error that names the file, line and column and says
//! what was expected, the way cargo-deny reports its config.

pub mod fetch;
mod policy;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use policy::{Policy, PolicyError};

/// The default policy shipped in `rules/default.toml`.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.toml");
const DEFAULT_NAME: &str = "rules/default.toml (built in)";
pub const SCHEMA: &str = "unsprawl/rules/v1";
/// The built-in `[image] registry`: a placeholder nothing can be pushed to or pulled from.
pub const PLACEHOLDER_REGISTRY: &str = "registry.example.com";

/// Which of a flow's distributions its runtime image must provide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Needs {
    /// Every distribution in the flow's current image.
    Installed,
    /// Providers of the modules the flow imports, with their Requires-Dist closure.
    Imports,
}

/// How flows matched by a `[[separate]]` rule share runtime images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SeparateMode {
    /// Only with each other.
    Group,
    /// Not at all: each distinct requirement gets its own image.
    Alone,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Separate {
    pub name: String,
    /// PEP 503 names; a trailing `*` matches a prefix.
    pub distributions: Vec<String>,
    pub labels: Vec<String>,
    pub mode: SeparateMode,
}

/// A PEP 508 name, or one followed by a single `*` (a prefix): nothing a glob would read
/// as a class or an alternation.
fn is_name_or_prefix(p: &str) -> bool {
    let name = p.strip_suffix('*').unwrap_or(p);
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

impl Separate {
    pub fn matches_distribution(&self, name: &str) -> bool {
        self.distributions
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => p == name,
            })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRules {
    pub name: String,
    pub registry: String,
    pub max_bytes: Option<u64>,
    /// Base image template by OS family.
    pub base: BTreeMap<String, String>,
}

/// The policy in force, after merging.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rules {
    /// The files merged, in order (the built-in default first).
    pub sources: Vec<String>,
    pub needs: Needs,
    pub ignore: BTreeSet<String>,
    pub default_policy: Policy,
    pub packages: BTreeMap<String, Policy>,
    pub separate: Vec<Separate>,
    pub python_versions: Vec<String>,
    pub os_families: Vec<String>,
    pub image: ImageRules,
    /// What each target storage needs in a runtime image to fetch a flow's code
    /// (`git-storage`, `git-clone`), see [`fetch`].
    pub fetch: BTreeMap<String, fetch::FetchNeeds>,
}

impl Rules {
    /// The built-in default alone.
    pub fn default_rules() -> Rules {
        Rules::load(&[]).expect("the built-in rules/default.toml is valid")
    }

    /// The built-in default with each file merged over it, in order.
    pub fn load(files: &[&Path]) -> Result<Rules, RuleError> {
        let mut rules = Rules::empty();
        rules.merge_text(DEFAULT_NAME, DEFAULT_RULES)?;
        for f in files {
            let name = f.display().to_string();
            let text = std::fs::read_to_string(f).map_err(|e| RuleError {
                file: name.clone(),
                line: 0,
                column: 0,
                source_line: String::new(),
                message: format!("cannot read the rules file: {e}"),
            })?;
            rules.merge_text(&name, &text)?;
        }
        Ok(rules)
    }

    /// Parse `text` (named `file` in errors) and merge it over `self`.
    pub fn merge_text(&mut self, file: &str, text: &str) -> Result<(), RuleError> {
        let raw: RawRules = toml::from_str(text).map_err(|e| {
            RuleError::at(
                file,
                text,
                e.span().unwrap_or(0..0),
                e.message().to_string(),
            )
        })?;
        let err = |span: Range<usize>, msg: String| RuleError::at(file, text, span, msg);
        if let Some(s) = &raw.schema
            && s.get_ref() != SCHEMA
        {
            return Err(err(
                s.span(),
                format!("unknown schema `{}`: expected `{SCHEMA}`", s.get_ref()),
            ));
        }
        self.sources.push(file.to_string());
        if let Some(r) = raw.requirements {
            if let Some(n) = r.from {
                self.needs = n;
            }
            if let Some(list) = r.ignore {
                let (replace, names) = list_form(&list).map_err(|m| err(list.span(), m))?;
                if replace {
                    self.ignore.clear();
                }
                self.ignore.extend(names.iter().map(|n| normalize(n)));
            }
        }
        if let Some(v) = raw.versions {
            if let Some(d) = v.default {
                self.default_policy =
                    Policy::parse(d.get_ref()).map_err(|e| err(d.span(), e.to_string()))?;
            }
            for (name, p) in v.packages.unwrap_or_default() {
                let policy =
                    Policy::parse(p.get_ref()).map_err(|e| err(p.span(), e.to_string()))?;
                self.packages.insert(normalize(&name), policy);
            }
        }
        for s in raw.separate.unwrap_or_default() {
            // a rule of the same name replaces the earlier one; `disabled` removes it
            self.separate.retain(|x| &x.name != s.name.get_ref());
            if s.disabled {
                if !s.distributions.is_empty() || !s.labels.is_empty() {
                    return Err(err(
                        s.name.span(),
                        format!(
                            "[[separate]] `{}` is disabled but also names distributions or labels: drop one",
                            s.name.get_ref()
                        ),
                    ));
                }
                continue;
            }
            if s.distributions.is_empty() && s.labels.is_empty() {
                return Err(err(
                    s.name.span(),
                    format!(
                        "[[separate]] `{}` matches nothing: give `distributions` or `labels`",
                        s.name.get_ref()
                    ),
                ));
            }
            if let Some(bad) = s.distributions.iter().find(|d| !is_name_or_prefix(d)) {
                return Err(err(
                    s.name.span(),
                    format!(
                        "[[separate]] `{}`: `{bad}` is not a distribution name or a `NAME*` prefix (letters, digits, `.`, `-`, `_`; one `*` at the end)",
                        s.name.get_ref()
                    ),
                ));
            }
            self.separate.push(Separate {
                name: s.name.into_inner(),
                distributions: s.distributions.iter().map(|d| normalize(d)).collect(),
                labels: s.labels,
                mode: s.mode.unwrap_or(SeparateMode::Group),
            });
        }
        if let Some(p) = raw.python {
            for v in &p.versions {
                let ok = v.get_ref().split('.').count() == 2
                    && v.get_ref().split('.').all(|n| n.parse::<u32>().is_ok());
                if !ok {
                    return Err(err(
                        v.span(),
                        format!(
                            "`{}` is not a Python minor version: expected e.g. \"3.11\"",
                            v.get_ref()
                        ),
                    ));
                }
            }
            self.python_versions = p.versions.into_iter().map(Spanned::into_inner).collect();
        }
        if let Some(o) = raw.os {
            self.os_families = o.families;
        }
        if let Some(i) = raw.image {
            if let Some(n) = i.name {
                for var in placeholders(n.get_ref()) {
                    if !["registry", "python", "os", "hash"].contains(&var.as_str()) {
                        return Err(err(
                            n.span(),
                            format!(
                                "unknown placeholder `{{{var}}}`: expected {{registry}}, {{python}}, {{os}} or {{hash}}"
                            ),
                        ));
                    }
                }
                if !n.get_ref().contains("{hash}") {
                    return Err(err(
                        n.span(),
                        "the name must contain {hash}, or two different runtime images would get one name"
                            .to_string(),
                    ));
                }
                self.image.name = n.into_inner();
            }
            if let Some(r) = i.registry {
                self.image.registry = r;
            }
            if let Some(m) = i.max_bytes {
                self.image.max_bytes = (m > 0).then_some(m);
            }
            for (family, b) in i.base.unwrap_or_default() {
                self.image.base.insert(family, b);
            }
        }
        if let Some(f) = raw.fetch {
            let span = f.span();
            fetch::merge(&mut self.fetch, f.into_inner()).map_err(|m| err(span, m))?;
        }
        Ok(())
    }

    fn empty() -> Rules {
        Rules {
            sources: vec![],
            needs: Needs::Installed,
            ignore: BTreeSet::new(),
            default_policy: Policy::Minor,
            packages: BTreeMap::new(),
            separate: vec![],
            python_versions: vec![],
            os_families: vec![],
            image: ImageRules {
                name: "{registry}/runtime:{python}-{hash}".into(),
                registry: String::new(),
                max_bytes: None,
                base: BTreeMap::new(),
            },
            fetch: BTreeMap::new(),
        }
    }

    /// The policy for one (normalized) distribution.
    pub fn policy_for(&self, name: &str) -> &Policy {
        self.packages.get(name).unwrap_or(&self.default_policy)
    }
}

/// A list in a rules file: `[…]` adds to the lists merged so far (the built-in one
/// first); `{ replace = […] }` replaces them; `{ add = […] }` says the default aloud.
fn list_form(v: &Spanned<toml::Value>) -> Result<(bool, Vec<String>), String> {
    const EXPECTED: &str = "expected a list of names (added to the built-in list), `{ replace = [...] }` (replaces it) or `{ add = [...] }`";
    let names = |v: &toml::Value| -> Result<Vec<String>, String> {
        let items = v.as_array().ok_or_else(|| EXPECTED.to_string())?;
        items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("`{i}` is not a distribution name (a string)"))
            })
            .collect()
    };
    match v.get_ref() {
        toml::Value::Array(_) => Ok((false, names(v.get_ref())?)),
        toml::Value::Table(t) => match (t.len(), t.get("replace"), t.get("add")) {
            (1, Some(list), None) => Ok((true, names(list)?)),
            (1, None, Some(list)) => Ok((false, names(list)?)),
            _ => {
                let keys: Vec<&str> = t.keys().map(String::as_str).collect();
                Err(format!(
                    "unknown form {{ {} }}: {EXPECTED}",
                    keys.join(", ")
                ))
            }
        },
        _ => Err(EXPECTED.to_string()),
    }
}

fn placeholders(template: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + len].to_string());
        rest = &rest[start + len + 1..];
    }
    out
}

/// PEP 503 names, as every stage compares them.
pub use crate::dist_name::normalize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    schema: Option<Spanned<String>>,
    requirements: Option<RawRequirements>,
    versions: Option<RawVersions>,
    separate: Option<Vec<RawSeparate>>,
    python: Option<RawPython>,
    os: Option<RawOs>,
    image: Option<RawImage>,
    fetch: Option<Spanned<BTreeMap<String, fetch::RawFetch>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequirements {
    from: Option<Needs>,
    ignore: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVersions {
    default: Option<Spanned<String>>,
    packages: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeparate {
    name: Spanned<String>,
    #[serde(default)]
    distributions: Vec<String>,
    #[serde(default)]
    labels: Vec<String>,
    mode: Option<SeparateMode>,
    /// Remove the rule of this name merged before (the built-in `gpu`, say).
    #[serde(default)]
    disabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPython {
    #[serde(default)]
    versions: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOs {
    #[serde(default)]
    families: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: Option<Spanned<String>>,
    registry: Option<String>,
    max_bytes: Option<u64>,
    base: Option<BTreeMap<String, String>>,
}

/// A rules file that cannot be used, located to the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct RuleError {
    pub file: String,
    /// 1-based; 0 when the whole file is at fault.
    pub line: usize,
    pub column: usize,
    pub source_line: String,
    pub message: String,
}

impl RuleError {
    fn at(file: &str, text: &str, span: Range<usize>, message: String) -> RuleError {
        let start = span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = text[start..]
            .find('\n')
            .map(|i| start + i)
            .unwrap_or(text.len());
        RuleError {
            file: file.to_string(),
            line: text[..start].matches('\n').count() + 1,
            column: text[line_start..start].chars().count() + 1,
            source_line: text[line_start..line_end].to_string(),
            message,
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file, self.message);
        }
        writeln!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        writeln!(f, "  |")?;
        writeln!(f, "{:>3} | {}", self.line, self.source_line)?;
        write!(f, "  | {}^", " ".repeat(self.column.saturating_sub(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_load() {
        let r = Rules::default_rules();
        assert_eq!(r.needs, Needs::Installed);
        assert!(r.ignore.contains("setuptools"));
        assert_eq!(r.policy_for("prefect"), &Policy::Patch);
        assert_eq!(r.policy_for("pandas"), &Policy::Minor);
        assert_eq!(r.separate[0].name, "gpu");
        assert!(r.separate[0].matches_distribution("nvidia-cublas-cu12"));
        assert!(!r.separate[0].matches_distribution("numpy"));
    }

    #[test]
    fn team_file_merges_over_default() {
        let mut r = Rules::default_rules();
        r.merge_text(
            "team.toml",
            "[versions]\ndefault = \"exact\"\n[versions.packages]\nPandas = \">=1.5,<3\"\n\
             [requirements]\nfrom = \"imports\"\nignore = [\"Pytest\"]\n",
        )
        .unwrap();
        assert_eq!(r.default_policy, Policy::Exact);
        assert_eq!(r.needs, Needs::Imports);
        assert!(r.ignore.contains("pytest") && r.ignore.contains("pip"));
        assert_eq!(r.policy_for("prefect"), &Policy::Patch);
        assert!(matches!(r.policy_for("pandas"), Policy::Specifier(s, _) if s == ">=1.5,<3"));
    }

    #[test]
    fn a_glob_that_is_not_a_name_or_prefix_is_refused() {
        let mut r = Rules::default_rules();
        let e = r
            .merge_text(
                "team.toml",
                "[[separate]]\nname = \"gpu\"\ndistributions = [\"nvidia-*\", \"[*\"]\n",
            )
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("`[*` is not a distribution name or a `NAME*` prefix"),
            "{e}"
        );
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn errors_point_at_the_line() {
        let mut r = Rules::default_rules();
        let e = r
            .merge_text(
                "team.toml",
                "[versions]\ndefault = \"minor\"\n[versions.packages]\nnumpy = \"newest\"\n",
            )
            .unwrap_err();
        assert_eq!((e.line, e.column), (4, 9), "{e}");
        assert!(e.to_string().contains("team.toml:4:9"), "{e}");
        assert!(e.message.contains("exact"), "{e}");

        let e = r
            .merge_text("team.toml", "[version]\ndefault = \"minor\"\n")
            .unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(e.message.contains("unknown field `version`"), "{e}");

        let e = r
            .merge_text("t.toml", "[versions.packages]\nx = \"!=1.2\"\n")
            .unwrap_err();
        assert!(e.message.contains("!="), "{e}");

        let e = r
            .merge_text("t.toml", "[image]\nname = \"r/{team}:{hash}\"\n")
            .unwrap_err();
        assert!(e.message.contains("{team}"), "{e}");
        let e = r
            .merge_text("t.toml", "[python]\nversions = [\"3\"]\n")
            .unwrap_err();
        assert!(e.message.contains("minor version"), "{e}");
        let e = r
            .merge_text("t.toml", "[requirements]\nfrom = \"everything\"\n")
            .unwrap_err();
        assert!(e.message.contains("installed"), "{e}");
    }

    #[test]
    fn lists_can_be_replaced_not_only_added_to() {
        let mut r = Rules::default_rules();
        r.merge_text(
            "team.toml",
            "[requirements]\nignore = { replace = [\"Wheel\"] }\n",
        )
        .unwrap();
        assert_eq!(
            r.ignore.iter().collect::<Vec<_>>(),
            ["wheel"],
            "pip is pinned now"
        );
        r.merge_text(
            "team.toml",
            "[requirements]\nignore = { add = [\"pip\"] }\n",
        )
        .unwrap();
        assert!(r.ignore.contains("pip") && r.ignore.contains("wheel"));

        let mut r = Rules::default_rules();
        r.merge_text(
            "team.toml",
            "[[separate]]\nname = \"gpu\"\ndistributions = [\"torch\"]\n",
        )
        .unwrap();
        assert_eq!(r.separate.len(), 1, "same name: replaced, not added");
        assert_eq!(r.separate[0].distributions, ["torch"]);
        r.merge_text(
            "team.toml",
            "[[separate]]\nname = \"gpu\"\ndisabled = true\n",
        )
        .unwrap();
        assert!(r.separate.is_empty());

        let e = Rules::default_rules()
            .merge_text(
                "t.toml",
                "[requirements]\nfrom = \"installed\"\nignore = { remove = [\"pip\"] }\n",
            )
            .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("replace"), "{e}");
        let e = Rules::default_rules()
            .merge_text("t.toml", "[requirements]\nignore = { replace = [1] }\n")
            .unwrap_err();
        assert!(e.message.contains("`1` is not a distribution name"), "{e}");
        let e = Rules::default_rules()
            .merge_text(
                "t.toml",
                "[[separate]]\nname = \"gpu\"\ndisabled = true\nlabels = [\"x\"]\n",
            )
            .unwrap_err();
        assert!(e.message.contains("disabled"), "{e}");
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize("Typing_Extensions"), "typing-extensions");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("a--b"), "a-b");
    }
}

//! Values that look like secrets: an image's `ENV DB_PASSWORD=…` or a Docker storage's
//! `env_vars={"API_TOKEN": …}` is a credential baked into an image. unsprawl never copies
//! one into a document, a report or a registration: the scan replaces the value with
//! [`REDACTED`] wherever it appears (config env, history, pickled storage state), and a
//! flow that relied on one is refused with the advice to move it into a Prefect Secret.

use std::collections::BTreeMap;

/// What a secret-looking value is replaced with.
pub const REDACTED: &str = "<redacted: looks like a secret>";

/// Name parts that mark a credential (`DB_PASSWORD`, `GITHUB_TOKEN`, `AWS_SECRET_ACCESS_KEY`).
const NAME_MARKS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "TOKEN",
    "SECRET",
    "CREDENTIAL",
    "PRIVATE",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "AUTH",
];

/// Value prefixes of well-known key formats.
const VALUE_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "sk_live_",
    "sk-",
    "AKIA",
    "ASIA",
    "-----BEGIN",
    "pnu_",
];

/// Whether `name=value` looks like a credential, by its name or its value.
pub fn looks_secret(name: &str, value: &str) -> bool {
    if value.is_empty() || value == REDACTED {
        return value == REDACTED;
    }
    let upper = name.to_ascii_uppercase();
    let by_name =
        NAME_MARKS.iter().any(|m| upper.contains(m)) || upper.ends_with("_KEY") || upper == "KEY";
    by_name || value_looks_secret(value)
}

/// A key format we know, or a long random-looking token (mixed letters and digits, no
/// spaces or path separators).
fn value_looks_secret(v: &str) -> bool {
    if VALUE_PREFIXES
        .iter()
        .any(|p| v.starts_with(p) && v.len() >= p.len() + 12)
    {
        return true;
    }
    let token = v.len() >= 32
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '=' | '_' | '-'));
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let upper = v.chars().filter(char::is_ascii_uppercase).count();
    let lower = v.chars().filter(char::is_ascii_lowercase).count();
    token && digits >= 4 && upper >= 4 && lower >= 4
}

/// Replace secret-looking values of `env` with [`REDACTED`]; returns the values taken
/// out, to scrub from other text that may repeat them (history lines).
pub fn redact_env(env: &mut BTreeMap<String, String>) -> Vec<String> {
    let mut taken = vec![];
    for (k, v) in env.iter_mut() {
        if v != REDACTED && looks_secret(k, v) {
            taken.push(std::mem::replace(v, REDACTED.to_string()));
        }
    }
    taken
}

/// `text` with every one of `values` replaced by [`REDACTED`].
pub fn scrub(text: &str, values: &[String]) -> String {
    let mut out = text.to_string();
    for v in values.iter().filter(|v| v.len() >= 4) {
        out = out.replace(v.as_str(), REDACTED);
    }
    out
}

/// The same for a JSON value (a pickled object's state), in place: an `env_vars`-like
/// object's secret values are redacted, and the values taken out scrubbed from every
/// string of the document.
pub fn redact_json(state: &mut serde_json::Value) {
    let mut taken = vec![];
    collect(state, false, &mut taken);
    if !taken.is_empty() {
        scrub_json(state, &taken);
    }
}

/// Names count inside environment maps (`env_vars`, `env`) only, where a name is a
/// variable's (elsewhere `git_token_secret_name` names a secret, it holds none); values
/// of a known key format count everywhere.
fn collect(v: &mut serde_json::Value, in_env: bool, taken: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if let serde_json::Value::String(s) = x {
                    let secret = if in_env {
                        looks_secret(k, s)
                    } else {
                        value_looks_secret(s)
                    };
                    if s != REDACTED && secret {
                        taken.push(std::mem::replace(s, REDACTED.to_string()));
                    }
                } else {
                    collect(x, matches!(k.as_str(), "env" | "env_vars"), taken);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|x| collect(x, false, taken)),
        _ => {}
    }
}

fn scrub_json(v: &mut serde_json::Value, taken: &[String]) {
    match v {
        serde_json::Value::String(s) => *s = scrub(s, taken),
        serde_json::Value::Object(map) => map.values_mut().for_each(|x| scrub_json(x, taken)),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|x| scrub_json(x, taken)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_told_by_name_or_by_value() {
        assert!(looks_secret("DB_PASSWORD", "hunter2"));
        assert!(looks_secret("GITHUB_TOKEN", "x"));
        assert!(looks_secret("AWS_SECRET_ACCESS_KEY", "abc"));
        assert!(looks_secret("SENTRY_DSN_KEY", "abc"));
        assert!(looks_secret(
            "NOTES",
            "ghp_0123456789abcdefABCDEF0123456789"
        ));
        assert!(looks_secret("X", "Zk3mP9qR2sT8vW4xY7aB1cD6eF5gH0jK"));
        assert!(!looks_secret("REPORT_BUCKET", "s3://team-e/reports"));
        assert!(!looks_secret("PATH", "/usr/local/bin:/usr/bin:/bin"));
        assert!(!looks_secret("PYTHON_VERSION", "3.11.7"));
        assert!(!looks_secret("KEYBOARD_LAYOUT", "us"));
        assert!(!looks_secret("DB_PASSWORD", ""));
    }

    #[test]
    fn values_are_redacted_and_scrubbed_from_everything_else() {
        let mut env = BTreeMap::from([
            ("DB_PASSWORD".to_string(), "hunter2-prod".to_string()),
            ("EXTRA".to_string(), "1".to_string()),
        ]);
        let taken = redact_env(&mut env);
        assert_eq!(env["DB_PASSWORD"], REDACTED);
        assert_eq!(env["EXTRA"], "1");
        assert_eq!(
            scrub("ENV DB_PASSWORD=hunter2-prod EXTRA=1", &taken),
            format!("ENV DB_PASSWORD={REDACTED} EXTRA=1")
        );
        let mut state = serde_json::json!({
            "git_token_secret_name": "GITHUB_TOKEN",
            "env_vars": {"DB_PASSWORD": "hunter2-prod", "EXTRA": "1"},
            "extra_dockerfile_commands": ["RUN echo hunter2-prod > /etc/x"],
        });
        redact_json(&mut state);
        let text = state.to_string();
        assert!(!text.contains("hunter2-prod"), "{text}");
        assert!(text.contains("\"EXTRA\":\"1\""), "{text}");
        assert!(
            text.contains("\"GITHUB_TOKEN\""),
            "a secret's name is no secret: {text}"
        );
    }
}

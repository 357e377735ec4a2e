//! `--fail-on` rules for CI: `images>N`, `orphans>N`, `dangling>N`, `stale>N`,
//! `growth>P%`. A broken rule makes `report` exit 1 (2 stays "error").

use serde::{Deserialize, Serialize};

use super::Report;

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub metric: Metric,
    pub limit: f64,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Images,
    Orphans,
    Dangling,
    Stale,
    Growth,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Violation {
    pub rule: String,
    pub value: f64,
    pub limit: f64,
}

impl std::str::FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Rule, String> {
        let expected = "expected images>N, orphans>N, dangling>N, stale>N or growth>P%";
        let (name, limit) = s
            .split_once('>')
            .ok_or_else(|| format!("--fail-on {s}: {expected}"))?;
        let metric = match name.trim() {
            "images" => Metric::Images,
            "orphans" => Metric::Orphans,
            "dangling" => Metric::Dangling,
            "stale" => Metric::Stale,
            "growth" => Metric::Growth,
            other => {
                return Err(format!(
                    "--fail-on {s}: unknown measure `{other}`; {expected}"
                ));
            }
        };
        let number = limit.trim();
        let number = match metric {
            Metric::Growth => number
                .strip_suffix('%')
                .ok_or_else(|| format!("--fail-on {s}: growth is a percentage, e.g. growth>10%"))?,
            _ => number,
        };
        let limit: f64 = number
            .parse()
            .map_err(|_| format!("--fail-on {s}: `{number}` is not a number"))?;
        Ok(Rule {
            metric,
            limit,
            text: s.trim().to_string(),
        })
    }
}

/// The rules the report's numbers break. `growth` without a previous report is not
/// broken (there is nothing to grow from).
pub fn check(report: &Report, rules: &[Rule]) -> Vec<Violation> {
    rules
        .iter()
        .filter_map(|r| {
            let value = match r.metric {
                Metric::Images => report.totals.images as f64,
                Metric::Orphans => report.orphans.len() as f64,
                Metric::Dangling => report.dangling.len() as f64,
                Metric::Stale => report.stale.len() as f64,
                Metric::Growth => report.trend.as_ref()?.growth_percent,
            };
            (value > r.limit).then(|| Violation {
                rule: r.text.clone(),
                value,
                limit: r.limit,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules() {
        let r: Rule = "images>100".parse().unwrap();
        assert_eq!((r.metric, r.limit), (Metric::Images, 100.0));
        let r: Rule = "growth>12.5%".parse().unwrap();
        assert_eq!((r.metric, r.limit), (Metric::Growth, 12.5));
        assert!(
            "growth>10"
                .parse::<Rule>()
                .unwrap_err()
                .contains("percentage")
        );
        assert!(
            "bytes>1"
                .parse::<Rule>()
                .unwrap_err()
                .contains("unknown measure")
        );
        assert!("images=3".parse::<Rule>().unwrap_err().contains("expected"));
        assert!(
            "images>x"
                .parse::<Rule>()
                .unwrap_err()
                .contains("not a number")
        );
    }
}

//! Views of the report document: Markdown (PR comments), CSV (one row per image, for
//! spreadsheets) and one self-contained HTML file (inline SVG charts made here, tables
//! sortable by a few lines of inline script, no network fetches: its CSP forbids them).

use std::fmt::Write;

use indicatif::HumanBytes;
use minijinja::value::Serde;
use minijinja::{Environment, context};

use super::Report;

const HTML: &str = include_str!("templates/report.html.j2");
const MARKDOWN: &str = include_str!("templates/report.md.j2");

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.add_filter("bytes", |b: u64| HumanBytes(b).to_string());
    env.add_filter("signed_bytes", |b: i64| {
        let sign = if b < 0 { "-" } else { "+" };
        format!("{sign}{}", HumanBytes(b.unsigned_abs()))
    });
    // `2023-01-01` for a midnight, `2023-01-01 10:11 UTC` otherwise; nothing for none
    env.add_filter("date", |t: Option<String>| readable_date(t.as_deref()));
    // decimal GB, as storage is billed; the sign is the sentence's to say
    env.add_filter("gb", |b: i64| {
        let b = b.unsigned_abs();
        if b >= 10_000_000 {
            format!("{:.2} GB", b as f64 / 1e9)
        } else {
            HumanBytes(b).to_string()
        }
    });
    env.add_filter("money", |m: f64| match m.abs() {
        0.0 => "0".to_string(),
        m if m < 0.01 => "less than 0.01".to_string(),
        m => format!("about {m:.2}"),
    });
    // `3.9, 3.10, 3.11`, not the text order `3.10, 3.11, 3.9`
    env.add_filter(
        "by_version",
        |m: minijinja::Value| -> Result<Vec<minijinja::Value>, minijinja::Error> {
            let mut keys: Vec<String> = m.try_iter()?.map(|k| k.to_string()).collect();
            keys.sort_by(|a, b| version_order(a, b));
            keys.into_iter()
                .map(|k| {
                    let n = m.get_item(&minijinja::Value::from(k.as_str()))?;
                    Ok(minijinja::Value::from(vec![minijinja::Value::from(k), n]))
                })
                .collect()
        },
    );
    env.add_template("report.html", HTML)
        .expect("valid template");
    env.add_template("report.md", MARKDOWN)
        .expect("valid template");
    env
}

pub fn markdown(r: &Report) -> Result<String, minijinja::Error> {
    env()
        .get_template("report.md")?
        .render(context! { r => Serde(r) })
}

pub fn html(r: &Report) -> Result<String, minijinja::Error> {
    let charts = vec![
        bar_chart(
            "Images per repository",
            &r.repositories
                .iter()
                .map(|x| (x.repository.clone(), x.images as f64))
                .collect::<Vec<_>>(),
            "",
        ),
        bar_chart(
            "Stored bytes: distinct layers vs. every image counted alone",
            &[
                (
                    "distinct layers".into(),
                    r.totals.stored_bytes_unique as f64,
                ),
                ("sum over images".into(), r.totals.stored_bytes_sum as f64),
            ],
            "bytes",
        ),
        bar_chart(
            "Python versions (images)",
            &by_version(&r.python_versions),
            "",
        ),
        bar_chart(
            "Prefect versions (images)",
            &by_version(&r.prefect_versions),
            "",
        ),
        bar_chart(
            "Base images the flows were built on (flows)",
            &counts(&r.base_images),
            "",
        ),
    ];
    let plan_chart = r.plan.as_ref().map(|p| {
        bar_chart(
            "Consolidation: images the planned flows use",
            &[
                ("today".into(), p.images_before as f64),
                ("runtime images".into(), p.runtime_images as f64),
                ("lower bound".into(), p.lower_bound as f64),
            ],
            "",
        )
    });
    let trend_chart = r.trend.as_ref().map(|t| {
        let mut points: Vec<(String, f64)> = t
            .history
            .iter()
            .map(|p| (day(p.generated_at.as_deref()), p.stored_bytes_unique as f64))
            .collect();
        points.push((
            day(r.generated_at.as_deref()),
            r.totals.stored_bytes_unique as f64,
        ));
        line_chart("Stored bytes (distinct layers), report by report", &points)
    });
    env().get_template("report.html")?.render(context! {
        r => Serde(r),
        charts => charts,
        plan_chart => plan_chart,
        trend_chart => trend_chart,
    })
}

/// One row per image.
pub fn csv(r: &Report) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record([
        "id",
        "references",
        "created",
        "stored_bytes",
        "os",
        "python",
        "prefect",
        "distributions",
        "flows",
        "orphan",
        "stale",
    ])?;
    for i in &r.images {
        w.write_record([
            i.id.as_str(),
            &i.references.join(" "),
            i.created.as_deref().unwrap_or(""),
            &i.stored_bytes.to_string(),
            i.os.as_deref().unwrap_or(""),
            &i.python.join(" "),
            &i.prefect.join(" "),
            &i.distributions.to_string(),
            &i.flows.to_string(),
            &i.orphan.to_string(),
            &i.stale.to_string(),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8"))
}

/// Compare version strings the way people read them: numeric runs as numbers.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(u64, String)> {
        s.split(['.', '-', '+'])
            .map(|p| {
                let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
                (
                    digits.parse().unwrap_or(u64::MAX),
                    p[digits.len()..].to_string(),
                )
            })
            .collect()
    }
    parts(a).cmp(&parts(b)).then_with(|| a.cmp(b))
}

/// A count per version, in version order, as chart rows.
fn by_version(map: &std::collections::BTreeMap<String, usize>) -> Vec<(String, f64)> {
    let mut rows = counts(map);
    rows.sort_by(|a, b| version_order(&a.0, &b.0));
    rows
}

/// A count per key, as chart rows.
fn counts(map: &std::collections::BTreeMap<String, usize>) -> Vec<(String, f64)> {
    map.iter().map(|(k, v)| (k.clone(), *v as f64)).collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The date of an RFC 3339 time (`2026-12-01`), or `now` for a report without one.
/// An RFC 3339 time as people read it; text that is not one is shown as it is.
fn readable_date(t: Option<&str>) -> String {
    let Some(t) = t else {
        return String::new();
    };
    match crate::time::parse(t) {
        Some(at) => {
            let utc = humantime::format_rfc3339_seconds(at).to_string();
            let (day, time) = (&utc[..10], &utc[11..16]);
            if time == "00:00" {
                day.to_string()
            } else {
                format!("{day} {time} UTC")
            }
        }
        None => t.to_string(),
    }
}

fn day(at: Option<&str>) -> String {
    at.map(|t| t.chars().take(10).collect())
        .unwrap_or_else(|| "now".into())
}

/// A line chart of one value over reports, as inline SVG (a point per report, labelled
/// with its date; the last point is this report).
pub fn line_chart(title: &str, points: &[(String, f64)]) -> String {
    let (w, h, left, top, bottom) = (720.0, 220.0, 90.0, 30.0, 40.0);
    let plot_w = w - left - 20.0;
    let plot_h = h - top - bottom;
    let max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let step = if points.len() > 1 {
        plot_w / (points.len() - 1) as f64
    } else {
        0.0
    };
    let xy: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| (left + step * i as f64, top + plot_h * (1.0 - v / max)))
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure class="chart" id="trend-chart"><svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{t}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" style="max-width:100%;height:auto"><title>{t}</title><text x="0" y="16" class="chart-title">{t}</text>"#,
        t = escape(title),
    );
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" text-anchor="end" class="chart-label">{top_label}</text><text x="{x}" y="{y0}" text-anchor="end" class="chart-label">0</text>"#,
        x = left - 8.0,
        y = top + 4.0,
        y0 = top + plot_h + 4.0,
        top_label = HumanBytes(max as u64),
    );
    let path: Vec<String> = xy.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = write!(
        svg,
        r#"<polyline points="{}" fill="none" stroke="var(--bar)" stroke-width="2"/>"#,
        path.join(" ")
    );
    // at most ~8 date labels, always the first and the last
    let every = points.len().div_ceil(8).max(1);
    for (i, ((label, value), (x, y))) in points.iter().zip(&xy).enumerate() {
        let _ = write!(
            svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="4" class="bar" data-point="{i}"><title>{l}: {v}</title></circle>"#,
            l = escape(label),
            v = HumanBytes(*value as u64),
        );
        if i % every == 0 || i + 1 == points.len() {
            let _ = write!(
                svg,
                r#"<text x="{x:.1}" y="{ly}" text-anchor="middle" class="chart-label">{l}</text>"#,
                ly = top + plot_h + 20.0,
                l = escape(label),
            );
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

/// A horizontal bar chart as inline SVG, coloured by CSS variables (dark-mode safe).
pub fn bar_chart(title: &str, rows: &[(String, f64)], unit: &str) -> String {
    let (label_w, bar_w, row_h) = (260.0, 360.0, 22.0);
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1.0);
    let height = 30.0 + row_h * rows.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<figure class="chart"><svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{t}" viewBox="0 0 {w} {height}" width="{w}" height="{height}" style="max-width:100%;height:auto"><title>{t}</title><text x="0" y="16" class="chart-title">{t}</text>"#,
        t = escape(title),
        w = label_w + bar_w + 110.0,
    );
    if rows.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="0" y="44" class="chart-label">nothing to show</text>"#
        );
    }
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = 26.0 + row_h * i as f64;
        let w = (value / max * bar_w).max(1.0);
        let shown = if unit == "bytes" {
            HumanBytes(*value as u64).to_string()
        } else {
            format!("{value}")
        };
        let short: String = if label.chars().count() > 38 {
            format!(
                "…{}",
                label
                    .chars()
                    .rev()
                    .take(37)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<String>()
            )
        } else {
            label.clone()
        };
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty}" text-anchor="end" class="chart-label">{l}</text><rect x="{label_w}" y="{y}" width="{w:.1}" height="{h}" class="bar"><title>{full}: {shown}</title></rect><text x="{vx:.1}" y="{ty}" class="chart-value">{shown}</text>"#,
            lx = label_w - 8.0,
            ty = y + 14.0,
            l = escape(&short),
            full = escape(label),
            h = row_h - 6.0,
            vx = label_w + w + 6.0,
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

#[cfg(test)]
mod tests {
    use super::{readable_date, version_order};

    #[test]
    fn dates_read_as_people_write_them() {
        assert_eq!(readable_date(Some("2024-02-01T00:00:00Z")), "2024-02-01");
        assert_eq!(
            readable_date(Some("2023-01-01T10:11:12.345+02:00")),
            "2023-01-01 08:11 UTC"
        );
        assert_eq!(readable_date(Some("last tuesday")), "last tuesday");
        assert_eq!(
            readable_date(Some("0001-01-01T00:00:00Z")),
            "0001-01-01T00:00:00Z"
        );
        assert_eq!(readable_date(None), "");
    }

    #[test]
    fn versions_sort_as_people_read_them() {
        let mut v = vec![
            "3.10", "3.9", "3.11", "3.12.1", "3.12", "unknown", "1.4.1", "1.10.0",
        ];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            v,
            [
                "1.4.1", "1.10.0", "3.9", "3.10", "3.11", "3.12", "3.12.1", "unknown"
            ]
        );
    }
}

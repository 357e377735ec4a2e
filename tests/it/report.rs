//! `unsprawl report` on the fixture corpus (built, scanned and planned by the demo): its
//! numbers against counts made here from the inventory, the CI exit codes, trends, the
//! committed example in `reports/example` (drift), and the HTML in real headless Chromium.

use crate::common;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{p, read_inventory, repo};
use unsprawl::report::Report;

fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_unsprawl"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the unsprawl binary runs")
}

/// The demo in `dir`, as a newcomer runs it (default output folder).
fn demo(dir: &Path) -> PathBuf {
    let out = run_in(dir, &["demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("unsprawl-demo")
}

fn read_report(path: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn numbers_match_an_independent_count_and_exit_codes_follow_the_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let d = demo(tmp.path());
    let inv = read_inventory(&d.join("inventory.json"));
    let r = read_report(&d.join("report/report.json"));
    assert_eq!(r.schema, "unsprawl/report/v2");

    // counted here, from the inventory
    let layers: HashSet<(&str, u64)> = inv
        .images
        .iter()
        .flat_map(|i| i.layers.iter().map(|l| (l.digest.as_str(), l.stored_bytes)))
        .collect();
    let linked: HashSet<&str> = inv
        .flows
        .iter()
        .filter_map(|f| f.link.image_id.as_deref())
        .collect();
    assert_eq!(r.totals.images, inv.images.len());
    assert_eq!(r.totals.images, 5);
    assert_eq!(
        r.totals.tags,
        inv.images.iter().map(|i| i.references.len()).sum::<usize>()
    );
    assert_eq!(r.totals.unique_layers, layers.len());
    assert_eq!(
        r.totals.stored_bytes_unique,
        layers.iter().map(|l| l.1).sum::<u64>()
    );
    assert_eq!(
        r.totals.stored_bytes_sum,
        inv.images.iter().map(|i| i.size.stored_bytes).sum::<u64>()
    );
    assert!(
        r.totals.stored_bytes_unique < r.totals.stored_bytes_sum,
        "layers are shared"
    );
    assert_eq!(
        r.orphans.len(),
        inv.images
            .iter()
            .filter(|i| !linked.contains(i.id.as_str()))
            .count()
    );
    assert_eq!(r.orphans.len(), 2);
    // per team (project), counted here: live flows, the distinct layers of their images
    for t in &r.teams {
        let flows: Vec<_> = inv
            .flows
            .iter()
            .filter(|f| f.state.is_live() && f.project.as_deref() == Some(t.team.as_str()))
            .collect();
        let imgs: HashSet<&str> = flows
            .iter()
            .filter_map(|f| f.link.image_id.as_deref())
            .collect();
        let bytes: HashSet<(&str, u64)> = inv
            .images
            .iter()
            .filter(|i| imgs.contains(i.id.as_str()))
            .flat_map(|i| i.layers.iter().map(|l| (l.digest.as_str(), l.stored_bytes)))
            .collect();
        assert_eq!(t.live_flows, flows.len(), "{}", t.team);
        assert_eq!(t.images, imgs.len(), "{}", t.team);
        assert_eq!(
            t.stored_bytes,
            bytes.iter().map(|b| b.1).sum::<u64>(),
            "{}",
            t.team
        );
    }
    assert_eq!(r.teams.len(), 3);
    assert!(
        r.teams
            .windows(2)
            .all(|w| w[0].stored_bytes >= w[1].stored_bytes),
        "largest first"
    );
    assert!(
        r.repositories
            .windows(2)
            .all(|w| w[0].stored_bytes >= w[1].stored_bytes),
        "largest first"
    );
    assert_eq!(
        r.dangling.len(),
        inv.flows
            .iter()
            .filter(|f| f.link.status == "dangling")
            .count()
    );
    assert_eq!(
        r.python_versions.values().sum::<usize>(),
        6,
        "one image has 3.9 and 3.11"
    );
    let plan = r.plan.as_ref().unwrap();
    assert_eq!(
        (plan.images_before, plan.runtime_images, plan.lower_bound),
        (3, 2, 2)
    );
    // each runtime image with its member flows: every planned flow on exactly one
    assert_eq!(plan.images.len(), 2);
    assert_eq!(
        plan.images.iter().map(|i| i.flows.len()).sum::<usize>(),
        plan.planned_flows
    );
    assert!(
        plan.images
            .windows(2)
            .all(|w| w[0].flows.len() >= w[1].flows.len())
    );

    // CI exit codes: 0 within the rules, 1 a rule broken, 2 a bad rule
    let inv_path = d.join("inventory.json");
    let out = tmp.path().join("r1");
    let base = ["report", p(&inv_path), "--no-timestamp", "-o", p(&out)];
    let code = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        run_in(tmp.path(), &args).status.code()
    };
    assert_eq!(
        code(&["--fail-on", "images>5", "--fail-on", "orphans>2"]),
        Some(0)
    );
    assert_eq!(code(&["--fail-on", "images>4"]), Some(1));
    assert_eq!(code(&["--fail-on", "dangling>0"]), Some(1));
    assert_eq!(
        code(&["--fail-on", "growth>0%"]),
        Some(0),
        "no previous report: no growth"
    );
    assert_eq!(code(&["--fail-on", "size>3"]), Some(2));
    assert_eq!(read_report(&out.join("report.json")).violations.len(), 0);

    // trends: last time, one image fewer
    let mut old = inv.clone();
    let removed = old.images.remove(0);
    let old_path = tmp.path().join("old-inventory.json");
    std::fs::write(&old_path, serde_json::to_string(&old).unwrap()).unwrap();
    let old_out = tmp.path().join("old");
    assert_eq!(
        run_in(
            tmp.path(),
            &[
                "report",
                p(&old_path),
                "-o",
                p(&old_out),
                "--format",
                "json"
            ]
        )
        .status
        .code(),
        Some(0)
    );
    let now_out = tmp.path().join("now");
    let r2 = run_in(
        tmp.path(),
        &[
            "report",
            p(&inv_path),
            "--previous",
            p(&old_out.join("report.json")),
            "-o",
            p(&now_out),
            "--fail-on",
            "growth>1%",
        ],
    );
    assert_eq!(
        r2.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&r2.stderr)
    );
    let t = read_report(&now_out.join("report.json")).trend.unwrap();
    assert_eq!((t.images_before, t.images_delta), (4, 1));
    assert_eq!(t.new_images, [removed.references[0].clone()]);
    assert!(t.gone_images.is_empty());
    assert!(t.growth_percent > 1.0);
    let md = std::fs::read_to_string(now_out.join("report.md")).unwrap();
    assert!(
        md.contains("**Since the last report:** 4 → 5 images"),
        "{md}"
    );
}

/// Stored bytes against stored bytes: the runtime images as built (the build document's
/// layers, each once) against the distinct layers of the images the planned flows use
/// today, both counted here; estimated without a build document; priced as asked.
#[test]
fn savings_compare_stored_bytes_like_with_like_and_price_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = demo(tmp.path());
    let inv = read_inventory(&d.join("inventory.json"));
    let plan: unsprawl::plan::Plan =
        serde_json::from_str(&std::fs::read_to_string(d.join("plan.json")).unwrap()).unwrap();
    let built: unsprawl::build::BuildDoc =
        serde_json::from_str(&std::fs::read_to_string(d.join("build.json")).unwrap()).unwrap();
    let used: HashSet<&str> = plan
        .flows
        .iter()
        .filter_map(|f| f.current_image.as_deref())
        .collect();
    let before: HashSet<(&str, u64)> = inv
        .images
        .iter()
        .filter(|i| used.contains(i.id.as_str()))
        .flat_map(|i| i.layers.iter().map(|l| (l.digest.as_str(), l.stored_bytes)))
        .collect();
    let after: HashSet<(&str, u64)> = built
        .images
        .iter()
        .flat_map(|i| {
            i.layer_sizes
                .iter()
                .map(|l| (l.digest.as_str(), l.stored_bytes))
        })
        .collect();
    let (before, after) = (
        before.iter().map(|l| l.1).sum::<u64>(),
        after.iter().map(|l| l.1).sum::<u64>(),
    );
    assert_eq!(built.images.len(), 2, "both runtime images built");

    let s = read_report(&d.join("report/report.json"))
        .plan
        .unwrap()
        .savings
        .unwrap();
    assert_eq!(s.basis, "built");
    assert_eq!(
        (s.stored_bytes_before, s.stored_bytes_after),
        (before, after)
    );
    assert_eq!(s.saved_bytes, before as i64 - after as i64);
    assert!((s.saved_per_month - s.saved_bytes as f64 / 1e9 * 0.10).abs() < 1e-12);
    assert_eq!(s.currency, "USD");

    // no build document: estimated, and what it cannot size is named, not guessed
    let out = tmp.path().join("priced");
    let o = run_in(
        &d,
        &[
            "report",
            "inventory.json",
            "--plan",
            "plan.json",
            "--price-per-gb-month",
            "0.023",
            "--currency",
            "EUR",
            "-o",
            p(&out),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read_report(&out.join("report.json"))
        .plan
        .unwrap()
        .savings
        .unwrap();
    assert_eq!((s.basis.as_str(), s.estimated_images), ("estimated", 2));
    assert_eq!(s.stored_bytes_before, before);
    // the wheel no scanned image has, and the egg-info distribution without RECORD sizes
    assert_eq!(s.not_sized, ["dulwich 0.22.8", "simplejson"]);
    assert_eq!((s.price_per_gb_month, s.currency.as_str()), (0.023, "EUR"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("at 0.023 EUR per GB-month"), "{html}");

    for (flag, value) in [("--price-per-gb-month", "-1"), ("--currency", "<b>")] {
        let arg = format!("{flag}={value}");
        let o = run_in(&d, &["report", "inventory.json", &arg, "-o", p(&out)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(flag), "{err}");
    }
}

/// "Stale" is about use, not age: an image a live flow runs on is never stale, one that
/// lost its last live flow becomes stale `--stale-after` after the audit that last saw
/// it used, and only what no audit saw used falls back to its creation date.
#[test]
fn stale_means_no_live_flow_for_the_period_not_an_old_creation_date() {
    let tmp = tempfile::tempdir().unwrap();
    let d = demo(tmp.path());
    let mut inv = read_inventory(&d.join("inventory.json"));
    let report_of = |inv: &unsprawl::inventory::Inventory, name: &str, extra: &[&str]| {
        let path = tmp.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string(inv).unwrap()).unwrap();
        let out = tmp.path().join(name);
        let mut args = vec!["report", p(&path), "--format", "json", "-o", p(&out)];
        args.extend(extra);
        let o = run_in(tmp.path(), &args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        read_report(&out.join("report.json"))
    };
    let row = |r: &Report, reference: &str| {
        r.images
            .iter()
            .find(|i| i.references.iter().any(|x| x == reference))
            .cloned()
            .unwrap()
    };
    let report_v7 = "registry.local:5000/team-c/report:v7"; // created 2024-03-01, one live flow
    let etl = "registry.local:5000/team-d/etl:2024-11-01"; // no flow at all

    inv.scanned_at = Some("2025-01-01T00:00:00Z".into());
    let first = report_of(&inv, "first", &[]);
    let r = row(&first, report_v7);
    assert!(r.flows > 0 && !r.stale, "in use, however old");
    assert_eq!(r.last_used.as_deref(), Some("2025-01-01T00:00:00Z"));
    assert!(!row(&first, etl).stale, "unused, created 61 days before");

    // seven months later its flow is gone
    let id = r.id.clone();
    inv.flows
        .retain(|f| f.link.image_id.as_deref() != Some(id.as_str()));
    inv.scanned_at = Some("2025-08-01T00:00:00Z".into());
    let prev = tmp.path().join("first/report.json");
    let later = report_of(&inv, "later", &["--previous", p(&prev)]);
    let r = row(&later, report_v7);
    assert_eq!((r.flows, r.stale), (0, true), "212 days since its last use");
    assert_eq!(r.last_used.as_deref(), Some("2025-01-01T00:00:00Z"));
    assert!(later.stale.contains(&report_v7.to_string()));
    assert!(
        row(&later, etl).stale,
        "never used: 273 days since its creation"
    );
    let lenient = report_of(
        &inv,
        "lenient",
        &["--previous", p(&prev), "--stale-after", "365d"],
    );
    assert!(
        !row(&lenient, report_v7).stale,
        "used 212 days ago: not stale at 365 days though created 518 days ago"
    );
}

#[test]
fn the_committed_example_has_not_drifted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = demo(tmp.path());
    let example = repo().join("reports/example");
    // (report.png is the Chromium screenshot of report.html, refreshed by that test)
    let names: BTreeSet<String> = std::fs::read_dir(&example)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "report.png")
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["images.csv", "report.html", "report.json", "report.md"].map(String::from))
    );
    for n in &names {
        let want = std::fs::read_to_string(example.join(n)).unwrap();
        let got = std::fs::read_to_string(d.join("report").join(n)).unwrap();
        assert!(
            want == got,
            "reports/example/{n} drifted from what the demo writes; regenerate it with\n  cargo run --release -- demo && cp unsprawl-demo/report/* reports/example/"
        );
    }
    insta::assert_snapshot!(
        "report_md",
        std::fs::read_to_string(d.join("report/report.md")).unwrap()
    );
    insta::assert_snapshot!(
        "images_csv",
        std::fs::read_to_string(d.join("report/images.csv")).unwrap()
    );
}

/// Debian's Chromium, installed when missing (CI machines start without it).
fn chromium() -> &'static str {
    unsprawl_testkit::local_registry::apt_install_for(&["chromium"], &["chromium"]);
    "chromium"
}

#[test]
fn html_renders_in_headless_chromium_without_network() {
    let tmp = tempfile::tempdir().unwrap();
    let d = demo(tmp.path());
    let html = d.join("report/report.html");
    let text = std::fs::read_to_string(&html).unwrap();
    // self-contained: nothing to fetch, and the CSP forbids fetching anyway
    assert!(!text.contains("src=\"http") && !text.contains("href=\"http"));
    assert!(text.contains("default-src 'none'"));

    let profile = tmp.path().join("profile");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--enable-logging=stderr",
        "--v=0",
    ];
    let url = format!("file://{}", html.display());
    let out = Command::new(chromium())
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(dom.contains(r#"id="total-images">5<"#), "{dom}");
    assert!(dom.contains(r#"id="runtime-images">2<"#));
    assert!(dom.contains(r#"id="orphans">2<"#));
    // what a lead is shown: the teams, the ranking, the trend over the bundled weekly
    // audits (three earlier points and this one) and the savings
    assert!(
        dom.contains("<h2>Teams</h2>") && dom.contains("Largest first."),
        "{dom}"
    );
    assert!(dom.contains(r#"data-point="3""#) && !dom.contains(r#"data-point="4""#));
    assert!(dom.contains(r#"id="savings""#) && dom.contains("per GB-month"));
    assert!(
        dom.matches("<svg").count() >= 5,
        "four sprawl charts and the plan's"
    );
    assert!(dom.contains("registry.local:5000/team/flow-a"));
    for bad in [
        "Failed to load resource",
        "net::ERR_",
        "Uncaught",
        "Content Security Policy",
    ] {
        assert!(!log.contains(bad), "{bad} in Chromium's log:\n{log}");
    }

    let shot = tmp.path().join("report.png");
    let out = Command::new(chromium())
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1200,1800")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        png.len() > 20_000,
        "a rendered page, not a blank one ({} bytes)",
        png.len()
    );
    // the demo's report is the committed example: its screenshot is refreshed here
    // (`UNSPRAWL_REFRESH_EXAMPLE=1 cargo test --test report html_renders`); pixels vary
    // with the machine's fonts, so it is kept, not compared
    if std::env::var_os("UNSPRAWL_REFRESH_EXAMPLE").is_some() {
        std::fs::write(repo().join("reports/example/report.png"), &png).unwrap();
    }
}

#[test]
fn audit_runs_the_whole_pipeline_into_one_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let d = demo(tmp.path());
    let export = repo().join("fixtures/prefect1/export.graphql.json");
    let layout = d.join("images/oci");
    let cache = tmp.path().join("cache");
    let audit = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "audit",
            "--oci-dir",
            p(&layout),
            "--prefect1-export",
            p(&export),
            "--cache-dir",
            p(&cache),
            "-o",
            out,
        ];
        args.extend(extra);
        run_in(tmp.path(), &args)
    };
    let first = audit("a1", &[]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    for f in [
        "inventory.json",
        "plan.json",
        "report.json",
        "report.md",
        "report.html",
        "images.csv",
    ] {
        assert!(tmp.path().join("a1").join(f).exists(), "{f}");
    }
    let r = read_report(&tmp.path().join("a1/report.json"));
    assert_eq!(r.totals.images, 5);
    assert_eq!(r.plan.as_ref().unwrap().runtime_images, 2);
    // the next run compares with it, reads no layer again, and fails on the rule it breaks
    let second = audit(
        "a2",
        &["--previous", "a1/report.json", "--fail-on", "images>4"],
    );
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("(0 read, 19 from cache)"), "{err}");
    assert!(err.contains("policy violated: images>4"), "{err}");
    let t = read_report(&tmp.path().join("a2/report.json"))
        .trend
        .unwrap();
    assert_eq!((t.images_delta, t.stored_bytes_delta), (0, 0));
}

#[test]
fn audits_with_history_keep_every_run_and_chart_the_trend_over_all_of_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = demo(tmp.path());
    let export = repo().join("fixtures/prefect1/export.graphql.json");
    let layout = d.join("images/oci");
    let cache = tmp.path().join("cache");
    let work = tmp.path().join("ci");
    std::fs::create_dir_all(&work).unwrap();
    // as a weekly job runs it: no -o (a new reports/<time>/ each run), --history reports
    let audit = || {
        let o = run_in(
            &work,
            &[
                "audit",
                "--oci-dir",
                p(&layout),
                "--export",
                p(&export),
                "--cache-dir",
                p(&cache),
                "--history",
                "reports",
            ],
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    audit();
    let second = audit();
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("previous report: reports/"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    audit();
    // three runs within seconds: three folders, none overwritten
    let mut runs: Vec<std::path::PathBuf> = std::fs::read_dir(work.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 3, "{runs:?}");
    let newest = runs
        .iter()
        .map(|r| read_report(&r.join("report.json")))
        .max_by_key(|r| r.trend.as_ref().map(|t| t.history.len()))
        .unwrap();
    let trend = newest.trend.unwrap();
    assert_eq!(trend.history.len(), 2, "the two earlier runs");
    assert!(trend.history.iter().all(|p| p.images == 5));
    // the HTML charts three points: the two earlier reports and this one
    let html_of = runs
        .iter()
        .map(|r| std::fs::read_to_string(r.join("report.html")).unwrap())
        .find(|h| h.contains("data-point=\"2\""))
        .expect("a report charting three points");
    assert!(html_of.contains("id=\"trend-chart\""));
    assert!(!html_of.contains("data-point=\"3\""));
}

/// The script between the `unsprawl-audit` markers of a CI example, dedented.
fn ci_script(file: &str) -> String {
    let text = std::fs::read_to_string(repo().join("docs/ci").join(file)).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim().starts_with("# unsprawl-audit: begin"))
        .take_while(|l| !l.trim().starts_with("# unsprawl-audit: end"))
        .collect();
    assert!(lines.len() > 2, "{file} has an unsprawl-audit block");
    let indent = lines[0].len() - lines[0].trim_start().len();
    lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").to_string() + "\n")
        .collect()
}

/// `docs/ci`'s GitHub Actions and GitLab CI examples run the same commands, and those
/// commands, run here three times in one folder as three weekly jobs with their cache
/// restored, audit a real registry behind a password (from the auth file they write) and
/// the Prefect 1 API, keep every report, chart the trend, reuse the layer cache and never
/// print the secrets.
#[test]
fn the_ci_examples_in_docs_run_as_written_keeping_cache_and_history() {
    use common::registry::{Auth, Registry, push_fixtures};
    let script = ci_script("github-weekly-audit.yml");
    assert_eq!(
        script,
        ci_script("gitlab-weekly-audit.yml"),
        "both examples run the same commands"
    );
    let (user, password) = ("ci", "audit-pass-7Qx2");
    let reg = Registry::start(Auth::Basic {
        user: user.into(),
        password: password.into(),
    });
    push_fixtures(
        &reg.host(),
        &["fixtures/registry"],
        &[],
        Some((user, password)),
    );
    let text =
        std::fs::read_to_string(repo().join("fixtures/prefect1/export.graphql.json")).unwrap();
    let rows = serde_json::from_str::<serde_json::Value>(&text).unwrap()["data"]["flow"]
        .as_array()
        .unwrap()
        .clone();
    let key = "prefect-key-Zr81";
    let stub = common::graphql_stub::start(rows, key, None);

    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("job");
    std::fs::create_dir_all(&work).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_unsprawl")).parent().unwrap();
    let auth = serde_json::json!({"auths": {reg.host(): {"auth": base64_of(&format!("{user}:{password}"))}}});
    let run = || {
        let o = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(&work)
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("UNSPRAWL_REGISTRY", format!("http://{}", reg.host()))
            .env("PREFECT_GRAPHQL_URL", &stub.url)
            .env("PREFECT__CLOUD__API_KEY", key)
            .env("REGISTRY_AUTH_JSON", auth.to_string())
            .env("DOCKER_CONFIG", tmp.path()) // nothing from this machine's docker login
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(0), "{said}");
        assert!(!said.contains(password) && !said.contains(key), "{said}");
        said
    };
    run();
    let cached: usize = walk_count(&work.join(".unsprawl-cache"));
    assert!(cached > 0, "the layer cache is where the example keeps it");
    assert!(run().contains("previous report: reports/"));
    run();
    let mut runs: Vec<PathBuf> = std::fs::read_dir(work.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 3, "{runs:?}");
    let history = runs
        .iter()
        .filter_map(|r| read_report(&r.join("report.json")).trend)
        .map(|t| t.history.len())
        .max();
    assert_eq!(history, Some(2), "the third run charts the two before it");
    let newest = read_report(&runs[2].join("report.json"));
    assert!(newest.totals.images > 0 && newest.totals.flows > 0);
    assert_eq!(
        walk_count(&work.join(".unsprawl-cache")),
        cached,
        "nothing read twice"
    );
    assert!(
        std::fs::read_dir(&work).unwrap().count() == 2,
        "the job leaves only the cache and the reports in its folder"
    );
}

fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk_count(&e.path())
                } else {
                    1
                }
            })
            .sum()
        })
        .unwrap_or(0)
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

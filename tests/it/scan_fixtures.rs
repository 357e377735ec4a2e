//! End to end: build the bundled fixture corpus with the binary, scan it in every input
//! shape, and check exactly what the inventory says about each image.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use unsprawl::inventory::{Contents, Inventory, Status};

/// The distributions `pip install prefect==1.4.1` leaves (fixtures/images/prefect1-*.toml).
const PREFECT1_DISTS: &[(&str, &str)] = &[
    ("certifi", "2023.11.17"),
    ("charset-normalizer", "3.3.2"),
    ("click", "8.1.7"),
    ("cloudpickle", "3.1.3"),
    ("croniter", "2.0.1"),
    ("dask", "2024.1.0"),
    ("distributed", "2024.1.0"),
    ("docker", "7.0.0"),
    ("idna", "3.6"),
    ("marshmallow", "3.26.2"),
    ("marshmallow-oneofschema", "3.2.0"),
    ("msgpack", "1.0.7"),
    ("mypy-extensions", "1.0.0"),
    ("pendulum", "2.1.2"),
    ("prefect", "1.4.1"),
    ("python-box", "7.1.1"),
    ("python-dateutil", "2.8.2"),
    ("python-slugify", "8.0.1"),
    ("pytz", "2023.3"),
    ("pytzdata", "2020.1"),
    ("pyyaml", "6.0.1"),
    ("requests", "2.31.0"),
    ("six", "1.16.0"),
    ("tabulate", "0.9.0"),
    ("text-unidecode", "1.3"),
    ("toml", "0.10.2"),
    ("toolz", "0.12.0"),
    ("tornado", "6.4"),
    ("urllib3", "2.1.0"),
];

const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("base-files", "12.4+deb12u5"),
    ("bash", "5.2.15-2+b2"),
    ("ca-certificates", "20230311"),
    ("coreutils", "9.1-1"),
    ("libc6", "2.36-9+deb12u4"),
    ("libssl3", "3.0.11-1~deb12u2"),
    ("tzdata", "2024a-0+deb12u1"),
    ("zlib1g", "1:1.2.13.dfsg-1"),
];

fn dists(c: &Contents) -> BTreeSet<(String, String)> {
    c.python
        .distributions
        .iter()
        .map(|d| (d.name.clone(), d.version.clone()))
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn packages(c: &Contents) -> BTreeSet<(String, String)> {
    c.system_packages
        .as_ref()
        .expect("a package database")
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect()
}

fn scan_oci(dir: &std::path::Path) -> Inventory {
    let oci = dir.join("oci");
    build_fixtures(&[], &["--oci", p(&oci)], &[]);
    let inv = dir.join("inventory.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&inv)]);
    read_inventory(&inv)
}

#[test]
fn oci_layout_scan_gives_exact_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = scan_oci(tmp.path());
    assert_eq!(inv.schema, "unsprawl/inventory/v1");
    assert_eq!(inv.images.len(), 5, "the five tagged specs");
    assert!(inv.errors.is_empty(), "{:?}", inv.errors);
    for img in &inv.images {
        assert_eq!(
            img.status,
            Status::Ok,
            "{:?}: {:?}",
            img.references,
            img.errors
        );
    }

    // team A: Prefect 1.4.1 Docker storage on CPython 3.11, the real flow file
    let a = image(&inv, "registry.local:5000/team/flow-a:2023-01-01");
    assert!(a.manifest_digest.as_deref().unwrap().starts_with("sha256:"));
    assert_eq!(a.platform.os, "linux");
    assert_eq!(a.platform.architecture, "amd64");
    assert_eq!(a.layers.len(), 7);
    assert_eq!(
        a.layers[2].created_by.as_deref(),
        Some("RUN pip show prefect || pip install prefect==1.4.1")
    );
    assert_eq!(a.config.env["EXTRA"], "1");
    assert_eq!(a.config.labels["io.prefect.team"], "team-a");
    let c = a.contents.as_ref().unwrap();
    let os = c.os.as_ref().unwrap();
    assert_eq!(
        (
            os.id.as_deref(),
            os.version_id.as_deref(),
            os.family.as_deref()
        ),
        (Some("debian"), Some("12"), Some("debian"))
    );
    assert_eq!(
        os.path, "/usr/lib/os-release",
        "etc/os-release is a symlink"
    );
    assert_eq!(c.system_packages.as_ref().unwrap().manager, "dpkg");
    assert_eq!(packages(c), set(DEBIAN_PACKAGES));
    assert_eq!(c.python.interpreters.len(), 1);
    assert_eq!(c.python.interpreters[0].minor, "3.11");
    assert_eq!(c.python.interpreters[0].version.as_deref(), Some("3.11.7"));
    let mut want = set(PREFECT1_DISTS);
    want.extend(set(&[
        ("pip", "23.2.1"),
        ("setuptools", "65.5.1"),
        ("wheel", "0.42.0"),
        ("pandas", "1.5.3"),
        ("numpy", "1.26.4"),
    ]));
    assert_eq!(dists(c), want);
    let yaml = c
        .python
        .distributions
        .iter()
        .find(|d| d.name == "pyyaml")
        .unwrap();
    assert_eq!(yaml.display_name, "PyYAML");
    assert_eq!(yaml.import_names, vec!["_yaml", "yaml"]);
    assert_eq!(yaml.python.as_deref(), Some("3.11"));
    assert_eq!(yaml.location, "/usr/local/lib/python3.11/site-packages");
    assert_eq!(yaml.layer, a.layers[2].diff_id);
    let numpy = c
        .python
        .distributions
        .iter()
        .find(|d| d.name == "numpy")
        .unwrap();
    assert_eq!(numpy.import_names, vec!["numpy"], "derived from RECORD");
    // two 8 KiB modules plus METADATA and top_level.txt, as pip's RECORD lists them
    assert_eq!(numpy.installed_bytes, Some(2 * 8192 + 75));
    let pandas = c
        .python
        .distributions
        .iter()
        .find(|d| d.name == "pandas")
        .unwrap();
    assert_eq!(
        pandas.requires_dist,
        vec![
            "python-dateutil>=2.8.1",
            "pytz>=2020.1",
            "numpy>=1.21.0; python_version >= \"3.10\""
        ]
    );
    assert_eq!(c.prefect.versions, vec!["1.4.1"]);
    assert_eq!(c.prefect.flows.len(), 1);
    let f = &c.prefect.flows[0];
    assert_eq!(f.path, "/opt/prefect/flows/flow-a.prefect");
    assert_eq!(f.format, "json-cloudpickle");
    assert_eq!(f.flow_name.as_deref(), Some("flow-a"));
    assert_eq!(f.versions["cloudpickle"], "3.1.3");
    assert_eq!(f.imports.subimports, vec!["json", "os", "yaml"]);
    assert_eq!(f.imports.source_files, vec!["/tmp/p1work/flow_a.py"]);
    assert_eq!(f.imports.by_value_modules, vec!["<flow>"]);
    assert!(
        f.imports
            .global_modules
            .contains(&"mylib.transforms".to_string())
    );
    let storage = f.storage.as_ref().unwrap();
    assert_eq!(storage.class, "prefect.storage.docker.Docker");
    assert_eq!(
        storage.state["python_dependencies"],
        serde_json::json!(["pandas==1.5.3", "wheel"])
    );
    assert_eq!(
        storage.state["base_image"],
        "prefecthq/prefect:1.4.1-python3.11"
    );
    assert_eq!(
        storage.state["env_vars"],
        serde_json::json!({"EXTRA": "1", "PREFECT__USER_CONFIG_PATH": "/opt/prefect/config.toml"})
    );
    assert_eq!(
        storage.state["files"],
        serde_json::json!({"/tmp/p1work/mylib": "/opt/mylib"})
    );
    let rc = f.run_config.as_ref().unwrap();
    assert_eq!(rc.class, "prefect.run_configs.kubernetes.KubernetesRun");
    assert_eq!(
        rc.state["image"],
        "registry.local:5000/team/flow-a:2023-01-01"
    );
    assert!(
        c.prefect.flow_sources.is_empty(),
        "healthcheck.py is Prefect's, not a flow"
    );

    // team B: the same flow on CPython 3.10 + cloudpickle 2.2.1, zstd layers, two tags
    let b = image(&inv, "registry.local:5000/team-b/flow-a:latest");
    assert_eq!(
        b.references,
        vec![
            "registry.local:5000/team-b/flow-a:2022-06-30",
            "registry.local:5000/team-b/flow-a:latest"
        ]
    );
    assert_eq!(
        b.layers.last().unwrap().media_type,
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        b.layers[0].diff_id, a.layers[0].diff_id,
        "the Debian layer is shared"
    );
    let cb = b.contents.as_ref().unwrap();
    assert_eq!(cb.python.interpreters[0].minor, "3.10");
    assert_eq!(
        cb.python.interpreters[0].version.as_deref(),
        Some("3.10.13")
    );
    assert!(
        cb.python
            .distributions
            .iter()
            .all(|d| d.python.as_deref() == Some("3.10"))
    );
    let fb = &cb.prefect.flows[0];
    assert_eq!(fb.versions["python"], "3.10.13");
    assert!(
        fb.imports
            .global_modules
            .contains(&"cloudpickle.cloudpickle_fast".to_string())
    );
    assert_eq!(fb.imports.top_level, f.imports.top_level);

    // team C: whiteout, opaque dir, egg-info, multi-member gzip, upgraded dpkg database
    let cc = image(&inv, "registry.local:5000/team-c/report:v7")
        .contents
        .as_ref()
        .unwrap();
    let d = dists(cc);
    assert!(d.contains(&("requests".into(), "2.32.3".into())));
    assert!(
        !d.contains(&("requests".into(), "2.31.0".into())),
        "whiteout removed it"
    );
    assert!(d.contains(&("jinja2".into(), "3.1.3".into())));
    assert!(
        !d.contains(&("jinja2".into(), "3.0.0".into())),
        "opaque dir hid it"
    );
    assert!(d.contains(&("markupsafe".into(), "2.1.5".into())));
    assert!(!d.contains(&("markupsafe".into(), "2.1.3".into())));
    let sj = cc
        .python
        .distributions
        .iter()
        .find(|d| d.name == "simplejson")
        .unwrap();
    assert_eq!(
        (sj.metadata_kind.as_str(), sj.version.as_str()),
        ("egg-info", "3.19.1")
    );
    assert_eq!(sj.requires_dist, vec!["six"]);
    assert_eq!(sj.import_names, vec!["simplejson"]);
    let venv_jinja = cc
        .python
        .distributions
        .iter()
        .find(|d| d.name == "jinja2")
        .unwrap();
    assert_eq!(
        venv_jinja.location,
        "/opt/venv/lib/python3.11/site-packages"
    );
    let upgraded: BTreeSet<_> = packages(cc);
    assert!(upgraded.contains(&("base-files".into(), "12.4+deb12u6".into())));
    assert!(upgraded.contains(&("libc6".into(), "2.36-9+deb12u7".into())));
    assert_eq!(upgraded.len(), 8);

    // tools: Alpine, apk, two interpreters, os-release through a hard link
    let t = image(&inv, "registry.local:5000/tools/alpine-py:3.19");
    let ct = t.contents.as_ref().unwrap();
    assert_eq!(ct.os.as_ref().unwrap().id.as_deref(), Some("alpine"));
    assert_eq!(ct.os.as_ref().unwrap().family.as_deref(), Some("alpine"));
    assert_eq!(ct.system_packages.as_ref().unwrap().manager, "apk");
    assert_eq!(
        packages(ct),
        set(&[
            ("alpine-baselayout", "3.4.3-r2"),
            ("busybox", "1.36.1-r15"),
            ("libcrypto3", "3.1.4-r5"),
            ("musl", "1.2.4_git20230717-r4"),
            ("python3", "3.11.8-r0"),
        ])
    );
    let minors: Vec<&str> = ct
        .python
        .interpreters
        .iter()
        .map(|i| i.minor.as_str())
        .collect();
    assert_eq!(minors, vec!["3.11", "3.9"]);
    assert_eq!(
        ct.python.interpreters[0].evidence,
        vec![
            "/usr/bin/python3.11",
            "/usr/lib/libpython3.11.so.1.0",
            "/usr/lib/python3.11/os.py"
        ]
    );
    let by_python: BTreeSet<(String, Option<String>)> = ct
        .python
        .distributions
        .iter()
        .map(|d| (d.name.clone(), d.python.clone()))
        .collect();
    assert_eq!(
        by_python,
        BTreeSet::from([
            ("attrs".to_string(), Some("3.9".to_string())),
            ("packaging".to_string(), Some("3.11".to_string())),
            ("pip".to_string(), Some("3.9".to_string())),
        ])
    );
    let attrs = ct
        .python
        .distributions
        .iter()
        .find(|d| d.name == "attrs")
        .unwrap();
    assert_eq!(attrs.import_names, vec!["attr", "attrs"]);
    assert!(ct.prefect.versions.is_empty());
    assert_eq!(
        t.layers[1].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );

    // team D: Prefect 3 with the flow's source baked in
    let dd = image(&inv, "registry.local:5000/team-d/etl:2024-11-01");
    let cd = dd.contents.as_ref().unwrap();
    assert_eq!(cd.prefect.versions, vec!["3.1.0"]);
    assert!(cd.prefect.flows.is_empty());
    assert_eq!(cd.prefect.flow_sources.len(), 1);
    assert_eq!(cd.prefect.flow_sources[0].path, "/opt/prefect/flows/etl.py");
    assert_eq!(dd.config.cmd.as_deref().unwrap()[0], "prefect");
}

#[test]
fn every_docker_save_shape_matches_the_oci_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = scan_oci(tmp.path());
    for shape in ["classic", "oci", "containerd"] {
        let tar = tmp.path().join(format!("{shape}.tar"));
        build_fixtures(&[], &["--archive", p(&tar), "--shape", shape], &[]);
        let out = tmp.path().join(format!("{shape}.json"));
        ok(&["scan", "archive", p(&tar), "--no-cache", "-o", p(&out)]);
        let inv = read_inventory(&out);
        assert_eq!(inv.images.len(), reference.images.len(), "{shape}");
        for want in &reference.images {
            let got = inv
                .images
                .iter()
                .find(|i| i.id == want.id)
                .unwrap_or_else(|| panic!("{shape}: image {} missing", want.id));
            assert_eq!(got.status, Status::Ok, "{shape}: {:?}", got.errors);
            assert_eq!(got.references, want.references, "{shape}");
            assert_eq!(
                got.contents, want.contents,
                "{shape}: {:?}",
                want.references
            );
            let diff_ids = |i: &unsprawl::inventory::Image| -> Vec<String> {
                i.layers.iter().map(|l| l.diff_id.clone()).collect()
            };
            assert_eq!(diff_ids(got), diff_ids(want), "{shape}");
            match shape {
                "classic" => assert!(got.manifest_digest.is_none()),
                _ => assert!(
                    got.manifest_digest.is_some(),
                    "{shape}: index.json gives it"
                ),
            }
        }
    }

    // `docker save | gzip` is read the same way
    let gz = tmp.path().join("classic.tar.gz");
    let raw = std::fs::read(tmp.path().join("classic.tar")).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &raw).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let out = tmp.path().join("gz.json");
    ok(&["scan", "archive", p(&gz), "--no-cache", "-o", p(&out)]);
    assert_eq!(read_inventory(&out).images.len(), reference.images.len());
}

#[test]
fn one_image_in_two_sources_is_one_entry_with_two_locations() {
    // the demo scans an OCI layout and a docker save holding two of the same images
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    ok(&["demo", "-o", p(&out)]);
    let inv = read_inventory(&out.join("inventory.json"));
    let a = image(&inv, "registry.local:5000/team/flow-a:2023-01-01");
    let kinds: Vec<&str> = a.locations.iter().map(|l| l.source.kind.as_str()).collect();
    assert_eq!(kinds, vec!["archive", "oci-dir"]);
    assert_eq!(inv.images.len(), 5);
}

#[test]
fn second_scan_reads_no_layer_and_writes_the_same_inventory() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    build_fixtures(&[], &["--oci", p(&oci)], &[]);
    let cache = tmp.path().join("cache");
    let run = |name: &str, extra: &[&str]| {
        let out = tmp.path().join(name);
        let mut args = vec!["scan", "oci-dir", p(&oci), "--no-timestamp", "-o", p(&out)];
        args.extend(extra);
        let o = ok(&args);
        (
            std::fs::read_to_string(&out).unwrap(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (cold, cold_log) = run(
        "cold.json",
        &["--cache-dir", p(&cache), "--progress", "json"],
    );
    let progress: Vec<serde_json::Value> = cold_log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let layers: Vec<&serde_json::Value> =
        progress.iter().filter(|v| v["event"] == "layer").collect();
    assert_eq!(layers.len(), 19, "one progress line per layer read");
    assert!(layers.iter().all(|v| v["error"].is_null()));
    assert_eq!(
        progress[0]["event"], "reading",
        "the totals before the first layer"
    );
    assert_eq!(progress[0]["layers"], 19);
    let last = layers.last().unwrap();
    assert_eq!(
        last["images_done"], last["images"],
        "every image done at the end"
    );
    let (warm, warm_log) = run("warm.json", &["--cache-dir", p(&cache)]);
    let (uncached, _) = run("none.json", &["--no-cache"]);
    assert!(
        cold_log.contains("19 distinct layers (19 read, 0 from cache)"),
        "{cold_log}"
    );
    assert!(
        warm_log.contains("19 distinct layers (0 read, 19 from cache)"),
        "{warm_log}"
    );
    assert_eq!(cold, warm, "the cache changes nothing in the result");
    assert_eq!(cold, uncached);
}

/// RECORD as real pip writes it: the fixture builder writes the same shape, our hash is
/// pip's, and an image whose site-packages real pip wrote (the Prefect 1.4.1 venv's own
/// files, laid into a layer) scans to those distributions, and `build` can harvest them.
#[test]
fn site_packages_written_by_real_pip_scan_and_hash_as_pip_says() {
    use unsprawl::build::harvest::record_hash;
    let site = common::prefect1::venv().join("lib/python3.11/site-packages");
    let dist_info = |prefix: &str| -> std::path::PathBuf {
        std::fs::read_dir(&site)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy().to_string();
                n.starts_with(prefix) && n.ends_with(".dist-info")
            })
            .unwrap_or_else(|| panic!("no {prefix}*.dist-info in the venv"))
    };
    // pip's rows: `path,sha256=<43 urlsafe base64 chars>,size`, RECORD (and .pyc) bare
    let row_shape = |row: &str| -> bool {
        let cols: Vec<&str> = row.split(',').collect();
        cols.len() == 3
            && (cols[1..] == ["", ""]
                || (cols[1].strip_prefix("sha256=").is_some_and(|h| {
                    h.len() == 43
                        && h.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                }) && cols[2].parse::<u64>().is_ok()))
    };
    let mut files = vec![];
    let mut hashed = 0;
    for prefix in ["six-", "python_dateutil-", "marshmallow-"] {
        let dir = dist_info(prefix);
        let record = std::fs::read_to_string(dir.join("RECORD")).unwrap();
        for row in record.lines() {
            assert!(row_shape(row), "pip wrote {row:?}");
            let cols: Vec<&str> = row.split(',').collect();
            let path = site.join(cols[0]);
            if !cols[1].is_empty() {
                assert_eq!(
                    record_hash(&std::fs::read(&path).unwrap()),
                    cols[1],
                    "{}",
                    cols[0]
                );
                hashed += 1;
            }
            if !cols[0].starts_with("..") {
                files.push(cols[0].to_string());
            }
        }
    }
    assert!(hashed > 20, "{hashed}");

    // the fixture builder's RECORD rows have pip's shape
    let specs = unsprawl::fixture::load_specs(&[&repo().join("fixtures/images")]).unwrap();
    let fixture_files = unsprawl::fixture::DirFiles(repo().join("fixtures"));
    let img = unsprawl::fixture::Corpus::new(specs, &fixture_files)
        .build("team-a-flow-a")
        .unwrap();
    let mut fixture_rows = 0;
    for l in &img.layers {
        let mut t = tar::Archive::new(l.tar.as_slice());
        for e in t.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().ends_with("RECORD") {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut e, &mut text).unwrap();
                for row in text.lines() {
                    assert!(row_shape(row), "the fixture builder wrote {row:?}");
                    fixture_rows += 1;
                }
            }
        }
    }
    assert!(fixture_rows > 10);

    // an image whose site-packages real pip wrote, on the bundled CPython 3.11 base
    let tmp = tempfile::tempdir().unwrap();
    let spec_dir = tmp.path().join("specs");
    std::fs::create_dir_all(&spec_dir).unwrap();
    let entries: Vec<String> = files
        .iter()
        .map(|f| {
            format!(
                "  {{ path = \"usr/local/lib/python3.11/site-packages/{f}\", copy = \"{f}\" }},"
            )
        })
        .collect();
    std::fs::write(
        spec_dir.join("pip-written.toml"),
        format!(
            "name = \"real/pip-written\"\ntags = [\"1\"]\nenv = [\"PYTHON_VERSION=3.11.7\"]\n\n[[layers]]\nfrom = \"python311\"\n\n[[layers]]\ncreated_by = \"pip install six python-dateutil marshmallow\"\nfiles = [\n{}\n]\n",
            entries.join("\n")
        ),
    )
    .unwrap();
    let specs =
        unsprawl::fixture::load_specs(&[&repo().join("fixtures/images"), &spec_dir]).unwrap();
    let venv_files = unsprawl::fixture::DirFiles(site.clone());
    let built = unsprawl::fixture::Corpus::new(specs, &venv_files)
        .build("pip-written")
        .unwrap();
    let oci = tmp.path().join("oci");
    unsprawl::fixture::write_oci_layout(&oci, &[built]).unwrap();
    let out = tmp.path().join("inv.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&out)]);
    let inv = read_inventory(&out);
    let c = inv.images[0].contents.as_ref().unwrap();
    for (name, module) in [
        ("six", "six"),
        ("python-dateutil", "dateutil"),
        ("marshmallow", "marshmallow"),
    ] {
        let d = c
            .python
            .distributions
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name} not found"));
        assert!(
            d.import_names.iter().any(|m| m == module),
            "{name}: {:?}",
            d.import_names
        );
        assert!(
            d.installed_bytes.unwrap() > 1000,
            "{name}: sizes from pip's RECORD"
        );
    }
}

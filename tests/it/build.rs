//! `unsprawl build` end to end against a real registry (CNCF distribution): the demo's
//! flow images pushed and scanned, a plan naming that registry, then migrate refuses
//! until `build --push` has made the runtime images; they scan back to exactly the
//! plan's pins, every RECORD file is there with its hash (checked here by code of the
//! test's own, on the layout build wrote beside the push), a second build pushes
//! nothing, and a build into a fresh layout gives the same digests.

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use base64::Engine;
use common::git_repo::{GitRepo, clean_command, stderr};
use common::registry::{Auth, Registry, push_fixtures};
use common::*;
use serde_json::Value;
use sha2::Digest;

/// The wheel the default rules pin for dulwich (bundled, as downloaded from PyPI).
const WHEEL: &str = "dulwich-0.22.8-py3-none-any.whl";

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A plan's or build document's image `additions` as `KIND NAME` lines.
fn addition_kinds(image: &Value) -> Vec<String> {
    image["additions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["kind"].as_str().unwrap(),
                a["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// Every file of an image in an OCI layout, squashed (whiteouts and opaque dirs applied)
/// by this test's own reading of the layers.
fn squashed(layout: &Path, name: &str) -> HashMap<String, Vec<u8>> {
    let index = json(&layout.join("index.json"));
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the layout"));
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(m["digest"].as_str().unwrap())).unwrap())
            .unwrap();
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for l in manifest["layers"].as_array().unwrap() {
        let bytes = std::fs::read(blob(l["digest"].as_str().unwrap())).unwrap();
        assert_eq!(
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))),
            l["digest"].as_str().unwrap()
        );
        let reader: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(bytes.as_slice()))
        } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Box::new(zstd::stream::read::Decoder::new(bytes.as_slice()).unwrap())
        } else {
            Box::new(bytes.as_slice())
        };
        let mut layer: Vec<(String, Option<Vec<u8>>)> = vec![];
        let mut t = tar::Archive::new(reader);
        for e in t.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let path = path
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            if e.header().entry_type().is_file() {
                let mut data = vec![];
                e.read_to_end(&mut data).unwrap();
                layer.push((path, Some(data)));
            } else {
                layer.push((path, None));
            }
        }
        for (path, _) in &layer {
            let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
            if file == ".wh..wh..opq" {
                files.retain(|p, _| !p.starts_with(&format!("{dir}/")));
            } else if let Some(gone) = file.strip_prefix(".wh.") {
                let gone = format!("{dir}/{gone}");
                files.retain(|p, _| p != &gone && !p.starts_with(&format!("{gone}/")));
            }
        }
        for (path, data) in layer {
            if let Some(d) = data
                && !path.rsplit('/').next().unwrap().starts_with(".wh.")
            {
                files.insert(path, d);
            }
        }
    }
    files
}

/// `a/b/../c` → `a/c`.
fn norm(p: &str) -> String {
    let mut parts: Vec<&str> = vec![];
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// `migrate` as a dry run from a Prefect 1 export onto the runtime images in `layout`,
/// the flows' code at branch main of `flows_repo` (git.example.com/platform/flows).
fn migrate_from_export(
    plan: &Path,
    layout: &Path,
    flows_repo: &Path,
    export: &str,
    out: &Path,
) -> std::process::Output {
    clean_command(&[
        "migrate",
        p(plan),
        "--runtime-images",
        p(layout),
        "--repo-host",
        "git.example.com",
        "--repo",
        "platform/flows",
        "--flows-repo",
        p(flows_repo),
        "--ref-from",
        "branch=main",
        "--export",
        export,
        "-o",
        p(out),
    ])
    .output()
    .unwrap()
}

/// Prefect 3 deployments on fixture images, planned: the images (specs from `fixtures/images`
/// and `spec_dirs`) into `D/TAG.oci`, scanned; `deployments` (`name`, image reference),
/// each running `/opt/prefect/flows/etl.py:etl`, written as a `prefect.yaml` and linked;
/// then planned for `registry.local:5000/prefect`, with a rules file of `rules` if given.
/// Returns the inventory and the plan.
fn plan_prefect3(
    d: &Path,
    tag: &str,
    spec_dirs: &[&str],
    images: &[&str],
    deployments: &[(&str, &str)],
    rules: Option<&str>,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let oci = d.join(format!("{tag}.oci"));
    build_fixtures(spec_dirs, &["--oci", p(&oci)], images);
    let imgs = d.join(format!("{tag}-images.json"));
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&imgs)]);
    let mut yaml_text = format!("name: {tag}\ndeployments:\n");
    for (name, image) in deployments {
        yaml_text.push_str(&format!(
            "  - name: {name}\n    entrypoint: /opt/prefect/flows/etl.py:etl\n    work_pool:\n      name: k8s-pool\n      job_variables:\n        image: {image}\n"
        ));
    }
    let yaml = d.join(format!("{tag}-prefect.yaml"));
    std::fs::write(&yaml, yaml_text).unwrap();
    let inv = d.join(format!("{tag}-inventory.json"));
    ok(&[
        "scan",
        "prefect",
        "--prefect-yaml",
        p(&yaml),
        "--images",
        p(&imgs),
        "-o",
        p(&inv),
    ]);
    let plan = d.join(format!("{tag}/plan.json"));
    let mut args = vec![
        "plan",
        p(&inv),
        "--image-registry",
        "registry.local:5000/prefect",
        "-o",
        p(&plan),
    ];
    let rules_file = d.join(format!("{tag}-rules.toml"));
    if let Some(text) = rules {
        std::fs::write(&rules_file, text).unwrap();
        args.extend(["--rules", p(&rules_file)]);
    }
    ok(&args);
    (inv, plan)
}

#[test]
fn runtime_images_are_built_pushed_proven_and_reproducible() {
    let reg = Registry::start(Auth::None);
    let host = reg.host();
    push_fixtures(
        &host,
        &[],
        &["team-a-flow-a", "team-b-flow-a-py310", "team-c-report"],
        None,
    );

    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cache = d.join("cache");
    let demo = d.join("demo");
    ok(&["demo", "-o", p(&demo)]);
    let images = d.join("images.json");
    ok(&[
        "scan",
        "registry",
        &host,
        "--plain-http",
        "--cache-dir",
        p(&cache),
        "-o",
        p(&images),
    ]);
    let inv = d.join("inventory.json");
    let alias = format!("registry.local:5000={host}");
    ok(&[
        "scan",
        "prefect1",
        "--export",
        "fixtures/prefect1/export.graphql.json",
        "--images",
        p(&images),
        "--registry-alias",
        &alias,
        "--flows-repo",
        p(&demo.join("flows-repo")),
        "-o",
        p(&inv),
    ]);
    let rules = d.join("registry.toml");
    std::fs::write(&rules, format!("[image]\nregistry = \"{host}/prefect\"\n")).unwrap();
    let plan_path = d.join("plan/plan.json");
    ok(&["plan", p(&inv), "--rules", p(&rules), "-o", p(&plan_path)]);
    let plan = json(&plan_path);
    let runtime: Vec<&Value> = plan["runtime_images"].as_array().unwrap().iter().collect();
    assert_eq!(runtime.len(), 2);

    // before the build: no flow is ready, each says its image is not built yet
    let out = d.join("migration");
    let migrate = || {
        clean_command(&[
            "migrate",
            p(&plan_path),
            "--repo-url",
            "https://git.example.com/platform/flows.git",
            "--flows-repo",
            p(&demo.join("flows-repo")),
            "--ref-from",
            "branch=main",
            "--export",
            "fixtures/prefect1/export.graphql.json",
            "--plain-http",
            "-o",
            p(&out),
        ])
        .output()
        .unwrap()
    };
    let o = migrate();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("0 ready"), "{err}");
    assert!(
        err.contains("✗ runtime-image:") && err.contains("is not built yet"),
        "{err}"
    );
    assert!(err.contains("unsprawl build PLAN --push"), "{err}");

    // Git storage clones with dulwich, which no flow image had: each image adds it, as
    // the rules' hash-pinned wheel (no scanned image has any dulwich)
    for rt in &runtime {
        let a = &rt["additions"][0];
        assert_eq!(
            (&a["kind"], &a["name"], &a["version"], &a["source"]),
            (
                &Value::from("distribution"),
                &Value::from("dulwich"),
                &Value::from("0.22.8"),
                &Value::from("index")
            ),
            "{rt}"
        );
        assert_eq!(a["wheel"]["file"], WHEEL);
        assert_eq!(rt["additions"].as_array().unwrap().len(), 1, "{rt}");
    }

    // build and push (and write the same images into a layout, for the check below)
    let layout = d.join("built.oci");
    let build = |dest: &Path, wheels_from: &[&str]| {
        let mut args = vec![
            "build",
            p(&plan_path),
            "--push",
            "--plain-http",
            "--base-from",
            "members",
            "--cache-dir",
            p(&cache),
            "-o",
            p(dest),
        ];
        args.extend(wheels_from);
        clean_command(&args).output().unwrap()
    };
    // offline and without the wheel: refused, naming the wheel and the fix; nothing pushed
    let o = build(&d.join("offline.oci"), &["--no-index"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("0 built, 0 already in the registry, 2 refused"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{WHEEL} is needed and not in any wheel directory"))
            && err.contains("--index-url"),
        "{err}"
    );
    // a dead index: the same, naming the index
    let o = build(
        &d.join("dead.oci"),
        &["--index-url", "http://127.0.0.1:9/simple"],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{WHEEL}: the package index http://127.0.0.1:9/simple cannot be reached"
        )),
        "{err}"
    );
    // a mirror (a real HTTP server with a PEP 503 tree) that serves other bytes: refused
    let bad_dir = d.join("bad-wheel");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let mut bytes = std::fs::read(format!("fixtures/wheels/{WHEEL}")).unwrap();
    bytes.push(0);
    std::fs::write(bad_dir.join(WHEEL), &bytes).unwrap();
    let bad_index = common::package_index::PackageIndex::serve(&[&bad_dir.join(WHEEL)]);
    let o = build(&d.join("bad.oci"), &["--index-url", &bad_index.url]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{WHEEL} from http://127.0.0.1:"))
            && err.contains("the plan pins ffc7a02e"),
        "{err}"
    );
    drop(bad_index);
    // the same bytes from a wheel directory: refused the same way
    let o = build(
        &d.join("bad-dir.oci"),
        &["--wheels", p(&bad_dir), "--no-index"],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the plan pins ffc7a02e"), "{err}");
    // from the mirror: built
    let index = common::package_index::PackageIndex::serve(&[Path::new(&format!(
        "fixtures/wheels/{WHEEL}"
    ))]);
    let o = build(&layout, &["--index-url", &index.url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2 built, 0 already in the registry, 0 refused"),
        "{}",
        stderr(&o)
    );
    // the base layers were in the same registry: mounted across repositories, not copied
    let err = stderr(&o);
    assert_eq!(
        err.matches("mounted from the repository").count(),
        2,
        "{err}"
    );
    assert!(!err.contains(" 0 mounted"), "{err}");
    let built = json(&layout.join("build.json"));
    assert_eq!(built["schema"], "unsprawl/build/v1");

    // the registry holds them, and our scanner finds exactly the pins (plus the base's
    // packaging tools, which the rules leave unpinned)
    let seen_path = d.join("runtime.json");
    let refs: Vec<String> = runtime
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let mut args = vec!["scan", "registry"];
    args.extend(refs.iter().map(String::as_str));
    args.extend(["--plain-http", "--no-cache", "-o", p(&seen_path)]);
    ok(&args);
    let seen = json(&seen_path);
    for rt in &runtime {
        let name = rt["name"].as_str().unwrap();
        let img = seen["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| {
                i["references"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == name)
            })
            .unwrap_or_else(|| panic!("{name} is not in the registry"));
        assert_eq!(img["status"], "ok");
        assert_eq!(
            img["config"]["labels"]["io.unsprawl.content-hash"],
            rt["content_hash"]
        );
        let python = rt["python"].as_str().unwrap();
        let mut dists: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for dist in img["contents"]["python"]["distributions"]
            .as_array()
            .unwrap()
        {
            if dist["python"].as_str().is_none_or(|p| p == python) {
                dists
                    .entry(dist["name"].as_str().unwrap().into())
                    .or_default()
                    .push(dist["version"].as_str().unwrap().into());
            }
        }
        for pin in rt["requirements"].as_array().unwrap() {
            let n = pin["name"].as_str().unwrap();
            assert_eq!(
                dists.remove(n),
                Some(vec![pin["version"].as_str().unwrap().to_string()]),
                "{name}: {n}"
            );
        }
        assert_eq!(
            dists.remove("dulwich"),
            Some(vec!["0.22.8".to_string()]),
            "{name}: the addition is there"
        );
        let left: Vec<&String> = dists.keys().collect();
        assert_eq!(
            left,
            ["pip", "setuptools", "wheel"],
            "{name}: only the base's packaging tools beyond the pins"
        );
        let entry = built["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap();
        assert_eq!(
            img["manifest_digest"], entry["manifest_digest"],
            "the registry has what the layout has"
        );

        // independent check: every RECORD row is in the image with its recorded hash
        let files = squashed(&layout, name);
        let site = format!("usr/local/lib/python{python}/site-packages");
        let mut checked = 0;
        let dulwich = serde_json::json!({"name": "dulwich", "version": "0.22.8"});
        for pin in rt["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&dulwich])
        {
            let (n, v) = (
                pin["name"].as_str().unwrap(),
                pin["version"].as_str().unwrap(),
            );
            let stem = n.replace('-', "_");
            let lower = |s: &str| s.to_lowercase().replace(['-', '.'], "_");
            let dist_dir = files
                .keys()
                .filter_map(|k| k.strip_prefix(&format!("{site}/")))
                .filter_map(|k| k.split_once('/').map(|(d, _)| d))
                .find(|d| {
                    lower(d).starts_with(&format!("{}_{}", lower(&stem), lower(v)))
                        && (d.ends_with(".dist-info") || d.ends_with(".egg-info"))
                })
                .unwrap_or_else(|| panic!("{name}: no dist-info for {n} {v}"))
                .to_string();
            if dist_dir.ends_with(".egg-info") {
                let list = String::from_utf8(
                    files[&format!("{site}/{dist_dir}/installed-files.txt")].clone(),
                )
                .unwrap();
                for l in list.lines().filter(|l| *l != "./") {
                    assert!(
                        files.contains_key(&norm(&format!("{site}/{dist_dir}/{l}"))),
                        "{name}: {n}: {l}"
                    );
                    checked += 1;
                }
                continue;
            }
            let record =
                String::from_utf8(files[&format!("{site}/{dist_dir}/RECORD")].clone()).unwrap();
            for row in record.lines() {
                let cols: Vec<&str> = row.split(',').collect();
                let path = norm(&format!("{site}/{}", cols[0]));
                let data = files
                    .get(&path)
                    .unwrap_or_else(|| panic!("{name}: {n}: {path} missing"));
                if let Some(h) = cols.get(1).filter(|h| !h.is_empty()) {
                    let actual = format!(
                        "sha256={}",
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .encode(sha2::Sha256::digest(data))
                    );
                    assert_eq!(&actual, h, "{name}: {path}");
                }
                checked += 1;
            }
        }
        assert!(checked > 50, "{name}: {checked} files checked");
    }

    // a second build pushes nothing; a build into a fresh layout gives the same digests
    let again = d.join("again.oci");
    drop(index);
    let o = build(&again, &["--wheels", "fixtures/wheels", "--no-index"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("0 built, 2 already in the registry"),
        "{}",
        stderr(&o)
    );
    let digests = |b: &Value| -> Vec<String> {
        b["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["manifest_digest"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(digests(&json(&again.join("build.json"))), digests(&built));

    // now the migration sees them: the flow that can move is ready
    let o = migrate();
    let err = stderr(&o);
    assert!(err.contains("1 ready"), "{err}");
    let m = json(&out.join("migration.json"));
    let report = m["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "report")
        .unwrap();
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "runtime-image")
        .unwrap();
    assert_eq!(check["ok"], true, "{check}");
    let fetch = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "fetch-code")
        .unwrap();
    assert_eq!(fetch["ok"], true, "{fetch}");
    assert!(
        fetch["detail"]
            .as_str()
            .unwrap()
            .ends_with("can fetch code for git-storage: dulwich 0.22.8"),
        "{fetch}"
    );

    // a registry that refuses our push (basic auth, no credentials): refused, nothing tagged
    let locked = Registry::start(Auth::Basic {
        user: "ci".into(),
        password: "s3cret-pw".into(),
    });
    let locked_plan = d.join("locked/plan.json");
    ok(&[
        "plan",
        p(&inv),
        "--image-registry",
        &format!("{}/prefect", locked.host()),
        "-o",
        p(&locked_plan),
    ]);
    let o = clean_command(&[
        "build",
        p(&locked_plan),
        "--push",
        "--plain-http",
        "--base-from",
        "members",
        "--cache-dir",
        p(&cache),
        "--wheels",
        "fixtures/wheels",
        "--no-index",
    ])
    .env("DOCKER_CONFIG", d.join("no-docker-config"))
    .output()
    .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("0 built, 0 already in the registry, 2 refused"),
        "{err}"
    );
    assert!(err.contains("push failed") && err.contains("401"), "{err}");
    assert!(!err.contains("s3cret-pw"));

    // a plan naming the placeholder registry (as an audit's may): pushing there is refused,
    // naming the fix
    let text = std::fs::read_to_string(demo.join("plan.json")).unwrap();
    let placeholder = demo.join("placeholder-plan.json");
    std::fs::write(
        &placeholder,
        text.replace("localhost/unsprawl-demo", "registry.example.com/prefect"),
    )
    .unwrap();
    let o = clean_command(&["build", p(&placeholder), "--push"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("placeholder registry") && stderr(&o).contains("[image] registry"),
        "{}",
        stderr(&o)
    );
}

/// One Prefect 1 flow version on Docker storage naming `image:tag`.
fn docker_row(id: usize, name: &str, image: &str, tag: &str) -> Value {
    serde_json::json!({
        "id": format!("00000000-0000-4000-8000-{id:012}"), "name": name, "version": 1,
        "version_group_id": format!("vg-{name}"), "archived": false,
        "storage": {"type": "Docker", "image_name": image, "image_tag": tag, "registry_url": null},
        "run_config": {"type": "KubernetesRun", "labels": []},
        "project": {"id": "p", "name": "team"},
        "flow_group": {"id": format!("fg-{name}"), "name": format!("vg-{name}"), "labels": null, "run_config": null},
    })
}

#[test]
fn a_file_changed_after_install_refuses_its_image_and_the_others_build() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let oci = d.join("oci");
    build_fixtures(
        &["fixtures/build-bad"],
        &["--oci", p(&oci)],
        &["team-a-flow-a", "patched-after-install"],
    );
    let images = d.join("images.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&images)]);
    let export = d.join("export.json");
    let rows = vec![
        docker_row(1, "etl", "registry.local:5000/team/flow-a", "2023-01-01"),
        docker_row(2, "patched", "bad/patched-after-install", "1"),
    ];
    std::fs::write(
        &export,
        serde_json::json!({"data": {"flow": rows}}).to_string(),
    )
    .unwrap();
    let inv = d.join("inventory.json");
    ok(&[
        "scan",
        "prefect1",
        "--export",
        p(&export),
        "--images",
        p(&images),
        "-o",
        p(&inv),
    ]);
    let plan_path = d.join("plan.json");
    ok(&[
        "plan",
        p(&inv),
        "--image-registry",
        "registry.local:5000/prefect",
        "-o",
        p(&plan_path),
    ]);
    let plan = json(&plan_path);
    let name_for = |python: &str| -> String {
        plan["runtime_images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["python"] == python)
            .unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (good, bad) = (name_for("3.11"), name_for("3.10"));

    let layout = d.join("rt.oci");
    let o = clean_command(&[
        "build",
        p(&plan_path),
        "--base-from",
        "members",
        "--cache-dir",
        p(&d.join("cache")),
        "--wheels",
        "fixtures/wheels",
        "--no-index",
        "-o",
        p(&layout),
    ])
    .output()
    .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("1 built, 0 already in the registry, 1 refused"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{bad}: pandas 1.5.3 in bad/patched-after-install:1: pandas/__init__.py does not match its RECORD hash")),
        "{err}"
    );
    let built = json(&layout.join("build.json"));
    let status = |n: &str| {
        built["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == n)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(
        (status(&good), status(&bad)),
        (Value::from("built"), Value::from("refused"))
    );

    // the runtime-image check: the refused one is not built yet; an image that carries
    // another content hash under its name differs from the plan
    // the default base is the rules' python:3.x-slim image, which nobody scanned here
    let o = clean_command(&[
        "build",
        p(&plan_path),
        "--wheels",
        "fixtures/wheels",
        "-o",
        p(&d.join("rules-base.oci")),
    ])
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("its base python:3.11-slim-bookworm is in no scanned source")
            && stderr(&o).contains("--base-from members"),
        "{}",
        stderr(&o)
    );

    let plan_doc: unsprawl::plan::Plan = serde_json::from_value(plan.clone()).unwrap();
    use unsprawl::migrate::runtime_image::{Location, check};
    let seen = check(&plan_doc, &Location::Layout(layout.clone()), None);
    assert!(seen[&good].is_ok(), "{:?}", seen[&good]);
    assert!(
        seen[&bad]
            .as_ref()
            .unwrap_err()
            .contains("is not built yet"),
        "{:?}",
        seen[&bad]
    );
    let index_path = layout.join("index.json");
    let index = std::fs::read_to_string(&index_path).unwrap();
    std::fs::write(&index_path, index.replace(&good, &bad)).unwrap();
    let seen = check(&plan_doc, &Location::Layout(layout), None);
    let e = seen[&bad].as_ref().unwrap_err();
    assert!(
        e.contains("exists but differs from the plan") && e.contains("io.unsprawl.content-hash"),
        "{e}"
    );
}

/// A Prefect 3 deployment's runtime image needs `git` for its `git_clone` pull step. The
/// flow image has none: build harvests it, with what it depends on that the base lacks,
/// from a scanned image of the same Debian release, each file checked against dpkg's
/// md5sums; without such an image, or with a file changed after install, the image is
/// refused with the reason; and an image built without git fails the fetch-code check.
#[test]
fn git_is_harvested_with_its_dpkg_records_or_the_image_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let plan_for = |images: &[&str], tag: &str, rules: Option<&str>| {
        plan_prefect3(
            d,
            tag,
            &["fixtures/build-bad", "fixtures/fetch"],
            images,
            &[("etl-daily", "registry.local:5000/team-d/etl:2024-11-01")],
            rules,
        )
        .1
    };
    let build = |plan: &Path, layout: &Path| {
        clean_command(&[
            "build",
            p(plan),
            "--base-from",
            "members",
            "--cache-dir",
            p(&d.join("cache")),
            "-o",
            p(layout),
        ])
        .output()
        .unwrap()
    };

    // no scanned image has git: refused, with the fix
    let plan = plan_for(&["team-d-etl-prefect3"], "alone", None);
    let rt = json(&plan)["runtime_images"][0].clone();
    let kinds: Vec<String> = addition_kinds(&rt);
    assert_eq!(
        kinds,
        [
            "executable git",
            "os-package ca-certificates",
            "os-package git"
        ]
    );
    // a refused build: exit 1, and the reason printed
    let refused = |plan: &Path, tag: &str, reason: &str| {
        let o = build(plan, &d.join(format!("{tag}-rt.oci")));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(reason), "{err}");
    };
    refused(
        &plan,
        "alone",
        "lacks git and no scanned image of Debian GNU/Linux 12 (bookworm) (amd64) has it installed: use a base that has them ([image.base] in the rules)",
    );

    // git edited after install: its md5sum says so
    let plan = plan_for(&["team-d-etl-prefect3", "git-patched"], "patched", None);
    refused(
        &plan,
        "patched",
        "git in bad/git-patched:1: usr/bin/git does not match its dpkg md5sum",
    );

    // from the platform's CI image: built, every file of every added package as dpkg
    // recorded it (checked here with the test's own MD5), the base's packages kept
    let plan = plan_for(&["team-d-etl-prefect3", "platform-git"], "good", None);
    let layout = d.join("good-rt.oci");
    let o = build(&plan, &layout);
    assert!(o.status.success(), "{}", stderr(&o));
    let name = json(&plan)["runtime_images"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let files = squashed(&layout, &name);
    let mut checked = 0;
    for pkg in ["git", "git-man", "libcurl3-gnutls", "liberror-perl", "perl"] {
        let sums =
            String::from_utf8(files[&format!("var/lib/dpkg/info/{pkg}.md5sums")].clone()).unwrap();
        for line in sums.lines() {
            let (md5, path) = line.split_once("  ").unwrap();
            let data = files
                .get(path)
                .unwrap_or_else(|| panic!("{pkg}: {path} missing"));
            assert_eq!(hex::encode(md5::Md5::digest(data)), md5, "{pkg}: {path}");
            checked += 1;
        }
    }
    assert_eq!(checked, 7);
    // the base's eight stanzas once each, then the five added ones as their
    // dependencies were reached
    let status = String::from_utf8(files["var/lib/dpkg/status"].clone()).unwrap();
    let names: Vec<&str> = status
        .lines()
        .filter_map(|l| l.strip_prefix("Package: "))
        .collect();
    assert_eq!(
        names,
        [
            "base-files",
            "bash",
            "ca-certificates",
            "coreutils",
            "libc6",
            "libssl3",
            "tzdata",
            "zlib1g",
            "git",
            "libcurl3-gnutls",
            "liberror-perl",
            "perl",
            "git-man"
        ]
    );
    let plan_doc: unsprawl::plan::Plan = serde_json::from_value(json(&plan)).unwrap();
    use unsprawl::migrate::runtime_image::{Location, check};
    let seen = check(&plan_doc, &Location::Layout(layout), None);
    let fetch = &seen[&name].as_ref().unwrap().fetch["git-clone"];
    assert_eq!(
        fetch.as_deref(),
        Ok(format!("{name} can fetch code for git-clone: package git, package ca-certificates, /usr/bin/git").as_str())
    );

    // a team's rules that drop the packages but still ask for `git`: the image is built
    // without it, and the check refuses every flow on it
    let plan = plan_for(
        &["team-d-etl-prefect3", "platform-git"],
        "no-packages",
        Some("[fetch.git-clone]\nos_packages = []\n"),
    );
    let layout = d.join("no-packages-rt.oci");
    let o = build(&plan, &layout);
    assert!(o.status.success(), "{}", stderr(&o));
    let plan_doc: unsprawl::plan::Plan = serde_json::from_value(json(&plan)).unwrap();
    let name = &plan_doc.runtime_images[0].name;
    let seen = check(&plan_doc, &Location::Layout(layout), None);
    let e = seen[name].as_ref().unwrap().fetch["git-clone"]
        .as_ref()
        .unwrap_err();
    assert!(
        e.contains(
            "cannot fetch the flow's code (git-clone): it lacks a `git` executable on its PATH"
        ),
        "{e}"
    );
}

/// A password baked into a flow image (`ENV DB_PASSWORD=…`, in its config and history):
/// no document the scan, plan or report writes carries it; the flow's requirement names
/// the variable as secret and keeps its ordinary environment for the run config.
#[test]
fn a_secret_in_an_image_env_is_never_written_and_the_rest_is_parity() {
    const SECRET: &str = "hunter2-prod-9f8e7d";
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (inv, plan) = plan_prefect3(
        d,
        "e",
        &["fixtures/parity"],
        &["team-e-secrets"],
        &[("nightly", "registry.local:5000/team-e/etl:2024-12-01")],
        None,
    );
    let oci = d.join("e.oci");
    let report = d.join("report");
    ok(&[
        "report",
        p(&inv),
        "--plan",
        p(&plan),
        "--no-timestamp",
        "-o",
        p(&report),
    ]);
    // the bytes of every file written, searched for the password
    let mut written = 0;
    let mut stack = vec![d.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.starts_with(&oci) {
                continue; // the image itself, as built: it holds the password, by design
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(SECRET),
                    "{} carries the password",
                    path.display()
                );
                written += 1;
            }
        }
    }
    assert!(written >= 6, "{written} files checked");
    // the report lists what parity needs, the secret by name only
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    assert!(
        md.contains("env REPORT_BUCKET carried; secret-looking DB_PASSWORD (refused: move into a Prefect Secret)"),
        "{md}"
    );
    let doc = json(&inv);
    let flow = &doc["flows"][0];
    assert_eq!(
        flow["requirement"]["parity"],
        serde_json::json!({
            "env": {"REPORT_BUCKET": "s3://team-e/reports"},
            "secret_env": ["DB_PASSWORD"],
        }),
        "{flow}"
    );
    let image = &doc["images"][0];
    assert_eq!(
        image["config"]["env"]["DB_PASSWORD"],
        unsprawl::secrets::REDACTED
    );
}

/// Parity for OS packages: an extra Dockerfile command installed libpq5 above the base,
/// so the runtime image carries it over from the member's own image, every file checked
/// against dpkg's md5sums; two flows that differ only in their environment share the
/// runtime image, each keeping its own env.
#[test]
fn os_packages_above_the_base_are_carried_and_env_alone_does_not_split() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (inv, plan) = plan_prefect3(
        d,
        "f",
        &["fixtures/parity", "fixtures/fetch"],
        &["team-f-libpq", "team-f-libpq-eu", "platform-git"],
        &[
            ("report", "registry.local:5000/team-f/report:2024-12-01"),
            (
                "report-eu",
                "registry.local:5000/team-f/report-eu:2024-12-01",
            ),
        ],
        None,
    );
    let doc = json(&inv);
    let envs: Vec<&Value> = doc["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["requirement"]["parity"]["env"]["REPORT_BUCKET"])
        .collect();
    assert_eq!(envs, ["s3://team-f/reports", "s3://team-f/reports-eu"]);
    let plan_doc = json(&plan);
    assert_eq!(plan_doc["runtime_images"].as_array().unwrap().len(), 1);
    assert_eq!(
        plan_doc["runtime_images"][0]["members"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "env alone does not split"
    );
    let layout = d.join("rt.oci");
    let o = clean_command(&[
        "build",
        p(&plan),
        "--base-from",
        "members",
        "--no-index",
        "-o",
        p(&layout),
    ])
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let built = json(&layout.join("build.json"));
    let libpq = built["images"][0]["additions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "libpq5")
        .cloned()
        .unwrap_or_else(|| panic!("libpq5 not carried: {built}"));
    assert!(
        libpq["from"]
            .as_str()
            .unwrap()
            .starts_with("registry.local:5000/team-f/report"),
        "from a member's own image: {libpq}"
    );
    assert_eq!(libpq["version"], "15.10-0+deb12u1");
    let name = plan_doc["runtime_images"][0]["name"].as_str().unwrap();
    let files = squashed(&layout, name);
    let sums = String::from_utf8(files["var/lib/dpkg/info/libpq5.md5sums"].clone()).unwrap();
    let mut checked = 0;
    for line in sums.lines() {
        let (md5, path) = line.split_once("  ").unwrap();
        assert_eq!(hex::encode(md5::Md5::digest(&files[path])), md5, "{path}");
        checked += 1;
    }
    assert_eq!(checked, 2);
    let plan_typed: unsprawl::plan::Plan = serde_json::from_value(plan_doc.clone()).unwrap();
    use unsprawl::migrate::runtime_image::{Location, check};
    let seen = check(&plan_typed, &Location::Layout(layout), None);
    let seen = seen[name].as_ref().unwrap();
    assert!(
        seen.os_packages.contains("libpq5"),
        "{:?}",
        seen.os_packages
    );

    // a member that installed libpq5 at another version cannot share the image: the build
    // refuses it, naming both (an image holds one version of a package)
    let older = d.join("older-specs");
    std::fs::create_dir_all(&older).unwrap();
    let spec = std::fs::read_to_string(repo().join("fixtures/parity/team-f-libpq.toml"))
        .unwrap()
        .replace("team-f/report\"", "team-f/report-old\"")
        .replace("\"15.10-0+deb12u1\"", "\"15.9-0+deb12u1\"");
    std::fs::write(older.join("team-f-libpq-old.toml"), spec).unwrap();
    let (_, plan) = plan_prefect3(
        d,
        "g",
        &["fixtures/parity", "fixtures/fetch", p(&older)],
        &["team-f-libpq", "team-f-libpq-old", "platform-git"],
        &[
            ("report", "registry.local:5000/team-f/report:2024-12-01"),
            ("old", "registry.local:5000/team-f/report-old:2024-12-01"),
        ],
        None,
    );
    let o = clean_command(&[
        "build",
        p(&plan),
        "--base-from",
        "members",
        "--no-index",
        "-o",
        p(&d.join("g.rt.oci")),
    ])
    .output()
    .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("have libpq5 at 15.10-0+deb12u1 and 15.9-0+deb12u1")
            || err.contains("have libpq5 at 15.9-0+deb12u1 and 15.10-0+deb12u1"),
        "{err}"
    );
}

/// Parity for files: Docker storage's `files=` copied `/opt/mylib` into both of the
/// demo's flow-a images (Python 3.11 and 3.10); each runtime image holds those files
/// byte for byte (read here from both layouts by this test's own code), and migrate's
/// `parity` check says so for every flow that had them.
#[test]
fn files_docker_storage_copied_in_are_carried_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    ok(&["demo", "-o", p(&out)]);
    let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    let mylib = |files: &HashMap<String, Vec<u8>>| -> BTreeMap<String, String> {
        files
            .iter()
            .filter(|(p, _)| p.starts_with("opt/mylib/"))
            .map(|(p, b)| (p.clone(), sha(b)))
            .collect()
    };
    let plan = json(&out.join("plan.json"));
    let mut carried = 0;
    for (old, python) in [
        ("registry.local:5000/team/flow-a:2023-01-01", "3.11"),
        ("registry.local:5000/team-b/flow-a:2022-06-30", "3.10"),
    ] {
        let before = mylib(&squashed(&out.join("images/oci"), old));
        assert_eq!(before.len(), 2, "{old}: {before:?}");
        let runtime = plan["runtime_images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["python"] == python)
            .unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string();
        let after = mylib(&squashed(&out.join("runtime-images.oci"), &runtime));
        assert_eq!(before, after, "{runtime} carries {old}'s /opt/mylib");
        carried += 1;
    }
    assert_eq!(carried, 2);
    let m = json(&out.join("migration/migration.json"));
    let parity: Vec<String> = m["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|it| {
            it["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["check"] == "parity")
                .map(|c| {
                    assert_eq!(c["ok"], true, "{c}");
                    c["detail"].as_str().unwrap().to_string()
                })
        })
        .collect();
    assert_eq!(
        parity
            .iter()
            .filter(|d| d.contains("the 2 file(s) Docker storage copied in (/opt/mylib) are in the runtime image, byte for byte"))
            .count(),
        3,
        "flow-a on 3.11 and 3.10, and its nightly twin: {parity:?}"
    );

    // runtime images of the same names built without those files (from a plan of an
    // inventory that forgot them): migrate compares the bytes and refuses those flows
    let mut inv = json(&out.join("inventory.json"));
    for f in inv["flows"].as_array_mut().unwrap() {
        if let Some(parity) = f.pointer_mut("/requirement/parity")
            && let Some(p) = parity.as_object_mut()
        {
            p.remove("files");
        }
    }
    let forgot = tmp.path().join("forgot/inventory.json");
    std::fs::create_dir_all(forgot.parent().unwrap()).unwrap();
    std::fs::write(&forgot, inv.to_string()).unwrap();
    let forgot_plan = tmp.path().join("forgot/plan.json");
    ok(&[
        "plan",
        p(&forgot),
        "--image-registry",
        "localhost/unsprawl-demo",
        "-o",
        p(&forgot_plan),
    ]);
    assert_eq!(
        json(&forgot_plan)["runtime_images"],
        plan["runtime_images"],
        "the same images by name"
    );
    let without = tmp.path().join("forgot/runtime.oci");
    ok(&[
        "build",
        p(&forgot_plan),
        "--base-from",
        "members",
        "--wheels",
        "fixtures/wheels",
        "--no-index",
        "-o",
        p(&without),
    ]);
    assert!(
        mylib(&squashed(
            &without,
            plan["runtime_images"][0]["name"].as_str().unwrap()
        ))
        .is_empty()
    );
    let o = migrate_from_export(
        &out.join("plan.json"),
        &without,
        &out.join("flows-repo"),
        "fixtures/prefect1/export.graphql.json",
        &tmp.path().join("forgot/migration"),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(
        err.matches("✗ parity: the runtime image lacks or changed 2 of the files Docker storage copied in: /opt/mylib/__init__.py, /opt/mylib/transforms.py").count(),
        3,
        "{err}"
    );

    // two members with other bytes at one copied path cannot share an image: the build
    // refuses it, naming the path and both images (team-c's report image has its own
    // os-release; say both flows' storage had copied that file in)
    let mut inv = json(&out.join("inventory.json"));
    for f in inv["flows"].as_array_mut().unwrap() {
        if f.pointer("/requirement/python") == Some(&Value::from("3.11")) {
            f["requirement"]["parity"]["files"] = serde_json::json!(["/usr/lib/os-release"]);
        }
    }
    let clash = tmp.path().join("clash/inventory.json");
    std::fs::create_dir_all(clash.parent().unwrap()).unwrap();
    std::fs::write(&clash, inv.to_string()).unwrap();
    let clash_plan = tmp.path().join("clash/plan.json");
    ok(&[
        "plan",
        p(&clash),
        "--image-registry",
        "localhost/unsprawl-demo",
        "-o",
        p(&clash_plan),
    ]);
    let o = clean_command(&[
        "build",
        p(&clash_plan),
        "--base-from",
        "members",
        "--wheels",
        "fixtures/wheels",
        "--no-index",
        "-o",
        p(&tmp.path().join("clash/runtime.oci")),
    ])
    .output()
    .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/usr/lib/os-release differs between registry.local:5000/team")
            && err.contains("its flows cannot share one image"),
        "{err}"
    );
}

/// Runtime parity for a Prefect 1 Docker-storage flow, end to end on fixtures: its storage
/// (a real Prefect 1.4.1 pickle) set `env_vars`, copied a config file in with `files=`
/// and installed libpq5 with an extra apt command. After plan and build the runtime
/// image holds the file (SHA-256 equal) and libpq5's files (md5sums checked here); the
/// migration's new registration carries the env in its run config (Prefect 1.4.1 reads
/// it back), never over the registration's own value.
#[test]
fn a_docker_storage_flow_keeps_its_env_files_and_apt_package() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let oci = d.join("oci");
    build_fixtures(
        &["fixtures/parity"],
        &["--oci", p(&oci)],
        &["team-g-pg-report"],
    );
    let images = d.join("images.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&images)]);
    // the registration, as Prefect 1.4.1 serialized it, with a run config env of its own
    let mut flow = json(&repo().join("fixtures/prefect/team-g/pg-report.serialized.json"));
    flow["run_config"]["env"] = serde_json::json!({"TEAM": "team-g", "PGHOST": "db.internal"});
    let mut row = docker_row(7, "pg-report", "pg-report", "2024-12-01");
    row["storage"] = flow["storage"].clone();
    row["run_config"] = flow["run_config"].clone();
    row["serialized_flow"] = flow;
    let export = d.join("export.json");
    std::fs::write(
        &export,
        serde_json::json!({"data": {"flow": [row]}}).to_string(),
    )
    .unwrap();
    let git = GitRepo::new(&[(
        "teams/g/pg_report.py",
        std::fs::read_to_string(repo().join("fixtures/prefect/team-g/pg_report.py")).unwrap(),
    )]);
    let inv = d.join("inventory.json");
    ok(&[
        "scan",
        "prefect1",
        "--export",
        p(&export),
        "--images",
        p(&images),
        "--flows-repo",
        p(git.path()),
        "-o",
        p(&inv),
    ]);
    let parity = &json(&inv)["flows"][0]["requirement"]["parity"];
    assert_eq!(
        parity,
        &serde_json::json!({"env": {"REPORT_BUCKET": "s3://team-g/reports"}, "files": ["/opt/team-g"]}),
        "from the pickle and the image"
    );
    let plan_path = d.join("plan.json");
    ok(&[
        "plan",
        p(&inv),
        "--image-registry",
        "registry.local:5000/prefect",
        "-o",
        p(&plan_path),
    ]);
    let layout = d.join("rt.oci");
    ok(&[
        "build",
        p(&plan_path),
        "--base-from",
        "members",
        "--wheels",
        "fixtures/wheels",
        "--no-index",
        "-o",
        p(&layout),
    ]);
    let name = json(&plan_path)["runtime_images"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let old = squashed(&oci, "registry.local:5000/team-g/pg-report:2024-12-01");
    let new = squashed(&layout, &name);
    let conf = "opt/team-g/report.conf";
    assert_eq!(
        sha2::Sha256::digest(&new[conf]),
        sha2::Sha256::digest(&old[conf]),
        "the file, byte for byte"
    );
    assert_eq!(
        new[conf],
        std::fs::read(repo().join("fixtures/prefect/team-g/conf/report.conf")).unwrap()
    );
    let sums = String::from_utf8(new["var/lib/dpkg/info/libpq5.md5sums"].clone()).unwrap();
    let mut checked = 0;
    for line in sums.lines() {
        let (md5, path) = line.split_once("  ").unwrap();
        assert_eq!(hex::encode(md5::Md5::digest(&new[path])), md5, "{path}");
        checked += 1;
    }
    assert_eq!(checked, 2, "libpq5's files");
    let built = json(&layout.join("build.json"));
    let kinds: Vec<String> = addition_kinds(&built["images"][0]);
    assert!(
        kinds.contains(&"os-package libpq5".to_string())
            && kinds.contains(&format!("file /{conf}")),
        "{kinds:?}"
    );

    let out = d.join("migration");
    let o = migrate_from_export(&plan_path, &layout, git.path(), p(&export), &out);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("1 flows: 1 ready") || err.contains("1 flow: 1 ready"),
        "{err}"
    );
    let m = json(&out.join("migration.json"));
    let check = m["items"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "parity")
        .cloned()
        .unwrap();
    assert_eq!(check["ok"], true, "{check}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("the 1 file(s) Docker storage copied in (/opt/team-g) are in the runtime image, byte for byte")
            && detail.contains("its env REPORT_BUCKET is carried into the run config"),
        "{detail}"
    );
    let flows = out.join("prefect1/flows.json");
    common::prefect1::validate(&flows);
    let doc = json(&flows);
    assert_eq!(
        doc["flows"][0]["run_config"]["env"],
        serde_json::json!({"TEAM": "team-g", "PGHOST": "db.internal", "REPORT_BUCKET": "s3://team-g/reports"})
    );
    assert_eq!(doc["flows"][0]["run_config"]["image"], name.as_str());
}

/// A plan whose runtime image name is no image reference (a damaged or hostile plan):
/// migrate refuses every flow on it, saying so, before it looks for the image.
#[test]
fn a_runtime_image_name_that_is_no_reference_is_never_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    ok(&["demo", "-o", p(&out)]);
    let plan_path = out.join("plan.json");
    let text = std::fs::read_to_string(&plan_path).unwrap();
    let name = json(&plan_path)["runtime_images"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = name.replace("unsprawl-demo/runtime", "unsprawl-demo/RUNTIME");
    std::fs::write(&plan_path, text.replace(&name, &bad)).unwrap();
    let o = migrate_from_export(
        &plan_path,
        &out.join("runtime-images.oci"),
        &out.join("flows-repo"),
        "fixtures/prefect1/export.graphql.json",
        &tmp.path().join("migration"),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "✗ runtime-image: {bad:?} is not a valid image reference"
        )),
        "{err}"
    );
}

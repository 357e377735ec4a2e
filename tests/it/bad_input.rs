//! Broken images and archives: each gives a clear error naming the image, the layer and
//! (where there is one) the path, while every other image is still analysed.

use crate::common;

use common::*;
use unsprawl::inventory::{Image, Status};

fn problems(img: &Image) -> String {
    img.errors
        .iter()
        .map(|p| {
            format!(
                "{} | {} | {}",
                p.layer.as_deref().unwrap_or("-"),
                p.path.as_deref().unwrap_or("-"),
                p.message
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn each_broken_image_gets_its_own_error_and_the_rest_are_analysed() {
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    // the bad images plus a good one in the same layout
    let mut names: Vec<String> = std::fs::read_dir(repo().join("fixtures/bad"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names.push("team-a-flow-a".into());
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    build_fixtures(&["fixtures/bad"], &["--oci", p(&oci)], &name_refs);
    let inv_path = tmp.path().join("inventory.json");
    let args = [
        "scan",
        "oci-dir",
        p(&oci),
        "--no-cache",
        "-o",
        p(&inv_path),
        // low limits so the bomb trips quickly; nothing legitimate comes near them
        "--expansion-floor-bytes",
        "8388608",
        "--max-expansion-ratio",
        "10",
        "--verify-diff-ids",
    ];
    let out = unsprawl(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "problems are recorded, not fatal"
    );
    let mut strict = args.to_vec();
    strict.push("--strict");
    assert_eq!(
        unsprawl(&strict).status.code(),
        Some(1),
        "--strict fails on them"
    );

    let inv = read_inventory(&inv_path);
    assert_eq!(inv.images.len(), names.len());
    let good = image(&inv, "registry.local:5000/team/flow-a:2023-01-01");
    assert_eq!(good.status, Status::Ok);
    assert_eq!(good.contents.as_ref().unwrap().prefect.flows.len(), 1);

    let failed = |name: &str, needle: &str| {
        let img = image(&inv, &format!("bad/{name}:1"));
        assert_eq!(img.status, Status::Failed, "{name}: {}", problems(img));
        assert!(img.contents.is_none());
        let text = problems(img);
        assert!(text.contains(needle), "{name}: want {needle:?} in\n{text}");
        // the error names the layer at fault: the image's second layer
        let bad_layer = &img.layers[1].diff_id;
        assert!(
            img.errors
                .iter()
                .any(|p| p.layer.as_deref() == Some(bad_layer.as_str())),
            "{name}: {text}"
        );
    };
    failed("truncated-layer", "corrupt or truncated");
    failed("digest-mismatch", "layer digest mismatch");
    failed("missing-blob", "cannot open layer blob");
    failed("wrong-diff-id", "layer diff_id mismatch");
    failed(
        "escaping-path",
        "\"../../etc/passwd\" escapes the image root",
    );
    failed("absolute-path", "\"/etc/shadow\" escapes the image root");
    failed("bomb", "decompression bomb");

    let partial = |name: &str, path: &str, needle: &str| {
        let img = image(&inv, &format!("bad/{name}:1"));
        assert_eq!(img.status, Status::Partial, "{name}: {}", problems(img));
        let p = img
            .errors
            .iter()
            .find(|p| p.path.as_deref() == Some(path))
            .unwrap_or_else(|| panic!("{name}: no problem at {path}:\n{}", problems(img)));
        assert!(p.message.contains(needle), "{name}: {}", p.message);
        assert_eq!(p.layer.as_deref(), Some(img.layers[1].diff_id.as_str()));
        img.contents.as_ref().expect("the rest was analysed")
    };
    // two dist-info of one distribution side by side: both named, neither kept
    let twin = image(&inv, "bad/twin-dist-info:1");
    assert_eq!(twin.status, Status::Partial, "{}", problems(twin));
    assert!(
        problems(twin).contains(
            "2 metadata directories of requests side by side (requests 2.28.0, requests 2.31.0)"
        ),
        "{}",
        problems(twin)
    );
    let names: Vec<&str> = twin
        .contents
        .as_ref()
        .unwrap()
        .python
        .distributions
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert!(
        !names.contains(&"requests") && names.contains(&"idna"),
        "{names:?}"
    );
    // a METADATA hard-linked to a file in a lower layer: read through the link, once
    let linked = image(&inv, "bad/hardlink-metadata:1");
    assert_eq!(linked.status, Status::Ok, "{}", problems(linked));
    let dists = &linked.contents.as_ref().unwrap().python.distributions;
    let d = dists
        .iter()
        .find(|d| d.name == "linked")
        .expect("kept through the link");
    assert_eq!(
        (d.version.as_str(), d.location.as_str()),
        ("1.0", "/usr/local/lib/python3.11/site-packages")
    );
    assert_eq!(
        dists.iter().filter(|d| d.name == "linked").count(),
        1,
        "the target is no distribution"
    );
    // a METADATA hard-linked to nothing: named, the rest of the image analysed
    let ghost = image(&inv, "bad/hardlink-nowhere:1");
    assert_eq!(ghost.status, Status::Partial, "{}", problems(ghost));
    assert!(
        problems(ghost).contains("/usr/local/lib/python3.11/site-packages/ghost-1.0.dist-info/METADATA | it is a hard link to /opt/gone, which no layer at or below it holds"),
        "{}",
        problems(ghost)
    );
    // a 60 MB METADATA: its header block is read, the long description is not
    let huge = image(&inv, "bad/huge-metadata:1");
    assert_eq!(huge.status, Status::Ok, "{}", problems(huge));
    let dists = &huge.contents.as_ref().unwrap().python.distributions;
    let d = dists.iter().find(|d| d.name == "huge").expect("kept");
    assert_eq!(d.version, "1.0");
    assert_eq!(d.requires_dist, ["six>=1.5"]);
    partial(
        "bad-pickles",
        "/opt/prefect/flows/truncated.prefect",
        "truncated",
    );
    partial(
        "bad-pickles",
        "/opt/prefect/flows/bad-base64.prefect",
        "not valid base64",
    );
    partial(
        "bad-pickles",
        "/opt/prefect/flows/garbage.prefect",
        "unknown pickle opcode",
    );
    partial(
        "bad-pickles",
        "/usr/local/lib/python3.11/site-packages/noversion-1.0.dist-info/METADATA",
        "no Version field",
    );

    // without --verify-diff-ids a compressed layer's diff_id is the config's claim,
    // and the inventory says so
    let default_path = tmp.path().join("default.json");
    ok(&[
        "scan",
        "oci-dir",
        p(&oci),
        "--no-cache",
        "-o",
        p(&default_path),
        "--expansion-floor-bytes",
        "8388608",
    ]);
    let default = read_inventory(&default_path);
    let claimed = image(&default, "bad/wrong-diff-id:1");
    assert_eq!(claimed.status, Status::Ok);
    assert!(!claimed.layers[1].diff_id_verified);
    let plain = image(&default, "bad/digest-mismatch:1");
    assert_eq!(
        plain.status,
        Status::Failed,
        "the stored digest is always checked"
    );
    assert!(
        image(&inv, "bad/wrong-diff-id:1").errors[0]
            .message
            .contains("diff_id mismatch")
    );

    let odd = image(&inv, "bad/non-utf8-names:1");
    assert_eq!(odd.status, Status::Ok, "{}", problems(odd));
    let d = &odd.contents.as_ref().unwrap().python.distributions;
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].location, "/usr/local/lib/python3.11/site-packages",
        "the odd byte is in the dist-info name only"
    );

    // the summary on stderr names each failed image
    let log = String::from_utf8_lossy(&out.stderr);
    for name in ["truncated-layer", "bomb", "escaping-path", "missing-blob"] {
        assert!(
            log.contains(&format!("FAILED  bad/{name}:1")),
            "{name} in\n{log}"
        );
    }
}

#[test]
fn broken_archives_and_layouts_are_named_in_the_errors() {
    let tmp = tempfile::tempdir().unwrap();
    // a docker save cut in half
    let tar = tmp.path().join("save.tar");
    build_fixtures(&[], &["--archive", p(&tar)], &["team-a-flow-a"]);
    let bytes = std::fs::read(&tar).unwrap();
    let cut = tmp.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    // not an archive at all
    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar file at all, not even close").unwrap();
    let out = tmp.path().join("inv.json");
    let args = [
        "scan",
        "archive",
        p(&cut),
        p(&junk),
        p(&tar),
        "--no-cache",
        "-o",
        p(&out),
    ];
    // what could be read is written, and the run says it is incomplete: exit 1
    let o = unsprawl(&args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("incomplete: 2 source problems"));
    let o = unsprawl(&[&args[..], &["--allow-partial"]].concat());
    assert_eq!(
        o.status.code(),
        Some(0),
        "--allow-partial: the old behaviour"
    );
    let inv = read_inventory(&out);
    assert_eq!(inv.images.len(), 1, "the intact archive is still scanned");
    assert_eq!(inv.images[0].status, Status::Ok);
    let paths: Vec<&str> = inv
        .errors
        .iter()
        .filter_map(|e| e.path.as_deref())
        .collect();
    assert!(paths.contains(&p(&cut)), "{:?}", inv.errors);
    assert!(paths.contains(&p(&junk)), "{:?}", inv.errors);

    // a directory that is not an OCI layout, and a layout with a broken index.json
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(
        broken.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(broken.join("index.json"), "{ not json").unwrap();
    let out2 = tmp.path().join("inv2.json");
    // nothing could be read: exit 2, nothing written, each source named
    let o = unsprawl(&[
        "scan",
        "oci-dir",
        p(&empty),
        p(&broken),
        "--no-cache",
        "-o",
        p(&out2),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nothing was scanned") && err.contains(p(&empty)) && err.contains(p(&broken)),
        "{err}"
    );
    assert!(!out2.exists());
    let o = unsprawl(&[
        "scan",
        "oci-dir",
        p(&empty),
        p(&broken),
        "--no-cache",
        "-o",
        p(&out2),
        "--strict",
        "--allow-partial",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let inv = read_inventory(&out2);
    let msgs: Vec<String> = inv
        .errors
        .iter()
        .map(|e| format!("{:?}: {}", e.path, e.message))
        .collect();
    assert!(
        msgs.iter().any(|m| m.contains("no oci-layout file")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("index.json is not a valid OCI index")),
        "{msgs:?}"
    );
}

#[test]
fn unusable_arguments_exit_2_with_a_message() {
    let o = unsprawl(&[
        "scan",
        "oci-dir",
        "/nonexistent/dir",
        "-o",
        "/proc/forbidden/inv.json",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error:"), "{err}");
    let o = unsprawl(&["scan"]);
    assert_eq!(o.status.code(), Some(2), "clap usage errors exit 2 too");

    // credentials in the registry argument are refused before anything is sent, and
    // the password is never echoed
    for arg in [
        "ci:s3cr3t-pw@127.0.0.1:1",
        "ci:s3cr3t-pw@127.0.0.1:1/team/app:1",
    ] {
        let o = unsprawl(&[
            "scan",
            "registry",
            arg,
            "--plain-http",
            "-o",
            "/proc/forbidden/x.json",
        ]);
        assert_eq!(o.status.code(), Some(2), "{arg}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("carries credentials") && err.contains("--password-stdin"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t-pw"), "{err}");
    }

    // an output that is a symlink or a FIFO is refused, and what it points to is kept
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    build_fixtures(&[], &["--oci", p(&oci)], &["debian-bookworm"]);
    let precious = tmp.path().join("precious.txt");
    std::fs::write(&precious, "keep me").unwrap();
    let link = tmp.path().join("inventory.json");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    let fifo = tmp.path().join("fifo.json");
    mkfifo(&fifo);
    for target in [&link, &fifo] {
        let o = unsprawl(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(target)]);
        assert_eq!(o.status.code(), Some(2), "{}", p(target));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("is not a regular file"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// `migrate` names what is wrong and writes nothing: a file that is no plan, a flows
/// repository that is no git checkout, a repository URL carrying a password, an apply
/// with nothing to write to, a detached HEAD with nothing naming a reference.
#[test]
fn migrate_refuses_bad_input_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = tmp.path().join("demo");
    ok(&["demo", "-o", p(&demo)]);
    let (plan, repo) = (demo.join("plan.json"), demo.join("flows-repo"));
    let out = tmp.path().join("m");
    let migrate = |extra: &[&str]| {
        let mut args = vec!["migrate", p(&plan), "--flows-repo", p(&repo), "-o", p(&out)];
        args.extend(extra);
        let o = common::git_repo::clean_command(&args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let url = ["--repo-url", "https://git.example.com/platform/flows.git"];
    let export = ["--export", "fixtures/prefect1/export.graphql.json"];

    let inventory = demo.join("inventory.json");
    let mut args = vec!["migrate", p(&inventory), "--flows-repo", p(&repo)];
    args.extend(url);
    let o = unsprawl(&args);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("inventory.json") && err.contains("unsprawl/plan/v2"),
        "{err}"
    );

    let (code, err) = migrate(&["--repo-url", "https://bot:hunter2@git.example.com/p/f.git"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("must not carry credentials") && !err.contains("hunter2"),
        "{err}"
    );

    let (code, err) = migrate(&["--repo-host", "https://git.example.com", "--repo", "p/f"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("bare host"), "{err}");

    let mut args = url.to_vec();
    args.extend(export);
    args.push("--apply");
    let (code, err) = migrate(&args);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--apply needs a server"), "{err}");
    assert!(!out.exists(), "nothing written when refused");

    let (code, err) = migrate(&[&url[..], &export[..], &["--ref-from", "tag=nope"]].concat());
    assert_eq!(code, Some(2));
    assert!(err.contains("\"nope\""), "{err}");

    let not_git = tmp.path().join("plain");
    std::fs::create_dir_all(&not_git).unwrap();
    let mut args = vec!["migrate", p(&plan), "--flows-repo", p(&not_git)];
    args.extend(url);
    let o = unsprawl(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not in a git repository"));

    assert!(!out.exists(), "nothing written when refused");

    // the demo's repository has one commit; detach HEAD on it: no tag, no variable
    let head = std::fs::read_to_string(repo.join(".git/HEAD")).unwrap();
    let branch = head.trim().trim_start_matches("ref: ");
    let id = std::fs::read_to_string(repo.join(".git").join(branch)).unwrap();
    std::fs::write(repo.join(".git/HEAD"), id).unwrap();
    let (code, err) = migrate(&[&url[..], &export[..]].concat());
    assert_eq!(code, Some(2));
    assert!(
        err.contains("detached") && err.contains("--ref-from"),
        "{err}"
    );
    assert!(
        !out.join("migration.json").exists(),
        "nothing written on refusal"
    );
    // and with the reference named, the dry run goes through (exit 1: three refused)
    let built = demo.join("runtime-images.oci");
    let (code, err) = migrate(
        &[
            &url[..],
            &export[..],
            &["--ref-from", "branch=main", "--runtime-images", p(&built)],
        ]
        .concat(),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("1 ready, 3 refused"), "{err}");

    // its own per-flow folder is replaced on the next run; a folder of the user's is not
    let again = [
        &url[..],
        &export[..],
        &["--ref-from", "branch=main", "--runtime-images", p(&built)],
    ]
    .concat();
    assert_eq!(migrate(&again).0, Some(1));
    std::fs::remove_dir_all(out.join("prefect1")).unwrap();
    std::fs::create_dir_all(out.join("prefect1")).unwrap();
    std::fs::write(out.join("prefect1/mine.txt"), "keep me").unwrap();
    let (code, err) = migrate(&again);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("was not written by unsprawl"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("prefect1/mine.txt")).unwrap(),
        "keep me"
    );
}

/// A scan killed while it unpacks a compressed archive (SIGKILL: no destructor runs)
/// leaves its temporary file under the cache, named after its process; the next run
/// removes it. The archive comes through a FIFO held open, so the kill lands while the
/// file is being written, every time.
#[test]
fn a_killed_scan_leaves_no_temporary_file_behind_for_long() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("save.tar");
    build_fixtures(&[], &["--archive", p(&tar)], &["team-a-flow-a"]);
    let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    gz.write_all(&std::fs::read(&tar).unwrap()).unwrap();
    let gz = gz.finish().unwrap();
    let fifo = tmp.path().join("save.tar.gz");
    mkfifo(&fifo);
    let cache = tmp.path().join("cache");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_unsprawl"))
        .args(["scan", "archive", p(&fifo), "--cache-dir", p(&cache), "-o"])
        .arg(tmp.path().join("inv.json"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // half the archive, and the FIFO kept open: the unpacking waits for the rest
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(&gz[..gz.len() / 2]).unwrap();
    let scratch = cache.join("tmp");
    let prefix = format!("unsprawl-{}-archive-", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let left = loop {
        let found = std::fs::read_dir(&scratch).ok().and_then(|d| {
            d.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&prefix)
            })
        });
        if let Some(f) = found {
            break f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no temporary file appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    drop(writer);
    assert!(left.exists(), "SIGKILL ran no destructor");
    // the next run (of anything that unpacks) sweeps it
    let o = unsprawl(&[
        "scan",
        "archive",
        p(&tar),
        "--cache-dir",
        p(&cache),
        "-o",
        p(&tmp.path().join("inv2.json")),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!left.exists(), "{} is still there", left.display());
}

/// Manifests that are not image manifests, in a layout beside a good image: a Docker
/// schema 1 manifest is named as legacy (not "missing field `config`"), and one of a
/// media type no spec knows is refused naming the type, though its body would parse as an
/// image manifest; the good image is scanned.
#[test]
fn schema1_and_unknown_manifest_types_are_named_not_misread() {
    use sha2::Digest;
    let tmp = tempfile::tempdir().unwrap();
    let oci = tmp.path().join("oci");
    build_fixtures(&[], &["--oci", p(&oci)], &["team-a-flow-a"]);
    let index_path = oci.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    let good = index["manifests"][0].clone();
    let good_manifest = std::fs::read(
        oci.join("blobs/sha256").join(
            good["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:"),
        ),
    )
    .unwrap();
    let mut add = |bytes: &[u8], media: &str, name: &str| {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(oci.join("blobs/sha256").join(&hex), bytes).unwrap();
        index["manifests"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": media,
                "digest": format!("sha256:{hex}"),
                "size": bytes.len(),
                "annotations": {"org.opencontainers.image.ref.name": name},
            }));
        format!("sha256:{hex}")
    };
    let schema1 = serde_json::json!({
        "schemaVersion": 1, "name": "team/old", "tag": "1", "architecture": "amd64",
        "fsLayers": [{"blobSum": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}],
        "history": [{"v1Compatibility": "{}"}],
    })
    .to_string();
    let old = add(
        schema1.as_bytes(),
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "registry.local:5000/team/old:1",
    );
    let odd = add(
        &good_manifest,
        "application/vnd.example.thing.v1+json",
        "registry.local:5000/team/odd:1",
    );
    std::fs::write(&index_path, index.to_string()).unwrap();
    let out = tmp.path().join("inv.json");
    let o = unsprawl(&[
        "scan",
        "oci-dir",
        p(&oci),
        "--no-cache",
        "--allow-partial",
        "-o",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inv = read_inventory(&out);
    let errors: Vec<String> = inv.errors.iter().map(|e| e.message.clone()).collect();
    assert!(
        errors.iter().any(|e| e == &format!(
            "manifest {old} is Docker schema 1 (legacy): not analysed (re-push the image to convert it)"
        )),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e == &format!(
            "manifest {odd} has media type application/vnd.example.thing.v1+json, which is neither an image manifest nor an index: not analysed"
        )),
        "{errors:?}"
    );
    assert_eq!(inv.images.len(), 1, "only the good image");
    assert_eq!(inv.images[0].status, Status::Ok);
}

/// Outputs never go through what someone planted: a symlink where `report.md` goes is
/// refused (its target untouched), a FIFO as the inventory is refused before the scan
/// starts, and a `runtime-images/` folder the user made is never replaced.
#[test]
fn planted_symlinks_fifos_and_foreign_folders_are_never_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let oci = d.join("oci");
    build_fixtures(&[], &["--oci", p(&oci)], &["team-a-flow-a"]);
    let inv = d.join("inv.json");
    ok(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&inv)]);
    let victim = d.join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let report = d.join("report");
    std::fs::create_dir_all(&report).unwrap();
    std::os::unix::fs::symlink(&victim, report.join("report.md")).unwrap();
    let o = unsprawl(&["report", p(&inv), "-o", p(&report)]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("report.md is not a regular file"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");

    let fifo = d.join("inventory.fifo");
    mkfifo(&fifo);
    let o = unsprawl(&["scan", "oci-dir", p(&oci), "--no-cache", "-o", p(&fifo)]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success() && err.contains("is not a regular file"),
        "{err}"
    );
    assert!(
        !err.contains("distinct layers"),
        "refused before scanning: {err}"
    );

    let plan_dir = d.join("plan");
    std::fs::create_dir_all(plan_dir.join("runtime-images")).unwrap();
    std::fs::write(plan_dir.join("runtime-images/mine.txt"), "mine").unwrap();
    let o = unsprawl(&[
        "plan",
        p(&inv),
        "--image-registry",
        "registry.local:5000/p",
        "-o",
        p(&plan_dir.join("plan.json")),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success() && err.contains("was not written by unsprawl"),
        "{err}"
    );
    assert!(plan_dir.join("runtime-images/mine.txt").exists());
}

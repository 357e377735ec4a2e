//! The command line: thin commands over the library stages. Exit codes: 0 done;
//! 1 done but `--strict` found problems; 2 error (nothing written).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod audit;
mod build;
mod demo;
mod migrate;
mod plan;
mod report;
pub mod say;

use crate::fixture;
use crate::flows::registrations::{RegistrationSource, add_flows};
use crate::inventory::{Inventory, Status};
use crate::scan::{self, Input, ScanOptions, ScanStats, layer::Limits, progress::ProgressMode};

/// `--version`: the release and the layer analyser's version (what the layer cache and the
/// inventory's facts depend on; a unit test keeps it equal to `ANALYSER_VERSION`).
const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (layer analyser v4)");

#[derive(Parser)]
#[command(
    name = "unsprawl",
    version = LONG_VERSION,
    about = "From hundreds of per-flow Prefect images to a few shared runtime images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Say only errors on stderr: the documents and the exit code are the result.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Every line of every list and each flow's details; -vv adds tracing events
    /// (requests, retries, cache hits), as RUST_LOG=unsprawl=debug does.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Learn what images contain and write the inventory document.
    Scan {
        #[command(subcommand)]
        source: ScanSource,
    },
    /// Plan the fewest shared runtime images for the inventory's flows, and write each
    /// image's Dockerfile and pinned requirements.
    Plan(plan::PlanArgs),
    /// Build the plan's runtime images from the scanned images' own files.
    Build(Box<build::BuildArgs>),
    /// Audit report of image sprawl (JSON, Markdown, HTML, CSV), with the plan's effect
    /// and the trend since the last report. Exit 1 when a `--fail-on` rule is broken.
    Report(report::ReportArgs),
    /// scan → link flows → plan → report in one run (the periodic CI job). Exit 1 when a
    /// `--fail-on` rule is broken, 2 on error.
    Audit(Box<audit::AuditArgs>),
    /// Move every planned flow to Git storage (Prefect 1) or a git_clone pull step
    /// (Prefect 3) on its runtime image: verified, dry run unless --apply, journaled.
    /// Exit 1 when some flows were refused.
    Migrate(Box<migrate::MigrateArgs>),
    /// Restore every flow a migration journal changed (dry run unless --apply).
    Rollback(migrate::RollbackArgs),
    /// Run the whole pipeline (as far as it exists) on the bundled fixture images.
    Demo {
        /// Where the demo writes its images and inventory.
        #[arg(short, long, default_value = "unsprawl-demo")]
        output: PathBuf,
    },
    /// Build fixture images from specs (for tests and benchmarks).
    #[command(hide = true)]
    Fixtures(FixtureArgs),
    /// Print a shell completion script (`unsprawl completions bash > /etc/bash_completion.d/unsprawl`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ScanSource {
    /// OCI image layout directories (`oci-layout`, `index.json`, `blobs/`).
    OciDir {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        opts: ScanArgs,
    },
    /// `docker save` tarballs (classic, Docker 25+ OCI, containerd; optionally gzip/zstd).
    Archive {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        opts: ScanArgs,
    },
    /// Prefect 1 flow registrations: link each flow to its image in an inventory and
    /// derive what it needs. Reads a saved GraphQL response or a `prefect build` file.
    #[command(group(clap::ArgGroup::new("from").required(true).args(["export", "api"])))]
    Prefect1 {
        /// A saved `{"data": {"flow": [...]}}` response or `{"version": 1, "flows": [...]}`.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The GraphQL endpoint of Prefect Server (`http://host:4200/graphql`) or Cloud
        /// (`https://api.prefect.io`).
        #[arg(long)]
        api: Option<String>,
        /// Environment variable holding the API key (never pass keys on the command line).
        #[arg(long, default_value = "PREFECT__CLOUD__API_KEY")]
        api_key_env: String,
        /// Only flows of this project.
        #[arg(long)]
        project: Option<String>,
        /// Flows per GraphQL page.
        #[arg(long, default_value_t = 100, hide = true)]
        page_size: usize,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Prefect 2/3 deployments, over REST or from `prefect.yaml` files: link each to its
    /// image in an inventory.
    Prefect {
        /// The server's API URL (`http://host:4200/api`, or a Prefect Cloud workspace URL)
        /// [default: $PREFECT_API_URL, as the `prefect` CLI reads it, unless --prefect-yaml].
        #[arg(long)]
        api: Option<String>,
        /// A `prefect.yaml` whose deployments to read (repeatable).
        #[arg(long)]
        prefect_yaml: Vec<PathBuf>,
        /// Environment variable holding the API key, if the server needs one.
        #[arg(long, default_value = "PREFECT_API_KEY")]
        api_key_env: String,
        /// Deployments per page (at most 200).
        #[arg(long, default_value_t = 200, hide = true)]
        page_size: usize,
        #[command(flatten)]
        link: LinkArgs,
    },
    /// Registries (`HOST[:PORT]`: every repository in its catalog) or single images
    /// (`HOST[:PORT]/REPO:TAG`, `…@sha256:…`).
    Registry {
        #[arg(required = true, value_name = "HOST|REFERENCE")]
        targets: Vec<String>,
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        opts: ScanArgs,
    },
    /// A local Docker engine's images (Engine API), optionally with registries, OCI
    /// layouts and archives in the same run: the same image found in several places is
    /// one image whose `locations` list every copy.
    Engine {
        /// `unix:///path/docker.sock` or `tcp://host:2375` (default: `DOCKER_HOST`, else
        /// the default socket, as the docker CLI does).
        #[arg(long)]
        host: Option<String>,
        /// Only images matching these `docker image ls` filters (`reference=team/*`).
        #[arg(long = "filter", value_name = "KEY=VALUE")]
        filters: Vec<String>,
        /// Also scan these registries or images (as `scan registry` takes them).
        #[arg(long = "with-registry", value_name = "HOST|REFERENCE")]
        with_registry: Vec<String>,
        /// Also scan these OCI layouts.
        #[arg(long = "with-oci-dir", value_name = "PATH")]
        with_oci_dir: Vec<PathBuf>,
        /// Also scan these docker-save archives.
        #[arg(long = "with-archive", value_name = "FILE")]
        with_archive: Vec<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
        #[command(flatten)]
        opts: ScanArgs,
    },
}

/// Where flows are linked to images, and where the result goes.
#[derive(Args, Clone)]
struct LinkArgs {
    /// The image inventory the flows run on (from `scan oci-dir|archive|registry`).
    #[arg(long, required = true)]
    images: PathBuf,
    /// Treat references to registry FROM as references to TO (`FROM=TO`), e.g. when the
    /// registry was scanned under another name than the one flows use.
    #[arg(long = "registry-alias", value_name = "FROM=TO")]
    aliases: Vec<String>,
    /// Inventory file to write (`-` for standard output).
    #[arg(short, long, default_value = "inventory.json")]
    output: PathBuf,
    /// Exit 1 when a flow is dangling or has problems.
    #[arg(long)]
    strict: bool,
    /// A checkout of the flows' git repository: find the file that defines each flow and
    /// add what it imports to the flow's requirement.
    #[arg(long)]
    flows_repo: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct RegistryArgs {
    /// Repositories to scan, by name or glob (`team-*/**`); repeatable. Without it, the
    /// catalog is listed (many hosted registries refuse that: then name them).
    #[arg(long = "repo", value_name = "NAME|GLOB")]
    repos: Vec<String>,
    /// A file with one repository name or glob per line (`#` comments).
    #[arg(long)]
    repos_file: Option<PathBuf>,
    /// Only tags matching this glob.
    #[arg(long)]
    tag_glob: Option<String>,
    /// `os/arch`, or `all` (the default: every platform of a multi-arch index).
    #[arg(long, default_value = "all")]
    platform: String,
    /// Talk HTTP, not HTTPS (loopback and lab registries).
    #[arg(long)]
    plain_http: bool,
    /// Accept any TLS certificate.
    #[arg(long)]
    insecure: bool,
    /// Trust the certificate authorities in this PEM file as well as the system's (a
    /// registry whose certificate a company CA signed).
    #[arg(long, value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Requests in flight to one registry at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Catalog and tag page size (`n=`); default: the registry's.
    #[arg(long, hide = true)]
    page_size: Option<usize>,
    /// Username (else from the auth file, else the Docker config, else anonymous).
    #[arg(long, requires = "password_stdin")]
    username: Option<String>,
    /// A podman/skopeo auth file (containers-auth.json: `auths` by host), read before the
    /// Docker config.
    #[arg(long, env = "REGISTRY_AUTH_FILE", value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Read the password or token from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Tries per request before it fails (connection errors, resets, bodies that broke
    /// off, 429 and 5xx are tried again; a blob resumes where it broke off).
    #[arg(long, default_value_t = crate::net::Policy::default().max_tries, value_parser = clap::value_parser!(u32).range(1..=100))]
    tries: u32,
    /// The longest `Retry-After` waited for; a registry asking for more is waited this long.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    max_retry_wait: std::time::Duration,
    /// A blob body slower than 1 KiB/s over this long is cut and asked for again.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    stall_window: std::time::Duration,
}

#[derive(Args, Clone)]
struct ScanArgs {
    /// Inventory file to write (`-` for standard output).
    #[arg(short, long, default_value = "inventory.json")]
    output: PathBuf,
    /// Layer cache directory (default: the user's cache dir + /unsprawl).
    #[arg(long, env = "UNSPRAWL_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Read every layer again instead of using the cache.
    #[arg(long)]
    no_cache: bool,
    /// Layers analysed at once (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Progress on stderr: `auto` (a bar on a terminal, else nothing), `json` (one line
    /// per layer), `quiet`.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressArg,
    /// Only images created within this long (`30d`, `12h`); older ones are not analysed.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// Leave `scanned_at` empty, for byte-identical output.
    #[arg(long)]
    no_timestamp: bool,
    /// Exit 1 when any image could not be fully analysed.
    #[arg(long)]
    strict: bool,
    /// Exit 0 even when a source could not be read (an unreachable registry, refused
    /// credentials, a missing tag); by default that exits 1 (2 when nothing was read).
    #[arg(long)]
    allow_partial: bool,
    /// Largest metadata file read into memory, in bytes.
    #[arg(long, default_value_t = Limits::default().max_file_bytes)]
    max_file_bytes: u64,
    /// A layer may expand to at most this many times its stored size…
    #[arg(long, default_value_t = Limits::default().max_expansion_ratio)]
    max_expansion_ratio: u64,
    /// …or this many bytes, whichever is larger.
    #[arg(long, default_value_t = Limits::default().ratio_floor_bytes)]
    expansion_floor_bytes: u64,
    /// Also hash every compressed layer's content and check it against the config's
    /// diff_id (a second SHA-256 pass; the stored digest is always checked).
    #[arg(long)]
    verify_diff_ids: bool,
    /// Never past this many uncompressed bytes per layer.
    #[arg(long, default_value_t = Limits::default().max_layer_bytes)]
    max_layer_bytes: u64,
}

#[derive(Args)]
struct FixtureArgs {
    /// Spec directories (later ones may refer to earlier ones with `from`).
    #[arg(long = "specs", required = true)]
    specs: Vec<PathBuf>,
    /// The `fixtures/` directory that `copy = "…"` paths are relative to.
    #[arg(long)]
    files: PathBuf,
    /// Write an OCI image layout here.
    #[arg(long)]
    oci: Option<PathBuf>,
    /// Write a docker-save archive here.
    #[arg(long)]
    archive: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "classic")]
    shape: Shape,
    /// Push to this registry (`host:port`) over plain HTTP, anonymously or with
    /// `UNSPRAWL_PUSH_USER` / `UNSPRAWL_PUSH_PASSWORD`.
    #[arg(long)]
    push: Option<String>,
    /// Build only these specs (default: every spec with tags).
    names: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProgressArg {
    Auto,
    Json,
    Quiet,
}

impl From<ProgressArg> for ProgressMode {
    fn from(p: ProgressArg) -> Self {
        match p {
            ProgressArg::Auto => ProgressMode::Auto,
            ProgressArg::Json => ProgressMode::Json,
            ProgressArg::Quiet => ProgressMode::Quiet,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Shape {
    Classic,
    Oci,
    Containerd,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    say::set(cli.quiet, cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Scan {
            source:
                ScanSource::Prefect1 {
                    export,
                    api,
                    api_key_env,
                    project,
                    page_size,
                    link,
                },
        } => {
            let from = match (export, api) {
                (Some(e), _) => RegistrationSource::Export(e),
                (None, Some(api)) => RegistrationSource::Api {
                    key: std::env::var(&api_key_env).ok().filter(|k| !k.is_empty()),
                    api,
                    project,
                    page_size: page_size.max(1),
                },
                (None, None) => unreachable!("clap requires one"),
            };
            scan_flows(&from, &link)
        }
        Command::Scan {
            source:
                ScanSource::Prefect {
                    api,
                    prefect_yaml,
                    api_key_env,
                    page_size,
                    link,
                },
        } => {
            // Prefect's own setting names the server when the command line names no source
            let api = api.or_else(|| {
                prefect_yaml
                    .is_empty()
                    .then(|| std::env::var("PREFECT_API_URL").ok())
                    .flatten()
                    .filter(|u| !u.is_empty())
            });
            if api.is_none() && prefect_yaml.is_empty() {
                anyhow::bail!(
                    "scan prefect needs a source: --api URL (or $PREFECT_API_URL) and/or --prefect-yaml FILE"
                );
            }
            let from = RegistrationSource::Prefect3 {
                api: api.map(|api| {
                    (
                        api,
                        std::env::var(&api_key_env).ok().filter(|k| !k.is_empty()),
                    )
                }),
                yaml: prefect_yaml,
                page_size,
            };
            scan_flows(&from, &link)
        }
        Command::Scan { source } => {
            let (inputs, args) = match source {
                ScanSource::OciDir { paths, opts } => (
                    paths.into_iter().map(Input::OciDir).collect::<Vec<_>>(),
                    opts,
                ),
                ScanSource::Archive { files, opts } => {
                    (files.into_iter().map(Input::Archive).collect(), opts)
                }
                ScanSource::Registry {
                    targets,
                    registry,
                    opts,
                } => (registry_inputs(&targets, &registry)?, opts),
                ScanSource::Engine {
                    host,
                    filters,
                    with_registry,
                    with_oci_dir,
                    with_archive,
                    registry,
                    opts,
                } => {
                    let engine = crate::scan::source::engine::EngineInput { host, filters };
                    // an engine that cannot be reached is an error, not an empty inventory
                    crate::scan::source::engine::probe(&engine).map_err(anyhow::Error::msg)?;
                    let mut inputs = vec![Input::Engine(engine)];
                    if !with_registry.is_empty() {
                        inputs.extend(registry_inputs(&with_registry, &registry)?);
                    }
                    inputs.extend(with_oci_dir.into_iter().map(Input::OciDir));
                    inputs.extend(with_archive.into_iter().map(Input::Archive));
                    (inputs, opts)
                }
                ScanSource::Prefect1 { .. } | ScanSource::Prefect { .. } => {
                    unreachable!("handled above")
                }
            };
            run_scan(&inputs, &args)
        }
        Command::Plan(a) => plan::run(&a),
        Command::Build(a) => build::run(&a),
        Command::Report(a) => report::run(&a),
        Command::Audit(a) => audit::run(&a),
        Command::Migrate(a) => migrate::run(&a),
        Command::Rollback(a) => migrate::rollback(&a),
        Command::Demo { output } => demo::run(&output),
        Command::Fixtures(a) => build_fixtures(&a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "unsprawl",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Group targets by host into one input per registry.
fn registry_inputs(targets: &[String], a: &RegistryArgs) -> Result<Vec<Input>> {
    use crate::scan::source::registry::{RegistryInput, auth::Credentials};
    let mut repos = a.repos.clone();
    if let Some(f) = &a.repos_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        repos.extend(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim())
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    let platform = match a.platform.as_str() {
        "all" => None,
        p => {
            let (os, arch) = p.split_once('/').with_context(|| {
                format!("--platform {p:?}: expected os/arch (linux/amd64) or all")
            })?;
            Some((os.to_string(), arch.to_string()))
        }
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_line(&mut s)
            .context("cannot read the password from standard input")?;
        Some(s.trim_end_matches(['\n', '\r']).to_string())
    } else {
        None
    };
    let ca_certs = match &a.ca_file {
        None => Vec::new(),
        Some(f) => {
            let pem = std::fs::read(f)
                .with_context(|| format!("--ca-file {}: cannot read it", f.display()))?;
            match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(c) if !c.is_empty() => c,
                _ => anyhow::bail!(
                    "--ca-file {}: no PEM certificate in it (expected -----BEGIN CERTIFICATE----- blocks)",
                    f.display()
                ),
            }
        }
    };
    let mut by_host: Vec<RegistryInput> = Vec::new();
    for t in targets {
        let target = crate::reference::RegistryTarget::parse(t)?;
        let plain = target.plain_http.unwrap_or(a.plain_http);
        let host = target.host;
        let idx = match by_host.iter().position(|r| r.host == host) {
            Some(i) => i,
            None => {
                let mut r = RegistryInput::new(&host);
                r.repos = repos.clone();
                r.tag_glob = a.tag_glob.clone();
                r.platform = platform.clone();
                r.plain_http = plain;
                r.insecure = a.insecure;
                r.ca_certs = ca_certs.clone();
                r.concurrency = a.concurrency.max(1);
                r.page_size = a.page_size;
                r.retry = crate::net::Policy {
                    max_tries: a.tries,
                    retry_after_cap: a.max_retry_wait,
                    throughput_window: a.stall_window,
                    ..crate::net::Policy::default()
                };
                r.credentials = match (&a.username, &password) {
                    (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.clone())),
                    _ => Credentials::lookup(&host, a.authfile.as_deref())
                        .map_err(anyhow::Error::msg)?,
                };
                by_host.push(r);
                by_host.len() - 1
            }
        };
        if let Some(image) = target.image {
            by_host[idx].references.push(image);
        }
    }
    Ok(by_host
        .into_iter()
        .map(|r| Input::Registry(Box::new(r)))
        .collect())
}

fn scan_options(a: &ScanArgs) -> ScanOptions {
    let cache_root = (!a.no_cache).then(|| {
        a.cache_dir
            .clone()
            .unwrap_or_else(scan::cache::LayerCache::default_root)
    });
    ScanOptions {
        limits: Limits {
            max_file_bytes: a.max_file_bytes,
            max_database_bytes: Limits::default().max_database_bytes.max(a.max_file_bytes),
            max_expansion_ratio: a.max_expansion_ratio,
            ratio_floor_bytes: a.expansion_floor_bytes,
            max_layer_bytes: a.max_layer_bytes,
        },
        temp_dir: scan::scratch::dir(cache_root.as_deref()),
        cache_root,
        jobs: a.jobs,
        verify_diff_ids: a.verify_diff_ids,
        since: a
            .since
            .and_then(|d| std::time::SystemTime::now().checked_sub(d)),
        progress: a.progress.into(),
    }
}

fn run_scan(inputs: &[Input], a: &ScanArgs) -> Result<ExitCode> {
    // before the work: a scan of an hour must not end in "cannot write"
    if a.output != Path::new("-") {
        crate::output::check_file(&a.output)?;
    }
    let (mut inv, stats) = scan::scan(inputs, &scan_options(a));
    if a.no_timestamp {
        inv.scanned_at = None;
    }
    // a scheduled job must not go green on nothing: a source that could not be read is
    // an error, and with nothing read at all no inventory is written
    if !a.allow_partial && !inv.errors.is_empty() && inv.images.is_empty() {
        anyhow::bail!("{}", nothing_scanned(&inv));
    }
    write_json(&a.output, &inv)?;
    print_summary(&inv, &stats, &a.output);
    if !a.allow_partial && !inv.errors.is_empty() {
        eprintln!(
            "incomplete: {} above; the inventory holds what could be read (exit 1; --allow-partial for 0)",
            say::count(inv.errors.len(), "source problem", "source problems")
        );
        return Ok(ExitCode::from(1));
    }
    let clean = inv.errors.is_empty() && inv.images.iter().all(|i| i.status == Status::Ok);
    Ok(if a.strict && !clean {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Write a document atomically (temp file + rename), or to stdout for `-`.
fn write_json<T: serde::Serialize>(path: &Path, doc: &T) -> Result<()> {
    Ok(crate::output::write_json(path, doc)?)
}

/// Every source error with its hint, for a scan that read nothing.
pub(crate) fn nothing_scanned(inv: &Inventory) -> String {
    let errors: Vec<String> = inv
        .errors
        .iter()
        .map(|p| {
            format!(
                "\n  {}: {}{}",
                p.path.as_deref().unwrap_or("-"),
                p.message,
                hint(&p.message)
            )
        })
        .collect();
    format!(
        "nothing was scanned (nothing written; --allow-partial writes an empty inventory):{}",
        errors.concat()
    )
}

/// What usually fixes a source error, by what it says.
fn hint(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("corrupt message")
        || m.contains("invalidcontenttype")
        || m.contains("wrong version number")
    {
        " (hint: is it a plain-HTTP registry? pass --plain-http)"
    } else if m.contains("unknownissuer") || m.contains("unknown issuer") {
        " (hint: this machine does not trust the CA that signed the registry's certificate: pass --ca-file CA.pem, or --insecure to skip verification)"
    } else if m.contains("invalid peer certificate") {
        " (hint: the registry's certificate is not valid for it (expired, or issued for another name): fix the certificate, or pass --insecure to skip verification)"
    } else if m.contains("connection refused")
        || m.contains("cannot reach")
        || m.contains("dns error")
    {
        " (hint: is the registry up and the host:port right? a plain-HTTP registry needs --plain-http)"
    } else if m.contains("credentials") || m.contains("401") || m.contains("unauthorized") {
        " (hint: pass --username USER --password-stdin, or docker login)"
    } else if m.contains("manifest unknown") || m.contains("not found") || m.contains("404") {
        " (hint: check the repository and tag; --allow-partial keeps going without it)"
    } else {
        ""
    }
}

/// A short human summary on stderr; the document itself is the real output.
fn print_summary(inv: &Inventory, stats: &ScanStats, out: &Path) {
    let mut e = say::summary();
    let _ = writeln!(
        e,
        "{} images, {} distinct layers ({} read, {} from cache) → {}",
        stats.images,
        stats.unique_layers,
        stats.layers_read,
        stats.layers_from_cache,
        out.display()
    );
    let mut list = say::List::new(&mut e);
    for img in &inv.images {
        let mut name = img
            .references
            .first()
            .cloned()
            .unwrap_or_else(|| img.id.chars().take(19).collect());
        if !img.platform.os.is_empty()
            && (img.platform.os.as_str(), img.platform.architecture.as_str()) != ("linux", "amd64")
        {
            name.push_str(&format!(
                " [{}/{}]",
                img.platform.os, img.platform.architecture
            ));
        }
        let status = match img.status {
            Status::Ok => "ok",
            Status::Partial => "partial",
            Status::Failed => "FAILED",
        };
        let detail = match &img.contents {
            Some(c) => {
                let os =
                    c.os.as_ref()
                        .and_then(|o| o.pretty_name.clone())
                        .unwrap_or_else(|| "unknown OS".into());
                let py: Vec<String> = c
                    .python
                    .interpreters
                    .iter()
                    .map(|i| i.version.clone().unwrap_or(i.minor.clone()))
                    .collect();
                let flows = c.prefect.flows.len() + c.prefect.flow_sources.len();
                format!(
                    "{os}; python {}; {} distributions; prefect {}; {flows} flow{}",
                    if py.is_empty() {
                        "-".into()
                    } else {
                        py.join(",")
                    },
                    c.python.distributions.len(),
                    if c.prefect.versions.is_empty() {
                        "-".into()
                    } else {
                        c.prefect.versions.join(",")
                    },
                    if flows == 1 { "" } else { "s" },
                )
            }
            None => String::new(),
        };
        let mut lines = vec![format!("  {status:<7} {name}  {detail}")];
        for p in &img.errors {
            lines.push(format!(
                "          {}{}{}",
                p.layer
                    .as_deref()
                    .map(|l| format!("layer {}: ", &l[..l.len().min(19)]))
                    .unwrap_or_default(),
                p.path
                    .as_deref()
                    .map(|p| format!("{p}: "))
                    .unwrap_or_default(),
                p.message
            ));
        }
        list.entry(&lines);
    }
    list.finish(&out.display().to_string());
    for p in &inv.errors {
        let _ = writeln!(
            e,
            "  error   {}: {}{}",
            p.path.as_deref().unwrap_or("-"),
            p.message,
            hint(&p.message)
        );
    }
    if !stats.registry_requests.is_empty() {
        let reqs: Vec<String> = stats
            .registry_requests
            .iter()
            .map(|(m, n)| format!("{n} {m}"))
            .collect();
        let _ = writeln!(
            e,
            "registry requests besides blob downloads: {}",
            reqs.join(", ")
        );
    }
    for (host, rl) in &stats.rate_limits {
        let _ = writeln!(
            e,
            "rate limit of {host}: {} (remaining {})",
            rl.limit.as_deref().unwrap_or("?"),
            rl.remaining.as_deref().unwrap_or("?")
        );
    }
}

fn scan_flows(from: &RegistrationSource, link: &LinkArgs) -> Result<ExitCode> {
    let (images, output, strict) = (&link.images, &link.output, link.strict);
    let aliases = parse_aliases(&link.aliases)?;
    let mut inv = Inventory::read(images)?;
    let dir = crate::provenance::folder_of(output);
    let mut inputs = vec![crate::provenance::record("images", images, &dir)?];
    if let RegistrationSource::Export(export) = from {
        inputs.push(crate::provenance::record("export", export, &dir)?);
    }
    // an inventory made from this one keeps what that was made from
    inv.inputs
        .retain(|i| i.role != "images" && i.role != "export");
    inv.inputs.splice(0..0, inputs);
    add_flows(&mut inv, from, &aliases, link.flows_repo.as_deref())?;
    write_json(output, &inv)?;
    print_flow_summary(&inv, output);
    let links = inv.flow_links.clone().unwrap_or_default();
    let clean = links.dangling.is_empty()
        && inv.flows.iter().all(|f| f.problems.is_empty())
        && inv.errors.is_empty();
    Ok(if strict && !clean {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn parse_aliases(aliases: &[String]) -> Result<Vec<(String, String)>> {
    aliases
        .iter()
        .map(|a| {
            a.split_once('=')
                .map(|(f, t)| {
                    (
                        f.trim_end_matches('/').to_string(),
                        t.trim_end_matches('/').to_string(),
                    )
                })
                .with_context(|| format!("--registry-alias {a:?}: expected FROM=TO"))
        })
        .collect()
}

fn print_flow_summary(inv: &Inventory, out: &Path) {
    let mut e = say::summary();
    let links = inv.flow_links.clone().unwrap_or_default();
    let linked = inv
        .flows
        .iter()
        .filter(|f| f.link.status == crate::inventory::LinkStatus::Linked && f.state.is_live())
        .count();
    let not_live = if links.not_live.is_empty() {
        String::new()
    } else {
        format!(
            "; {} not live (archived or superseded, never planned), {} only they use",
            links.not_live.len(),
            say::count(links.archived_only.len(), "image", "images")
        )
    };
    let migrated = if links.already_migrated.is_empty() {
        String::new()
    } else {
        format!(", {} already migrated", links.already_migrated.len())
    };
    let _ = writeln!(
        e,
        "{}: {linked} linked, {} dangling, {} without an image{migrated}; {}, {}{not_live} → {}",
        say::count(inv.flows.len(), "flow", "flows"),
        links.dangling.len(),
        links.no_image.len(),
        say::count(links.orphans.len(), "orphan image", "orphan images"),
        say::count(links.shared.len(), "shared image", "shared images"),
        out.display()
    );
    let mut list = say::List::new(&mut e);
    for f in &inv.flows {
        let needs = f
            .requirement
            .as_ref()
            .map(|r| {
                format!(
                    "python {}; {} installed beyond the base, {} for its imports{}",
                    r.python.as_deref().unwrap_or("?"),
                    r.installed.len(),
                    r.imports.len(),
                    if r.unresolved_modules.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; not from any distribution: {}",
                            r.unresolved_modules.join(", ")
                        )
                    }
                )
            })
            .unwrap_or_default();
        let line = format!(
            "  {:<9} {} ({}) → {}  {needs}",
            if f.state.is_live() {
                f.link.status.as_str()
            } else {
                f.state.as_str()
            },
            f.title(),
            f.project.as_deref().unwrap_or(f.system.as_str()),
            f.image_reference.as_deref().unwrap_or("-")
        );
        let mut lines = vec![line.trim_end().to_string()];
        for p in &f.problems {
            lines.push(format!("            {}", p.message));
        }
        if !f.link.same_name_elsewhere.is_empty() {
            lines.push(format!(
                "            same repository and tag scanned as {} (use --registry-alias to link)",
                f.link.same_name_elsewhere.join(", ")
            ));
        }
        list.entry(&lines);
    }
    list.finish(&out.display().to_string());
    for p in &inv.errors {
        let _ = writeln!(
            e,
            "  error     {}: {}",
            p.path.as_deref().unwrap_or("-"),
            p.message
        );
    }
}

fn build_fixtures(a: &FixtureArgs) -> Result<ExitCode> {
    let dirs: Vec<&Path> = a.specs.iter().map(PathBuf::as_path).collect();
    let specs = fixture::load_specs(&dirs)?;
    let files = fixture::DirFiles(a.files.clone());
    let corpus = fixture::Corpus::new(specs, &files);
    let images = if a.names.is_empty() {
        corpus.build_all()?
    } else {
        a.names
            .iter()
            .map(|n| corpus.build(n))
            .collect::<Result<_>>()?
    };
    if let Some(dir) = &a.oci {
        fixture::write_oci_layout(dir, &images)?;
    }
    if let Some(file) = &a.archive {
        let shape = match a.shape {
            Shape::Classic => fixture::ArchiveShape::Classic,
            Shape::Oci => fixture::ArchiveShape::Oci,
            Shape::Containerd => fixture::ArchiveShape::Containerd,
        };
        fixture::write_docker_archive(file, &images, shape)?;
    }
    if let Some(host) = &a.push {
        let auth = match (
            std::env::var("UNSPRAWL_PUSH_USER"),
            std::env::var("UNSPRAWL_PUSH_PASSWORD"),
        ) {
            (Ok(u), Ok(p)) => oci_client::secrets::RegistryAuth::Basic(u, p),
            _ => oci_client::secrets::RegistryAuth::Anonymous,
        };
        fixture::push::push(&images, host, true, auth)?;
    }
    say::say!("built {} images", images.len());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_names_the_analyser_this_build_has() {
        assert!(
            super::LONG_VERSION.ends_with(&format!(
                "(layer analyser v{})",
                crate::scan::ANALYSER_VERSION
            )),
            "{} says another analyser than ANALYSER_VERSION",
            super::LONG_VERSION
        );
    }
}

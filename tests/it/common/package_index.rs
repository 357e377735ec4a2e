//! A real package index on loopback: Python's own `http.server` serving a PEP 503
//! "simple" tree (`simple/<project>/index.html` linking to the files with their
//! `#sha256=` fragments), the way a static mirror is laid out.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

pub struct PackageIndex {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl PackageIndex {
    /// Serve `wheels` (paths of wheel files) as one project each.
    pub fn serve(wheels: &[&Path]) -> PackageIndex {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("files")).unwrap();
        for w in wheels {
            let file = w.file_name().unwrap().to_str().unwrap();
            let bytes = std::fs::read(w).unwrap();
            std::fs::write(dir.path().join("files").join(file), &bytes).unwrap();
            let project = file
                .split('-')
                .next()
                .unwrap()
                .to_lowercase()
                .replace('_', "-");
            let page = dir.path().join("simple").join(&project);
            std::fs::create_dir_all(&page).unwrap();
            let sha = hex::encode(sha2::Sha256::digest(&bytes));
            std::fs::write(
                page.join("index.html"),
                format!(
                    "<!DOCTYPE html>\n<html><body>\n<a href=\"../../files/{file}#sha256={sha}\">{file}</a>\n</body></html>\n"
                ),
            )
            .unwrap();
        }
        let port = unsprawl_testkit::local_registry::free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs http.server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the package index did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        PackageIndex {
            child,
            url: format!("http://127.0.0.1:{port}/simple"),
            _dir: dir,
        }
    }
}

impl Drop for PackageIndex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

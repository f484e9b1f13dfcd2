//! `primepool serve`: a static file server for the web page, on 127.0.0.1 only.
//!
//! The page's rayon backend needs `SharedArrayBuffer`, which browsers give only to
//! cross-origin isolated pages, so every response carries COOP/COEP (and CORP, so the page's
//! own files pass `require-corp`). `.wasm` must be served as `application/wasm` for streaming
//! compilation, and module scripts need a JavaScript MIME type.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

/// The folder served when `--dir` is not given: the repository's `www/`, found from where this
/// crate was built.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("www")
}

/// Threads answering requests, so one slow download does not hold up the page's other files.
const THREADS: usize = 4;

/// A server bound and ready: its address is known before it starts answering.
pub struct StaticServer {
    server: Arc<Server>,
    root: PathBuf,
    port: u16,
    stopping: Arc<AtomicBool>,
}

impl StaticServer {
    /// Binds 127.0.0.1:`port` (0 picks a free port) to serve the files under `dir`.
    pub fn bind(port: u16, dir: &Path) -> Result<StaticServer, String> {
        let root = dir.canonicalize().map_err(|e| {
            format!(
                "cannot serve {}: {e} (build the page with `cargo xtask web`, or pass --dir)",
                dir.display()
            )
        })?;
        if !root.is_dir() {
            return Err(format!("cannot serve {}: not a directory", root.display()));
        }
        let server = Server::http(("127.0.0.1", port))
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|addr| addr.port())
            .ok_or("the server is not on an IP address")?;
        Ok(StaticServer {
            server: Arc::new(server),
            root,
            port,
            stopping: Arc::default(),
        })
    }

    /// The URL to open.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// A handle that makes [`serve`](Self::serve) return (for Ctrl-C).
    pub fn stopper(&self) -> impl Fn() + Send + 'static {
        let server = Arc::clone(&self.server);
        let stopping = Arc::clone(&self.stopping);
        move || {
            stopping.store(true, Ordering::SeqCst);
            for _ in 0..THREADS {
                server.unblock();
            }
        }
    }

    /// Answers requests until stopped.
    pub fn serve(self) {
        let root = Arc::new(self.root);
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let server = Arc::clone(&self.server);
                let root = Arc::clone(&root);
                let stopping = Arc::clone(&self.stopping);
                std::thread::spawn(move || loop {
                    match server.recv() {
                        Ok(request) => {
                            if let Err(e) = answer(&root, request) {
                                log::debug!("could not send a response: {e}");
                            }
                        }
                        Err(_) if stopping.load(Ordering::SeqCst) => break,
                        Err(e) => log::warn!("could not accept a connection: {e}"),
                    }
                })
            })
            .collect();
        for worker in workers {
            let _ = worker.join();
        }
    }
}

/// Sends the file `request` names, or an error status.
fn answer(root: &Path, request: Request) -> io::Result<()> {
    let method = request.method().clone();
    let url = request.url().to_owned();
    let (status, body, mime, location) = match method {
        Method::Get | Method::Head => match resolve(root, &url) {
            Resolved::File(path) => match fs::read(&path) {
                Ok(bytes) => (200, bytes, mime_type(&path), None),
                Err(e) => {
                    log::warn!("cannot read {}: {e}", path.display());
                    plain(404, "not found")
                }
            },
            Resolved::Redirect(to) => {
                let (s, b, m, _) = plain(301, "moved");
                (s, b, m, Some(to))
            }
            Resolved::Forbidden => plain(403, "forbidden: outside the served folder"),
            Resolved::NotFound => plain(404, "not found"),
        },
        _ => plain(405, "only GET and HEAD are supported"),
    };
    log::info!("{method} {url} -> {status}");
    // For HEAD, tiny_http sends the headers (Content-Length included) and drops the body.
    let mut response = Response::from_data(body).with_status_code(StatusCode(status));
    let mut headers = vec![
        ("Content-Type", mime.to_owned()),
        ("Cross-Origin-Opener-Policy", "same-origin".to_owned()),
        ("Cross-Origin-Embedder-Policy", "require-corp".to_owned()),
        ("Cross-Origin-Resource-Policy", "same-origin".to_owned()),
        ("X-Content-Type-Options", "nosniff".to_owned()),
        ("Cache-Control", "no-cache".to_owned()),
    ];
    if let Some(to) = location {
        headers.push(("Location", to));
    }
    for (name, value) in headers {
        if let Ok(header) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(header);
        }
    }
    request.respond(response)
}

fn plain(status: u16, text: &str) -> (u16, Vec<u8>, &'static str, Option<String>) {
    (
        status,
        format!("{status} {text}\n").into_bytes(),
        "text/plain; charset=utf-8",
        None,
    )
}

/// Where a request path leads.
#[derive(Debug, PartialEq, Eq)]
enum Resolved {
    /// A file inside the root.
    File(PathBuf),
    /// A directory named without its trailing slash: send the browser to `path/`, so the
    /// page's relative links resolve inside it.
    Redirect(String),
    /// The path tries to leave the root (`..`, a symbolic link pointing out, a backslash or
    /// NUL in a segment).
    Forbidden,
    /// Nothing there.
    NotFound,
}

/// Maps a request URL to a file under `root` (which is canonical), refusing anything outside.
fn resolve(root: &Path, url: &str) -> Resolved {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let Ok(decoded) = percent_decode_str(path).decode_utf8() else {
        return Resolved::NotFound;
    };
    let mut relative = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Resolved::Forbidden,
            s if s.contains(['\\', '\0']) || s.contains(':') => return Resolved::Forbidden,
            s => relative.push(s),
        }
    }
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Resolved::Forbidden;
    }
    let mut full = root.join(&relative);
    if full.is_dir() {
        if !decoded.ends_with('/') {
            return Resolved::Redirect(format!("{path}/"));
        }
        full.push("index.html");
    }
    match full.canonicalize() {
        Ok(real) if !real.starts_with(root) => Resolved::Forbidden,
        Ok(real) if real.is_file() => Resolved::File(real),
        _ => Resolved::NotFound,
    }
}

/// The Content-Type for a file, from its extension.
fn mime_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("pkg")).unwrap();
        fs::write(dir.path().join("index.html"), "<h1>hi</h1>").unwrap();
        fs::write(dir.path().join("pkg/index.html"), "pkg").unwrap();
        fs::write(dir.path().join("pkg/a b.wasm"), "\0asm").unwrap();
        let root = dir.path().canonicalize().unwrap();
        (dir, root)
    }

    #[test]
    fn files_and_directory_indexes_resolve_inside_the_root() {
        let (_dir, root) = site();
        assert_eq!(resolve(&root, "/"), Resolved::File(root.join("index.html")));
        assert_eq!(
            resolve(&root, "/pkg/?x=1"),
            Resolved::File(root.join("pkg/index.html"))
        );
        assert_eq!(resolve(&root, "/pkg"), Resolved::Redirect("/pkg/".into()));
        assert_eq!(
            resolve(&root, "/pkg/a%20b.wasm"),
            Resolved::File(root.join("pkg/a b.wasm"))
        );
        assert_eq!(resolve(&root, "/missing.js"), Resolved::NotFound);
    }

    #[test]
    fn traversal_is_refused_in_every_spelling() {
        let (_dir, root) = site();
        for url in [
            "/../secret",
            "/pkg/../../secret",
            "/%2e%2e/secret",
            "/%2E%2E%2Fsecret",
            "/pkg/%2e%2e/%2e%2e/etc/passwd",
            "/..%5csecret",
            "/C:/Windows",
        ] {
            assert_eq!(resolve(&root, url), Resolved::Forbidden, "{url}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_out_of_the_root_is_refused() {
        let (dir, root) = site();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), "no").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        assert_eq!(resolve(&root, "/out/secret.txt"), Resolved::Forbidden);
    }

    #[test]
    fn wasm_and_javascript_get_the_types_browsers_require() {
        assert_eq!(mime_type(Path::new("a.wasm")), "application/wasm");
        assert!(mime_type(Path::new("a.mjs")).starts_with("text/javascript"));
        assert!(mime_type(Path::new("a.JS")).starts_with("text/javascript"));
        assert_eq!(mime_type(Path::new("favicon.ico")), "image/x-icon");
        assert_eq!(mime_type(Path::new("blob")), "application/octet-stream");
    }
}

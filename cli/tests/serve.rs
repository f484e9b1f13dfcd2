//! `primepool serve`: the real binary on a free port, fetched over a raw TCP connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

/// The server process, killed when the test ends (even when it fails).
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_primepool"))
        .args(["serve", "--port", "0", "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("the first line is the URL, got {line:?}"))
        .parse()
        .unwrap();
    assert_ne!(port, 0, "the real port is printed");
    Server { child, port }
}

/// A response: status code, lower-cased header lines, body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `GET path` as written (no normalisation, as an attacker would) and reads the reply.
fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path)
}

/// Sends `method path` as written and reads the reply: status, headers and whatever follows
/// the blank line that ends them.
fn request(port: u16, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("pkg")).unwrap();
    std::fs::write(www.join("index.html"), "<!doctype html><title>t</title>").unwrap();
    std::fs::write(www.join("pkg/app.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(www.join("pkg/app.js"), "export {};").unwrap();
    std::fs::write(www.join("style.css"), "body{}").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "do not serve").unwrap();
    dir
}

#[test]
fn every_response_is_cross_origin_isolated_with_the_right_mime_type() {
    let dir = site();
    let server = start(&dir.path().join("www"));
    for (path, mime) in [
        ("/", "text/html; charset=utf-8"),
        ("/pkg/app.wasm", "application/wasm"),
        ("/pkg/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/missing", "text/plain; charset=utf-8"),
    ] {
        let reply = get(server.port, path);
        assert_eq!(reply.header("content-type"), Some(mime), "{path}");
        assert_eq!(
            reply.header("cross-origin-opener-policy"),
            Some("same-origin"),
            "{path}"
        );
        assert_eq!(
            reply.header("cross-origin-embedder-policy"),
            Some("require-corp"),
            "{path}"
        );
        assert_eq!(
            reply.header("cross-origin-resource-policy"),
            Some("same-origin"),
            "{path}"
        );
    }
    let index = get(server.port, "/");
    assert_eq!(index.status, 200);
    assert_eq!(index.body, b"<!doctype html><title>t</title>");
    assert_eq!(get(server.port, "/pkg/app.wasm").body, b"\0asm\x01\0\0\0");
    assert_eq!(get(server.port, "/missing").status, 404);
}

#[test]
fn paths_outside_the_folder_are_refused() {
    let dir = site();
    let server = start(&dir.path().join("www"));
    for path in [
        "/../secret.txt",
        "/pkg/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/pkg/%2e%2e/%2e%2e/secret.txt",
    ] {
        let reply = get(server.port, path);
        assert!(
            reply.status == 403 || reply.status == 404,
            "{path}: status {}",
            reply.status
        );
        assert!(
            !String::from_utf8_lossy(&reply.body).contains("do not serve"),
            "{path}"
        );
    }
}

#[test]
fn a_directory_without_its_slash_redirects_to_it() {
    let dir = site();
    std::fs::write(dir.path().join("www/pkg/index.html"), "pkg").unwrap();
    let server = start(&dir.path().join("www"));
    let reply = get(server.port, "/pkg");
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/pkg/"));
    assert_eq!(get(server.port, "/pkg/").body, b"pkg");
}

#[test]
fn a_missing_folder_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_primepool"))
        .args(["serve", "--port", "0", "--dir", "/nonexistent/www"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: cannot serve /nonexistent/www"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_server_with_status_130() {
    let dir = site();
    let mut server = start(&dir.path().join("www"));
    assert_eq!(get(server.port, "/").status, 200);
    // SAFETY: kill(2) only sends a signal; the child has not been reaped (its `Child` is
    // still held and waited for below), so its pid cannot name another process.
    let rc = unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
}

#[test]
fn head_requests_get_the_length_without_the_body() {
    let dir = site();
    let server = start(&dir.path().join("www"));
    let reply = request(server.port, "HEAD", "/pkg/app.js");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("10"));
    assert!(reply.body.is_empty(), "no body: {:?}", reply.body);
}

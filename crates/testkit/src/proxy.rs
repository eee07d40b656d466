//! A TCP proxy on 127.0.0.1 that injects the failures object stores really have:
//! connections reset in the middle of a request, and `503 Slow Down` answers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What the proxy does to the first connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Read part of the request, then reset the connection (RST).
    ResetMidRequest,
    /// Read the request head and answer `503 Slow Down` with an S3 error body.
    SlowDown,
}

/// A proxy to `upstream` that applies `fault` to the first `count` connections and
/// forwards every later one untouched. Stops when dropped.
pub struct FlakyProxy {
    /// `http://127.0.0.1:PORT`, to use as the endpoint.
    pub endpoint: String,
    faulted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl FlakyProxy {
    /// Starts the proxy on a free port.
    pub fn start(upstream: &str, fault: Fault, count: usize) -> FlakyProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let faulted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (faulted.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let n = f.fetch_add(1, Ordering::SeqCst);
                if n < count {
                    thread::spawn(move || inject(client, fault));
                } else {
                    f.fetch_sub(1, Ordering::SeqCst);
                    let up = upstream.clone();
                    thread::spawn(move || forward(client, &up));
                }
            }
        });
        FlakyProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            faulted,
            stop,
            port,
        }
    }

    /// How many connections got the fault so far.
    pub fn faulted(&self) -> usize {
        self.faulted.load(Ordering::SeqCst)
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_head(client: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

fn inject(mut client: TcpStream, fault: Fault) {
    let _ = read_head(&mut client);
    match fault {
        Fault::ResetMidRequest => {
            // Linger 0 turns close into a reset.
            let _ = socket_linger_zero(&client);
            drop(client);
        }
        Fault::SlowDown => {
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                        <Message>Please reduce your request rate.</Message></Error>";
            let resp = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(resp.as_bytes());
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

#[allow(unsafe_code)]
fn socket_linger_zero(s: &TcpStream) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid fd of a live socket and a correctly sized struct.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn forward(client: TcpStream, upstream: &str) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut c1, mut s1) = (client, server);
    let t = thread::spawn(move || {
        let _ = std::io::copy(&mut c1, &mut s1);
        let _ = s1.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut s2, &mut c2);
    let _ = c2.shutdown(Shutdown::Write);
    let _ = t.join();
}

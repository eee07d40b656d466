//! A TCP proxy on 127.0.0.1 that injects the failures object stores really have:
//! connections reset in the middle of a request, `503 Slow Down` and other 5xx
//! answers, and a store that accepts connections and never answers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy does to the first connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Read part of the request, then reset the connection (RST).
    ResetMidRequest,
    /// Read the request head and answer `503 Slow Down` with an S3 error body.
    SlowDown,
    /// Read the request head and answer this HTTP status (e.g. 500, 502, 503) with
    /// an S3 error body (`InternalError`, `ServiceUnavailable`).
    Status(u16),
    /// Accept the connection, read whatever the client sends, and never answer: a
    /// hung store behind a load balancer.
    Stall,
    /// Forward the connection, but stop relaying the store's answers after this
    /// many bytes (the connection stays open): a download that stops mid-body.
    StallAnswerAfter(usize),
    /// Forward the connection, relaying the store's answers at about 2 MB/s (16 KiB
    /// then a pause): a slow link, so a download can be interrupted halfway.
    SlowAnswers,
}

/// Which fault the next connections get, and how many more of them.
#[derive(Debug)]
struct Schedule {
    fault: Fault,
    left: usize,
}

/// A proxy to `upstream` that applies `fault` to the first `count` connections and
/// forwards every later one untouched. Stops when dropped.
pub struct FlakyProxy {
    /// `http://127.0.0.1:PORT`, to use as the endpoint.
    pub endpoint: String,
    faulted: Arc<AtomicUsize>,
    schedule: Arc<Mutex<Schedule>>,
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
        let schedule = Arc::new(Mutex::new(Schedule { fault, left: count }));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, sched, s) = (faulted.clone(), schedule.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let fault = {
                    let mut sched = sched.lock().unwrap();
                    (sched.left > 0).then(|| {
                        sched.left -= 1;
                        sched.fault
                    })
                };
                match fault {
                    Some(fault) => {
                        f.fetch_add(1, Ordering::SeqCst);
                        let up = upstream.clone();
                        thread::spawn(move || inject(client, fault, &up));
                    }
                    None => {
                        let up = upstream.clone();
                        thread::spawn(move || forward(client, &up));
                    }
                }
            }
        });
        FlakyProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            faulted,
            schedule,
            stop,
            port,
        }
    }

    /// Applies `fault` to the next `count` new connections (replacing what was
    /// left of the previous schedule); connections already open are unaffected.
    pub fn arm(&self, fault: Fault, count: usize) {
        *self.schedule.lock().unwrap() = Schedule { fault, left: count };
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

fn inject(mut client: TcpStream, fault: Fault, upstream: &str) {
    if fault == Fault::SlowAnswers {
        forward_slowly(client, upstream);
        return;
    }
    if let Fault::StallAnswerAfter(budget) = fault {
        forward_limited(client, upstream, budget);
        return;
    }
    if fault == Fault::Stall {
        // Take everything the client sends, answer nothing; end when it gives up.
        let _ = client.set_read_timeout(None);
        let mut buf = [0u8; 64 << 10];
        while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
        return;
    }
    let _ = read_head(&mut client);
    match fault {
        Fault::Stall | Fault::StallAnswerAfter(_) | Fault::SlowAnswers => {}
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
        Fault::Status(status) => {
            let (reason, code) = match status {
                500 => ("Internal Server Error", "InternalError"),
                502 => ("Bad Gateway", "BadGateway"),
                503 => ("Service Unavailable", "ServiceUnavailable"),
                504 => ("Gateway Timeout", "GatewayTimeout"),
                _ => ("Error", "InternalError"),
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
                 <Message>Injected by the test proxy.</Message></Error>"
            );
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// Like [`forward`], but pauses 8 ms after each 16 KiB of the store's answers.
fn forward_slowly(client: TcpStream, upstream: &str) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut c1, mut s1) = (client, server);
    thread::spawn(move || {
        let _ = std::io::copy(&mut c1, &mut s1);
    });
    let mut buf = [0u8; 16 << 10];
    while let Ok(n @ 1..) = s2.read(&mut buf) {
        if c2.write_all(&buf[..n]).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(8));
    }
    let _ = c2.shutdown(Shutdown::Both);
}

/// Like [`forward`], but relays at most `budget` bytes of the store's answers, then
/// holds the connection open without relaying more until the client gives up.
fn forward_limited(client: TcpStream, upstream: &str, budget: usize) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut c1, mut s1) = (client, server);
    // Client to store, until the client closes (which ends the stall too).
    let t = thread::spawn(move || {
        let _ = std::io::copy(&mut c1, &mut s1);
        let _ = s1.shutdown(Shutdown::Both);
    });
    let mut left = budget;
    let mut buf = [0u8; 16 << 10];
    while left > 0 {
        match s2.read(&mut buf[..left.min(16 << 10)]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if c2.write_all(&buf[..n]).is_err() {
                    break;
                }
                left -= n;
            }
        }
    }
    let _ = t.join();
}

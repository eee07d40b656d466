//! Free ports on `127.0.0.1` and random names for what the tests create.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Marks `port` as handed out in this process; false if it already was.
pub(crate) fn claim_port(port: u16) -> bool {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    given.get_or_insert_with(HashSet::new).insert(port)
}

/// The kernel's ephemeral port range (where outgoing connections get their source
/// ports), from /proc; Linux's default when it cannot be read.
pub(crate) fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// A fresh pseudo-random number (std's per-call hasher keys, the clock, the pid).
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}

/// A free TCP port on `127.0.0.1`, never handed out twice within one process.
///
/// It is picked at random below the kernel's ephemeral range and checked by binding
/// it: a port from that range (what binding port 0 gives) can be taken by the source
/// port of any outgoing connection before the server that was meant to get it starts,
/// and the tests make thousands of connections while clusters start.
///
/// # Panics
/// If no port can be bound.
pub fn free_port() -> u16 {
    let (ephemeral_low, _) = ephemeral_range();
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(1));
    if high > low + 1000 {
        for _ in 0..1000 {
            let port = low + (random_u64() % u64::from(high - low)) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() && claim_port(port) {
                return port;
            }
        }
    }
    for _ in 0..1000 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if claim_port(port) {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 after 1000 tries");
}

/// Two free ports `(p, p + offset)` on `127.0.0.1`.
pub(crate) fn free_port_pair(offset: u16) -> (u16, u16) {
    for _ in 0..1000 {
        let p = free_port();
        let Some(q) = p.checked_add(offset) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", q)).is_ok() && claim_port(q) {
            return (p, q);
        }
    }
    panic!("no free pair of TCP ports {offset} apart on 127.0.0.1 after 1000 tries");
}

/// A random-ish lowercase hex string of `len` chars (std's hasher keys are random).
pub(crate) fn random_hex(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: Mutex<u64> = Mutex::new(0);
    let mut out = String::new();
    while out.len() < len {
        let n = {
            let mut c = COUNTER.lock().unwrap_or_else(|e| e.into_inner());
            *c += 1;
            *c
        };
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(len);
    out
}

//! Loopback ports for processes a test is about to start. Shared with `host-shim`'s tests,
//! which include this file by path.

use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// A port free at the time of asking, for a process about to bind it, and never one this
/// test process handed out before: the kernel may give a port it just released again, and a
/// test that asks for two (a listener and an admin port) must get two.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .unwrap_or_else(|e| panic!("no loopback port to be had: {e}"));
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

//! The bounds on connections: silent, slow and idle ones closed, slow ones leaving room for
//! others, and connections beyond the bound waiting for a free one.

use std::process::Command;

use super::fixtures::*;

/// Slowloris: connections that send nothing, trickle their head, or sit idle after an answer
/// are closed once the head timeout passes, instead of being held for ever.
#[test]
fn silent_slow_and_idle_connections_are_closed() {
    use std::io::{ErrorKind, Read, Write};
    use std::time::{Duration, Instant};
    let dir = fresh_dir("slow-clients");
    let server = start_env(&dir, &[], &[("KEYPOOL_HEADER_TIMEOUT_MS", "300")]);
    // Far longer than the bound, far shorter than never.
    let patience = Duration::from_secs(5);

    let mut silent = connect(&server.base, patience);
    let started = Instant::now();
    assert!(read_until_closed(&mut silent).is_empty());
    assert!(started.elapsed() < patience);

    let mut partial = connect(&server.base, patience);
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n")
        .unwrap();
    read_until_closed(&mut partial);

    // A byte of head every 50 ms: always busy, never done.
    let mut trickle = connect(&server.base, Duration::from_millis(50));
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for byte in head.iter().cycle() {
        assert!(started.elapsed() < patience, "a trickled head was held");
        if trickle.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match trickle.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("an answer to half a head"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed);

    // Kept alive after an answer, then idle: closed too.
    let mut idle = connect(&server.base, patience);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .unwrap();
    let answer = String::from_utf8(read_until_closed(&mut idle)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"));
    drop(server);

    // A malformed bound stops the server with the variable's name.
    for (name, value) in [
        ("KEYPOOL_HEADER_TIMEOUT_MS", "soon"),
        ("KEYPOOL_HEADER_TIMEOUT_MS", "0"),
        ("KEYPOOL_MAX_CONNECTIONS", "-1"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(&dir)
            .env(name, value)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name}={value}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(name),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Slow clients hold connections, not the server: with hundreds of heads trickling, others
/// are still answered at once.
#[tokio::test]
async fn many_slow_connections_leave_room_for_others() {
    use std::io::Write;
    let dir = fresh_dir("many-slow");
    let server = start(&dir);
    let slow: Vec<std::net::TcpStream> = (0..300)
        .map(|_| {
            let mut s = connect(&server.base, std::time::Duration::from_secs(1));
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: local")
                .unwrap();
            s
        })
        .collect();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..20 {
        let response = http
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    drop(slow);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connections beyond the bound wait unaccepted until one closes, instead of each taking a
/// file descriptor and a task.
#[test]
fn connections_beyond_the_bound_wait_for_a_free_one() {
    use std::io::{ErrorKind, Read, Write};
    use std::time::Duration;
    let dir = fresh_dir("max-connections");
    let server = start_env(&dir, &[], &[("KEYPOOL_MAX_CONNECTIONS", "3")]);
    let mut held: Vec<std::net::TcpStream> = (0..3)
        .map(|_| connect(&server.base, Duration::from_secs(5)))
        .collect();
    let mut waiting = connect(&server.base, Duration::from_millis(500));
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    match waiting.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!(
            "a fourth connection was served while three were open: {other:?} {:?}",
            String::from_utf8_lossy(&buf)
        ),
    }
    // One closes: the waiting one is served.
    drop(held.pop());
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let answer = String::from_utf8(read_until_closed(&mut waiting)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

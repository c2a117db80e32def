//! `<binary> healthcheck`: asks this process's own `/healthz`, as the images' `HEALTHCHECK` does
//! (they have no shell, curl or wget). Plain blocking HTTP/1.0 with short timeouts: it runs once
//! and exits.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Connect, send and each read get this long (Docker's HEALTHCHECK here allows 5 s in all).
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Where to ask a server bound to `bind`: its own address, or loopback for a wildcard one.
pub fn probe_addr(bind: SocketAddr) -> Result<SocketAddr, String> {
    if bind.port() == 0 {
        return Err(format!(
            "the metrics address {bind} has port 0 (chosen at start): no fixed port to ask"
        ));
    }
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, bind.port()))
}

/// GET `/healthz` on the server bound to `bind`: `Ok` on 200, otherwise one line saying why.
pub fn healthcheck(bind: SocketAddr) -> Result<(), String> {
    let addr = probe_addr(bind).map_err(|e| format!("healthcheck: {e}"))?;
    let url = format!("http://{addr}/healthz");
    let fail = |what: String| format!("healthcheck: {url}: {what}");
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| fail(format!("cannot connect: {e}")))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| fail(e.to_string()))?;
    stream
        .write_all(format!("GET /healthz HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| fail(format!("cannot send the request: {e}")))?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(|e| fail(format!("no answer: {e}")))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok());
    let reason = body.lines().next().unwrap_or("").trim();
    match status {
        Some(200) => Ok(()),
        Some(code) => Err(fail(format!("{code}: {reason}"))),
        None => Err(fail(format!(
            "not an HTTP answer: {:?}",
            head.lines().next().unwrap_or("")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_asked_on_loopback_and_port_zero_is_refused() {
        let p = |s: &str| probe_addr(s.parse().unwrap());
        assert_eq!(p("0.0.0.0:9600"), Ok("127.0.0.1:9600".parse().unwrap()));
        assert_eq!(p("[::]:9600"), Ok("[::1]:9600".parse().unwrap()));
        assert_eq!(p("10.1.2.3:9700"), Ok("10.1.2.3:9700".parse().unwrap()));
        assert!(p("127.0.0.1:0").unwrap_err().contains("port 0"));
    }

    #[test]
    fn nothing_listening_is_one_line() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = healthcheck(SocketAddr::from(([127, 0, 0, 1], port))).unwrap_err();
        assert!(e.starts_with("healthcheck: http://127.0.0.1:"), "{e}");
        assert!(e.contains("cannot connect"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

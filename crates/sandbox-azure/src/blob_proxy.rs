//! The sandbox's stand-in for DNS of blob URLs: an HTTP CONNECT proxy that takes
//! `{account}.blob.localhost:PORT` (and `localhost:PORT`, which path-style datastore URLs use)
//! to `127.0.0.1:PORT` and refuses every other name.
//!
//! Azure ML hands out host-style datastore URLs. An in-process client can map those names with
//! its resolver; a separate process (the controller binary of the demo and of the restart tests)
//! is given this proxy as `ALL_PROXY` instead, so the operator's code has no sandbox knowledge.

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::error::{Error, Result};

/// Longest CONNECT request head read before giving up on a client.
const MAX_HEAD: usize = 8192;

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct BlobProxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl BlobProxy {
    /// Bind a free loopback port and serve in the background.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| Error::Bind {
                addr: "127.0.0.1:0".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: "127.0.0.1:0".into(),
            source,
        })?;
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(tunnel(inbound));
            }
        });
        Ok(Self { addr, task })
    }

    /// `127.0.0.1:PORT`, for `ALL_PROXY=http://…`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for BlobProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The loopback port a CONNECT request head asks for, when its host is `*.blob.localhost` or
/// `localhost`. (A client's `NO_PROXY=localhost` would also exempt `*.localhost`, so both go
/// through here.)
fn blob_port(head: &str) -> Option<u16> {
    let authority = head.strip_prefix("CONNECT ")?.split_whitespace().next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.to_ascii_lowercase();
    (host == "localhost" || host.ends_with(".blob.localhost")).then_some(())?;
    port.parse().ok()
}

async fn tunnel(mut inbound: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD || inbound.read_exact(&mut byte).await.is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let Some(port) = blob_port(&String::from_utf8_lossy(&head)) else {
        let _ = inbound.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
        return;
    };
    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await else {
        let _ = inbound.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    if inbound
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blob_localhost_names_are_tunnelled() {
        assert_eq!(
            blob_port("CONNECT acct.blob.localhost:10000 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(10000)
        );
        assert_eq!(
            blob_port("CONNECT Acct.Blob.LocalHost:443 HTTP/1.1\r\n\r\n"),
            Some(443)
        );
        assert_eq!(
            blob_port("CONNECT localhost:8443 HTTP/1.1\r\n\r\n"),
            Some(8443)
        );
        for refused in [
            "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            "CONNECT blob.localhost.example.com:443 HTTP/1.1\r\n\r\n",
            "CONNECT other.localhost:443 HTTP/1.1\r\n\r\n",
            "GET http://acct.blob.localhost:1/ HTTP/1.1\r\n\r\n",
            "CONNECT acct.blob.localhost HTTP/1.1\r\n\r\n",
            "CONNECT acct.blob.localhost:notaport HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(blob_port(refused), None, "{refused}");
        }
    }

    /// Everything a client reads after asking `proxy` to CONNECT to `authority`.
    async fn connect_via(proxy: &BlobProxy, authority: &str) -> String {
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        c.write_all(format!("CONNECT {authority} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn a_connect_to_a_blob_name_reaches_the_loopback_port_and_others_are_refused() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = target.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = target.accept().await.unwrap();
            s.write_all(b"hello").await.unwrap();
        });
        let proxy = BlobProxy::start().await.unwrap();

        assert_eq!(
            connect_via(&proxy, &format!("a.blob.localhost:{port}")).await,
            "HTTP/1.1 200 Connection established\r\n\r\nhello"
        );
        assert_eq!(
            connect_via(&proxy, &format!("example.com:{port}")).await,
            "HTTP/1.1 403 Forbidden\r\n\r\n"
        );
    }
}

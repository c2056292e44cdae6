//! The panel over HTTPS with the certificate made on first start: a real
//! TLS client that trusts exactly that certificate, the setup cookie marked
//! `Secure`, and the same certificate (same fingerprint) at the next start.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

async fn https(
    addr: std::net::SocketAddr,
    roots: &rustls::RootCertStore,
    request: String,
) -> String {
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the panel's certificate");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panel_serves_https_with_its_own_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    common::bounded(Duration::from_secs(90), async {
        let pool = common::devpool(0.0005).await;
        let app = common::appliance_with(&[pool.local_addr()], 1, |c| {
            c.web.listen = Some("127.0.0.1:0".parse().unwrap());
            c.web.tls = true;
            c.web.redirect_listen = Some("127.0.0.1:0".parse().unwrap());
        })
        .await;
        let addr = app.api_addr().unwrap();
        let state = app.handle().config().state_dir.clone();
        let pem = std::fs::read(state.join("web/tls/cert.pem")).expect("certificate made on first start");
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let reply = https(addr, &roots, "GET /api/v1/setup HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into()).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        let token = app.web_auth().unwrap().setup_token().unwrap();
        let body = format!("{{\"token\": \"{token}\", \"password\": \"correct horse battery\"}}");
        let reply = https(
            addr,
            &roots,
            format!(
                "POST /api/v1/setup HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        let cookie = reply
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .unwrap_or_else(|| panic!("a session cookie: {reply}"));
        assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{cookie}");
        // The plain-HTTP listener sends browsers to the HTTPS panel.
        let redirect = app.redirect_addr().expect("redirect listener");
        let mut plain = tokio::net::TcpStream::connect(redirect).await.unwrap();
        plain
            .write_all(format!("GET /#/pools HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n", redirect.port()).as_bytes())
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
        let reply = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        assert!(reply.starts_with("http/1.1 308"), "{reply}");
        assert!(reply.contains(&format!("location: https://localhost:{}/", addr.port())), "{reply}");
        // Plain HTTP to the TLS port gets no page.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain.write_all(b"GET /api/v1/setup HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(12), plain.read_to_end(&mut buf)).await;
        assert!(!String::from_utf8_lossy(&buf).contains("\"needed\""), "no API over plain HTTP");
        app.shutdown().await;
        // The next start keeps the certificate.
        assert_eq!(std::fs::read(state.join("web/tls/cert.pem")).unwrap(), pem);
    })
    .await;
}

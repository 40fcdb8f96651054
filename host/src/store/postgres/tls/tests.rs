//! The connector against a server that speaks PostgreSQL's TLS negotiation with a certificate
//! of a private authority, then refuses the login with a message of its own: reaching that
//! message proves the handshake (and so the verification) succeeded.

use super::connector;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const PAST_THE_HANDSHAKE: &str = "test server: the TLS handshake succeeded";

/// A private CA and a certificate it signed for `localhost`: (CA PEM, server cert, server key).
fn authority() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    (
        ca.pem(),
        cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

/// Serves `connections` connections on 127.0.0.1: answers the SSLRequest with `S`, does the
/// TLS handshake, reads the startup message and answers a FATAL error naming the handshake.
async fn server(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    connections: usize,
) -> u16 {
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        for _ in 0..connections {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 8];
                stream.read_exact(&mut request).await?;
                stream.write_all(b"S").await?;
                let mut tls = acceptor.accept(stream).await?;
                let mut length = [0u8; 4];
                tls.read_exact(&mut length).await?;
                let mut startup = vec![0u8; u32::from_be_bytes(length) as usize - 4];
                tls.read_exact(&mut startup).await?;
                let fields = format!("SFATAL\0C28000\0M{PAST_THE_HANDSHAKE}\0\0");
                let mut answer = vec![b'E'];
                answer.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
                answer.extend_from_slice(fields.as_bytes());
                tls.write_all(&answer).await?;
                tls.shutdown().await
            });
        }
    });
    port
}

#[test]
fn a_server_signed_by_the_configured_authority_is_trusted_and_no_other_is() {
    let (ca_pem, cert, key) = authority();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let port = server(cert, key, 2).await;
        let config: tokio_postgres::Config =
            format!("postgres://cosell@localhost:{port}/cosell?sslmode=require&connect_timeout=10")
                .parse()
                .unwrap();
        let with_authority = config
            .connect(connector(Some(&ca_file)).unwrap())
            .await
            .err()
            .expect("the test server never lets anyone in");
        let message = with_authority.as_db_error().map(|e| e.message().to_owned());
        assert_eq!(
            message.as_deref(),
            Some(PAST_THE_HANDSHAKE),
            "{with_authority:?}"
        );
        // The public roots do not know the private authority: refused during the handshake.
        let public_roots = config
            .connect(connector(None).unwrap())
            .await
            .err()
            .expect("refused");
        let text = format!("{public_roots:?}");
        assert!(!text.contains(PAST_THE_HANDSHAKE), "{text}");
        assert!(text.to_lowercase().contains("certificate"), "{text}");
    });
}

#[test]
fn a_ca_file_without_a_certificate_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, "not a certificate").unwrap();
    let err = connector(Some(&file)).err().expect("refused");
    assert!(
        format!("{err:#}").contains("state.ca_file") && format!("{err:#}").contains("ca.pem"),
        "{err:#}"
    );
}

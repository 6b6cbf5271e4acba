//! The S3 object store against a real S3 server (s3s-fs, an S3 implementation over a
//! directory) on a loopback port, and against an endpoint that answers every request with a 5xx
//! or does not answer: retried with backoff, then a clear error, never a torn object.

use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use openduck_layers::delta_layer::LayerWriter;
use openduck_layers::layer_map::LayerMap;
use openduck_layers::object_store::s3::{S3Config, S3Store};
use openduck_layers::object_store::{check_store, ObjectStore, StoreError};
use openduck_layers::snapshot::{load_index, read};

const KEY: &str = "openduck-test-key";
const SECRET: &str = "openduck-test-secret";

/// Starts s3s-fs on a free port; returns its endpoint.
async fn start_s3(root: &std::path::Path) -> String {
    std::fs::create_dir_all(root.join("layers-bucket")).unwrap();
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(KEY, SECRET));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn store(endpoint: &str, prefix: &str, attempts: u32) -> S3Store {
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some(KEY.to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some(SECRET.to_string()),
        "AWS_ENDPOINT_URL" => Some(endpoint.to_string()),
        _ => None,
    };
    let mut config = S3Config::from_url(&format!("s3://layers-bucket/{prefix}"), env).unwrap();
    config.max_attempts = attempts;
    S3Store::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_behaves_and_serves_layers() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = start_s3(dir.path()).await;
    let s3 = store(&endpoint, "tenant-a", 3);

    check_store(&s3).await;
    // Another prefix is another namespace.
    assert!(store(&endpoint, "tenant-b", 3).list("").await.unwrap().is_empty());

    // A layer in S3 is read with range requests.
    let mut writer = LayerWriter::new(4096, 10_000);
    writer.put_page(0, &[7u8; 4096]).unwrap();
    writer.put_page(2, &[9u8; 1808]).unwrap();
    s3.put_if_absent("db1/layers/000003", writer.finish().into()).await.unwrap();
    let map = LayerMap::new(vec![load_index(&s3, "db1/layers/000003").await.unwrap()]).unwrap();
    assert_eq!(read(&s3, &map, 4090, 10).await.unwrap(), vec![7, 7, 7, 7, 7, 7, 0, 0, 0, 0]);
    assert_eq!(read(&s3, &map, 8192, 4).await.unwrap(), vec![9; 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_store_is_retried_then_a_clear_error() {
    // An endpoint that answers every request with 503.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder().status(503).body(http_body_util::Full::new(bytes::Bytes::from("busy"))).unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let s3 = store(&format!("http://{addr}"), "p", 3);
    let started = Instant::now();
    let err = s3.put_if_absent("k", "v".into()).await.unwrap_err();
    assert!(matches!(err, StoreError::Remote { .. }), "{err}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3, "retried");
    assert!(started.elapsed() < Duration::from_secs(30));

    // Nothing listening: a connection error, also clear.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = store(&format!("http://127.0.0.1:{port}"), "p", 2).size("k").await.unwrap_err();
    assert!(err.to_string().contains("head k"), "{err}");
}

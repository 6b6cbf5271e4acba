//! A real S3 server (s3s-fs, S3 over a directory) for end-to-end tests of `openduck serve` with
//! an S3 object store: `s3_test_server ROOT PORT ACCESS_KEY SECRET_KEY BUCKET...`. Creates the
//! buckets, listens on 127.0.0.1:PORT (0 = any free port), prints `http://ADDR` on stdout and
//! serves until killed. Not part of OpenDuck itself: the tests start it the way a user would
//! start any S3-compatible service.

use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: s3_test_server ROOT PORT ACCESS_KEY SECRET_KEY BUCKET...");
        std::process::exit(2);
    }
    let root = std::path::PathBuf::from(&args[1]);
    for bucket in &args[5..] {
        std::fs::create_dir_all(root.join(bucket)).expect("creating bucket directory");
    }
    let fs = s3s_fs::FileSystem::new(&root).expect("opening the root directory");
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(args[3].as_str(), args[4].as_str()));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args[2].parse::<u16>().expect("port"))).await.expect("binding");
    println!("http://{}", listener.local_addr().expect("address"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _ =
                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

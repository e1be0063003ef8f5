//! `upload-server bucket setup` / `bucket check` against Garage: the CORS
//! rule browsers need (ETag exposed) and the lifecycle rule that aborts
//! abandoned multipart uploads.

use upload_server::storage::s3::{BucketChange, BucketGap, S3Settings, S3Storage};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run through scripts/test.sh"))
}

#[tokio::test]
#[ignore = "needs Garage: scripts/test.sh runs it"]
async fn setup_applies_what_check_reports_missing() {
    let storage = S3Storage::connect(S3Settings {
        bucket: env("TEST_S3_BUCKET"),
        endpoint: Some(env("TEST_S3_ENDPOINT")),
        region: env("TEST_S3_REGION"),
        force_path_style: true,
    })
    .await
    .unwrap();
    // An origin no earlier run configured.
    let origin = format!("http://app-{}.example", std::process::id());
    let origins = vec![origin.clone()];

    let missing = storage.check_bucket(&origins, 2).await.unwrap();
    assert!(missing.contains(&BucketGap::Cors { origin: origin.clone() }), "{missing:?}");

    let changed = storage.setup_bucket(&origins, 2).await.unwrap();
    assert!(changed.contains(&BucketChange::Cors { origins: origins.clone() }), "{changed:?}");
    assert_eq!(storage.check_bucket(&origins, 2).await.unwrap(), []);
    assert_eq!(storage.setup_bucket(&origins, 2).await.unwrap(), [], "setup is idempotent");

    // What was applied is what the store reports.
    let cors = storage.client().get_bucket_cors().bucket(storage.bucket()).send().await.unwrap();
    let rule = &cors.cors_rules()[0];
    assert!(rule.allowed_origins().contains(&origin));
    assert!(rule.expose_headers().iter().any(|h| h.eq_ignore_ascii_case("etag")));
    let lifecycle =
        storage.client().get_bucket_lifecycle_configuration().bucket(storage.bucket()).send().await.unwrap();
    let abort = lifecycle.rules()[0].abort_incomplete_multipart_upload().unwrap();
    assert_eq!(abort.days_after_initiation(), Some(2));
}

//! The S3 path on moto's server: a multipart upload handed out by a presigned link, and an
//! upload that fails part way leaving no object and no open upload.

use std::sync::Arc;

use keypool::objects::ObjectStore;
use keypool_tests::{World, s3_bucket};
use serde_json::json;

use super::fixtures::*;

#[tokio::test]
async fn s3_exports_upload_in_parts_and_download_by_presigned_url() {
    let w = World::new().await;
    let pool_id = big_pool(&w).await;
    let bucket = s3_bucket().await.with_part_size(part_size(&w));
    let (client, name) = (bucket.client().clone(), bucket.bucket().to_string());
    let app = w.app_with(Arc::new(bucket));
    let done = export_via(&w, &app, &pool_id, json!({})).await;
    assert_eq!(done["status"], "done", "{done}");
    let url = done["url"].as_str().unwrap();
    assert!(
        url.contains("X-Amz-Signature") && url.contains("X-Amz-Expires=900"),
        "{url}"
    );

    // A plain HTTP client downloads it, under the export's file name.
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.contains(done["file_name"].as_str().unwrap()),
        "{disposition}"
    );
    let text = response.text().await.unwrap();
    let total = total_keys(&w, &pool_id).await;
    assert_eq!(rows(&text).len() as u64, total);
    assert_eq!(done["rows"].as_u64(), Some(total));
    // Uploaded as a multipart upload of more than two parts ("etag-N").
    let key = format!("exports/acme/{pool_id}/on-demand/");
    let listed = client
        .list_objects_v2()
        .bucket(&name)
        .prefix(&key)
        .send()
        .await
        .unwrap();
    let object = &listed.contents()[0];
    let etag = object.e_tag().unwrap().trim_matches('"').to_string();
    let parts: usize = etag.rsplit('-').next().unwrap().parse().unwrap();
    assert!(parts > 2, "{etag}");
    assert_eq!(object.size(), Some(text.len() as i64));
}

#[tokio::test]
async fn an_s3_upload_that_fails_part_way_leaves_no_object_and_no_open_upload() {
    let w = World::new().await;
    let pool_id = big_pool(&w).await;
    let bucket = s3_bucket().await.with_part_size(part_size(&w));
    let (client, name) = (bucket.client().clone(), bucket.bucket().to_string());
    let failing: Arc<dyn ObjectStore> = Arc::new(FailingUploads {
        inner: Arc::new(bucket),
        // Right after the first page's parts went up.
        fail_at: 1,
    });
    let app = w.app_with(failing);
    let failed = export_via(&w, &app, &pool_id, json!({})).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let uploads = client
        .list_multipart_uploads()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    let objects = client.list_objects_v2().bucket(&name).send().await.unwrap();
    assert!(objects.contents().is_empty());
}

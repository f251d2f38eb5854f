//! The local stream follower: stopped mid-stream, it resumes without gaps or doubles.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use keypool::domain::Month;
use keypool_tests::World;

use super::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_stopped_mid_stream_resumes_without_gaps_or_doubles() {
    let w = World::new().await;
    // Batches as the server cuts them; smaller on moto, where every write is slow.
    let (count, batch) = if w.is_moto() { (35, 10) } else { (350, 100) };
    let (_, pool_id) = w.pool("acme", 30).await;
    let keys = w.generate("acme", &pool_id, count).await;
    let mut ids = BTreeSet::new();
    for (i, key) in keys.iter().enumerate() {
        let reply = redeem(&w, &format!("l{i}"), key).await;
        assert_eq!(reply.status, StatusCode::CREATED);
        ids.insert(reply.body["assignment_id"].as_str().unwrap().to_string());
    }
    let m = Month::of(w.now());
    // Run a follower and stop it (dropping its task) once it has billed part of the stream.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(w.follower().with_batch_size(batch as i32).run(
        std::time::Duration::from_millis(5),
        async move {
            let _ = stopped.await;
        },
    ));
    // Stop it once it is into its second batch: the first is billed and checkpointed, the
    // second in hand and not.
    let threshold = batch;
    let store = w.dyn_store();
    loop {
        let billed = store.invoice_totals(&acme(), m).await.unwrap().redemptions as usize;
        if billed > threshold {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    task.abort();
    let _ = task.await;
    drop(stop);
    let part = store.invoice_totals(&acme(), m).await.unwrap().redemptions as usize;
    eprintln!("stopped after {part} of {count} lines");

    // A new follower (a restarted server) picks up from the checkpoint: it hands over what was
    // not checkpointed (the batch in hand again, and the rest), never the whole stream again.
    let handed = w
        .follower()
        .with_batch_size(batch as i32)
        .drain()
        .await
        .unwrap();
    assert!(handed <= count - threshold, "handed {handed} again");
    assert!(
        handed >= count - part,
        "handed {handed}, {part} were billed"
    );
    let lines = all_lines(store, &acme(), m).await;
    let billed: BTreeSet<String> = lines.iter().map(|l| l.assignment_id.to_string()).collect();
    assert_eq!(lines.len(), count, "no duplicates");
    assert_eq!(billed, ids, "none missing");
    assert_eq!(
        store.invoice_totals(&acme(), m).await.unwrap().redemptions as usize,
        count
    );
}

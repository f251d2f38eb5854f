//! Waiting webhook deliveries, found by when they are due.

use keypool::domain::{Delivery, DeliveryId, DeliveryStatus, EventId, EventType, WebhookId};
use keypool::store::Webhooks;
use keypool::time::Timestamp;
use keypool_tests::World;

use crate::fixtures::{ORG, org};

fn waiting(due: Timestamp) -> Delivery {
    Delivery {
        delivery_id: DeliveryId::new(),
        webhook_id: WebhookId::new(),
        org: org(ORG),
        event_id: EventId::new(),
        kind: EventType::AssignmentCreated,
        payload: "{}".into(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        last_status_code: None,
        last_error: None,
        last_attempt_at: None,
        next_attempt_at: Some(due),
        created_at: due,
    }
}

#[tokio::test]
async fn a_delivery_is_due_from_its_own_millisecond_and_not_before() {
    let w = World::new().await;
    let now = keypool::time::parse("2026-12-06T09:00:00.500Z").unwrap();
    let this_millisecond = waiting(now);
    let next_millisecond = waiting(now + chrono::Duration::milliseconds(1));
    let stored = w
        .store
        .put_deliveries(&[this_millisecond.clone(), next_millisecond.clone()])
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);

    let due = w.store.due_deliveries(now, 100).await.unwrap();
    assert_eq!(
        due,
        vec![(this_millisecond.webhook_id, this_millisecond.delivery_id)],
        "due at {now}: the delivery of this very millisecond, and only it"
    );

    let later = now + chrono::Duration::milliseconds(1);
    let mut due = w.store.due_deliveries(later, 100).await.unwrap();
    due.sort();
    let mut expected = vec![
        (this_millisecond.webhook_id, this_millisecond.delivery_id),
        (next_millisecond.webhook_id, next_millisecond.delivery_id),
    ];
    expected.sort();
    assert_eq!(due, expected);
}

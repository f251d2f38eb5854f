//! Running the functions as Lambda does: API Gateway events from the fixtures, a world seeded
//! through the domain operations, and a function's binary behind a Runtime API.

use serde_json::Value;

use crate::World;
use crate::moto::{self, moto_queue};
use keypool::identity::OrgId;

/// An API Gateway HTTP API (payload 2.0) event from `fixtures/apigw/`, with `{{name}}`
/// placeholders replaced.
pub fn apigw_event(name: &str, substitutions: &[(&str, &str)]) -> String {
    let path = format!("{}/fixtures/apigw/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    for (from, to) in substitutions {
        text = text.replace(&format!("{{{{{from}}}}}"), to);
    }
    text
}

/// A course, an active pool of organization `acme` and `keys` generated keys, made through the
/// domain operations; returns the pool id and the keys as shown.
pub async fn seed_acme_pool(w: &World, keys: i64) -> (String, Vec<String>) {
    let org = OrgId::parse("acme").unwrap();
    let now = w.now();
    let course = keypool::ops::pools::create_course(
        w.dyn_store(),
        &crate::admin_of(&org),
        keypool::ops::pools::CourseInput {
            launch_url: None,
            title: "Seeded".into(),
            description: None,
        },
        now,
    )
    .await
    .unwrap();
    let pool = keypool::ops::pools::create_pool(
        w.dyn_store(),
        &crate::admin_of(&org),
        keypool::ops::pools::PoolInput {
            name: "Seeded pool".into(),
            course_id: course.course_id.to_string(),
            starts_at: keypool::time::format(&(now - chrono::Duration::hours(1))),
            expires_at: keypool::time::format(&(now + chrono::Duration::days(30))),
            content_availability_days: 30,
            counter_shards: None,
        },
        now,
    )
    .await
    .unwrap();
    let pool_id = pool.pool_id.to_string();
    let generated = if keys > 0 {
        keypool::ops::key_jobs::generate::generate_keys(
            w.dyn_store(),
            &crate::admin_of(&org),
            &pool_id,
            keys,
            now,
        )
        .await
        .unwrap()
    } else {
        Vec::new()
    };
    (
        pool_id,
        generated.iter().map(|k| k.display_form()).collect(),
    )
}

/// Starts a function's binary as Lambda would (Runtime API endpoint, Lambda's environment,
/// this world's engine as DynamoDB), sends it API Gateway events one after another in the same
/// process, and returns each answer's status and JSON body.
pub async fn run_as_lambda(binary: &str, world: &World, events: &[String]) -> Vec<(u16, Value)> {
    use keypool_runtime_api::{Function, Outcome, RuntimeApi, lambda_env};
    let runtime = RuntimeApi::start().await.unwrap();
    let mut env = lambda_env(&runtime, "keypool-test", world.endpoint());
    env.push(("MAIN_TABLE".into(), world.tables.main.clone()));
    env.push(("ASSIGNMENTS_TABLE".into(), world.tables.assignments.clone()));
    env.push(("AUDIT_TABLE".into(), world.tables.audit.clone()));
    // A real queue (moto's SQS): an all-or-nothing paste queues its own recovery.
    env.push(("JOBS_QUEUE_URL".into(), moto_queue().await));
    env.push(("AWS_ENDPOINT_URL_SQS".into(), moto::endpoint().to_string()));
    env.push(("WEBHOOK_QUEUE_URL".into(), moto_queue().await));
    env.push(("EXPORT_BUCKET".into(), "keypool-test".into()));
    // Launch tokens are signed by a real key (moto's KMS).
    let (_, launch_key) = super::kms_signing_key().await;
    env.push(("LAUNCH_KEY_IDS".into(), launch_key));
    env.push(("LAUNCH_ISSUER".into(), "https://api.keypool.test".into()));
    env.push(("AWS_ENDPOINT_URL_KMS".into(), moto::endpoint().to_string()));
    let function = Function::spawn(std::path::Path::new(binary), &env).unwrap();
    let mut answers = Vec::new();
    for event in events {
        let event: Value = serde_json::from_str(event).unwrap();
        let outcome = runtime
            .invoke(event, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        let Outcome::Response(response) = outcome else {
            panic!("the function reported an error: {outcome:?}");
        };
        let status = response["statusCode"].as_u64().unwrap() as u16;
        let body = response["body"]
            .as_str()
            .map(|b| serde_json::from_str(b).unwrap_or(Value::String(b.into())))
            .unwrap_or(Value::Null);
        answers.push((status, body));
    }
    function.stop().await;
    answers
}

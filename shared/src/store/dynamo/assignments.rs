//! Redemption and cancellation, each one transaction across both tables; assignments and
//! launches.

use super::*;
use crate::domain::{Condition, CounterId};

#[async_trait]
impl Assignments for DynamoStore {
    async fn pool_assignment_of(
        &self,
        pool_id: &PoolId,
        learner: &UserId,
    ) -> Result<Option<AssignmentId>> {
        let item = self
            .get(
                &self.tables.main,
                key_of(schema::guard_pk(pool_id), schema::guard_sk(learner)),
                "reading a learner's pool guard",
            )
            .await?;
        Ok(item
            .and_then(|i| attr_string(&i, "assignment_id"))
            .and_then(|id| AssignmentId::parse(&id)))
    }

    async fn redeem(
        &self,
        assignment: &Assignment,
        pool: &Pool,
        now: Timestamp,
        limits: &[(CounterId, Condition)],
    ) -> Result<Result<(), RedeemConflict>> {
        let items = self.redemption_items(assignment, pool, now, limits)?;
        let Some(codes) = self.transact(items, "redeeming a key").await? else {
            return Ok(Ok(()));
        };
        let failed = |i: usize| condition_failed(&codes, i);
        if (5..5 + limits.len()).any(failed) {
            // Counted to its limit meanwhile: the learner is throttled, whatever else failed.
            Ok(Err(RedeemConflict::LimitChanged))
        } else if failed(0) {
            Ok(Err(RedeemConflict::KeyNotAvailable))
        } else if failed(1) {
            Ok(Err(RedeemConflict::PoolNotActive))
        } else if failed(3) {
            Ok(Err(RedeemConflict::LearnerHoldsAssignment))
        } else {
            Err(anyhow::anyhow!("redemption cancelled for an unexpected reason: {codes:?}").into())
        }
    }

    async fn get_assignment(
        &self,
        learner: &UserId,
        id: &AssignmentId,
    ) -> Result<Option<Assignment>> {
        self.get(
            &self.tables.assignments,
            key_of(schema::user_pk(learner), schema::assignment_sk(id)),
            "reading an assignment",
        )
        .await?
        .map(|item| from_item(item, "assignment"))
        .transpose()
    }

    async fn list_assignments(
        &self,
        learner: &UserId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Assignment>> {
        let start = decode_cursor(cursor, &[(SK, schema::ASSIGNMENT_SK_PREFIX)])?.map(|mut k| {
            k.insert(PK.into(), s(schema::user_pk(learner)));
            k
        });
        let query = self
            .client
            .query()
            .table_name(&self.tables.assignments)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(schema::user_pk(learner)))
            .expression_attribute_values(":prefix", s(schema::ASSIGNMENT_SK_PREFIX))
            .scan_index_forward(false);
        let (items, next_cursor) = self
            .collect(Listing {
                query,
                start,
                limit,
                filtered: false,
                cursor_attrs: &[SK],
                what: "listing assignments",
            })
            .await?;
        page_of(items, next_cursor, "assignment")
    }

    async fn record_launch(
        &self,
        learner: &UserId,
        id: &AssignmentId,
        now: Timestamp,
    ) -> Result<Option<Assignment>> {
        let launch = self
            .client
            .update_item()
            .table_name(&self.tables.assignments)
            .set_key(Some(key_of(
                schema::user_pk(learner),
                schema::assignment_sk(id),
            )))
            .update_expression("SET last_launched_at = :now ADD launch_count :one")
            .condition_expression("attribute_exists(PK) AND attribute_not_exists(cancelled_at)")
            .expression_attribute_values(":now", ts(&now))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send();
        conditional(launch, "recording a launch")
            .await?
            .and_then(|out| out.attributes)
            .map(|item| from_item(item, "assignment"))
            .transpose()
    }

    async fn assignment_learner(&self, org: &OrgId, id: &AssignmentId) -> Result<Option<UserId>> {
        let item = self
            .get(
                &self.tables.main,
                key_of(schema::org_pk(org), schema::assignment_ref_sk(id)),
                "reading an assignment pointer",
            )
            .await?;
        Ok(item
            .and_then(|i| attr_string(&i, "learner"))
            .and_then(|l| UserId::parse(&l).ok()))
    }

    async fn cancel_assignment(
        &self,
        a: &Assignment,
        pool: &Pool,
        now: Timestamp,
        record: &crate::domain::AuditRecord,
    ) -> Result<bool> {
        let cutoff = now - chrono::Duration::hours(crate::domain::CANCEL_WINDOW_HOURS);
        let assignment_update = Update::builder()
            .table_name(&self.tables.assignments)
            .set_key(Some(key_of(
                schema::user_pk(&a.learner),
                schema::assignment_sk(&a.assignment_id),
            )))
            .update_expression("SET cancelled_at = :now")
            .condition_expression(
                "attribute_exists(PK) AND attribute_not_exists(cancelled_at) \
                 AND launch_count = :zero AND redeemed_at > :cutoff",
            )
            .expression_attribute_values(":now", ts(&now))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":cutoff", ts(&cutoff))
            .build()
            .context("building the assignment cancellation")?;
        let key_update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(schema::key_pk(&a.key), schema::KEY_SK)))
            .update_expression(
                "SET #status = :available, GSI1SK = :gsk, \
                 barred = list_append(if_not_exists(barred, :nobody), :learner) \
                 REMOVE redeemed_by, redeemed_at, assignment_id, assignment_expires_at",
            )
            .condition_expression("#status = :redeemed AND assignment_id = :assignment")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":available", s(KeyStatus::Available.as_str()))
            .expression_attribute_values(":redeemed", s(KeyStatus::Redeemed.as_str()))
            .expression_attribute_values(":assignment", s(a.assignment_id.to_string()))
            .expression_attribute_values(
                ":gsk",
                s(schema::key_by_status_sk(KeyStatus::Available, &a.key)),
            )
            .expression_attribute_values(":nobody", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":learner", AttributeValue::L(vec![s(a.learner.as_str())]))
            .build()
            .context("building the key release")?;
        let pool_uncount = self.count(pool, 0, -1, None)?;
        let guard_delete = Delete::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::guard_pk(&a.pool_id),
                schema::guard_sk(&a.learner),
            )))
            .condition_expression("assignment_id = :assignment")
            .expression_attribute_values(":assignment", s(a.assignment_id.to_string()))
            .build()
            .context("building the guard delete")?;
        let pointer_update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(
                schema::org_pk(&a.org),
                schema::assignment_ref_sk(&a.assignment_id),
            )))
            .update_expression("SET cancelled_at = :now")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_values(":now", ts(&now))
            .build()
            .context("building the pointer update")?;
        let mut items = vec![
            TransactWriteItem::builder()
                .update(assignment_update)
                .build(),
            TransactWriteItem::builder().update(key_update).build(),
            pool_uncount,
            TransactWriteItem::builder().delete(guard_delete).build(),
            TransactWriteItem::builder().update(pointer_update).build(),
        ];
        items.extend(self.audit_put(record)?);
        match self.transact(items, "cancelling an assignment").await? {
            None => Ok(true),
            Some(codes) if condition_failed(&codes, 0) => Ok(false),
            Some(codes) => Err(anyhow::anyhow!(
                "cancellation of {} refused by an item it should own: {codes:?}",
                a.assignment_id
            )
            .into()),
        }
    }
}

impl DynamoStore {
    /// The redemption transaction, in the order [`Assignments::redeem`] reads its
    /// cancellation reasons: the key, a count shard, the assignment, the learner's pool guard,
    /// the organization's pointer, then one check per limit. Public so that the bench sends
    /// the very same request bare.
    pub fn redemption_items(
        &self,
        assignment: &Assignment,
        pool: &Pool,
        now: Timestamp,
        limits: &[(CounterId, Condition)],
    ) -> Result<Vec<TransactWriteItem>> {
        let a = assignment;
        let key_update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(schema::key_pk(&a.key), schema::KEY_SK)))
            .update_expression(
                "SET #status = :redeemed, redeemed_by = :learner, redeemed_at = :now, \
                 assignment_id = :assignment, assignment_expires_at = :ends, GSI1SK = :gsk",
            )
            .condition_expression(
                "attribute_exists(PK) AND #status = :available AND pool_id = :pool \
                 AND NOT contains(barred, :learner)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":redeemed", s(KeyStatus::Redeemed.as_str()))
            .expression_attribute_values(":available", s(KeyStatus::Available.as_str()))
            .expression_attribute_values(":learner", s(a.learner.as_str()))
            .expression_attribute_values(":now", ts(&now))
            .expression_attribute_values(":assignment", s(a.assignment_id.to_string()))
            .expression_attribute_values(":ends", ts(&a.expires_at))
            .expression_attribute_values(":pool", pool_id_value(&a.pool_id)?)
            .expression_attribute_values(
                ":gsk",
                s(schema::key_by_status_sk(KeyStatus::Redeemed, &a.key)),
            )
            .build()
            .context("building the key update")?;
        // Counted only while the pool is at the version whose settings (window, deactivation,
        // availability) the caller checked and shaped the assignment with.
        let pool_count = self.count(pool, 0, 1, Some(pool.version))?;
        let assignment_put = Put::builder()
            .table_name(&self.tables.assignments)
            .set_item(Some(to_item(
                a,
                schema::user_pk(&a.learner),
                schema::assignment_sk(&a.assignment_id),
                "assignment",
            )?))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .context("building the assignment put")?;
        let mut guard = key_of(schema::guard_pk(&a.pool_id), schema::guard_sk(&a.learner));
        guard.insert(ENTITY.into(), s("guard"));
        guard.insert("assignment_id".into(), s(a.assignment_id.to_string()));
        let guard_put = Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(guard))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .context("building the guard put")?;
        // The pointer lets an admin of the organization find the assignment by its id.
        let mut pointer = key_of(
            schema::org_pk(&a.org),
            schema::assignment_ref_sk(&a.assignment_id),
        );
        pointer.insert(ENTITY.into(), s("assignment_ref"));
        pointer.insert("learner".into(), s(a.learner.as_str()));
        pointer.insert("pool_id".into(), pool_id_value(&a.pool_id)?);
        // Kept while the assignment lasts; cancelling is over long before.
        pointer.insert(schema::TTL.into(), n(a.expires_at.timestamp()));
        let pointer_put = Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(pointer))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .context("building the assignment pointer put")?;
        let mut items = vec![
            TransactWriteItem::builder().update(key_update).build(),
            pool_count,
            TransactWriteItem::builder().put(assignment_put).build(),
            TransactWriteItem::builder().put(guard_put).build(),
            TransactWriteItem::builder().put(pointer_put).build(),
        ];
        // The learner is still under every limit when the redemption commits.
        for (id, condition) in limits {
            let parts = counters::condition_parts(condition, "");
            let check = ConditionCheck::builder()
                .table_name(&self.tables.main)
                .set_key(Some(counters::counter_key(id)))
                .condition_expression(&parts.expression)
                .set_expression_attribute_names(non_empty(
                    counters::names_in(&[&parts.expression])
                        .into_iter()
                        .map(|(p, n)| (p.to_string(), n.to_string()))
                        .collect(),
                ))
                .set_expression_attribute_values(non_empty(parts.values.into_iter().collect()))
                .build()
                .context("building a limit check")?;
            items.push(TransactWriteItem::builder().condition_check(check).build());
        }
        Ok(items)
    }
}

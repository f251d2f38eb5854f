//! Invoice lines, each written once with its month's totals; reading them back.

use super::*;

#[async_trait]
impl Ledger for DynamoStore {
    async fn record_invoice_line(&self, line: &InvoiceLine) -> Result<bool> {
        let pk = schema::invoice_pk(&line.org, line.month);
        let line_put = Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(to_item(
                line,
                pk.clone(),
                schema::invoice_line_sk(&line.assignment_id, line.kind),
                "invoice_line",
            )?))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .context("building the invoice line put")?;
        let counter = match line.kind {
            crate::domain::LineKind::Redemption => "redemptions",
            crate::domain::LineKind::Credit => "credits",
        };
        let totals_update = Update::builder()
            .table_name(&self.tables.main)
            .set_key(Some(key_of(pk, schema::INVOICE_TOTALS_SK)))
            .update_expression("SET #entity = :entity ADD #counter :one")
            .expression_attribute_names("#entity", ENTITY)
            .expression_attribute_names("#counter", counter)
            .expression_attribute_values(":entity", s("invoice_totals"))
            .expression_attribute_values(":one", n(1))
            .build()
            .context("building the invoice totals update")?;
        let items = vec![
            TransactWriteItem::builder().put(line_put).build(),
            TransactWriteItem::builder().update(totals_update).build(),
        ];
        match self.transact(items, "recording an invoice line").await? {
            None => Ok(true),
            // The line is there: an earlier delivery of the same record billed it.
            Some(codes) if codes.first().is_some_and(|c| c == "ConditionalCheckFailed") => {
                Ok(false)
            }
            Some(codes) => Err(anyhow::anyhow!(
                "invoice line refused for an unexpected reason: {codes:?}"
            )
            .into()),
        }
    }
}

#[async_trait]
impl Invoices for DynamoStore {
    async fn invoice_totals(&self, org: &OrgId, month: Month) -> Result<InvoiceTotals> {
        let item = self
            .get(
                &self.tables.main,
                key_of(schema::invoice_pk(org, month), schema::INVOICE_TOTALS_SK),
                "reading invoice totals",
            )
            .await?;
        let count = |name: &str| {
            item.as_ref()
                .and_then(|i| match i.get(name) {
                    Some(AttributeValue::N(v)) => v.parse().ok(),
                    _ => None,
                })
                .unwrap_or(0)
        };
        Ok(InvoiceTotals {
            redemptions: count("redemptions"),
            credits: count("credits"),
        })
    }

    async fn list_invoice_lines(
        &self,
        org: &OrgId,
        month: Month,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<InvoiceLine>> {
        let pk = schema::invoice_pk(org, month);
        let start = decode_cursor(cursor, &[(SK, schema::INVOICE_LINE_SK_PREFIX)])?.map(|mut k| {
            k.insert(PK.into(), s(pk.clone()));
            k
        });
        let query = self
            .client
            .query()
            .table_name(&self.tables.main)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":prefix", s(schema::INVOICE_LINE_SK_PREFIX))
            .consistent_read(true);
        let (items, next_cursor) = self
            .collect(Listing {
                query,
                start,
                limit,
                filtered: false,
                cursor_attrs: &[SK],
                what: "listing invoice lines",
            })
            .await?;
        page_of(items, next_cursor, "invoice line")
    }
}

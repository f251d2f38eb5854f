//! Listings: opaque cursors that never leave the caller's partition, and pages read until full.

use super::*;

/// Cursors are our own: the sort-key attributes of the last item returned, base64url JSON.
/// Decoding checks every attribute against the prefix the query allows, so a cursor can
/// never reach outside the caller's partition.
pub(super) fn encode_cursor(item: &Item, attrs: &[&str]) -> Option<String> {
    let mut map = BTreeMap::new();
    for &a in attrs {
        map.insert(a.to_string(), attr_string(item, a)?);
    }
    let json = serde_json::to_vec(&map).ok()?;
    Some(URL_SAFE_NO_PAD.encode(json))
}

pub(super) fn decode_cursor(
    cursor: Option<&str>,
    allowed: &[(&str, &str)],
) -> Result<Option<Item>> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let invalid = || {
        Error::refused(
            ErrorCode::InvalidCursor,
            "the cursor is not one this listing gave out",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let map: BTreeMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if map.len() != allowed.len() {
        return Err(invalid());
    }
    let mut item = Item::new();
    for &(name, prefix) in allowed {
        let value = map.get(name).ok_or_else(invalid)?;
        if !value.starts_with(prefix) || value.len() > 400 {
            return Err(invalid());
        }
        item.insert(name.to_string(), s(value.clone()));
    }
    Ok(Some(item))
}

/// Items of a listing as domain values.
pub(super) fn page_of<T: DeserializeOwned>(
    items: Vec<Item>,
    next_cursor: Option<String>,
    entity: &'static str,
) -> Result<Page<T>> {
    Ok(Page {
        items: readable(items, entity),
        next_cursor,
    })
}

/// One kind of item in an organization's partition, listed newest first.
pub(super) struct OrgListing {
    pub(super) sk_prefix: &'static str,
    /// The lower-cased attributes that a search looks in (any of them may match).
    pub(super) search_attrs: &'static [&'static str],
    pub(super) entity: &'static str,
    pub(super) what: &'static str,
}

/// How a listing reads its pages.
pub(super) struct Listing<'a> {
    pub(super) query: QueryFluentBuilder,
    pub(super) start: Option<Item>,
    pub(super) limit: usize,
    pub(super) filtered: bool,
    pub(super) cursor_attrs: &'a [&'a str],
    pub(super) what: &'static str,
}

/// A test on each item a query returns, for filters that DynamoDB cannot express.
pub(super) type Keep<'a> = &'a (dyn Fn(&Item) -> bool + Send + Sync);

impl DynamoStore {
    /// Reads pages until `limit` items are collected, and returns a cursor that resumes right
    /// after the last item returned (none when nothing is left).
    pub(super) async fn collect(
        &self,
        listing: Listing<'_>,
    ) -> Result<(Vec<Item>, Option<String>)> {
        self.collect_where(listing, None).await
    }

    /// Like `collect`, keeping only the items that `keep` admits (the listing counts as
    /// filtered).
    pub(super) async fn collect_where(
        &self,
        mut listing: Listing<'_>,
        keep: Option<Keep<'_>>,
    ) -> Result<(Vec<Item>, Option<String>)> {
        listing.filtered |= keep.is_some();
        let limit = listing.limit.max(1);
        let mut out = Vec::with_capacity(limit.min(1000));
        let mut start = listing.start;
        let mut pages = 0;
        loop {
            let want = if listing.filtered {
                FILTERED_PAGE
            } else {
                i32::try_from(limit - out.len()).unwrap_or(i32::MAX)
            };
            let page = listing
                .query
                .clone()
                .set_exclusive_start_key(start.take())
                .limit(want)
                .send()
                .await
                .map_err(sdk(listing.what))?;
            let more_pages = page.last_evaluated_key().is_some();
            let items = page.items.unwrap_or_default();
            let count = items.len();
            for (i, item) in items.into_iter().enumerate() {
                if keep.is_some_and(|keep| !keep(&item)) {
                    continue;
                }
                out.push(item);
                if out.len() == limit {
                    let more = i + 1 < count || more_pages;
                    let cursor = if more {
                        out.last()
                            .and_then(|last| encode_cursor(last, listing.cursor_attrs))
                    } else {
                        None
                    };
                    return Ok((out, cursor));
                }
            }
            pages += 1;
            match page.last_evaluated_key {
                // A rare search term must not read a whole organization in one request: after
                // enough pages, hand back what was found with a cursor that resumes the scan.
                Some(lek) if listing.filtered && pages >= MAX_FILTERED_PAGES => {
                    return Ok((out, encode_cursor(&lek, listing.cursor_attrs)));
                }
                Some(lek) => start = Some(lek),
                None => return Ok((out, None)),
            }
        }
    }

    /// A page of one kind of the organization's items, optionally those whose lower-cased
    /// search attribute contains `search` and that `keep` admits.
    pub(super) async fn list_org<T: DeserializeOwned>(
        &self,
        org: &OrgId,
        kind: &OrgListing,
        search: Option<&str>,
        keep: Option<Keep<'_>>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<T>> {
        let start = decode_cursor(cursor, &[(SK, kind.sk_prefix)])?.map(|mut k| {
            k.insert(PK.into(), s(schema::org_pk(org)));
            k
        });
        let mut query = self
            .client
            .query()
            .table_name(&self.tables.main)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(schema::org_pk(org)))
            .expression_attribute_values(":prefix", s(kind.sk_prefix))
            .scan_index_forward(false);
        if let Some(q) = search {
            let mut any = Vec::with_capacity(kind.search_attrs.len());
            for (i, attr) in kind.search_attrs.iter().enumerate() {
                any.push(format!("contains(#search{i}, :q)"));
                query = query.expression_attribute_names(format!("#search{i}"), *attr);
            }
            query = query
                .filter_expression(any.join(" OR "))
                .expression_attribute_values(":q", s(q));
        }
        let (items, next_cursor) = self
            .collect_where(
                Listing {
                    query,
                    start,
                    limit,
                    filtered: search.is_some(),
                    cursor_attrs: &[SK],
                    what: kind.what,
                },
                keep,
            )
            .await?;
        page_of(items, next_cursor, kind.entity)
    }
}

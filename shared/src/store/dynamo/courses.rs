//! Courses.

use super::*;
use crate::domain::AuditRecord;

#[async_trait]
impl Courses for DynamoStore {
    async fn put_course(&self, course: &Course, record: &AuditRecord) -> Result<()> {
        let put = self.course_put(course, "attribute_not_exists(PK)")?;
        if self
            .write_with_record(put, record, "creating a course")
            .await?
        {
            Ok(())
        } else {
            Err(anyhow::anyhow!("a new course's id is taken").into())
        }
    }

    async fn replace_course(&self, course: &Course, record: &AuditRecord) -> Result<bool> {
        let put = self.course_put(course, "attribute_exists(PK)")?;
        self.write_with_record(put, record, "changing a course")
            .await
    }

    async fn get_course(&self, org: &OrgId, id: &CourseId) -> Result<Option<Course>> {
        let key = key_of(schema::org_pk(org), schema::course_sk(id));
        self.get(&self.tables.main, key, "reading a course")
            .await?
            .map(|item| from_item(item, "course"))
            .transpose()
    }

    async fn list_courses(
        &self,
        org: &OrgId,
        search: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Course>> {
        let kind = OrgListing {
            sk_prefix: schema::COURSE_SK_PREFIX,
            search_attrs: &["title_lower"],
            entity: "course",
            what: "listing courses",
        };
        self.list_org(org, &kind, search, None, cursor, limit).await
    }
}

impl DynamoStore {
    fn course_put(&self, course: &Course, condition: &str) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(course_item(course)?))
            .condition_expression(condition)
            .build()
            .context("building a course put")?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// A course's item, with the lower-cased title that searches match.
fn course_item(course: &Course) -> Result<Item> {
    let mut item = to_item(
        course,
        schema::org_pk(&course.org),
        schema::course_sk(&course.course_id),
        "course",
    )?;
    item.insert("title_lower".into(), s(course.title.to_lowercase()));
    Ok(item)
}

//! Test data and grants that several test modules set up the same way.

use tokio_postgres::Client;

/// The monitoring role may read the tables it explains (PostgreSQL 14+:
/// pg_read_all_data; before: SELECT on the schema), as the README says.
pub async fn grant_reading(admin: &Client) {
    let version: i32 = super::pg::version_num(admin).await;
    let grant = if version >= 140000 {
        "GRANT pg_read_all_data TO pgvigil"
    } else {
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO pgvigil"
    };
    admin.batch_execute(grant).await.unwrap();
}

/// `orders`: 400,000 rows (customer = id % 50,000, note = `note_prefix`
/// and the id), analyzed and readable by pgvigil. Filtering on customer
/// without an index is a slow seq scan that an index would fix.
pub async fn create_orders(admin: &Client, note_prefix: &str) {
    admin
        .batch_execute(&format!(
            "CREATE TABLE orders (id int, customer int, note text);
             INSERT INTO orders SELECT g, g % 50000, '{note_prefix}' || g FROM generate_series(1, 400000) g;
             ANALYZE orders;"
        ))
        .await
        .unwrap();
    grant_reading(admin).await;
}

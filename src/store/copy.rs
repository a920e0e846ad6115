//! `deputy store copy`: everything a stopped SQLite deployment holds — its
//! database and the signing keys of its `keys_dir` — into an empty
//! PostgreSQL database, in one transaction that checks its own work before
//! it commits.
//!
//! The source is read through the SQLite `Db` inside one EXCLUSIVE
//! transaction taken in exclusive locking mode: no other connection can
//! read or write the file until the copy ends, and a server that still has
//! it open makes the copy refuse instead of racing it. The target is written
//! through the PostgreSQL `Db` inside one `PgStore` transaction: every table
//! must be empty, rows are copied table by table (parents before children,
//! in the source's insertion order) with multi-row INSERTs, the audit
//! trail keeps its ids (`OVERRIDING SYSTEM VALUE`, then the identity
//! sequence is moved past them), the keys are sealed under the
//! key-encryption key, and the row counts and the last audit id are
//! compared with the source before anything commits.

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::db::{Db, Row, Value};
use super::postgres::PgStore;
use super::sqlite::SqliteDb;
use super::{StoreError, StoreResult};
use crate::args;
use crate::keys::file::{KeyMeta, StoredKey};
use crate::keys::sealed::Kek;

/// Every data table of the schema, parents before children (a resource
/// names its client, a resource scope its resource), each copied whole.
/// `schema_migrations` is each engine's own; `signing_keys` is filled from
/// the key files (SQLite deployments keep their keys in `keys_dir`).
pub const TABLES: &[&str] = &[
    "clients",
    "resources",
    "resource_scopes",
    "users",
    "grants",
    "tokens",
    "used_assertions",
    "audit_events",
    "sessions",
    "interactions",
    "consent_scopes",
    "authorization_codes",
    "refresh_tokens",
    "server_secrets",
    "delegation_rules",
    "login_failures",
    "registration_tokens",
    "dpop_proofs",
    "backchannel_requests",
];

const KEYS_TABLE: &str = "signing_keys";
const MIGRATIONS_TABLE: &str = "schema_migrations";

/// Rows read from SQLite at a time, and the most rows in one INSERT.
const PAGE_ROWS: usize = 500;
/// PostgreSQL's limit on the parameters of one statement.
const MAX_PARAMS: usize = 65_535;

/// What a copy wrote, once it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Rows per table, in `TABLES` order.
    pub tables: Vec<(String, i64)>,
    /// Signing keys written to `signing_keys`.
    pub keys: usize,
    /// The highest audit event id (0 without events).
    pub last_audit_id: i64,
}

/// The SQLite database being copied, locked against every other
/// connection until this is dropped.
pub struct Source {
    conn: Connection,
}

impl Source {
    /// Open the SQLite file at `path` for copying: it must exist, be a
    /// deputy database with exactly this binary's schema, and be open
    /// nowhere else (a running server has it open: stop it first). The lock
    /// is held until the `Source` is dropped, so nothing can write between
    /// the copy and its verification.
    pub fn open(path: &Path) -> Result<Source, String> {
        let shown = path.display();
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(format!("--from {shown} is not a file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!("--from {shown}: no such file"))
            }
            Err(e) => return Err(format!("--from {shown}: {e}")),
        }
        // Read-write without CREATE: a mistyped path is never made into a
        // new database, and the lock below needs write access.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("--from {shown}: cannot open: {e}"))?;
        // What SQLite says, as the operator needs to hear it.
        let refused = |e: StoreError| match e {
            StoreError::Busy => format!(
                "--from {shown} is in use by another process: stop the deputy server \
                 (and any command) using it first"
            ),
            StoreError::Database(m) if m.contains("not a database") => {
                format!("--from {shown} is not a SQLite database")
            }
            other => format!("--from {shown}: {other}"),
        };
        conn.busy_timeout(std::time::Duration::from_secs(2))
            .map_err(|e| refused(e.into()))?;
        // Exclusive locking mode: the EXCLUSIVE transaction's lock keeps
        // readers out too (in WAL mode a plain EXCLUSIVE transaction does
        // not), and it cannot be had while another connection has the
        // database open, which is how a server still running is noticed.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(|e| refused(e.into()))?;
        conn.execute_batch("BEGIN EXCLUSIVE")
            .map_err(|e| refused(e.into()))?;
        let version = super::migrate::current_version(&conn).map_err(refused)?;
        let latest = super::migrate::latest_version();
        if version == 0 {
            return Err(format!("--from {shown} is not a deputy database"));
        }
        if version < latest {
            return Err(format!(
                "--from {shown} has schema version {version}, older than this deputy's \
                 ({latest}): migrate it first (`deputy migrate --database {shown}`, the server \
                 stopped), then copy"
            ));
        }
        if version > latest {
            return Err(format!(
                "--from {shown} has schema version {version}, newer than this deputy \
                 supports ({latest}): copy with a newer deputy"
            ));
        }
        Ok(Source { conn })
    }

    /// Rows in `table` of the source (it must be one of `TABLES`).
    pub fn count(&self, table: &str) -> StoreResult<i64> {
        plain(table)?;
        (&SqliteDb(&self.conn) as &dyn Db).scalar(&format!("SELECT count(*) FROM {table}"), &[])
    }

    /// Copy everything into `target` (migrated, and empty), with `keys` —
    /// the deployment's key files — sealed under `kek`, in one transaction
    /// of the target. A refusal or a failed check writes nothing.
    pub fn copy_to(
        &mut self,
        target: &PgStore,
        keys: &[StoredKey],
        kek: &Kek,
    ) -> Result<Copied, String> {
        let conn = &mut self.conn;
        target
            .transact_blocking(move |pg| copy_all(&SqliteDb(&*conn), pg, keys, kek))
            .map_err(|e| e.to_string())?
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        // Nothing was written; ending the transaction releases the lock
        // (closing the connection would too).
        let _ = self.conn.execute_batch("ROLLBACK");
    }
}

/// Table and column names come from the engines' catalogs and are used in
/// SQL text, so they must be plain identifiers.
fn plain(name: &str) -> StoreResult<&str> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Ok(name)
    } else {
        Err(StoreError::Schema(format!(
            "`{name}` is not a plain table or column name"
        )))
    }
}

/// A store failure while copying `table`, saying which table.
fn in_table(table: &str) -> impl Fn(StoreError) -> StoreError + '_ {
    move |e| match e {
        StoreError::Database(m) => StoreError::Database(format!("table {table}: {m}")),
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("table {table}: {m}")),
        StoreError::Schema(m) => StoreError::Schema(format!("table {table}: {m}")),
        other => other,
    }
}

fn strings(db: &dyn Db, sql: &str, args: &[Value]) -> StoreResult<Vec<String>> {
    db.query(sql, args)?.iter().map(|r| r.get(0)).collect()
}

/// The data tables each engine has, against the ones this copy knows: a
/// table it does not know would be left behind, so it refuses instead.
fn check_tables(src: &dyn Db, pg: &dyn Db) -> StoreResult<Result<(), String>> {
    let known: BTreeSet<String> = TABLES
        .iter()
        .chain(std::iter::once(&KEYS_TABLE))
        .map(|t| t.to_string())
        .collect();
    let sqlite: BTreeSet<String> = strings(
        src,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'",
        &[],
    )?
    .into_iter()
    .filter(|t| t != MIGRATIONS_TABLE)
    .collect();
    let postgres: BTreeSet<String> = strings(
        pg,
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        &[],
    )?
    .into_iter()
    .filter(|t| t != MIGRATIONS_TABLE)
    .collect();
    for (engine, found) in [("SQLite", &sqlite), ("PostgreSQL", &postgres)] {
        let unknown: Vec<&String> = found.difference(&known).collect();
        let missing: Vec<&String> = known.difference(found).collect();
        if !unknown.is_empty() || !missing.is_empty() {
            return Ok(Err(format!(
                "the {engine} schema's tables are not the ones this copy knows \
                 (unknown: {unknown:?}, missing: {missing:?})"
            )));
        }
    }
    Ok(Ok(()))
}

/// How one table is read from SQLite and written to PostgreSQL.
#[derive(Debug)]
struct Plan {
    table: &'static str,
    columns: Vec<String>,
    /// Read in rowid order (insertion order), or, for a WITHOUT ROWID
    /// table, in the order of these primary-key columns (indexes into
    /// `columns`).
    order: Order,
    /// PostgreSQL generates this column (GENERATED ALWAYS AS IDENTITY): the
    /// copy supplies the source's values and then moves the sequence.
    identity: Option<String>,
}

#[derive(Debug)]
enum Order {
    Rowid,
    Key(Vec<usize>),
}

fn plan(src: &dyn Db, pg: &dyn Db, table: &'static str) -> StoreResult<Result<Plan, String>> {
    let sqlite = strings(
        src,
        "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
        args![table],
    )?;
    let postgres = pg.query(
        "SELECT column_name::text, is_identity::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position",
        args![table],
    )?;
    let mut pg_columns = Vec::with_capacity(postgres.len());
    let mut identity = None;
    for r in &postgres {
        let name: String = r.get(0)?;
        if r.get::<String>(1)? == "YES" {
            identity = Some(name.clone());
        }
        pg_columns.push(name);
    }
    let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
        (sqlite.iter().collect(), pg_columns.iter().collect());
    if a != b {
        let only_sqlite: Vec<&&String> = a.difference(&b).collect();
        let only_pg: Vec<&&String> = b.difference(&a).collect();
        return Ok(Err(format!(
            "table {table}: the columns differ between the engines \
             (only in SQLite: {only_sqlite:?}, only in PostgreSQL: {only_pg:?})"
        )));
    }
    for c in &sqlite {
        plain(c)?;
    }
    let without_rowid: i64 = src.scalar(
        "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
        args![table],
    )?;
    let order = if without_rowid == 0 {
        Order::Rowid
    } else {
        let key = strings(
            src,
            "SELECT name FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk",
            args![table],
        )?;
        let idx: Option<Vec<usize>> = key
            .iter()
            .map(|k| sqlite.iter().position(|c| c == k))
            .collect();
        match idx {
            Some(idx) if !idx.is_empty() => Order::Key(idx),
            _ => {
                return Err(StoreError::Schema(format!(
                    "table {table} has neither a rowid nor a primary key"
                )))
            }
        }
    };
    Ok(Ok(Plan {
        table,
        columns: sqlite,
        order,
        identity,
    }))
}

impl Plan {
    /// The next page of rows after `after` (the last page's last row, as
    /// read: with its rowid first for rowid tables), in copy order.
    fn page(&self, src: &dyn Db, after: Option<&Row>) -> StoreResult<Vec<Row>> {
        let t = self.table;
        let cols = self.columns.join(", ");
        let limit = Value::Int(i64::try_from(PAGE_ROWS).unwrap_or(i64::MAX));
        match &self.order {
            Order::Rowid => {
                let from = after
                    .map(|r| r.get::<i64>(0))
                    .transpose()?
                    .unwrap_or(i64::MIN);
                src.query(
                    &format!(
                        "SELECT rowid, {cols} FROM {t} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2"
                    ),
                    &[Value::Int(from), limit],
                )
            }
            Order::Key(idx) => {
                let key: Vec<&str> = idx
                    .iter()
                    .filter_map(|i| self.columns.get(*i).map(String::as_str))
                    .collect();
                let key_list = key.join(", ");
                match after {
                    None => src.query(
                        &format!("SELECT {cols} FROM {t} ORDER BY {key_list} LIMIT ?1"),
                        &[limit],
                    ),
                    Some(last) => {
                        let mut args = Vec::with_capacity(idx.len() + 1);
                        for i in idx {
                            let v = last.0.get(*i).cloned().ok_or_else(|| {
                                StoreError::Corrupt(format!("table {t}: short row"))
                            })?;
                            args.push(v);
                        }
                        let marks: Vec<String> = (1..=idx.len()).map(|n| format!("?{n}")).collect();
                        args.push(limit);
                        src.query(
                            &format!(
                                "SELECT {cols} FROM {t} WHERE ({key_list}) > ({}) \
                                 ORDER BY {key_list} LIMIT ?{}",
                                marks.join(", "),
                                idx.len() + 1
                            ),
                            &args,
                        )
                    }
                }
            }
        }
    }

    /// Insert `rows` (as `page` read them) with as few statements as
    /// PostgreSQL's parameter limit allows.
    fn insert(&self, pg: &dyn Db, rows: &[Row]) -> StoreResult<()> {
        let skip = usize::from(matches!(self.order, Order::Rowid));
        let n = self.columns.len();
        let per_statement = (MAX_PARAMS / n.max(1)).clamp(1, PAGE_ROWS);
        for chunk in rows.chunks(per_statement) {
            let mut values = Vec::with_capacity(chunk.len() * n);
            let mut tuples = Vec::with_capacity(chunk.len());
            for row in chunk {
                let fields = row.0.get(skip..).unwrap_or_default();
                if fields.len() != n {
                    return Err(StoreError::Corrupt(format!(
                        "table {}: a row has {} values for {n} columns",
                        self.table,
                        fields.len()
                    )));
                }
                let first = values.len();
                values.extend(fields.iter().cloned());
                let marks: Vec<String> = (first + 1..=first + n).map(|k| format!("?{k}")).collect();
                tuples.push(format!("({})", marks.join(", ")));
            }
            let overriding = if self.identity.is_some() {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            };
            pg.execute(
                &format!(
                    "INSERT INTO {} ({}){overriding} VALUES {}",
                    self.table,
                    self.columns.join(", "),
                    tuples.join(", ")
                ),
                &values,
            )?;
        }
        Ok(())
    }

    /// Copy the whole table; the rows copied.
    fn copy(&self, src: &dyn Db, pg: &dyn Db) -> StoreResult<i64> {
        let mut copied = 0i64;
        let mut last: Option<Row> = None;
        loop {
            let rows = self.page(src, last.as_ref())?;
            if rows.is_empty() {
                return Ok(copied);
            }
            self.insert(pg, &rows)?;
            copied += i64::try_from(rows.len()).unwrap_or(i64::MAX);
            let full = rows.len() == PAGE_ROWS;
            last = rows.into_iter().last();
            if !full {
                return Ok(copied);
            }
        }
    }
}

/// Serials for `keys`, unique and in the order the key ring sorts them
/// (activation time, then serial, then kid), so the same key signs at every
/// moment after the copy. Keys from before serials were recorded have serial
/// 0; they get one from their creation time, moved up where needed to stay
/// after the key before them. Returns (kid, serial) in that order.
pub fn assign_serials(keys: &[KeyMeta]) -> Result<Vec<(String, i64)>, String> {
    let mut sorted: Vec<&KeyMeta> = keys.iter().collect();
    sorted.sort_by(|a, b| {
        (a.activates_at, a.serial, &a.kid).cmp(&(b.activates_at, b.serial, &b.kid))
    });
    let mut out = Vec::with_capacity(sorted.len());
    let mut previous: Option<i64> = None;
    for k in sorted {
        let own = if k.serial == 0 {
            k.created_at.checked_mul(1_000_000_000)
        } else {
            i64::try_from(k.serial).ok()
        }
        .ok_or_else(|| format!("key {}: serial {} is out of range", k.kid, k.serial))?;
        let serial = match previous {
            Some(p) => own.max(
                p.checked_add(1)
                    .ok_or_else(|| format!("key {}: no serial left after {p}", k.kid))?,
            ),
            None => own,
        };
        previous = Some(serial);
        out.push((k.kid.clone(), serial));
    }
    Ok(out)
}

/// The target's tables that already hold rows, with their counts.
fn occupied(pg: &dyn Db) -> StoreResult<Vec<String>> {
    let mut out = Vec::new();
    for t in TABLES.iter().chain(std::iter::once(&KEYS_TABLE)) {
        let n: i64 = pg.scalar(&format!("SELECT count(*) FROM {t}"), &[])?;
        if n > 0 {
            let rows = if n == 1 { "row" } else { "rows" };
            out.push(format!("{t} ({n} {rows})"));
        }
    }
    Ok(out)
}

fn insert_keys(pg: &dyn Db, keys: &[StoredKey], kek: &Kek) -> StoreResult<Result<(), String>> {
    let metas: Vec<KeyMeta> = keys.iter().map(|k| k.meta.clone()).collect();
    let serials = match assign_serials(&metas) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    for (kid, serial) in serials {
        let Some(k) = keys.iter().find(|k| k.meta.kid == kid) else {
            continue;
        };
        crate::keys::db::insert_stored(pg, kek, k, serial).map_err(in_table(KEYS_TABLE))?;
    }
    Ok(Ok(()))
}

/// The kids in the order the key ring sorts them.
fn signing_order(keys: &[KeyMeta]) -> Vec<String> {
    let mut sorted: Vec<&KeyMeta> = keys.iter().collect();
    sorted.sort_by(|a, b| {
        (a.activates_at, a.serial, &a.kid).cmp(&(b.activates_at, b.serial, &b.kid))
    });
    sorted.into_iter().map(|k| k.kid.clone()).collect()
}

fn last_audit_id(db: &dyn Db) -> StoreResult<i64> {
    db.scalar("SELECT COALESCE(MAX(id), 0) FROM audit_events", &[])
}

/// The copy, inside the target's transaction (run again from the start if
/// PostgreSQL makes it retry). `Ok(Err(_))` is a refusal: nothing commits.
fn copy_all(
    src: &dyn Db,
    pg: &dyn Db,
    keys: &[StoredKey],
    kek: &Kek,
) -> StoreResult<Result<Copied, String>> {
    if let Err(e) = check_tables(src, pg)? {
        return Ok(Err(e));
    }
    let taken = occupied(pg)?;
    if !taken.is_empty() {
        return Ok(Err(format!(
            "the target database is not empty: {}; copy only into a new database",
            taken.join(", ")
        )));
    }
    let sqlite_keys: i64 = src.scalar(&format!("SELECT count(*) FROM {KEYS_TABLE}"), &[])?;
    if sqlite_keys > 0 {
        return Ok(Err(format!(
            "the SQLite database has {sqlite_keys} rows in {KEYS_TABLE}, which deputy on \
             SQLite never writes (its keys are the files in keys_dir); refusing to guess \
             which keys are the deployment's"
        )));
    }
    let mut plans = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        match plan(src, pg, t).map_err(in_table(t))? {
            Ok(p) => plans.push(p),
            Err(e) => return Ok(Err(e)),
        }
    }
    let mut tables = Vec::with_capacity(plans.len());
    for p in &plans {
        let n = p.copy(src, pg).map_err(in_table(p.table))?;
        tables.push((p.table.to_string(), n));
    }
    if let Err(e) = insert_keys(pg, keys, kek)? {
        return Ok(Err(e));
    }

    // Verify, still inside the transaction: any difference rolls it back.
    let mut mismatches = Vec::new();
    for (t, copied) in &tables {
        let source: i64 = src.scalar(&format!("SELECT count(*) FROM {t}"), &[])?;
        let target: i64 = pg.scalar(&format!("SELECT count(*) FROM {t}"), &[])?;
        if source != *copied || target != *copied {
            mismatches.push(format!(
                "{t}: {source} rows in SQLite, {copied} copied, {target} in PostgreSQL"
            ));
        }
    }
    let (src_last, pg_last) = (last_audit_id(src)?, last_audit_id(pg)?);
    if src_last != pg_last {
        mismatches.push(format!(
            "audit_events: last id {src_last} in SQLite, {pg_last} in PostgreSQL"
        ));
    }
    let stored = crate::keys::db::load_all(pg, kek)?;
    let source_order = signing_order(&keys.iter().map(|k| k.meta.clone()).collect::<Vec<_>>());
    let target_order = signing_order(&stored.iter().map(|k| k.meta.clone()).collect::<Vec<_>>());
    if source_order != target_order {
        mismatches.push(format!(
            "signing keys: {source_order:?} in keys_dir, {target_order:?} in PostgreSQL"
        ));
    }
    if !mismatches.is_empty() {
        return Ok(Err(format!(
            "the copy does not match its source, nothing was written: {}",
            mismatches.join("; ")
        )));
    }

    // Generated ids continue after the copied ones. Last, because a
    // sequence change is not undone by a rollback.
    for p in &plans {
        if let Some(column) = &p.identity {
            let max: Option<i64> =
                pg.scalar(&format!("SELECT MAX({column}) FROM {}", p.table), &[])?;
            if let Some(max) = max {
                pg.query(
                    "SELECT setval(pg_get_serial_sequence(?1, ?2), ?3)",
                    args![p.table, column.as_str(), max],
                )
                .map_err(in_table(p.table))?;
            }
        }
    }
    Ok(Ok(Copied {
        tables,
        keys: stored.len(),
        last_audit_id: pg_last,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{open_and_migrate, open_connection};
    use std::path::PathBuf;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "deputy-copy-{name}-{}-{}",
            std::process::id(),
            crate::secret::random_token(6)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A migrated SQLite database, closed again (as a stopped server leaves it).
    fn migrated(dir: &Path) -> PathBuf {
        let path = dir.join("deputy.db");
        drop(open_and_migrate(&path).unwrap());
        path
    }

    fn refusal(path: &Path) -> String {
        match Source::open(path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => e,
        }
    }

    #[test]
    fn the_copy_knows_every_table_of_the_sqlite_schema() {
        let dir = temp_dir("tables");
        let conn = open_and_migrate(&dir.join("deputy.db")).unwrap();
        let mut found: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite%' AND name <> 'schema_migrations'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        found.sort();
        let mut known: Vec<String> = TABLES
            .iter()
            .chain(std::iter::once(&KEYS_TABLE))
            .map(|t| t.to_string())
            .collect();
        known.sort();
        assert_eq!(
            found, known,
            "a migration added or removed a table: teach store::copy about it"
        );
    }

    #[test]
    fn a_source_that_is_not_this_deputys_database_is_refused() {
        let dir = temp_dir("refused");
        assert!(refusal(&dir.join("missing.db")).ends_with("no such file"));
        assert!(!dir.join("missing.db").exists(), "never created");
        assert!(refusal(&dir).ends_with("is not a file"));

        let text = dir.join("notes.txt");
        std::fs::write(
            &text,
            "not a database, but long enough to have a header ".repeat(20),
        )
        .unwrap();
        assert!(
            refusal(&text).ends_with("is not a SQLite database"),
            "{}",
            refusal(&text)
        );

        let other = dir.join("other.db");
        open_connection(&other, false)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .unwrap();
        assert!(refusal(&other).ends_with("is not a deputy database"));

        let old = dir.join("old.db");
        {
            let conn = open_connection(&old, false).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, \
                 applied_at INTEGER NOT NULL)",
            )
            .unwrap();
            for (version, name, sql) in super::super::migrate::MIGRATIONS.iter().take(10) {
                conn.execute_batch(sql).unwrap();
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?1, ?2, 0)",
                    rusqlite::params![version, name],
                )
                .unwrap();
            }
        }
        let e = refusal(&old);
        assert!(
            e.contains("has schema version 10, older than this deputy's")
                && e.contains("deputy migrate --database"),
            "{e}"
        );

        let newer = migrated(&temp_dir("newer"));
        open_connection(&newer, false)
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
                [],
            )
            .unwrap();
        assert!(refusal(&newer).contains("newer than this deputy supports"));
    }

    #[test]
    fn a_database_still_open_elsewhere_is_refused_and_a_copy_in_progress_locks_others_out() {
        let path = migrated(&temp_dir("busy"));
        {
            // A server (or a command) that has the database open.
            let server = open_connection(&path, false).unwrap();
            let _: i64 = server
                .query_row("SELECT count(*) FROM clients", [], |r| r.get(0))
                .unwrap();
            let e = refusal(&path);
            assert!(e.contains("is in use by another process"), "{e}");
            assert!(e.contains("stop the deputy server"), "{e}");
        }
        let source = Source::open(&path).unwrap();
        assert_eq!(source.count("clients").unwrap(), 0);
        // While the copy runs, nobody reads or writes the file.
        let late = open_connection(&path, false);
        let blocked = late.and_then(|c| {
            c.busy_timeout(std::time::Duration::from_millis(100))?;
            c.execute(
                "INSERT INTO server_secrets (name, value) VALUES ('x', 'y')",
                [],
            )?;
            Ok(())
        });
        assert!(blocked.is_err(), "a write got in during the copy");
        drop(source);
        // Afterwards the file is as it was, and usable.
        let conn = open_and_migrate(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM server_secrets", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    fn meta(kid: &str, created_at: i64, activates_at: i64, serial: u128) -> KeyMeta {
        KeyMeta {
            kid: kid.to_string(),
            alg: "ES256".to_string(),
            created_at,
            activates_at,
            serial,
            ec_kid: None,
        }
    }

    #[test]
    fn keys_without_a_serial_get_distinct_ones_in_signing_order() {
        let keys = [
            meta("c", 300, 1_000, 0),
            meta("b", 200, 1_000, 0),
            meta("z", 100, 900, 0),
            // A later key whose recorded serial is smaller than the created_at
            // derived ones before it: it still sorts after them.
            meta("a", 250, 1_000, 5),
            meta("d", 2_000, 3_000, 2_000_000_000_123),
        ];
        let assigned = assign_serials(&keys).unwrap();
        let kids: Vec<&str> = assigned.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kids, signing_order(&keys));
        assert_eq!(kids, ["z", "b", "c", "a", "d"]);
        let serials: Vec<i64> = assigned.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            serials,
            [
                100_000_000_000,
                200_000_000_000,
                300_000_000_000,
                300_000_000_001,
                2_000_000_000_123
            ]
        );
        // With the new serials the ring sorts them the same way.
        let renumbered: Vec<KeyMeta> = keys
            .iter()
            .map(|k| {
                let s = assigned.iter().find(|(kid, _)| *kid == k.kid).unwrap().1;
                meta(&k.kid, k.created_at, k.activates_at, s as u128)
            })
            .collect();
        assert_eq!(signing_order(&renumbered), signing_order(&keys));
        assert!(assign_serials(&[meta("x", 0, 0, u128::MAX)]).is_err());
        assert_eq!(assign_serials(&[]).unwrap(), vec![]);
    }

    // ---- Against PostgreSQL (DEPUTY_TEST_POSTGRES), skipped without it.

    fn pg_url() -> Option<String> {
        match std::env::var("DEPUTY_TEST_POSTGRES") {
            Ok(u) if !u.is_empty() => Some(u),
            _ => {
                eprintln!("skipped: DEPUTY_TEST_POSTGRES is not set");
                None
            }
        }
    }

    /// A migrated, empty schema of its own.
    fn target(url: &str, name: &str) -> PgStore {
        let schema = format!(
            "copy_{name}_{}",
            crate::secret::random_token(6)
                .to_lowercase()
                .replace('-', "_")
        );
        PgStore::open(&super::super::postgres::create_schema(url, &schema).unwrap()).unwrap()
    }

    fn kek() -> Kek {
        use base64::Engine;
        Kek::from_base64(
            &base64::engine::general_purpose::STANDARD.encode(crate::secret::random_bytes::<32>()),
        )
        .unwrap()
    }

    /// A deployment's database with a row or more in every table, booleans
    /// both ways, a gap in the audit ids, and more tokens and used
    /// assertions than one page.
    fn fill(path: &Path, tokens: usize) {
        let conn = open_and_migrate(path).unwrap();
        conn.execute_batch(
            r#"
            BEGIN;
            INSERT INTO clients (id, kind, name, auth_method, secret_hash, jwks, jwks_uri,
                assertion_alg, redirect_uris, post_logout_redirect_uris, grant_types, scopes,
                audiences, created_at)
            VALUES ('app', 'app', 'App ünï', 'none', NULL, NULL, NULL, 'ES256',
                    '["http://127.0.0.1/cb"]', '[]', '["authorization_code","refresh_token"]',
                    '["notes:read"]', '[]', 10),
                   ('api', 'service', 'API', 'client_secret_basic', '$argon2id$v=19$x', NULL,
                    NULL, 'ES256', '[]', '[]', '["client_credentials"]', '["read"]',
                    '["https://api"]', 11);
            INSERT INTO resources (id, client_id, created_at)
            VALUES ('https://api', 'api', 12), ('https://other', NULL, 13);
            INSERT INTO resource_scopes (resource_id, name, description)
            VALUES ('https://api', 'read', 'Read your notes'), ('https://api', 'write', 'Write');
            INSERT INTO users (id, username, email, name, password_hash, disabled_at, created_at)
            VALUES ('u1', 'alice', 'a@example.com', 'Alice', '$argon2id$p', NULL, 14),
                   ('u2', 'bob', NULL, NULL, '$argon2id$q', 30, 15);
            INSERT INTO grants VALUES ('g1', 'authorization_code', 'u1', 'app', 'openid', 14, 16, NULL);
            INSERT INTO audit_events (id, at, event, mode, outcome, person, detail)
            VALUES (1, 20, 'client_added', 'admin', 'ok', NULL, '{"id":"app"}'),
                   (2, 21, 'login', 'person', 'ok', 'u1', NULL),
                   (5, 22, 'login_failed', 'person', 'refused', 'u2', NULL);
            INSERT INTO sessions VALUES ('sh1', 'u1', 14, '["pwd"]', 14, 99999);
            INSERT INTO interactions (id, browser_hash, csrf, request, login_done, created_at, expires_at)
            VALUES ('i1', 'bh', 'c1', '{}', 1, 1, 2), ('i2', 'bh', 'c2', '{}', 0, 1, 2);
            INSERT INTO consent_scopes VALUES ('u1', 'app', 'https://api', 'read', 17);
            INSERT INTO authorization_codes (code_hash, client_id, user_id, grant_id, redirect_uri,
                redirect_uri_sent, code_challenge, scope, nonce, resource, auth_time, amr,
                issued_at, expires_at, consumed_at, sid)
            VALUES ('c1', 'app', 'u1', 'g1', 'http://127.0.0.1/cb', 1, 'ch', 'openid', 'n',
                    'https://api', 14, '["pwd"]', 18, 78, NULL, 'sid1'),
                   ('c2', 'app', 'u1', 'g1', 'http://127.0.0.1/cb', 0, 'ch', 'openid', NULL,
                    'https://api', 14, '["pwd"]', 18, 78, 19, NULL);
            INSERT INTO refresh_tokens VALUES ('rh1', 'rj1', 'g1', 'app', 'u1', 'openid',
                'https://api', 14, '["pwd"]', 18, 1000, 2000, 19, 'app', 'rh2', NULL, 'sid1', 'jkt1', 'task1');
            INSERT INTO refresh_tokens VALUES ('rh2', 'rj2', 'g1', 'app', 'u1', 'openid',
                'https://api', 14, '["pwd"]', 19, 1001, 2000, NULL, NULL, NULL, NULL, 'sid1', NULL, NULL);
            INSERT INTO server_secrets VALUES ('refresh_successor_key', 'c2VjcmV0');
            INSERT INTO delegation_rules VALUES ('r1', 'api', 'https://other', '["read"]', 300, 1, NULL, 19, 1);
            INSERT INTO login_failures VALUES ('acct', 3, 20, 25);
            INSERT INTO registration_tokens VALUES ('th1', 1, NULL, 2, 1);
            INSERT INTO dpop_proofs VALUES ('ph1', 99);
            INSERT INTO backchannel_requests VALUES ('ah1', 'hd1', 'app', 'u1', 'openid', 'https://api',
                'triage', 'A1B2', 20, 320, 5, 25, 'approved', 26, 21, 14);
            "#,
        )
        .unwrap();
        for i in 0..tokens {
            conn.execute(
                "INSERT INTO tokens (jti, kind, subject, subject_kind, client_id, client_kind, \
                 actor_chain, audience, scope, task, issued_at, expires_at, parent_jti, grant_id, \
                 grant_type, rule_id, revoked_at, revoked_reason, may_act, actor_token_jti) \
                 VALUES (?1, 'access', 'u1', 'person', 'app', 'app', ?2, 'https://api', 'read', \
                 NULL, ?3, ?4, ?5, 'g1', 'authorization_code', NULL, ?6, ?7, NULL, NULL)",
                rusqlite::params![
                    format!("jti-{:08}", tokens - i),
                    (i % 7 == 0).then_some(r#"{"sub":"api"}"#),
                    1000 + i as i64,
                    2000 + i as i64,
                    (i > 0).then(|| format!("jti-{:08}", tokens - i + 1)),
                    (i % 10 == 0).then_some(1500),
                    (i % 10 == 0).then_some("revoked"),
                ],
            )
            .unwrap();
        }
        for i in 0..(PAGE_ROWS * 2 + 17) {
            conn.execute(
                "INSERT INTO used_assertions VALUES (?1, ?2, ?3)",
                rusqlite::params![format!("c{}", i % 3), format!("a{i}"), i as i64],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }

    fn keys_dir(dir: &Path) -> Vec<StoredKey> {
        use crate::keys::file;
        let keys = dir.join("keys");
        // Two key generations (a P-256 and an RSA key each).
        file::generate(&keys, 100, 100).unwrap();
        file::generate(&keys, 100, 400).unwrap();
        // Two P-256 keys from before serials (and RSA keys) were recorded,
        // activating together.
        for _ in 0..2 {
            let m = file::new_key(50, 50).unwrap();
            let path = keys.join(format!("{}.json", m.meta.kid));
            std::fs::write(keys.join(format!("{}.pem", m.meta.kid)), &m.private_pem).unwrap();
            std::fs::write(&path, serde_json::to_vec(&m.meta).unwrap()).unwrap();
            let mut json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            json.as_object_mut().unwrap().remove("serial");
            std::fs::write(&path, json.to_string()).unwrap();
        }
        let stored = file::load_all(&keys).unwrap();
        assert_eq!(stored.iter().filter(|k| k.meta.serial == 0).count(), 2);
        stored
    }

    /// Every row of `table`, comparable across the engines (booleans as
    /// 0/1, as SQLite keeps them), sorted.
    fn dump(db: &dyn Db, columns: &[String], table: &str) -> Vec<String> {
        let mut rows: Vec<String> = db
            .query(&format!("SELECT {} FROM {table}", columns.join(", ")), &[])
            .unwrap()
            .into_iter()
            .map(|r| {
                let values: Vec<Value> =
                    r.0.into_iter()
                        .map(|v| match v {
                            Value::Bool(b) => Value::Int(i64::from(b)),
                            other => other,
                        })
                        .collect();
                format!("{values:?}")
            })
            .collect();
        rows.sort();
        rows
    }

    fn counts(pg: &PgStore) -> Vec<(String, i64)> {
        pg.read_blocking(|db| {
            let mut out = Vec::new();
            for t in TABLES.iter().chain(std::iter::once(&KEYS_TABLE)) {
                out.push((
                    t.to_string(),
                    db.scalar(&format!("SELECT count(*) FROM {t}"), &[])?,
                ));
            }
            Ok(out)
        })
        .unwrap()
    }

    #[test]
    fn everything_is_copied_once_and_a_second_copy_is_refused() {
        let Some(url) = pg_url() else { return };
        let dir = temp_dir("all");
        let path = dir.join("deputy.db");
        fill(&path, 2 * PAGE_ROWS + 3);
        let keys = keys_dir(&dir);
        let kek = kek();
        let pg = target(&url, "all");

        let mut source = Source::open(&path).unwrap();
        let copied = source.copy_to(&pg, &keys, &kek).unwrap();
        assert_eq!(copied.keys, 6);
        assert_eq!(copied.last_audit_id, 5);
        let by_table: std::collections::HashMap<&str, i64> = copied
            .tables
            .iter()
            .map(|(t, n)| (t.as_str(), *n))
            .collect();
        assert_eq!(by_table["tokens"], (2 * PAGE_ROWS + 3) as i64);
        assert_eq!(by_table["used_assertions"], (2 * PAGE_ROWS + 17) as i64);
        assert_eq!(by_table["audit_events"], 3);
        for t in TABLES {
            assert!(by_table[t] > 0, "{t} was not exercised");
        }

        // Row for row the same, booleans included.
        let src = SqliteDb(&source.conn);
        for t in TABLES {
            let columns = strings(
                &src,
                "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
                args![*t],
            )
            .unwrap();
            let theirs = pg.read_blocking(|db| Ok(dump(db, &columns, t))).unwrap();
            assert_eq!(dump(&src, &columns, t), theirs, "table {t}");
        }
        let flags: Vec<(String, bool)> = pg
            .read_blocking(|db| {
                db.query(
                    "SELECT code_hash, redirect_uri_sent FROM authorization_codes ORDER BY code_hash",
                    &[],
                )?
                .iter()
                .map(|r| Ok((r.get(0)?, r.get(1)?)))
                .collect()
            })
            .unwrap();
        assert_eq!(flags, [("c1".to_string(), true), ("c2".to_string(), false)]);

        // The audit trail's ids go on after the copied ones.
        let next = pg
            .transact_blocking(|db| {
                super::super::audit::insert(
                    db,
                    &crate::audit::AuditEvent::new(30, "key_rotated", crate::audit::Mode::Admin),
                )?;
                Ok(Ok::<i64, String>(last_audit_id(db)?))
            })
            .unwrap()
            .unwrap();
        assert_eq!(next, 6);

        // The keys open with the KEK, sign in the same order, serials distinct.
        let stored = pg
            .read_blocking(|db| crate::keys::db::load_all(db, &kek))
            .unwrap();
        let source_metas: Vec<KeyMeta> = keys.iter().map(|k| k.meta.clone()).collect();
        let stored_metas: Vec<KeyMeta> = stored.iter().map(|k| k.meta.clone()).collect();
        assert_eq!(signing_order(&stored_metas), signing_order(&source_metas));
        let serials: BTreeSet<u128> = stored_metas.iter().map(|m| m.serial).collect();
        assert_eq!(serials.len(), 6);
        assert_eq!(stored.iter().filter(|k| k.meta.is_rsa()).count(), 2);
        for k in &stored {
            let original = keys.iter().find(|o| o.meta.kid == k.meta.kid).unwrap();
            assert_eq!(k.private_pem, original.private_pem);
            // An RSA key stays with the P-256 key of its generation.
            assert_eq!(k.meta.ec_kid, original.meta.ec_kid);
            assert_eq!(k.public, original.public);
            assert_eq!(
                (k.meta.created_at, k.meta.activates_at),
                (original.meta.created_at, original.meta.activates_at)
            );
        }
        drop(source);

        // Into the now non-empty database: refused, nothing more written.
        let before = counts(&pg);
        let e = Source::open(&path)
            .unwrap()
            .copy_to(&pg, &keys, &kek)
            .unwrap_err();
        assert!(
            e.starts_with("the target database is not empty: clients (2 rows)"),
            "{e}"
        );
        assert!(e.contains("signing_keys (6 rows)"), "{e}");
        assert_eq!(counts(&pg), before);
    }

    #[test]
    fn a_row_that_cannot_be_copied_writes_nothing() {
        let Some(url) = pg_url() else { return };
        let dir = temp_dir("bad");
        let path = dir.join("deputy.db");
        fill(&path, 10);
        // SQLite keeps text in an INTEGER column of a table that is not STRICT.
        open_connection(&path, false)
            .unwrap()
            .execute(
                "UPDATE tokens SET issued_at = 'yesterday' WHERE jti = 'jti-00000004'",
                [],
            )
            .unwrap();
        let pg = target(&url, "bad");
        let e = Source::open(&path)
            .unwrap()
            .copy_to(&pg, &keys_dir(&dir), &kek())
            .unwrap_err();
        assert!(e.contains("table tokens"), "{e}");
        assert!(
            counts(&pg).iter().all(|(_, n)| *n == 0),
            "{:?}",
            counts(&pg)
        );
        // Nothing moved the audit trail's sequence either.
        let first = pg
            .transact_blocking(|db| {
                super::super::audit::insert(
                    db,
                    &crate::audit::AuditEvent::new(30, "x", crate::audit::Mode::Admin),
                )?;
                Ok(Ok::<i64, String>(last_audit_id(db)?))
            })
            .unwrap()
            .unwrap();
        assert_eq!(first, 1);
    }
}

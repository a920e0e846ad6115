//! `Db` over one PostgreSQL connection: a read on its own (every statement
//! answered at once, READ COMMITTED), or a SERIALIZABLE transaction whose
//! statements nobody reads an answer from (`defer`: BEGIN, savepoints,
//! inserts of records) wait and leave with the next statement that is read,
//! or with the COMMIT, in one round trip.

use std::cell::RefCell;

use tokio_postgres::types::Type;

use super::conn::{Answer, PgConn, Step};
use crate::store::db::{numbered_for_postgres, Db, Dialect, Row, Value};
use crate::store::{StoreError, StoreResult};

/// Deferred statements sent at most together (a longer job flushes early).
const MAX_DEFERRED: usize = 64;

enum Deferred {
    Simple(&'static str),
    Statement(String, Vec<Value>),
}

pub(super) struct PgDb<'c> {
    conn: RefCell<&'c mut PgConn>,
    deferred: RefCell<Vec<Deferred>>,
    /// BEGIN has been sent (so the end must be sent too).
    begun: RefCell<bool>,
    in_transaction: bool,
}

impl<'c> PgDb<'c> {
    /// Statements answered one by one, outside any transaction.
    pub(super) fn reader(conn: &'c mut PgConn) -> PgDb<'c> {
        PgDb {
            conn: RefCell::new(conn),
            deferred: RefCell::new(Vec::new()),
            begun: RefCell::new(false),
            in_transaction: false,
        }
    }

    /// A SERIALIZABLE transaction; its BEGIN leaves with its first statement.
    pub(super) fn transaction(conn: &'c mut PgConn) -> PgDb<'c> {
        conn.in_transaction = true;
        PgDb {
            conn: RefCell::new(conn),
            deferred: RefCell::new(vec![Deferred::Simple("BEGIN ISOLATION LEVEL SERIALIZABLE")]),
            begun: RefCell::new(false),
            in_transaction: true,
        }
    }

    /// Commit: what is still deferred and the COMMIT, in one round trip.
    /// A transaction that never sent anything has nothing to commit.
    pub(super) fn commit(self) -> StoreResult<()> {
        if !*self.begun.borrow() && self.deferred.borrow().len() <= 1 {
            self.conn.borrow_mut().in_transaction = false;
            return Ok(());
        }
        let result = self.send(Some(Step::Simple("COMMIT"))).map(|_| ());
        // Whatever the answer, the transaction ended (an error aborts it and
        // the COMMIT then rolls it back), unless the connection is gone.
        let mut conn = self.conn.borrow_mut();
        conn.in_transaction = false;
        result
    }

    /// Roll back; nothing deferred is sent.
    pub(super) fn rollback(self) -> StoreResult<()> {
        self.deferred.borrow_mut().clear();
        let mut conn = self.conn.borrow_mut();
        if *self.begun.borrow() {
            conn.pipeline(&[Step::Simple("ROLLBACK")])?;
        }
        conn.in_transaction = false;
        Ok(())
    }

    /// Send what is deferred, then `last`; the answer to `last`.
    fn send(&self, last: Option<Step<'_>>) -> StoreResult<Option<Answer>> {
        let deferred = std::mem::take(&mut *self.deferred.borrow_mut());
        let mut steps: Vec<Step<'_>> = deferred
            .iter()
            .map(|d| match d {
                Deferred::Simple(sql) => Step::Simple(sql),
                Deferred::Statement(sql, args) => Step::Execute(sql, args),
            })
            .collect();
        let wanted = last.is_some();
        steps.extend(last);
        if steps.is_empty() {
            return Ok(None);
        }
        if self.in_transaction {
            *self.begun.borrow_mut() = true;
        }
        let mut answers = self.conn.borrow_mut().pipeline(&steps)?;
        Ok(if wanted { answers.pop() } else { None })
    }
}

impl Db for PgDb<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&self, sql: &str, args: &[Value]) -> StoreResult<usize> {
        let sql = numbered_for_postgres(sql);
        match self.send(Some(Step::Execute(&sql, args)))? {
            Some(Answer::Count(n)) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => Err(StoreError::Database("no row count for a statement".into())),
        }
    }

    fn query(&self, sql: &str, args: &[Value]) -> StoreResult<Vec<Row>> {
        let sql = numbered_for_postgres(sql);
        match self.send(Some(Step::Query(&sql, args)))? {
            Some(Answer::Rows(rows)) => rows.iter().map(row_values).collect(),
            _ => Err(StoreError::Database("no rows for a query".into())),
        }
    }

    fn batch(&self, sql: &str) -> StoreResult<()> {
        self.send(Some(Step::Simple(sql)))?;
        Ok(())
    }

    fn defer(&self, sql: &str, args: &[Value]) -> StoreResult<()> {
        if !self.in_transaction {
            return self.execute(sql, args).map(|_| ());
        }
        let full = {
            let mut deferred = self.deferred.borrow_mut();
            deferred.push(Deferred::Statement(
                numbered_for_postgres(sql),
                args.to_vec(),
            ));
            deferred.len() >= MAX_DEFERRED
        };
        if full {
            self.send(None)?;
        }
        Ok(())
    }
}

fn row_values(r: &tokio_postgres::Row) -> StoreResult<Row> {
    let corrupt = |e: tokio_postgres::Error| StoreError::Corrupt(e.to_string());
    let mut out = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => r
                .try_get::<_, Option<i64>>(i)
                .map_err(corrupt)?
                .map(Value::Int),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)
                .map_err(corrupt)?
                .map(|v| Value::Int(i64::from(v))),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)
                .map_err(corrupt)?
                .map(|v| Value::Int(i64::from(v))),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)
                .map_err(corrupt)?
                .map(Value::Bool),
            Type::BYTEA => r
                .try_get::<_, Option<Vec<u8>>>(i)
                .map_err(corrupt)?
                .map(Value::Bytes),
            _ => r
                .try_get::<_, Option<String>>(i)
                .map_err(corrupt)?
                .map(Value::Text),
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

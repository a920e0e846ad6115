//! The one interface repository functions speak, whatever the engine:
//! SQL with numbered parameters (`?1`, `?2`, …; PostgreSQL gets `$1`, `$2`),
//! values of a few plain types, and rows read by column index. Each engine
//! implements `Db` (`sqlite.rs`, `postgres.rs`); callers never know which.

use super::{StoreError, StoreResult};

/// The SQL dialect, for the few statements that must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
impl<T: Into<Value> + Clone> From<&Option<T>> for Value {
    fn from(v: &Option<T>) -> Self {
        v.clone().map_or(Value::Null, Into::into)
    }
}
impl From<&i64> for Value {
    fn from(v: &i64) -> Self {
        Value::Int(*v)
    }
}
impl From<&bool> for Value {
    fn from(v: &bool) -> Self {
        Value::Bool(*v)
    }
}

/// Parameters for a statement: `args![a, b, c]`.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::store::Value::from($v)),*][..]
    };
}

/// A column value read back as a Rust type.
pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            // SQLite keeps booleans as 0 and 1.
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Bytes(b) => Some(b.clone()),
            Value::Text(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `idx` as `T`; a missing column or another type means the
    /// stored data is not what deputy wrote: a store failure (5xx).
    pub fn get<T: FromValue>(&self, idx: usize) -> StoreResult<T> {
        self.0
            .get(idx)
            .and_then(T::from_value)
            .ok_or_else(|| StoreError::Corrupt(format!("column {idx} has an unexpected type")))
    }
}

/// A connection (or transaction) of either engine.
pub trait Db {
    fn dialect(&self) -> Dialect;
    /// Run a statement; the number of rows it changed.
    fn execute(&self, sql: &str, args: &[Value]) -> StoreResult<usize>;
    /// Run a query; every row.
    fn query(&self, sql: &str, args: &[Value]) -> StoreResult<Vec<Row>>;
    /// Run statements without parameters (migrations, locks).
    fn batch(&self, sql: &str) -> StoreResult<()>;
    /// Run a statement whose outcome the caller does not read (a record's
    /// insert, a savepoint). An engine may send it later, with the next
    /// statement or the commit, in one round trip; read-your-writes still
    /// holds, and a failure still fails the transaction, at the latest when
    /// it commits.
    fn defer(&self, sql: &str, args: &[Value]) -> StoreResult<()> {
        self.execute(sql, args).map(|_| ())
    }
}

impl dyn Db + '_ {
    /// The first row, if any.
    pub fn query_one(&self, sql: &str, args: &[Value]) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Whether the query returns a row.
    pub fn exists(&self, sql: &str, args: &[Value]) -> StoreResult<bool> {
        Ok(!self.query(sql, args)?.is_empty())
    }

    /// The first column of the first row (e.g. a count).
    pub fn scalar<T: FromValue>(&self, sql: &str, args: &[Value]) -> StoreResult<T> {
        match self.query_one(sql, args)? {
            Some(r) => r.get(0),
            None => Err(StoreError::Corrupt("a scalar query returned no row".into())),
        }
    }
}

/// `?N` placeholders as PostgreSQL's `$N` (outside string literals).
pub fn numbered_for_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_literal = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                in_literal = !in_literal;
                out.push(c);
            }
            '?' if !in_literal => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_literals() {
        assert_eq!(
            numbered_for_postgres("SELECT 1 FROM t WHERE a = ?1 AND b = '?' AND c = ?12"),
            "SELECT 1 FROM t WHERE a = $1 AND b = '?' AND c = $12"
        );
    }

    #[test]
    fn rows_read_typed_values() {
        let r = Row(vec![
            Value::Int(7),
            Value::Null,
            Value::Text("x".into()),
            Value::Int(1),
        ]);
        assert_eq!(r.get::<i64>(0).unwrap(), 7);
        assert_eq!(r.get::<Option<String>>(1).unwrap(), None);
        assert_eq!(r.get::<String>(2).unwrap(), "x");
        assert!(r.get::<bool>(3).unwrap());
        assert!(r.get::<String>(0).is_err());
        assert!(r.get::<i64>(9).is_err());
    }
}

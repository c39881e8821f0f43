//! Plain data: what module state may hold (nil, booleans, numbers, strings,
//! and tables of them with string keys or a 1..n sequence), converted to and
//! from JSON so the init can own it, copy it, and carry it across a re-exec.

use mlua::{Lua, Table, Value};
use serde_json::{Map, Number, Value as Json};

const MAX_DEPTH: usize = 32;

/// A Lua value as JSON, or why it is not plain data.
pub fn to_json(v: &Value, path: &str, depth: usize) -> Result<Json, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{path}: nested deeper than {MAX_DEPTH} levels (a cycle?)"
        ));
    }
    Ok(match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => Json::Number((*i).into()),
        Value::Number(n) => Number::from_f64(*n)
            .map(Json::Number)
            .ok_or_else(|| format!("{path}: {n} is not a finite number"))?,
        Value::String(s) => Json::String(
            s.to_str()
                .map_err(|_| format!("{path}: strings must be UTF-8"))?
                .to_string(),
        ),
        Value::Table(t) => table_to_json(t, path, depth)?,
        other => return Err(format!("{path}: a {} is not plain data", other.type_name())),
    })
}

fn table_to_json(t: &Table, path: &str, depth: usize) -> Result<Json, String> {
    let n = t.raw_len();
    let mut count = 0usize;
    let mut map = Map::new();
    let mut seq_only = true;
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| format!("{path}: {e}"))?;
        count += 1;
        match &k {
            Value::Integer(i) if *i >= 1 && (*i as usize) <= n => {}
            Value::String(s) => {
                seq_only = false;
                let key = s
                    .to_str()
                    .map_err(|_| format!("{path}: keys must be UTF-8"))?
                    .to_string();
                let child = to_json(&v, &format!("{path}.{key}"), depth + 1)?;
                map.insert(key, child);
            }
            other => {
                return Err(format!(
                    "{path}: keys must be strings or a 1..n sequence, found a {} key",
                    other.type_name()
                ))
            }
        }
    }
    if seq_only || count == 0 {
        let mut arr = Vec::with_capacity(n);
        for i in 1..=n {
            let v: Value = t.raw_get(i).map_err(|e| format!("{path}[{i}]: {e}"))?;
            arr.push(to_json(&v, &format!("{path}[{i}]"), depth + 1)?);
        }
        // An empty table is an empty object: `{}` reads back as a table either way.
        return Ok(if arr.is_empty() {
            Json::Object(Map::new())
        } else {
            Json::Array(arr)
        });
    }
    if n > 0 {
        return Err(format!(
            "{path}: a table cannot mix a sequence with named keys"
        ));
    }
    Ok(Json::Object(map))
}

/// JSON back to a fresh Lua value.
pub fn from_json(lua: &Lua, j: &Json) -> mlua::Result<Value> {
    Ok(match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::String(lua.create_string(s)?),
        Json::Array(a) => {
            let t = lua.create_table_with_capacity(a.len(), 0)?;
            for (i, v) in a.iter().enumerate() {
                t.raw_set(i + 1, from_json(lua, v)?)?;
            }
            Value::Table(t)
        }
        Json::Object(m) => {
            let t = lua.create_table_with_capacity(0, m.len())?;
            for (k, v) in m {
                t.raw_set(k.as_str(), from_json(lua, v)?)?;
            }
            Value::Table(t)
        }
    })
}

/// Replaces the contents of `t` with those of `j` (an object or array), so
/// every holder of `t` sees the new data.
pub fn fill(lua: &Lua, t: &Table, j: &Json) -> mlua::Result<()> {
    t.clear()?;
    match j {
        Json::Object(m) => {
            for (k, v) in m {
                t.raw_set(k.as_str(), from_json(lua, v)?)?;
            }
        }
        Json::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                t.raw_set(i + 1, from_json(lua, v)?)?;
            }
        }
        _ => {}
    }
    Ok(())
}

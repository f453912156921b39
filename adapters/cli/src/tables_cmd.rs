//! `vserv tables` and `vserv query` (spec/tables.md): the query tables the server lets you
//! query, and rows of one by key or by key prefix (following the server's pages). Fields are
//! shown as aligned `name: value` lines (server text escaped, [`crate::show`]); `--json`
//! prints JSON instead (columns in the table's order).

use anyhow::bail;
use clap::Args;
use vserv_core::commands::{
    Command, Lookup, QUERY_DEFAULT_LIMIT, QUERY_MAX_LIMIT, Reply, TableInfo, TableQuery, TableRow,
};

use crate::client_cmd::Connected;
use crate::show::{escape, local_time};

/// `vserv tables`.
#[derive(Args, Debug, Clone)]
pub struct TablesArgs {
    /// Print a JSON array of objects (name, rows, loaded, loaded_local, error, columns).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub udp: crate::udp_cmd::UdpFlag,
}

/// How a command reaches the server: over the session, or as a sealed datagram.
pub type Caller<'a> = dyn FnMut(&Command) -> anyhow::Result<Reply> + 'a;

/// `vserv query TABLE KEY | vserv query TABLE --prefix P [--limit N]`.
#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// The table.
    pub table: String,
    /// The key of the row wanted (not with --prefix).
    #[arg(
        value_name = "KEY",
        required_unless_present = "prefix",
        conflicts_with = "prefix"
    )]
    pub row_key: Option<String>,
    /// Show the rows whose key starts with P, in key order ("" for every row).
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// With --prefix: the most rows shown (pages are followed up to it).
    #[arg(long, value_name = "N", requires = "prefix", default_value_t = QUERY_DEFAULT_LIMIT)]
    pub limit: u32,
    /// Print JSON: an object of the row's columns (an array of them with --prefix).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub udp: crate::udp_cmd::UdpFlag,
}

/// `vserv tables` on a session.
pub fn tables(connected: &mut Connected, args: &TablesArgs) -> anyhow::Result<()> {
    tables_with(&mut |cmd| Ok(connected.client.call(cmd)?), args)
}

/// `vserv tables`, each request sent by `call`.
pub fn tables_with(call: &mut Caller<'_>, args: &TablesArgs) -> anyhow::Result<()> {
    let Reply::Tables(infos) = call(&Command::Tables)? else {
        bail!("the server answered tables with something else");
    };
    if args.json {
        let list: Vec<serde_json::Value> = infos.iter().map(info_json).collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        print!("{}", tables_text(&infos));
    }
    Ok(())
}

/// One `tables --json` object.
fn info_json(t: &TableInfo) -> serde_json::Value {
    serde_json::json!({
        "name": t.name,
        "rows": t.rows,
        "loaded": t.loaded,
        "loaded_local": t.loaded.map(local_time),
        "error": t.error,
        "columns": t.columns,
    })
}

/// The `tables` listing: one block of aligned fields per table.
pub fn tables_text(infos: &[TableInfo]) -> String {
    if infos.is_empty() {
        return "no table you may query\n".to_owned();
    }
    let blocks: Vec<String> = infos
        .iter()
        .map(|t| {
            let mut fields = vec![
                ("table".to_owned(), t.name.clone()),
                ("rows".to_owned(), t.rows.to_string()),
                (
                    "loaded".to_owned(),
                    t.loaded.map_or_else(|| "never".to_owned(), local_time),
                ),
                ("columns".to_owned(), t.columns.join(", ")),
            ];
            if let Some(e) = &t.error {
                fields.push(("error".to_owned(), e.clone()));
            }
            aligned(&fields)
        })
        .collect();
    blocks.join("\n")
}

/// `name: value` lines, the values aligned, every text escaped.
pub fn aligned(fields: &[(String, String)]) -> String {
    let width = fields
        .iter()
        .map(|(n, _)| escape(n).chars().count())
        .max()
        .unwrap_or(0);
    fields
        .iter()
        .map(|(n, v)| {
            let name = format!("{}:", escape(n));
            format!("{name:<w$} {}\n", escape(v), w = width + 1)
        })
        .collect()
}

/// A row as one JSON object, its columns in order (a column named twice keeps both).
fn row_json(row: &TableRow) -> String {
    let members: Vec<String> = row
        .fields
        .iter()
        .map(|(n, v)| {
            format!(
                "{}:{}",
                serde_json::Value::String(n.clone()),
                serde_json::Value::String(v.clone())
            )
        })
        .collect();
    format!("{{{}}}", members.join(","))
}

/// `vserv query` on a session.
pub fn query(connected: &mut Connected, args: &QueryArgs) -> anyhow::Result<()> {
    query_with(&mut |cmd| Ok(connected.client.call(cmd)?), args)
}

/// `vserv query`, each request (one per page) sent by `call`.
pub fn query_with(call: &mut Caller<'_>, args: &QueryArgs) -> anyhow::Result<()> {
    let Some(prefix) = &args.prefix else {
        let key = args.row_key.clone().unwrap_or_default();
        let cmd = Command::Query(TableQuery {
            table: args.table.clone(),
            lookup: Lookup::Key(key),
        });
        let Reply::Row(row) = call(&cmd)? else {
            bail!("the server answered query with something else");
        };
        if args.json {
            println!("{}", row_json(&row));
        } else {
            print!("{}", aligned(&row.fields));
        }
        return Ok(());
    };
    let mut rows = Vec::new();
    let mut from = None;
    let want = usize::try_from(args.limit).unwrap_or(usize::MAX);
    while rows.len() < want {
        let left = u32::try_from(want - rows.len()).unwrap_or(u32::MAX);
        let cmd = Command::Query(TableQuery {
            table: args.table.clone(),
            lookup: Lookup::Prefix {
                prefix: prefix.clone(),
                limit: Some(left.min(QUERY_MAX_LIMIT)),
                from: from.take(),
            },
        });
        let Reply::Rows { rows: page, next } = call(&cmd)? else {
            bail!("the server answered query with something else");
        };
        if page.is_empty() && next.is_some() {
            bail!("the server sent an empty page with more to follow");
        }
        rows.extend(page);
        match next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    rows.truncate(want);
    if args.json {
        let items: Vec<String> = rows.iter().map(row_json).collect();
        println!("[{}]", items.join(","));
    } else if rows.is_empty() {
        println!("no row");
    } else {
        let blocks: Vec<String> = rows.iter().map(|r| aligned(&r.fields)).collect();
        print!("{}", blocks.join("\n"));
    }
    Ok(())
}

/// How the generic reply printer (`client_cmd`) shows a table reply.
pub fn print_reply(reply: &Reply) {
    match reply {
        Reply::Tables(infos) => print!("{}", tables_text(infos)),
        Reply::Row(row) => print!("{}", aligned(&row.fields)),
        Reply::Rows { rows, next } => {
            let blocks: Vec<String> = rows.iter().map(|r| aligned(&r.fields)).collect();
            print!("{}", blocks.join("\n"));
            if let Some(next) = next {
                println!("next {}", escape(next));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_align_and_escape() {
        let fields = vec![
            ("item".to_owned(), "keys".to_owned()),
            ("place".to_owned(), "hook\x1b[2J".to_owned()),
        ];
        assert_eq!(aligned(&fields), "item:  keys\nplace: hook\\x1b[2J\n");
        let row = TableRow::new(vec![("z".into(), "1".into()), ("a".into(), "\"q\"".into())]);
        assert_eq!(row_json(&row), r#"{"z":"1","a":"\"q\""}"#);
        assert_eq!(tables_text(&[]), "no table you may query\n");
    }
}

//! What commands print: aligned tables and `key: value` blocks for people,
//! stable JSON for scripts.
//!
//! JSON is always an array of objects for listings and one object for a
//! show; field names are those of the views each command defines, and never
//! include a password hash or a token secret (only a bearer at creation).
//! Writes go through a locked stdout and return their error, so that a closed
//! pipe (`couchmail mailbox list | head`) ends the command instead of a panic.

use std::io::{self, Write};

use serde::Serialize;

/// Prints `value` as pretty JSON and a newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, value)?;
    writeln!(stdout)?;
    Ok(())
}

/// Prints text as it is, adding a final newline if it lacks one.
pub fn text(text: &str) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        writeln!(stdout)?;
    }
    Ok(())
}

/// Prints a note for people on stderr (so that stdout stays parseable).
pub fn note(message: &str) {
    eprintln!("{message}");
}

/// A table of rows under a header, columns padded to their widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|title| title.to_uppercase()).collect(), rows: Vec::new() }
    }

    /// Adds a row; it must have as many cells as the header.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len(), "a table row has one cell per column");
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text: header, then rows; two spaces between columns and
    /// no trailing white space.
    pub fn render(&self) -> String {
        let n_columns = self.header.len();
        let mut widths = vec![0; n_columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (column_idx, cell) in row.iter().enumerate() {
                widths[column_idx] = widths[column_idx].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (column_idx, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if column_idx + 1 < n_columns {
                    let pad = widths[column_idx] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table, or `empty` on stderr when it has no rows.
    pub fn print(&self, empty: &str) -> anyhow::Result<()> {
        if self.is_empty() {
            note(empty);
            return Ok(());
        }
        text(&self.render())
    }
}

/// `key: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let line = format!("{key}:{:pad$} {value}", "", pad = width - key.len());
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A progress bar on stderr for a person at a terminal, or one that draws
/// nothing (in scripts, pipes and tests). `total`: the number of steps, or
/// `None` for a counter without an end.
pub fn progress(total: Option<u64>, message: &str) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(total) => (indicatif::ProgressBar::new(total), "{msg} [{bar:30}] {pos}/{len} ({eta} left)"),
        None => (indicatif::ProgressBar::new_spinner(), "{spinner} {msg} {pos}"),
    };
    // The templates are constants, so a parse failure would be a typo caught by any run.
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.to_owned());
    bar
}

/// `yes` or `no`.
pub fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_owned()
}

/// `-` for nothing.
pub fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_without_trailing_space() {
        let mut table = Table::new(&["domain", "active", "quota"]);
        table.row(vec!["example.com".into(), "yes".into(), "2G".into()]);
        table.row(vec!["a.io".into(), "no".into(), "-".into()]);
        assert_eq!(
            table.render(),
            "DOMAIN       ACTIVE  QUOTA\n\
             example.com  yes     2G\n\
             a.io         no      -\n"
        );
    }

    #[test]
    fn table_trims_an_empty_last_cell() {
        let mut table = Table::new(&["a", "b"]);
        table.row(vec!["x".into(), String::new()]);
        assert_eq!(table.render(), "A  B\nx\n");
    }

    #[test]
    fn table_counts_characters_not_bytes() {
        let mut table = Table::new(&["name", "x"]);
        table.row(vec!["bücher".into(), "1".into()]);
        assert_eq!(table.render(), "NAME    X\nbücher  1\n");
    }

    #[test]
    fn fields_align_values() {
        assert_eq!(
            fields(&[("address", "a@b.c".into()), ("quota", "2G".into()), ("name", String::new())]),
            "address: a@b.c\nquota:   2G\nname:\n"
        );
    }
}

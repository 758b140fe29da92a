//! A plain ASCII table, as `opa eval -f pretty` draws query results:
//! centred headers, left-aligned cells, one space of padding.
//!
//! ```text
//! +---+-------+
//! | x |   y   |
//! +---+-------+
//! | 1 | "abc" |
//! +---+-------+
//! ```

/// Renders `rows` under `header`; every row has `header.len()` cells.
pub fn render(header: &[String], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .filter_map(|row| row.get(i))
                .chain(header.get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule = {
        let mut line = String::from("+");
        for w in &widths {
            line.push_str(&"-".repeat(w + 2));
            line.push('+');
        }
        line
    };
    let mut out = String::new();
    out.push_str(&rule);
    out.push('\n');
    out.push_str(&line(header, &widths, true));
    out.push_str(&rule);
    out.push('\n');
    for row in rows {
        out.push_str(&line(row, &widths, false));
    }
    out.push_str(&rule);
    out.push('\n');
    out
}

fn line(cells: &[String], widths: &[usize], centred: bool) -> String {
    let mut out = String::from("|");
    for (i, w) in widths.iter().enumerate() {
        let cell = cells.get(i).map_or("", String::as_str);
        let pad = w - cell.chars().count().min(*w);
        let (left, right) = if centred {
            (pad / 2, pad - pad / 2)
        } else {
            (0, pad)
        };
        out.push(' ');
        out.push_str(&" ".repeat(left));
        out.push_str(cell);
        out.push_str(&" ".repeat(right));
        out.push_str(" |");
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centres_headers_and_left_aligns_cells() {
        let header = vec!["x".to_string(), "y".to_string()];
        let rows = vec![vec!["1".to_string(), "\"abc\"".to_string()]];
        assert_eq!(
            render(&header, &rows),
            "+---+-------+\n| x |   y   |\n+---+-------+\n| 1 | \"abc\" |\n+---+-------+\n"
        );
    }
}

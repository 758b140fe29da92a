//! "Did you mean …?" suggestions, as gqlparser words them.

/// `A`, `A or B`, `A, B, or C` (at most five items).
fn or_list(items: &[String]) -> String {
    let items = &items[..items.len().min(5)];
    if let [a, b] = items {
        return format!("{a} or {b}");
    }
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i != 0 {
            out.push_str(if i == items.len() - 1 { ", or " } else { ", " });
        }
        out.push_str(item);
    }
    out
}

/// Each item in double quotes, then [`or_list`].
pub(crate) fn quoted_or_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    or_list(&quoted)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = Vec::with_capacity(b.len() + 1);
        row.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let best = (prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1);
            row.push(best);
        }
        prev = row;
    }
    prev[b.len()]
}

fn lexical_distance(a: &str, b: &str) -> usize {
    if a == b {
        return 0;
    }
    let (a, b) = (a.to_lowercase(), b.to_lowercase());
    if a == b {
        return 1;
    }
    levenshtein(&a, &b)
}

/// The options close enough to `input` to suggest, nearest first.
pub(crate) fn suggestion_list(input: &str, options: &[String]) -> Vec<String> {
    let threshold = (input.len() * 2 / 5 + 1).max(1);
    let mut found: Vec<(usize, &String)> = options
        .iter()
        .map(|o| (lexical_distance(input, o), o))
        .filter(|(d, _)| *d <= threshold)
        .collect();
    found.sort_by_key(|(d, _)| *d);
    found.into_iter().map(|(_, o)| o.clone()).collect()
}

/// `message` followed by ` PREFIX "A" or "B"?` when there are suggestions.
pub(crate) fn with_suggestions(
    message: String,
    prefix: &str,
    typed: &str,
    options: &[String],
) -> String {
    let suggested = suggestion_list(typed, options);
    if suggested.is_empty() {
        return message;
    }
    format!("{message} {prefix} {}?", quoted_or_list(&suggested))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lists_read_naturally() {
        assert_eq!(quoted_or_list(&strings(&["a"])), "\"a\"");
        assert_eq!(quoted_or_list(&strings(&["a", "b"])), "\"a\" or \"b\"");
        assert_eq!(
            quoted_or_list(&strings(&["a", "b", "c", "d", "e", "f"])),
            "\"a\", \"b\", \"c\", \"d\", or \"e\""
        );
    }

    #[test]
    fn suggestions_are_near_matches_nearest_first() {
        let options = strings(&["name", "names", "id", "NAME"]);
        assert_eq!(
            suggestion_list("nam", &options),
            strings(&["name", "NAME", "names"])
        );
        assert!(suggestion_list("zzzzzz", &options).is_empty());
        assert_eq!(
            with_suggestions("Bad.".into(), "Did you mean", "Nme", &options),
            "Bad. Did you mean \"name\", \"NAME\", or \"names\"?"
        );
    }
}

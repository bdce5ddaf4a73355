//! "Did you mean": the nearest known name to a misspelt one.

/// The candidate closest to `name`, if it is close enough to be a likely typo.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let name_lower = name.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| {
            // Case differences alone are the likeliest slip (`mb` for `MB`).
            let distance = if c.to_lowercase() == name_lower {
                0.0
            } else {
                1.0 - strsim::jaro_winkler(&name_lower, &c.to_lowercase())
            };
            (distance, c)
        })
        .filter(|(distance, c)| {
            *distance < 0.2 || strsim::levenshtein(name, c) <= 1 + name.len() / 4
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `help` text for a near name, if there is one.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    nearest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// `help` for a name that is not among `known`: the near name if there is one, else the
/// list of what exists (`"{listed}: a, b"`), else `when_empty`.
pub fn help_for(name: &str, known: &[&str], listed: &str, when_empty: &str) -> String {
    match did_you_mean(name, known.iter().copied()) {
        Some(help) => help,
        None if known.is_empty() => when_empty.to_string(),
        None => format!("{listed}: {}", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_and_case_slips() {
        assert_eq!(
            nearest("cpu_usge", ["cpu_usage", "memory"]),
            Some("cpu_usage")
        );
        assert_eq!(nearest("mb", ["MB", "m", "ms"]), Some("MB"));
        assert_eq!(nearest("latency", ["cpu", "memory"]), None);
    }
}

//! Compact host lists for headers (`lab-[01-03,07],db`), the inverse of inventory ranges.

/// Fold names that differ only in a trailing number of the same width into `prefix[a-b,c]`.
/// Order of first appearance is kept for prefixes; numbers are sorted within a prefix.
pub fn fold_host_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    // (prefix, digit width) -> numbers; names without a trailing number stay as they are.
    let mut groups: Vec<(String, usize, Vec<u64>)> = Vec::new();
    let mut parts: Vec<Part> = Vec::new();
    for name in names {
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let number = name[name.len() - digits..].parse::<u64>().ok();
        match (digits > 0 && digits <= 18, number) {
            (true, Some(n)) => {
                let prefix = &name[..name.len() - digits];
                match groups
                    .iter()
                    .position(|(p, w, _)| p == prefix && *w == digits)
                {
                    Some(i) => groups[i].2.push(n),
                    None => {
                        groups.push((prefix.to_string(), digits, vec![n]));
                        parts.push(Part::Group(groups.len() - 1));
                    }
                }
            }
            _ => parts.push(Part::Plain(name.to_string())),
        }
    }
    parts
        .into_iter()
        .map(|part| match part {
            Part::Plain(name) => name,
            Part::Group(i) => {
                let (prefix, width, numbers) = &mut groups[i];
                numbers.sort_unstable();
                numbers.dedup();
                if numbers.len() == 1 {
                    return format!("{prefix}{:0width$}", numbers[0], width = *width);
                }
                format!("{prefix}[{}]", ranges(numbers, *width))
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

enum Part {
    Plain(String),
    Group(usize),
}

fn ranges(numbers: &[u64], width: usize) -> String {
    let mut out = Vec::new();
    let mut start = numbers[0];
    let mut end = start;
    for &n in &numbers[1..] {
        if n == end + 1 {
            end = n;
            continue;
        }
        out.push(span(start, end, width));
        start = n;
        end = n;
    }
    out.push(span(start, end, width));
    out.join(",")
}

fn span(start: u64, end: u64, width: usize) -> String {
    if start == end {
        format!("{start:0width$}")
    } else {
        format!("{start:0width$}-{end:0width$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_numbers_become_ranges() {
        assert_eq!(
            fold_host_names(["lab-02", "lab-03", "lab-05", "lab-04", "lab-09"]),
            "lab-[02-05,09]"
        );
    }

    #[test]
    fn different_prefixes_and_widths_stay_apart() {
        assert_eq!(
            fold_host_names(["pi-1", "db", "pi-2", "pi-010", "x7"]),
            "pi-[1-2],db,pi-010,x7"
        );
    }

    #[test]
    fn a_single_host_has_no_brackets() {
        assert_eq!(fold_host_names(["lab-01"]), "lab-01");
    }
}

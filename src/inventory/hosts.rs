//! `[[hosts]]` entries: expanding name ranges and address patterns into hosts (in inventory
//! order), merging group and host settings, and checking names, node names and addresses are unique.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::ops::Range;

use toml::Spanned;

use super::diagnostics::Ctx;
use super::error::ErrorKind;
use super::formats;
use super::hostlist::{self, MAX_HOSTS, Pattern};
use super::layers::{self, GroupLayer, SshLayer};
use super::model::{Host, Role};
use super::raw::RawHost;

/// One `[[hosts]]` entry as written, and which hosts it became (for summaries such as
/// `pi-[01-32] (32 agents, 10.0.1.11-10.0.1.42)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// The name as written: `pi-[01-32]` or `server-1`.
    pub pattern: String,
    pub role: Role,
    /// Indices into `Inventory::hosts`.
    pub hosts: Range<usize>,
    /// 1-based line of the entry's name.
    pub line: usize,
    pub(super) role_span: Range<usize>,
}

/// Where each entry's name and address are, to point duplicate errors at the right line.
struct EntrySpans {
    name: Range<usize>,
    address: Option<Range<usize>>,
}

pub(super) fn expand(
    ctx: &mut Ctx,
    raw: &[Spanned<RawHost>],
    defaults: &SshLayer,
    groups: &BTreeMap<String, GroupLayer>,
) -> (Vec<Host>, Vec<HostEntry>) {
    let mut hosts = Vec::new();
    let mut entries = Vec::new();
    let mut spans = Vec::new();
    // host index → entry index, to point a duplicate at the entry that produced it.
    let mut host_entry = Vec::new();
    for entry in raw {
        let start = hosts.len();
        let Some(expanded) = expand_entry(ctx, entry, defaults, groups, &mut hosts) else {
            continue;
        };
        host_entry.resize(hosts.len(), entries.len());
        let raw = entry.get_ref();
        spans.push(EntrySpans {
            name: expanded.name_span.clone(),
            address: raw
                .address
                .as_ref()
                .or(raw.address_start.as_ref())
                .map(|a| a.span()),
        });
        entries.push(HostEntry {
            pattern: expanded.pattern,
            role: expanded.role,
            hosts: start..hosts.len(),
            line: ctx.line_of(expanded.name_span),
            role_span: expanded.role_span,
        });
    }
    check_unique(ctx, &hosts, &host_entry, &spans);
    (hosts, entries)
}

struct Expanded {
    pattern: String,
    role: Role,
    role_span: Range<usize>,
    name_span: Range<usize>,
}

/// The span of `offset..offset+len` inside a quoted string value.
fn inner_span(value: Range<usize>, offset: usize, len: usize) -> Range<usize> {
    let start = (value.start + 1 + offset).min(value.end);
    start..(start + len).min(value.end.max(start + 1))
}

const NAME_HELP: &str = "host names are letters, digits, `-`, `_` and `.`, with optional ranges such as `pi-[01-32]` or `node[1-3,7]`";

fn expand_entry(
    ctx: &mut Ctx,
    entry: &Spanned<RawHost>,
    defaults: &SshLayer,
    groups: &BTreeMap<String, GroupLayer>,
    hosts: &mut Vec<Host>,
) -> Option<Expanded> {
    let raw = entry.get_ref();
    let Some(name) = &raw.name else {
        ctx.report(
            ErrorKind::MissingKey,
            Some(entry.span()),
            "a `[[hosts]]` entry has no `name`",
            "add `name = \"pi-01\"` (or a range such as `name = \"pi-[01-32]\"`)",
        );
        return None;
    };
    let pattern = match Pattern::parse(name.get_ref()) {
        Ok(pattern) => pattern,
        Err(e) => {
            ctx.report(
                ErrorKind::Range,
                Some(inner_span(name.span(), e.offset, e.len)),
                format!("bad host range `{}`: {}", name.get_ref(), e.message),
                e.help,
            );
            return None;
        }
    };
    let bad_chars = pattern.literal_text().any(|text| {
        !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    if name.get_ref().is_empty() || bad_chars {
        ctx.report(
            ErrorKind::InvalidValue,
            Some(name.span()),
            format!("`{}` is not a host name", name.get_ref()),
            NAME_HELP,
        );
        return None;
    }
    // Checked before expanding: many entries each within the per-entry limit must not add up
    // to millions of hosts (and as many gigabytes).
    let total = hosts.len() as u64 + pattern.count();
    if total > MAX_HOSTS {
        ctx.report(
            ErrorKind::Range,
            Some(name.span()),
            format!(
                "hosts `{}` bring the inventory to {total} hosts",
                name.get_ref()
            ),
            format!("an inventory holds at most {MAX_HOSTS} hosts in all: split the fleet into several inventories"),
        );
        return None;
    }
    let names = pattern.expand();
    let scope = if pattern.is_range() {
        format!("hosts `{}`", name.get_ref())
    } else {
        format!("host `{}`", name.get_ref())
    };

    let mut member_groups = Vec::with_capacity(raw.groups.len());
    let mut unknown_group = false;
    for group in &raw.groups {
        match groups.get(group.get_ref()) {
            Some(layer) => member_groups.push((group, layer)),
            None => {
                unknown_group = true;
                let hint = formats::closest(group.get_ref(), groups.keys().map(String::as_str))
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default();
                let defined = if groups.is_empty() {
                    "no groups are defined".to_string()
                } else {
                    format!(
                        "defined groups: {}",
                        groups.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                };
                ctx.report(
                    ErrorKind::UnknownGroup,
                    Some(group.span()),
                    format!("{scope} is in unknown group `{}`", group.get_ref()),
                    format!("{hint}groups are defined as `[groups.NAME]` tables; {defined}"),
                );
            }
        }
    }

    let mut ssh = defaults.clone();
    for (_, group) in &member_groups {
        ssh.overlay(&group.ssh);
    }
    if let Some(host_ssh) = &raw.ssh {
        ssh.overlay(&layers::ssh_layer(ctx, host_ssh.get_ref(), &scope));
    }
    let ssh = ssh.finish(ctx, name.span(), &scope);

    let mut labels = BTreeMap::new();
    let mut taints: Vec<String> = Vec::new();
    let mut extra_args = Vec::new();
    for (_, group) in &member_groups {
        labels.extend(group.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        taints.extend(group.taints.iter().cloned());
        extra_args.extend(group.extra_args.iter().cloned());
    }
    labels.extend(layers::labels(ctx, &raw.labels));
    taints.extend(layers::taints(ctx, &raw.taints));
    let mut seen_taints = std::collections::HashSet::new();
    taints.retain(|t| seen_taints.insert(t.clone()));
    super::secret_args::check(ctx, &raw.extra_args, &format!("`extra_args` of {scope}"));
    extra_args.extend(raw.extra_args.iter().map(|a| a.get_ref().clone()));

    // Role last among the shared settings, so one run also reports label, taint and ssh mistakes.
    // A misspelt group may be where the role was meant to come from: that error says enough.
    if unknown_group && raw.role.is_none() {
        return None;
    }
    let (role, role_span) = entry_role(ctx, raw, name, &scope, &member_groups)?;
    let addresses = addresses(ctx, raw, name, &names)?;
    let node_names = match &raw.node_name {
        Some(node_name) => per_host(ctx, "node_name", node_name, name, &names)?,
        None => names.clone(),
    };
    if let Some(bad) = node_names.iter().find(|n| !formats::is_dns_subdomain(n)) {
        let (span, help) = match &raw.node_name {
            Some(node_name) => (
                node_name.span(),
                "a node name is lowercase letters, digits, `-` and `.` (a DNS name)",
            ),
            None => (
                name.span(),
                "Kubernetes node names are lowercase letters, digits, `-` and `.`: set `node_name`, e.g. `node_name = \"pi-01\"`",
            ),
        };
        ctx.report(
            ErrorKind::InvalidValue,
            Some(span),
            format!("`{bad}` is not a valid Kubernetes node name"),
            help,
        );
        return None;
    }

    let group_names: Vec<String> = raw.groups.iter().map(|g| g.get_ref().clone()).collect();
    hosts.reserve(names.len());
    for ((host_name, address), node_name) in names.into_iter().zip(addresses).zip(node_names) {
        hosts.push(Host {
            name: host_name,
            address,
            role,
            groups: group_names.clone(),
            node_name,
            labels: labels.clone(),
            taints: taints.clone(),
            extra_args: extra_args.clone(),
            ssh: ssh.clone(),
        });
    }
    Some(Expanded {
        pattern: name.get_ref().clone(),
        role,
        role_span,
        name_span: name.span(),
    })
}

/// The host's own role, else its groups' (which must agree).
fn entry_role(
    ctx: &mut Ctx,
    raw: &RawHost,
    name: &Spanned<String>,
    scope: &str,
    member_groups: &[(&Spanned<String>, &GroupLayer)],
) -> Option<(Role, Range<usize>)> {
    if let Some(role) = &raw.role {
        return layers::role(ctx, role);
    }
    let mut found: Option<(Role, Range<usize>, &str)> = None;
    for (group_name, group) in member_groups {
        let Some((role, span)) = &group.role else {
            continue;
        };
        match &found {
            Some((first, _, first_group)) if first != role => {
                ctx.report(
                    ErrorKind::Conflict,
                    Some(group_name.span()),
                    format!(
                        "{scope}: group `{}` says role `{}` but group `{first_group}` says `{}`",
                        group_name.get_ref(),
                        role.as_str(),
                        first.as_str()
                    ),
                    "set `role` on the host, or keep `role` in only one of its groups",
                );
                return None;
            }
            Some(_) => {}
            None => found = Some((*role, span.clone(), group_name.get_ref())),
        }
    }
    match found {
        Some((role, span, _)) => Some((role, span)),
        None => {
            ctx.report(
                ErrorKind::MissingKey,
                Some(name.span()),
                format!("{scope} has no role"),
                "add `role = \"server\"` or `role = \"agent\"` to the host (or to one of its groups)",
            );
            None
        }
    }
}

fn addresses(
    ctx: &mut Ctx,
    raw: &RawHost,
    name: &Spanned<String>,
    names: &[String],
) -> Option<Vec<String>> {
    let (addresses, span) = match (&raw.address, &raw.address_start) {
        (Some(_), Some(start)) => {
            ctx.report(
                ErrorKind::Conflict,
                Some(start.span()),
                "both `address` and `address_start` are set",
                "use `address` (one address, a range like `10.0.1.[11-42]` or `{name}.local`) or `address_start` (the first IPv4 of a run), not both",
            );
            return None;
        }
        (None, Some(start)) => {
            let Ok(first) = start.get_ref().parse::<Ipv4Addr>() else {
                ctx.report(
                    ErrorKind::InvalidValue,
                    Some(start.span()),
                    format!("address_start `{}` is not an IPv4 address", start.get_ref()),
                    "`address_start` is the first IPv4 address of the run, e.g. `\"10.244.1.10\"`",
                );
                return None;
            };
            match hostlist::ipv4_run(first, names.len()) {
                Ok(run) => (run, start.span()),
                Err(why) => {
                    ctx.report(
                        ErrorKind::Range,
                        Some(start.span()),
                        format!("bad address run: {why}"),
                        "start lower, or split the hosts into several entries",
                    );
                    return None;
                }
            }
        }
        (Some(address), None) => (
            per_host(ctx, "address", address, name, names)?,
            address.span(),
        ),
        // Without an address the name is the address (DNS, /etc/hosts or mDNS resolve it).
        (None, None) => (names.to_vec(), name.span()),
    };
    for address in &addresses {
        if let Err(mut e) = formats::address(address) {
            if raw
                .address
                .as_ref()
                .is_some_and(|a| a.get_ref().contains('['))
            {
                e.help = format!(
                    "{}; a bracket range cannot carry into the next octet, use `address_start` for that",
                    e.help
                );
            }
            ctx.invalid(ErrorKind::InvalidValue, span, e);
            return None;
        }
    }
    Some(addresses)
}

/// Expand a per-host value (`address`, `node_name`): a `{name}` pattern, one bracket range with as
/// many values as there are names, or a single value for a single host.
fn per_host(
    ctx: &mut Ctx,
    field: &str,
    value: &Spanned<String>,
    name: &Spanned<String>,
    names: &[String],
) -> Option<Vec<String>> {
    let text = value.get_ref();
    if text.contains(['{', '}']) {
        if text.replace("{name}", "").contains(['{', '}']) {
            ctx.report(
                ErrorKind::InvalidValue,
                Some(value.span()),
                format!("unknown placeholder in `{field}` `{text}`"),
                "the only placeholder is `{name}` (the host's name), e.g. `\"{name}.local\"`",
            );
            return None;
        }
        return Some(names.iter().map(|n| text.replace("{name}", n)).collect());
    }
    let pattern = match Pattern::parse(text) {
        Ok(pattern) => pattern,
        Err(e) => {
            ctx.report(
                ErrorKind::Range,
                Some(inner_span(value.span(), e.offset, e.len)),
                format!("bad `{field}` range `{text}`: {}", e.message),
                e.help,
            );
            return None;
        }
    };
    if pattern.is_range() {
        if pattern.range_groups() > 1 {
            ctx.report(
                ErrorKind::Range,
                Some(value.span()),
                format!("`{field}` `{text}` has more than one bracket range"),
                format!("give `{field}` one range, e.g. `10.0.1.[11-42]`, or use `{{name}}`"),
            );
            return None;
        }
        if pattern.count() != names.len() as u64 {
            ctx.report(
                ErrorKind::Range,
                Some(value.span()),
                format!(
                    "`{field}` `{text}` gives {} values but name `{}` gives {} hosts",
                    pattern.count(),
                    name.get_ref(),
                    names.len()
                ),
                "make both ranges the same length, e.g. `name = \"pi-[01-32]\"` with `address = \"10.0.1.[11-42]\"`",
            );
            return None;
        }
        return Some(pattern.expand());
    }
    if names.len() > 1 {
        let alternatives = if field == "address" {
            "a range with the same count (`10.0.1.[11-42]`), a pattern (`\"{name}.local\"`) or `address_start = \"10.0.1.11\"`"
        } else {
            "a range with the same count, a pattern (`\"{name}\"`), or leave it out to use each host's name"
        };
        ctx.report(
            ErrorKind::Range,
            Some(value.span()),
            format!(
                "`{field}` `{text}` is one value but name `{}` expands to {} hosts",
                name.get_ref(),
                names.len()
            ),
            format!("give {alternatives}"),
        );
        return None;
    }
    Some(vec![text.clone()])
}

/// Names, node names and address:port pairs are unique. One hash map each: linear in hosts.
fn check_unique(ctx: &mut Ctx, hosts: &[Host], host_entry: &[usize], spans: &[EntrySpans]) {
    use std::collections::hash_map::Entry;
    let mut names: HashMap<&str, usize> = HashMap::with_capacity(hosts.len());
    let mut nodes: HashMap<&str, usize> = HashMap::with_capacity(hosts.len());
    let mut addresses: HashMap<(&str, u16), usize> = HashMap::with_capacity(hosts.len());
    for (i, host) in hosts.iter().enumerate() {
        let spans_here = &spans[host_entry[i]];
        let first_line =
            |ctx: &Ctx, first: usize| ctx.line_of(spans[host_entry[first]].name.clone());
        match names.entry(&host.name) {
            Entry::Occupied(first) => {
                let line = first_line(ctx, *first.get());
                ctx.report(
                    ErrorKind::Duplicate,
                    Some(spans_here.name.clone()),
                    format!("duplicate host name `{}`", host.name),
                    format!(
                        "host names are unique; `{}` is first defined on line {line}",
                        host.name
                    ),
                );
                continue;
            }
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
        if let Entry::Occupied(first) = nodes.entry(&host.node_name) {
            let line = first_line(ctx, *first.get());
            ctx.report(
                ErrorKind::Duplicate,
                Some(spans_here.name.clone()),
                format!(
                    "duplicate node name `{}` (hosts `{}` and `{}`)",
                    host.node_name, hosts[*first.get()].name, host.name
                ),
                format!("Kubernetes node names are unique; the host on line {line} already uses it: set a different `node_name`"),
            );
        } else {
            nodes.insert(&host.node_name, i);
        }
        match addresses.entry((&host.address, host.ssh.port)) {
            Entry::Occupied(first) => {
                let line = first_line(ctx, *first.get());
                ctx.report(
                    ErrorKind::Duplicate,
                    Some(spans_here.address.clone().unwrap_or(spans_here.name.clone())),
                    format!(
                        "duplicate address `{}:{}` (hosts `{}` and `{}`)",
                        host.address, host.ssh.port, hosts[*first.get()].name, host.name
                    ),
                    format!("each host needs its own address and SSH port; the host on line {line} already uses it"),
                );
            }
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
        }
    }
}

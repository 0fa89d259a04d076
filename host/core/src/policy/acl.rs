//! The compiled ACL: the rules of several policies merged per pattern and
//! indexed so that a decision costs a hash lookup and two walks down tries,
//! however many rules there are.
//!
//! * Exact rules live in a hash map keyed by their full path.
//! * Prefix rules (`secret/*`) sit on the nodes of a radix trie over bytes;
//!   walking the request path down it meets every prefix rule that matches,
//!   the deepest being the longest prefix.
//! * `+` rules sit in a trie over path segments whose edges are literal
//!   segments or `+`; walking the path's segments down it (both edges where
//!   both match) meets exactly the `+` rules that match. Rules deeper than
//!   [`MAX_INDEXED_SEGMENTS`] are matched one by one instead, which bounds the
//!   walk's recursion.
//!
//! Evaluation allocates nothing.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::ROOT_POLICY;
use super::parse::{Constraints, PatternKind, Policy, pattern_kind};
use super::{Capability, CapabilitySet, Operation};

/// The policies of one namespace, compiled. Build it once per token (or per
/// set of policies) and evaluate as often as needed; it is immutable.
#[derive(Clone, Debug)]
pub struct Acl {
    /// `""` or `team-a/`: every rule starts with it.
    namespace: Box<str>,
    root: bool,
    rules: Vec<Rule>,
    exact: HashMap<Box<str>, u32>,
    trie: Trie,
    segment_trie: SegmentTrie,
    /// `+` rules too deep for `segment_trie`.
    deep_segment_rules: Vec<u32>,
}

/// The deepest `+` rule (in segments) held in the segment trie.
const MAX_INDEXED_SEGMENTS: usize = 32;

/// The outcome of evaluating one request.
#[derive(Clone, Copy, Debug)]
pub struct Decision<'a> {
    allowed: bool,
    sudo: bool,
    root: bool,
    capabilities: CapabilitySet,
    constraints: Option<&'a Constraints>,
}

impl<'a> Decision<'a> {
    const NONE: Decision<'static> = Decision {
        allowed: false,
        sudo: false,
        root: false,
        capabilities: CapabilitySet::EMPTY,
        constraints: None,
    };

    /// The operation's capability is granted by the rule that applies.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// The rule that applies holds `sudo` (always, for root).
    pub fn sudo(&self) -> bool {
        self.sudo
    }

    /// Granted by the root policy.
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// What the rule that applies grants (`deny` alone for a deny rule; empty
    /// when no rule applies). For root, every capability but `deny`.
    pub fn capabilities(&self) -> CapabilitySet {
        self.capabilities
    }

    /// The constraints of the rule that applies (none for root or no rule).
    pub fn constraints(&self) -> Option<&'a Constraints> {
        self.constraints
    }

    /// Allowed, and when the path is root-protected, with `sudo` as well.
    pub fn permits(&self, sudo_required: bool) -> bool {
        self.allowed && (self.sudo || !sudo_required)
    }
}

/// One merged rule.
#[derive(Clone, Debug)]
struct Rule {
    /// The full pattern: namespace path and pattern; prefix rules without
    /// their trailing `*`, `+` rules as written.
    key: Box<str>,
    kind: PatternKind,
    capabilities: CapabilitySet,
    constraints: Constraints,
    /// Prefix and `+` rules: where the first `+` or `*` is.
    first_wildcard: usize,
    /// Ends in a `*` (all prefix rules; some `+` rules).
    is_prefix: bool,
    /// How many `+` segments.
    plus_segments: usize,
    /// `+` rules: the pattern split at `/`, without its trailing `*`.
    segments: Box<[Segment]>,
}

#[derive(Clone, Debug)]
enum Segment {
    Any,
    Literal(Box<str>),
}

impl Rule {
    fn new(
        key: String,
        kind: PatternKind,
        capabilities: CapabilitySet,
        constraints: Constraints,
    ) -> Rule {
        let is_prefix =
            kind == PatternKind::Prefix || (kind == PatternKind::Segment && key.ends_with('*'));
        let (first_wildcard, segments) = match kind {
            PatternKind::Exact => (key.len(), Box::default()),
            PatternKind::Prefix => (key.len(), Box::default()),
            PatternKind::Segment => {
                let body = if is_prefix {
                    key.strip_suffix('*').unwrap_or(&key)
                } else {
                    &key
                };
                let segments = body
                    .split('/')
                    .map(|s| {
                        if s == "+" {
                            Segment::Any
                        } else {
                            Segment::Literal(s.into())
                        }
                    })
                    .collect();
                (key.find('+').unwrap_or(key.len()), segments)
            }
        };
        Rule {
            key: key.into(),
            kind,
            capabilities,
            constraints,
            first_wildcard,
            is_prefix,
            plus_segments: segments
                .iter()
                .filter(|s| matches!(s, Segment::Any))
                .count(),
            segments,
        }
    }

    /// The pattern the length and lexicographic comparisons look at: the
    /// pattern without its trailing `*`.
    fn compared_path(&self) -> &str {
        match self.kind {
            PatternKind::Segment if self.is_prefix => {
                self.key.strip_suffix('*').unwrap_or(&self.key)
            }
            _ => &self.key,
        }
    }

    /// How two matching wildcard rules rank: `Greater` when `self` applies
    /// rather than `other`. The first difference decides; lower is the rule
    /// whose first `+`/`*` comes earlier, then the one ending in `*`, then
    /// the one with more `+` segments, then the shorter, then the
    /// lexicographically smaller.
    fn rank(&self, other: &Rule) -> Ordering {
        self.first_wildcard
            .cmp(&other.first_wildcard)
            .then(other.is_prefix.cmp(&self.is_prefix))
            .then(other.plus_segments.cmp(&self.plus_segments))
            .then(self.compared_path().len().cmp(&other.compared_path().len()))
            .then(order(self.compared_path(), other.compared_path()))
    }

    /// Whether this `+` rule matches `path`, which has `path_segments`
    /// segments: same number of segments (at least as many for a trailing
    /// `*`), `+` matching any one segment, literals equal, and with a trailing
    /// `*` the last literal a prefix of its segment.
    fn matches_segments(&self, path: &str, path_segments: usize) -> bool {
        let n = self.segments.len();
        if path_segments < n || (!self.is_prefix && path_segments != n) {
            return false;
        }
        self.segments
            .iter()
            .zip(path.split('/'))
            .enumerate()
            .all(|(i, (segment, part))| self.segment_matches(segment, part, i + 1 == n))
    }

    fn segment_matches(&self, segment: &Segment, part: &str, last: bool) -> bool {
        match segment {
            Segment::Any => true,
            Segment::Literal(l) => same(l, part) || (self.is_prefix && last && has_prefix(part, l)),
        }
    }

    /// Whether this `+` rule reaches below the mount whose path segments
    /// are `mount` (Vault's check for `sys/internal/ui/mounts`): its first
    /// segments match the mount's.
    fn covers_mount(&self, mount: &[&str]) -> bool {
        let n = self.segments.len();
        n >= mount.len()
            && self
                .segments
                .iter()
                .zip(mount)
                .enumerate()
                .all(|(i, (segment, part))| self.segment_matches(segment, part, i + 1 == n))
    }

    /// Merges a rule with the same pattern: a deny on either side leaves
    /// only deny; otherwise capabilities are OR-ed and constraints combined.
    fn merge(&mut self, capabilities: CapabilitySet, constraints: &Constraints) {
        if self.capabilities.is_deny() {
            return;
        }
        if capabilities.is_deny() {
            self.capabilities = CapabilitySet::DENY;
            self.constraints = Constraints::default();
            return;
        }
        self.capabilities = self.capabilities.union(capabilities);
        merge_constraints(&mut self.constraints, constraints);
    }
}

/// Combines the constraints of two rules with the same pattern as Vault
/// does: the smaller wrapping TTLs, parameter lists appended per name (an
/// empty list, meaning any value, wins), and the unions of the rest.
fn merge_constraints(into: &mut Constraints, from: &Constraints) {
    for (mine, theirs) in [
        (&mut into.min_wrapping_ttl, from.min_wrapping_ttl),
        (&mut into.max_wrapping_ttl, from.max_wrapping_ttl),
    ] {
        if let Some(t) = theirs
            && mine.is_none_or(|m| t < m)
        {
            *mine = Some(t);
        }
    }
    for (mine, theirs) in [
        (&mut into.allowed_parameters, &from.allowed_parameters),
        (&mut into.denied_parameters, &from.denied_parameters),
    ] {
        let Some(theirs) = theirs.as_ref().filter(|t| !t.is_empty()) else {
            continue;
        };
        let mine = mine.get_or_insert_with(Default::default);
        for (name, values) in theirs {
            match mine.get_mut(name) {
                // An empty list (any value) on either side wins.
                Some(slot) if values.is_empty() || slot.is_empty() => slot.clear(),
                Some(slot) => {
                    let mut merged = values.clone();
                    merged.append(slot);
                    *slot = merged;
                }
                None => {
                    mine.insert(name.clone(), values.clone());
                }
            }
        }
    }
    for (mine, theirs) in [
        (&mut into.required_parameters, &from.required_parameters),
        (&mut into.mfa_methods, &from.mfa_methods),
        (&mut into.subscribe_event_types, &from.subscribe_event_types),
    ] {
        for t in theirs {
            if !mine.contains(t) {
                mine.push(t.clone());
            }
        }
    }
    into.control_group |= from.control_group;
}

// Comparisons of path text. Empty operands are settled without calling into
// the byte comparison: on the machines we measured on, comparing against an
// empty slice cost over 100 ns (against 1-2 ns for a one-byte one), and empty
// strings are common here (the root namespace's path, the last segment of a
// LIST path, the `*` of `a/+/*`).

/// `text` starts with `prefix`.
fn has_prefix(text: &str, prefix: &str) -> bool {
    prefix.is_empty() || text.as_bytes().starts_with(prefix.as_bytes())
}

/// `a == b`.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a.as_bytes() == b.as_bytes())
}

/// `a.cmp(b)`.
fn order(a: &str, b: &str) -> Ordering {
    if a.is_empty() || b.is_empty() {
        a.len().cmp(&b.len())
    } else {
        a.cmp(b)
    }
}

/// The better of two candidates (`None` loses).
fn higher<'a>(best: Option<&'a Rule>, candidate: &'a Rule) -> Option<&'a Rule> {
    match best {
        Some(b) if candidate.rank(b) != Ordering::Greater => Some(b),
        _ => Some(candidate),
    }
}

/// The candidates of a LIST request, ranked three ways.
#[derive(Default)]
struct ListPick<'a> {
    deny: Option<&'a Rule>,
    list: Option<&'a Rule>,
    any: Option<&'a Rule>,
}

impl<'a> ListPick<'a> {
    fn offer(&mut self, rule: &'a Rule) {
        if rule.capabilities.is_deny() {
            self.deny = higher(self.deny, rule);
        }
        if rule.capabilities.contains(Capability::List) {
            self.list = higher(self.list, rule);
        }
        self.any = higher(self.any, rule);
    }

    /// The most specific deny when it is at least as specific as the most
    /// specific rule granting `list`; else that rule; else the best of all.
    fn winner(self) -> Option<&'a Rule> {
        if let Some(deny) = self.deny
            && self.list.is_none_or(|l| l.rank(deny) == Ordering::Less)
        {
            return Some(deny);
        }
        self.list.or(self.any)
    }
}

impl Acl {
    /// Compiles `policies`, all of the namespace whose path is
    /// `namespace_path` (`""` for the root namespace, `team-a/` otherwise; a
    /// missing trailing `/` is added). A policy named `root` makes this a root
    /// ACL: everything under the namespace is allowed and the other policies
    /// do not matter. Templated rules are left out.
    pub fn new<'p>(namespace_path: &str, policies: impl IntoIterator<Item = &'p Policy>) -> Acl {
        let mut namespace = namespace_path.trim_start_matches('/').to_string();
        if !namespace.is_empty() && !namespace.ends_with('/') {
            namespace.push('/');
        }
        let mut acl = Acl {
            namespace: namespace.into(),
            root: false,
            rules: Vec::new(),
            exact: HashMap::new(),
            trie: Trie::new(),
            segment_trie: SegmentTrie::new(),
            deep_segment_rules: Vec::new(),
        };
        let mut by_pattern: HashMap<(String, bool), usize> = HashMap::new();
        for policy in policies {
            if policy.name() == ROOT_POLICY {
                acl.root = true;
            }
            for rule in policy.rules().iter().filter(|r| !r.is_templated()) {
                let full = format!("{}{}", acl.namespace, rule.pattern());
                let kind = pattern_kind(&full);
                let key = match kind {
                    PatternKind::Prefix => full.strip_suffix('*').unwrap_or(&full).to_string(),
                    _ => full,
                };
                // Exact and prefix keys can coincide (`a` and `a*`); keep them
                // apart. `+` patterns never equal either kind's key.
                match by_pattern.entry((key, kind == PatternKind::Prefix)) {
                    Entry::Occupied(e) => {
                        if let Some(existing) = acl.rules.get_mut(*e.get()) {
                            existing.merge(rule.capabilities(), rule.constraints());
                        }
                    }
                    Entry::Vacant(e) => {
                        let (key, _) = e.key().clone();
                        e.insert(acl.rules.len());
                        acl.rules.push(Rule::new(
                            key,
                            kind,
                            rule.capabilities(),
                            rule.constraints().clone(),
                        ));
                    }
                }
            }
        }
        if acl.root {
            acl.rules.clear();
            return acl;
        }
        for (i, rule) in acl.rules.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            match rule.kind {
                PatternKind::Exact => {
                    acl.exact.insert(rule.key.clone(), i);
                }
                PatternKind::Prefix => {
                    if let Some(node) = acl.trie.node(rule.key.as_bytes()) {
                        node.prefix_rule = Some(i);
                    }
                }
                PatternKind::Segment if rule.segments.len() <= MAX_INDEXED_SEGMENTS => {
                    acl.segment_trie.insert(&rule.segments, rule.is_prefix, i);
                }
                PatternKind::Segment => acl.deep_segment_rules.push(i),
            }
        }
        acl
    }

    /// Whether this is a root ACL.
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The namespace path the ACL was compiled for (`""` or `team-a/`).
    pub fn namespace_path(&self) -> &str {
        &self.namespace
    }

    /// Decides `operation` on `path`, the full path: the request
    /// namespace's path followed by the request path (leading `/`s are
    /// ignored). LIST paths end in `/`.
    pub fn allows(&self, operation: Operation, path: &str) -> Decision<'_> {
        let path = path.trim_start_matches('/');
        if self.root {
            return if has_prefix(path, &self.namespace) {
                Decision {
                    allowed: true,
                    sudo: true,
                    root: true,
                    capabilities: CapabilitySet::ALL_GRANTS,
                    constraints: None,
                }
            } else {
                Decision::NONE
            };
        }
        let Some(rule) = self.select(path, operation == Operation::List) else {
            return Decision::NONE;
        };
        let capabilities = rule.capabilities;
        Decision {
            allowed: capabilities.contains(operation.capability())
                && !rule.constraints.requires_wrapping(),
            sudo: capabilities.contains(Capability::Sudo),
            root: false,
            capabilities,
            constraints: Some(&rule.constraints),
        }
    }

    /// What `sys/capabilities` answers for `path` (full path, as for
    /// [`Acl::allows`]): the capabilities of the rule that applies, chosen
    /// with LIST's rules, sorted; `["root"]` for root; `["deny"]` when the
    /// rule denies or no rule applies.
    pub fn capabilities(&self, path: &str) -> Vec<String> {
        let path = path.trim_start_matches('/');
        if self.root {
            let answer = if has_prefix(path, &self.namespace) {
                "root"
            } else {
                "deny"
            };
            return vec![answer.to_string()];
        }
        let capabilities = self
            .select(path, true)
            .map_or(CapabilitySet::EMPTY, |r| r.capabilities);
        if !capabilities.grants_any() {
            return vec![Capability::Deny.as_str().to_string()];
        }
        capabilities
            .iter()
            .map(|c| c.as_str().to_string())
            .collect()
    }

    /// Whether some rule grants anything (a capability other than `deny`)
    /// on or under the mount at `mount_path` (full path, with or without its
    /// trailing `/`): what `sys/internal/ui/mounts/:path` requires. That is:
    /// the mount path itself is not denied; or an exact or prefix rule whose
    /// pattern starts with the mount path grants something; or a `+` rule
    /// whose first segments match the mount's grants something.
    pub fn has_any_access_under(&self, mount_path: &str) -> bool {
        let mut mount = mount_path.trim_start_matches('/').to_string();
        if !mount.ends_with('/') {
            mount.push('/');
        }
        if self.root {
            return has_prefix(&mount, &self.namespace);
        }
        if self
            .select(&mount, true)
            .is_some_and(|r| r.capabilities.grants_any())
        {
            return true;
        }
        let segments: Vec<&str> = mount.trim_end_matches('/').split('/').collect();
        self.rules.iter().any(|rule| {
            rule.capabilities.grants_any()
                && match rule.kind {
                    PatternKind::Exact | PatternKind::Prefix => has_prefix(&rule.key, &mount),
                    PatternKind::Segment => rule.covers_mount(&segments),
                }
        })
    }

    /// The rule that decides `path`; `list` selects LIST's rules.
    fn select(&self, path: &str, list: bool) -> Option<&Rule> {
        if let Some(rule) = self.exact_rule(path) {
            return Some(rule);
        }
        let trimmed = path.strip_suffix('/').filter(|_| list);
        if let Some(trimmed) = trimmed {
            if let Some(rule) = self.exact_rule(trimmed) {
                return Some(rule);
            }
            let mut pick = ListPick::default();
            self.candidates(trimmed, |r| pick.offer(r));
            self.candidates(path, |r| pick.offer(r));
            return pick.winner();
        }
        let mut best = None;
        self.candidates(path, |r| best = higher(best, r));
        best
    }

    fn exact_rule(&self, path: &str) -> Option<&Rule> {
        let i = *self.exact.get(path)?;
        self.rules.get(i as usize)
    }

    /// Offers `visit` every wildcard rule matching `path`: the longest
    /// matching prefix rule and each matching `+` rule.
    fn candidates<'a>(&'a self, path: &str, mut visit: impl FnMut(&'a Rule)) {
        let mut longest = None;
        self.trie.walk(path.as_bytes(), |node| {
            if node.prefix_rule.is_some() {
                longest = node.prefix_rule;
            }
        });
        let mut offer = |i: u32| {
            if let Some(rule) = self.rules.get(i as usize) {
                visit(rule);
            }
        };
        if let Some(i) = longest {
            offer(i);
        }
        self.segment_trie.walk(0, Some(path), &mut offer);
        if !self.deep_segment_rules.is_empty() {
            let segments = path.bytes().filter(|b| *b == b'/').count() + 1;
            for &i in &self.deep_segment_rules {
                if self
                    .rules
                    .get(i as usize)
                    .is_some_and(|r| r.matches_segments(path, segments))
                {
                    offer(i);
                }
            }
        }
    }
}

/// `+` rules indexed by their segments. A rule `a/+/b` ends at the node
/// reached by the edges `a`, `+`, `b`; a rule with a trailing `*`, `a/+/b*`,
/// hangs off the node of `a/+` with `b`, which must begin the path's next
/// segment (any segments may follow).
#[derive(Clone, Debug)]
struct SegmentTrie {
    /// `nodes[0]` is the root (no segment consumed).
    nodes: Vec<SegmentNode>,
}

#[derive(Clone, Debug, Default)]
struct SegmentNode {
    /// Children by literal segment, sorted by it.
    literal: Vec<(Box<str>, u32)>,
    /// The child by a `+` segment.
    any: Option<u32>,
    /// Rules without a trailing `*` whose segments end here.
    whole: Vec<u32>,
    /// Rules with a trailing `*` whose segments but the last end here, with
    /// that last segment.
    glob: Vec<(Box<str>, u32)>,
}

impl SegmentTrie {
    fn new() -> SegmentTrie {
        SegmentTrie {
            nodes: vec![SegmentNode::default()],
        }
    }

    fn insert(&mut self, segments: &[Segment], is_prefix: bool, rule: u32) {
        let (path, last) = match segments.split_last() {
            Some((last, path)) if is_prefix => (path, Some(last)),
            _ => (segments, None),
        };
        let mut node = 0u32;
        for segment in path {
            node = self.child(node, segment);
        }
        let Some(n) = self.nodes.get_mut(node as usize) else {
            return;
        };
        match last {
            // A `+` cannot take a trailing `*` (`+*` is refused by the
            // parser); were it there, it would match any segment.
            Some(Segment::Any) => n.glob.push(("".into(), rule)),
            Some(Segment::Literal(l)) => n.glob.push((l.clone(), rule)),
            None => n.whole.push(rule),
        }
    }

    /// The child of `node` along `segment`, created when missing.
    fn child(&mut self, node: u32, segment: &Segment) -> u32 {
        let next = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        let Some(n) = self.nodes.get_mut(node as usize) else {
            return node;
        };
        match segment {
            Segment::Any => {
                if let Some(c) = n.any {
                    return c;
                }
                n.any = Some(next);
            }
            Segment::Literal(l) => match n.literal.binary_search_by(|(k, _)| order(k, l)) {
                Ok(i) => return n.literal.get(i).map_or(node, |(_, c)| *c),
                Err(i) => n.literal.insert(i, (l.clone(), next)),
            },
        }
        self.nodes.push(SegmentNode::default());
        next
    }

    /// Calls `visit` with every rule below `node` matching `rest`, the
    /// path's segments not consumed yet (`None` once all are). Recursion is
    /// as deep as the trie, at most [`MAX_INDEXED_SEGMENTS`] levels.
    fn walk(&self, node: u32, rest: Option<&str>, visit: &mut impl FnMut(u32)) {
        let Some(n) = self.nodes.get(node as usize) else {
            return;
        };
        let Some(rest) = rest else {
            n.whole.iter().for_each(|&r| visit(r));
            return;
        };
        let (segment, tail) = match rest.split_once('/') {
            Some((segment, tail)) => (segment, Some(tail)),
            None => (rest, None),
        };
        for (prefix, rule) in &n.glob {
            if has_prefix(segment, prefix) {
                visit(*rule);
            }
        }
        if let Ok(i) = n.literal.binary_search_by(|(k, _)| order(k, segment))
            && let Some((_, child)) = n.literal.get(i)
        {
            self.walk(*child, tail, visit);
        }
        if let Some(child) = n.any {
            self.walk(child, tail, visit);
        }
    }
}

/// A radix trie over bytes: each node's key is the concatenation of the
/// labels from the root down to it.
#[derive(Clone, Debug)]
struct Trie {
    /// `nodes[0]` is the root, whose key is empty.
    nodes: Vec<TrieNode>,
}

#[derive(Clone, Debug, Default)]
struct TrieNode {
    label: Box<[u8]>,
    children: Vec<u32>,
    /// The prefix rule whose prefix is this node's key.
    prefix_rule: Option<u32>,
}

impl Trie {
    fn new() -> Trie {
        Trie {
            nodes: vec![TrieNode::default()],
        }
    }

    fn push(&mut self, label: &[u8]) -> u32 {
        let id = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        self.nodes.push(TrieNode {
            label: label.into(),
            ..TrieNode::default()
        });
        id
    }

    fn child_starting_with(&self, node: u32, byte: u8) -> Option<u32> {
        self.nodes
            .get(node as usize)?
            .children
            .iter()
            .copied()
            .find(|&c| self.nodes.get(c as usize).and_then(|n| n.label.first()) == Some(&byte))
    }

    /// The node whose key is `key`, created (splitting an edge if need be)
    /// when missing.
    fn node(&mut self, key: &[u8]) -> Option<&mut TrieNode> {
        let id = self.find_or_insert(key);
        self.nodes.get_mut(id as usize)
    }

    fn find_or_insert(&mut self, key: &[u8]) -> u32 {
        let mut current = 0u32;
        let mut rest = key;
        loop {
            let Some(&first) = rest.first() else {
                return current;
            };
            let Some(child) = self.child_starting_with(current, first) else {
                let leaf = self.push(rest);
                if let Some(node) = self.nodes.get_mut(current as usize) {
                    node.children.push(leaf);
                }
                return leaf;
            };
            let label = self
                .nodes
                .get(child as usize)
                .map(|n| n.label.clone())
                .unwrap_or_default();
            let common = label.iter().zip(rest).take_while(|(a, b)| a == b).count();
            if common < label.len() {
                // Split the edge: current → middle (label[..common]) → child.
                let middle = self.push(label.get(..common).unwrap_or_default());
                if let Some(node) = self.nodes.get_mut(child as usize) {
                    node.label = label.get(common..).unwrap_or_default().into();
                }
                if let Some(node) = self.nodes.get_mut(middle as usize) {
                    node.children.push(child);
                }
                if let Some(node) = self.nodes.get_mut(current as usize)
                    && let Some(slot) = node.children.iter_mut().find(|c| **c == child)
                {
                    *slot = middle;
                }
                current = middle;
            } else {
                current = child;
            }
            rest = rest.get(common..).unwrap_or_default();
        }
    }

    /// Calls `visit` on every node whose key is a prefix of `path`, from the
    /// root down.
    fn walk<'a>(&'a self, path: &[u8], mut visit: impl FnMut(&'a TrieNode)) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        let mut rest = path;
        loop {
            visit(node);
            let Some(&first) = rest.first() else {
                return;
            };
            let next = node
                .children
                .iter()
                .filter_map(|&c| self.nodes.get(c as usize))
                .find(|n| n.label.first() == Some(&first));
            match next {
                Some(child) if rest.starts_with(&child.label) => {
                    rest = rest.get(child.label.len()..).unwrap_or_default();
                    node = child;
                }
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_finds_every_prefix_of_a_path() {
        let mut trie = Trie::new();
        let keys = [
            "secret/",
            "secret/data/",
            "sec",
            "secret/data/app",
            "other/",
            "",
        ];
        for (i, k) in keys.iter().enumerate() {
            trie.node(k.as_bytes()).unwrap().prefix_rule = Some(i as u32);
        }
        let mut seen = Vec::new();
        trie.walk(b"secret/data/app/x", |n| seen.extend(n.prefix_rule));
        assert_eq!(seen, [5, 2, 0, 1, 3]);
        seen.clear();
        trie.walk(b"secre", |n| seen.extend(n.prefix_rule));
        assert_eq!(seen, [5, 2]);
        seen.clear();
        trie.walk(b"other", |n| seen.extend(n.prefix_rule));
        assert_eq!(seen, [5]);
        // Inserting an existing key finds the same node.
        assert_eq!(trie.node(b"secret/").unwrap().prefix_rule, Some(0));
    }
}

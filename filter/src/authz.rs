//! Authorization rules: CEL expressions compiled once per configuration, evaluated per request.
//!
//! The combination is the one DESIGN.md fixes: any `deny` that holds denies; any `require`
//! that does not hold denies; otherwise, when there are `allow` rules, one must hold; with no
//! `allow` rules the request is allowed. A rule whose evaluation fails (a missing claim, a type
//! error) counts as not matched, so it can never open a door: an erroring `deny` does not deny,
//! an erroring `require` denies, an erroring `allow` does not allow.
//!
//! A message names one thing, so a rule reading several of `mcp.tool`, `mcp.prompt` and
//! `mcp.resource` applies to a message naming any of them, judged with the others absent: a
//! condition on an absent kind neither holds nor fails, and `||` / `&&` absorb it as CEL
//! absorbs errors (`absent || true` holds, `absent || false` does not). Absence is not an
//! error to report. A rule that could never hold for one of the kinds it reads (`mcp.tool.name
//! == "a" && mcp.prompt.name == "b"`) fails the configuration instead of lying dead.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, operators};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::{Key, Map as CelMap};
use cel::{Context, Program, Value};
use serde_json::Value as Json;

use crate::mcp::{Kind, McpView};

/// How a rule takes part in the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Allow,
    Deny,
    Require,
}

impl RuleKind {
    pub fn name(self) -> &'static str {
        match self {
            RuleKind::Allow => "allow",
            RuleKind::Deny => "deny",
            RuleKind::Require => "require",
        }
    }
}

/// One compiled rule.
pub struct Rule {
    pub kind: RuleKind,
    pub source: String,
    /// What a client denied by this rule is told (the `message:` beside the rule); without
    /// one the client gets a generic reason that shows nothing of the policy.
    pub message: Option<String>,
    program: Program,
    /// Whether the rule reads `mcp` at all: such a rule is judged per JSON-RPC message.
    reads_mcp: bool,
    /// The `mcp.tool` / `mcp.prompt` / `mcp.resource` it reads: it applies only to messages
    /// that name one of them, so a rule about tools never hides prompts by accident.
    kinds: BTreeSet<Kind>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.kind.name(), self.source)
    }
}

/// The variables a rule set reads, known at configure time so a request builds only those.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub claims: bool,
    pub request: bool,
    pub mcp: bool,
    /// Whether every rule reads of `mcp` only methods and names (see `names_only`).
    pub mcp_names_only: bool,
}

#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    needs: Needs,
    env: StdEnv,
    id: u64,
}

/// Numbers rule sets for [`RuleSet::id`]; a VM is single-threaded, the atomic just avoids
/// `static mut`.
static NEXT_RULE_SET: AtomicU64 = AtomicU64::new(1);

/// CEL's standard library, registered once per configuration: building it is the costliest
/// part of a CEL context, far more than evaluating a rule, so no request pays for it.
struct StdEnv(Arc<cel::Env>);

impl Default for StdEnv {
    fn default() -> Self {
        StdEnv(Arc::new(cel::Env::stdlib()))
    }
}

impl std::fmt::Debug for StdEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cel::Env::stdlib()")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{source_text:?} does not compile: {message}")]
pub struct CompileError {
    pub source_text: String,
    pub message: String,
}

impl Rule {
    pub fn compile(kind: RuleKind, source: &str) -> Result<Rule, CompileError> {
        // The CEL parser is third-party code: a panic there must fail the configuration, not
        // the worker. (With `panic = "abort"` in the release module this cannot catch, so the
        // fuzzing covers the parser too.)
        let program = std::panic::catch_unwind(|| Program::compile(source))
            .map_err(|_| CompileError {
                source_text: source.to_string(),
                message: "the CEL parser failed".into(),
            })?
            .map_err(|e| CompileError {
                source_text: source.to_string(),
                message: e.to_string(),
            })?;
        let mut fields = BTreeSet::new();
        let mut reads_mcp = false;
        mcp_fields(program.expression(), &mut fields, &mut reads_mcp);
        let kinds = crate::mcp::kinds_of(&fields);
        if kinds.len() > 1
            && let Some(dead) = kinds
                .iter()
                .find(|k| !possible(program.expression(), **k).holds)
        {
            let read: Vec<String> = kinds.iter().map(|k| format!("mcp.{}", k.field())).collect();
            return Err(CompileError {
                source_text: source.to_string(),
                message: format!(
                    "it reads {}, but can never hold for a message naming a {}: a message names one \
                     thing, and the fields of the others are absent then (write one rule per \
                     kind, or join the kinds' conditions with || outside any !)",
                    read.join(" and "),
                    dead.field()
                ),
            });
        }
        Ok(Rule {
            kind,
            source: source.to_string(),
            message: None,
            program,
            reads_mcp,
            kinds,
        })
    }

    /// Whether the rule takes part in judging a message with this view (`None`: a request
    /// judged at the HTTP level, or a message that names nothing).
    fn applies(&self, view: Option<&McpView>) -> bool {
        match view {
            None => !self.reads_mcp,
            Some(v) => !self.reads_mcp || self.kinds.is_empty() || self.kinds.contains(&v.kind),
        }
    }

    fn holds(&self, context: &Context<'_, '_>, view: Option<&McpView>) -> Holds {
        match view {
            Some(v) if self.kinds.len() > 1 => {
                across_kinds(self.program.expression(), v.kind, context)
            }
            _ => Holds::from(self.program.execute(context)),
        }
    }
}

/// A rule's (or a part of it's) outcome on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Holds {
    Yes,
    No,
    /// It reads a kind the message does not name.
    Absent,
    /// Evaluation failed, for this reason.
    Error(String),
}

impl From<cel::ResolveResult> for Holds {
    fn from(result: cel::ResolveResult) -> Holds {
        match result {
            Ok(Value::Bool(true)) => Holds::Yes,
            Ok(Value::Bool(false)) => Holds::No,
            Ok(other) => Holds::Error(format!("returned {:?}, not a bool", other.type_of())),
            Err(e) => Holds::Error(format!("failed: {e}")),
        }
    }
}

/// Evaluates a rule that reads several kinds for a message naming `present`: the connectives
/// here, as the CEL interpreter does them, with each other part given to the interpreter
/// unless it reads an absent kind.
fn across_kinds(expr: &IdedExpr, present: Kind, context: &Context<'_, '_>) -> Holds {
    let part = |e: &IdedExpr| across_kinds(e, present, context);
    if let Expr::Call(call) = &expr.expr
        && call.target.is_none()
    {
        match (call.func_name.as_str(), call.args.as_slice()) {
            (operators::LOGICAL_OR, [a, b]) => return connective(Holds::Yes, part(a), || part(b)),
            (operators::LOGICAL_AND, [a, b]) => return connective(Holds::No, part(a), || part(b)),
            (operators::LOGICAL_NOT, [a]) => {
                return match part(a) {
                    Holds::Yes => Holds::No,
                    Holds::No => Holds::Yes,
                    other => other,
                };
            }
            (operators::CONDITIONAL, [c, a, b]) => {
                return match part(c) {
                    Holds::Yes => part(a),
                    Holds::No => part(b),
                    other => other,
                };
            }
            _ => {}
        }
    }
    if possible(expr, present) == Outcomes::ABSENT {
        return Holds::Absent;
    }
    Holds::from(Value::resolve(expr, context))
}

/// `||` (`decisive` is [`Holds::Yes`]) or `&&` (`decisive` is [`Holds::No`]) as CEL does them:
/// the decisive outcome on either side decides, then the other side's outcome stands when one
/// side is the neutral one, then an error, else absence.
fn connective(decisive: Holds, left: Holds, right: impl FnOnce() -> Holds) -> Holds {
    if left == decisive {
        return left;
    }
    let right = right();
    if right == decisive {
        return right;
    }
    let neutral = |h: &Holds| matches!(h, Holds::Yes | Holds::No) && *h != decisive;
    match (left, right) {
        (l, r) if neutral(&l) => r,
        (l, r) if neutral(&r) => l,
        (Holds::Error(e), _) | (_, Holds::Error(e)) => Holds::Error(e),
        _ => Holds::Absent,
    }
}

/// The outcomes an expression can have for a message naming `present`, the other kinds absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcomes {
    holds: bool,
    fails: bool,
    /// Errs, or is absent.
    errs: bool,
}

impl Outcomes {
    const ANY: Outcomes = Outcomes {
        holds: true,
        fails: true,
        errs: true,
    };
    const ABSENT: Outcomes = Outcomes {
        holds: false,
        fails: false,
        errs: true,
    };
}

fn possible(expr: &IdedExpr, present: Kind) -> Outcomes {
    let of = |e: &IdedExpr| possible(e, present);
    let absent = |e: &IdedExpr| possible(e, present) == Outcomes::ABSENT;
    let entry_absent = |entry: &EntryExpr| match entry {
        EntryExpr::MapEntry(e) => absent(&e.key) || absent(&e.value),
        EntryExpr::StructField(f) => absent(&f.value),
    };
    let surely = match &expr.expr {
        Expr::Call(call) if call.target.is_none() => {
            match (call.func_name.as_str(), call.args.as_slice()) {
                (operators::LOGICAL_OR, [a, b]) => {
                    let (a, b) = (of(a), of(b));
                    return Outcomes {
                        holds: a.holds || b.holds,
                        fails: a.fails && b.fails,
                        errs: (a.fails && b.errs) || (a.errs && (b.fails || b.errs)),
                    };
                }
                (operators::LOGICAL_AND, [a, b]) => {
                    let (a, b) = (of(a), of(b));
                    return Outcomes {
                        holds: a.holds && b.holds,
                        fails: a.fails || b.fails,
                        errs: (a.holds && b.errs) || (a.errs && (b.holds || b.errs)),
                    };
                }
                (operators::LOGICAL_NOT, [a]) => {
                    let a = of(a);
                    return Outcomes {
                        holds: a.fails,
                        fails: a.holds,
                        errs: a.errs,
                    };
                }
                (operators::CONDITIONAL, [c, a, b]) => {
                    let (c, a, b) = (of(c), of(a), of(b));
                    return Outcomes {
                        holds: (c.holds && a.holds) || (c.fails && b.holds),
                        fails: (c.holds && a.fails) || (c.fails && b.fails),
                        errs: c.errs || (c.holds && a.errs) || (c.fails && b.errs),
                    };
                }
                (_, args) => args.iter().any(absent),
            }
        }
        Expr::Call(call) => call
            .target
            .iter()
            .map(|t| &**t)
            .chain(&call.args)
            .any(absent),
        Expr::Select(select) => match &select.operand.expr {
            // `has(mcp.prompt)` is false, not an error, when no prompt is named.
            Expr::Ident(name) if name == "mcp" && !select.test => {
                Kind::from_field(&select.field).is_some_and(|k| k != present)
            }
            _ => absent(&select.operand),
        },
        Expr::Comprehension(c) => absent(&c.iter_range),
        Expr::List(list) => list.elements.iter().any(absent),
        Expr::Map(map) => map.entries.iter().any(|e| entry_absent(&e.expr)),
        Expr::Struct(st) => st.entries.iter().any(|e| entry_absent(&e.expr)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => false,
    };
    if surely {
        Outcomes::ABSENT
    } else {
        Outcomes::ANY
    }
}

/// Whether the expression reads nothing of `mcp` but `mcp.method` and the names of what a
/// message names (`mcp.<kind>.name`, `.uri`, `.target`): such a rule can be judged from the
/// `Mcp-Method` / `Mcp-Name` headers alone. Reading `mcp` or `mcp.<kind>` whole counts as more.
fn names_only(expr: &IdedExpr) -> bool {
    let under_mcp = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(n) if n == "mcp");
    match &expr.expr {
        Expr::Ident(name) => name != "mcp",
        Expr::Select(select) => {
            if under_mcp(&select.operand) {
                return select.field == "method";
            }
            if let Expr::Select(inner) = &select.operand.expr
                && under_mcp(&inner.operand)
            {
                return matches!(select.field.as_str(), "name" | "uri" | "target");
            }
            names_only(&select.operand)
        }
        Expr::Call(call) => {
            call.target.as_deref().is_none_or(names_only) && call.args.iter().all(names_only)
        }
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .all(names_only),
        Expr::List(list) => list.elements.iter().all(names_only),
        Expr::Map(map) => map.entries.iter().all(|entry| match &entry.expr {
            EntryExpr::MapEntry(e) => names_only(&e.key) && names_only(&e.value),
            EntryExpr::StructField(f) => names_only(&f.value),
        }),
        Expr::Struct(s) => s.entries.iter().all(|entry| match &entry.expr {
            EntryExpr::MapEntry(e) => names_only(&e.key) && names_only(&e.value),
            EntryExpr::StructField(f) => names_only(&f.value),
        }),
        _ => true,
    }
}

/// Collects the fields read right under `mcp` (`mcp.tool.name` → `tool`).
fn mcp_fields(expr: &IdedExpr, fields: &mut BTreeSet<String>, reads_mcp: &mut bool) {
    match &expr.expr {
        Expr::Ident(name) => *reads_mcp |= name == "mcp",
        Expr::Select(select) => {
            if matches!(&select.operand.expr, Expr::Ident(name) if name == "mcp") {
                *reads_mcp = true;
                fields.insert(select.field.clone());
            } else {
                mcp_fields(&select.operand, fields, reads_mcp);
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                mcp_fields(target, fields, reads_mcp);
            }
            for arg in &call.args {
                mcp_fields(arg, fields, reads_mcp);
            }
        }
        Expr::Comprehension(c) => {
            for e in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                mcp_fields(e, fields, reads_mcp);
            }
        }
        Expr::List(list) => {
            for e in &list.elements {
                mcp_fields(e, fields, reads_mcp);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(e) = &entry.expr {
                    mcp_fields(&e.key, fields, reads_mcp);
                    mcp_fields(&e.value, fields, reads_mcp);
                }
            }
        }
        Expr::Struct(st) => {
            for entry in &st.entries {
                match &entry.expr {
                    EntryExpr::StructField(f) => mcp_fields(&f.value, fields, reads_mcp),
                    EntryExpr::MapEntry(e) => {
                        mcp_fields(&e.key, fields, reads_mcp);
                        mcp_fields(&e.value, fields, reads_mcp);
                    }
                }
            }
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// The outcome of a rule set for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Denied, with the rule (or the absence of one) that decided it.
    Deny(Denial),
}

/// Why rules denied: for the decision log (which rule, by its place in the policy and its
/// expression) and for the client (the rule's `message`, if it has one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The rule's index in the policy's `rules`; `None` when no allow rule matched.
    pub rule: Option<usize>,
    /// The deciding rule's expression (empty when no allow rule matched).
    pub source: String,
    pub kind: Option<RuleKind>,
    /// The text the rule's author wrote for the client.
    pub message: Option<String>,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind, self.rule) {
            (Some(RuleKind::Deny), Some(i)) => write!(f, "denied by rule {i} {:?}", self.source),
            (Some(RuleKind::Require), Some(i)) => {
                write!(f, "required rule {i} {:?} not met", self.source)
            }
            _ => f.write_str("no allow rule matched"),
        }
    }
}

/// What evaluation met along the way: rules that errored are logged and counted.
///
/// One `Evaluation` may serve several evaluations of the same request (same claims, same
/// headers), as the items of a list answer are: what each rule that reads nothing of `mcp`
/// came to is kept, so such a rule runs once for the whole list, not once per item.
#[derive(Debug, Default)]
pub struct Evaluation {
    pub errors: Vec<String>,
    /// Whether any evaluation so far had errors (the errors themselves are taken and logged).
    pub erred: bool,
    steady: Vec<Option<bool>>,
}

/// The request as CEL sees it.
pub struct Input<'a> {
    /// Verified claims, or `None` for an unauthenticated request.
    pub claims: Option<&'a serde_json::Map<String, Json>>,
    /// `claims` already converted ([`ClaimVars`], cached with the verified token).
    pub prebuilt: Option<&'a ClaimVars>,
    /// The message being judged, when it names a tool, prompt or resource.
    pub mcp: Option<&'a McpView<'a>>,
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub headers: &'a [(String, Vec<u8>)],
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>) -> RuleSet {
        let mut needs = Needs {
            mcp_names_only: true,
            ..Needs::default()
        };
        for rule in &rules {
            needs.mcp_names_only &= names_only(rule.program.expression());
            let refs = rule.program.references();
            needs.claims |= refs.has_variable("auth") || refs.has_variable("jwt");
            needs.request |= refs.has_variable("request");
            needs.mcp |= rule.reads_mcp;
        }
        RuleSet {
            rules,
            needs,
            env: StdEnv::default(),
            id: NEXT_RULE_SET.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Tells this rule set from every other one made in this VM (never 0).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the verdict on a request (not on an MCP message) is a function of the claims
    /// alone: no rule reads `request` (CEL here has no clock or other outside input).
    pub fn claims_only(&self) -> bool {
        !self.needs.request
    }

    /// Whether some rule reads `mcp`: then POST bodies are read and judged per message.
    pub fn reads_mcp(&self) -> bool {
        self.needs.mcp
    }

    /// Whether every rule reads of `mcp` only methods and names (see `names_only`).
    pub fn mcp_names_only(&self) -> bool {
        self.needs.mcp_names_only
    }

    /// Whether the verdict on an MCP message is a function of the claims and the message's
    /// method and names ([`crate::mcp::McpView::names_key`]) alone.
    pub fn names_decide(&self) -> bool {
        self.claims_only() && self.mcp_names_only()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn evaluate(&self, input: &Input<'_>, eval: &mut Evaluation) -> Verdict {
        if self.rules.is_empty() {
            return Verdict::Allow;
        }
        // Built only when a rule must run: in a list, the steady rules are already known.
        let vars = std::cell::OnceCell::new();
        let mut context = None;
        if eval.steady.len() < self.rules.len() {
            eval.steady.resize(self.rules.len(), None);
        }
        let mut any_allow = false;
        let mut allowed = false;
        let mut first_allow: Option<&Rule> = None;
        for (index, rule) in self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.applies(input.mcp))
        {
            let known = match rule.reads_mcp {
                false => eval.steady.get(index).copied().flatten(),
                true => None,
            };
            let holds = match known {
                Some(holds) => holds,
                None => {
                    let context = context.get_or_insert_with(|| {
                        let mut context = Context::with_env(self.env.0.clone());
                        context.set_variable_resolver(vars.get_or_init(|| self.vars(input)));
                        context
                    });
                    let holds = match rule.holds(context, input.mcp) {
                        Holds::Yes => true,
                        Holds::No | Holds::Absent => false,
                        Holds::Error(e) => {
                            eval.errors.push(format!(
                                "{} rule {:?} {e}",
                                rule.kind.name(),
                                rule.source
                            ));
                            false
                        }
                    };
                    if !rule.reads_mcp
                        && let Some(slot) = eval.steady.get_mut(index)
                    {
                        *slot = Some(holds);
                    }
                    holds
                }
            };
            match rule.kind {
                RuleKind::Deny | RuleKind::Require if holds == (rule.kind == RuleKind::Deny) => {
                    return Verdict::Deny(Denial {
                        rule: Some(index),
                        source: rule.source.clone(),
                        kind: Some(rule.kind),
                        message: rule.message.clone(),
                    });
                }
                RuleKind::Allow => {
                    any_allow = true;
                    allowed |= holds;
                    first_allow = first_allow.or(Some(rule));
                }
                _ => {}
            }
        }
        if !any_allow || allowed {
            Verdict::Allow
        } else {
            Verdict::Deny(Denial {
                rule: None,
                source: String::new(),
                kind: None,
                // With one allow rule its message explains the refusal; with several, which
                // one the caller missed is not for the gateway to guess.
                message: match self
                    .rules
                    .iter()
                    .filter(|r| r.kind == RuleKind::Allow)
                    .count()
                {
                    1 => first_allow.and_then(|r| r.message.clone()),
                    _ => None,
                },
            })
        }
    }

    /// The variables the rules read, as the interpreter's own values. The claims come
    /// converted with the token ([`ClaimVars`], kept in the token cache); only `mcp` (and
    /// `request`, when a rule reads it) are converted per evaluation.
    fn vars<'a>(&self, input: &Input<'a>) -> Vars<'a> {
        let mut vars = Vars::default();
        if self.needs.claims {
            match input.prebuilt {
                Some(prebuilt) => vars.claims = Claims::Borrowed(prebuilt),
                None => {
                    vars.claims = Claims::Owned(match input.claims {
                        Some(claims) => ClaimVars::new(claims),
                        None => ClaimVars::new(&serde_json::Map::new()),
                    });
                }
            }
        }
        if self.needs.mcp
            && let Some(view) = input.mcp
        {
            vars.mcp = Some(view.to_cel());
        }
        if self.needs.request {
            let headers = input
                .headers
                .iter()
                .filter(|(name, _)| !name.starts_with(':'))
                .map(|(name, value)| {
                    (
                        name.to_ascii_lowercase(),
                        Value::from(String::from_utf8_lossy(value).into_owned()),
                    )
                })
                .collect::<Vec<_>>();
            let headers = Value::Map(CelMap {
                map: Arc::new(
                    headers
                        .into_iter()
                        .map(|(k, v)| (Key::String(Arc::new(k)), v))
                        .collect(),
                ),
            });
            vars.request = crate::cel_value::map(vec![
                ("method", Value::from(input.method)),
                ("path", Value::from(input.path)),
                ("host", Value::from(input.host)),
                ("headers", headers),
            ])
            .try_into()
            .ok();
        }
        vars
    }
}

/// `jwt` and `auth` for one set of verified claims, converted once into the values the CEL
/// interpreter evaluates over. The conversion walks every claim, so it is done once per
/// verified token (the token cache keeps it), never once per rule or per list item.
#[derive(Debug)]
pub struct ClaimVars {
    jwt: Option<Box<dyn Val>>,
    auth: Option<Box<dyn Val>>,
}

impl ClaimVars {
    pub fn new(claims: &serde_json::Map<String, Json>) -> ClaimVars {
        let (jwt, auth) = claims_values(claims);
        // JSON converts to CEL without fail; were one to fail, the variable would be absent
        // and every rule reading it would err (not matched), never pass by default.
        ClaimVars {
            jwt: jwt.try_into().ok(),
            auth: auth.try_into().ok(),
        }
    }
}

#[derive(Debug, Default)]
enum Claims<'a> {
    #[default]
    None,
    Borrowed(&'a ClaimVars),
    Owned(ClaimVars),
}

/// What one evaluation's context resolves its variables from.
#[derive(Debug, Default)]
struct Vars<'a> {
    claims: Claims<'a>,
    mcp: Option<Box<dyn Val + 'a>>,
    request: Option<Box<dyn Val>>,
}

impl VariableResolver for Vars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let claims = match &self.claims {
            Claims::None => None,
            Claims::Borrowed(c) => Some(*c),
            Claims::Owned(c) => Some(c),
        };
        let value: &dyn Val = match variable {
            "jwt" => claims?.jwt.as_deref()?,
            "auth" => claims?.auth.as_deref()?,
            "mcp" => self.mcp.as_deref()?,
            "request" => self.request.as_deref()?,
            _ => return None,
        };
        Some(CowVal::Borrowed(value))
    }
}

/// `jwt` and `auth` (`auth.claims`, `auth.scopes`) for a set of verified claims.
pub fn claims_values(claims: &serde_json::Map<String, Json>) -> (Value, Value) {
    let jwt = crate::cel_value::object(claims);
    let scopes = Value::List(Arc::new(
        scopes(claims).into_iter().map(Value::from).collect(),
    ));
    let auth = crate::cel_value::map(vec![("claims", jwt.clone()), ("scopes", scopes)]);
    (jwt, auth)
}

/// The token's scopes as a list, whatever the issuer's shape: Okta's `scp` array, or the
/// space-separated `scope` string of RFC 8693 / RFC 9068 (`scp` as a string too).
pub fn scopes(claims: &serde_json::Map<String, Json>) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["scp", "scope"] {
        match claims.get(key) {
            Some(Json::Array(items)) => {
                out.extend(items.iter().filter_map(Json::as_str).map(str::to_string));
            }
            Some(Json::String(text)) => out.extend(text.split_whitespace().map(str::to_string)),
            _ => {}
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json as j;

    fn set(rules: &[(RuleKind, &str)]) -> RuleSet {
        RuleSet::new(
            rules
                .iter()
                .map(|(k, s)| Rule::compile(*k, s).unwrap())
                .collect(),
        )
    }

    fn run(rules: &RuleSet, claims: Json) -> (Verdict, Evaluation) {
        let claims = claims.as_object().cloned();
        let headers = vec![("x-team".to_string(), b"blue".to_vec())];
        let input = Input {
            claims: claims.as_ref(),
            prebuilt: None,
            mcp: None,
            method: "POST",
            path: "/mcp",
            host: "gw",
            headers: &headers,
        };
        let mut eval = Evaluation::default();
        (rules.evaluate(&input, &mut eval), eval)
    }

    #[test]
    fn the_guides_group_rule() {
        let rules = set(&[(RuleKind::Allow, r#""AI-Users" in auth.claims.groups"#)]);
        assert_eq!(run(&rules, j!({"groups": ["AI-Users"]})).0, Verdict::Allow);
        assert!(matches!(
            run(&rules, j!({"groups": ["Other"]})).0,
            Verdict::Deny(_)
        ));
        // No groups claim: the rule errors, counts as not matched, and the error is reported.
        let (verdict, eval) = run(&rules, j!({}));
        assert!(matches!(verdict, Verdict::Deny(_)));
        assert_eq!(eval.errors.len(), 1, "{:?}", eval.errors);
    }

    #[test]
    fn deny_beats_allow_and_require_must_hold() {
        let rules = set(&[
            (RuleKind::Allow, "true"),
            (RuleKind::Deny, r#"jwt.sub == "mallory""#),
            (RuleKind::Require, r#"request.headers["x-team"] == "blue""#),
        ]);
        assert_eq!(run(&rules, j!({"sub": "alice"})).0, Verdict::Allow);
        assert!(matches!(
            run(&rules, j!({"sub": "mallory"})).0,
            Verdict::Deny(_)
        ));
        let needs_red = set(&[(RuleKind::Require, r#"request.headers["x-team"] == "red""#)]);
        assert!(matches!(run(&needs_red, j!({})).0, Verdict::Deny(_)));
    }

    #[test]
    fn an_erroring_deny_does_not_deny_and_an_erroring_require_denies() {
        let deny = set(&[(RuleKind::Deny, "jwt.missing == 1")]);
        assert_eq!(run(&deny, j!({})).0, Verdict::Allow);
        let require = set(&[(RuleKind::Require, "jwt.missing == 1")]);
        assert!(matches!(run(&require, j!({})).0, Verdict::Deny(_)));
    }

    #[test]
    fn a_non_bool_result_is_an_error_not_a_match() {
        let rules = set(&[(RuleKind::Allow, "jwt.sub")]);
        let (verdict, eval) = run(&rules, j!({"sub": "x"}));
        assert!(matches!(verdict, Verdict::Deny(_)));
        assert!(eval.errors[0].contains("not a bool"), "{:?}", eval.errors);
    }

    #[test]
    fn numbers_keep_their_cel_types() {
        let rules = set(&[(RuleKind::Allow, "jwt.exp > 10 && jwt.ratio > 0.5")]);
        assert_eq!(
            run(&rules, j!({"exp": 20, "ratio": 0.75})).0,
            Verdict::Allow
        );
    }

    #[test]
    fn mcp_rules_apply_only_to_messages_that_name_what_they_read() {
        let tool_rule = Rule::compile(RuleKind::Allow, r#"mcp.tool.name == "echo""#).unwrap();
        assert!(tool_rule.reads_mcp);
        assert_eq!(tool_rule.kinds, BTreeSet::from([Kind::Tool]));
        let method_rule = Rule::compile(
            RuleKind::Deny,
            r#"mcp.method == "tools/call" && "x" in jwt.groups"#,
        )
        .unwrap();
        assert!(method_rule.reads_mcp && method_rule.kinds.is_empty());
        let nested = Rule::compile(
            RuleKind::Allow,
            r#"mcp.tool.arguments.paths.all(p, p.startsWith("/tmp")) || size(mcp.prompt.name) > 0"#,
        )
        .unwrap();
        assert_eq!(nested.kinds, BTreeSet::from([Kind::Tool, Kind::Prompt]));
        assert!(nested.applies(Some(&named(Kind::Prompt, "p"))));
        assert!(!nested.applies(Some(&named(Kind::Resource, "r"))));
        let http = Rule::compile(RuleKind::Allow, "'a' in jwt.groups").unwrap();
        assert!(!http.reads_mcp);

        let prompt = McpView {
            method: "prompts/get".into(),
            kind: Kind::Prompt,
            name: "greet".into(),
            raw: "greet".into(),
            target: String::new(),
            arguments: std::borrow::Cow::Owned(j!({})),
        };
        assert!(
            !tool_rule.applies(Some(&prompt)),
            "a tool rule does not hide prompts"
        );
        assert!(method_rule.applies(Some(&prompt)));
        assert!(http.applies(Some(&prompt)) && http.applies(None));
        assert!(!tool_rule.applies(None) && !method_rule.applies(None));
    }

    fn named(kind: Kind, name: &str) -> McpView<'static> {
        McpView {
            method: match kind {
                Kind::Tool => "tools/call",
                Kind::Prompt => "prompts/get",
                Kind::Resource => "resources/read",
            }
            .into(),
            kind,
            name: name.into(),
            raw: name.into(),
            target: String::new(),
            arguments: std::borrow::Cow::Owned(j!({})),
        }
    }

    fn judge(rules: &RuleSet, claims: Json, view: &McpView) -> (Verdict, Evaluation) {
        let claims = claims.as_object().cloned();
        let input = Input {
            claims: claims.as_ref(),
            prebuilt: None,
            mcp: Some(view),
            method: "POST",
            path: "/mcp",
            host: "gw",
            headers: &[],
        };
        let mut eval = Evaluation::default();
        (rules.evaluate(&input, &mut eval), eval)
    }

    #[test]
    fn one_evaluation_runs_a_steady_rule_once_for_every_item() {
        // The first rule reads only the claims (and errs: no such claim); the second reads the
        // tool. Judged as the items of one list, the first runs once, the second per item.
        let rules = set(&[
            (RuleKind::Allow, "auth.claims.missing == 'x'"),
            (RuleKind::Allow, "mcp.tool.name == 'b'"),
        ]);
        let claims = j!({"sub": "u"});
        let claims = claims.as_object();
        let mut eval = Evaluation::default();
        let verdicts: Vec<bool> = ["a", "b", "c"]
            .iter()
            .map(|name| {
                let view = named(Kind::Tool, name);
                let input = Input {
                    claims,
                    prebuilt: None,
                    mcp: Some(&view),
                    method: "POST",
                    path: "/mcp",
                    host: "gw",
                    headers: &[],
                };
                rules.evaluate(&input, &mut eval) == Verdict::Allow
            })
            .collect();
        assert_eq!(verdicts, [false, true, false]);
        assert_eq!(eval.errors.len(), 1, "{:?}", eval.errors);
    }

    #[test]
    fn a_rule_reading_two_kinds_judges_each_kind_by_its_own_condition() {
        let deny = (
            RuleKind::Deny,
            r#"mcp.tool.name == "a" || mcp.prompt.name == "b""#,
        );
        let require = (
            RuleKind::Require,
            r#"mcp.tool.name == "echo" || mcp.prompt.name == "greet""#,
        );
        let allow = (
            RuleKind::Allow,
            r#"mcp.tool.name.startsWith("read_") || (has(mcp.resource) ? mcp.resource.uri.startsWith("file:///public/") : false)"#,
        );
        // A rule, a message, and whether the rule allows the message. Absence (of a tool in a
        // prompt call, say) must never be reported as an error.
        for (rule, kind, name, allowed) in [
            (deny, Kind::Tool, "a", false),
            (deny, Kind::Prompt, "b", false),
            (deny, Kind::Tool, "b", true),
            (deny, Kind::Prompt, "a", true),
            (deny, Kind::Tool, "x", true),
            (deny, Kind::Resource, "a", true),
            (require, Kind::Tool, "echo", true),
            (require, Kind::Tool, "rm", false),
            (require, Kind::Prompt, "greet", true),
            (require, Kind::Prompt, "other", false),
            // A resource is not named by the rule: it does not apply.
            (require, Kind::Resource, "file:///x", true),
            (allow, Kind::Tool, "read_file", true),
            (allow, Kind::Tool, "write_file", false),
            (allow, Kind::Resource, "file:///public/a", true),
            (allow, Kind::Resource, "file:///private/a", false),
            (allow, Kind::Prompt, "greet", true),
        ] {
            let source = rule.1;
            let (verdict, eval) = judge(&set(&[rule]), j!({}), &named(kind, name));
            assert!(eval.errors.is_empty(), "{source} {name}: {:?}", eval.errors);
            assert_eq!(verdict == Verdict::Allow, allowed, "{source} {name}");
        }
    }

    #[test]
    fn a_real_error_in_a_rule_reading_two_kinds_is_still_reported() {
        let rules = set(&[(
            RuleKind::Deny,
            r#"(mcp.tool.name == "a" && jwt.level > 3) || mcp.prompt.name == "b""#,
        )]);
        let (verdict, eval) = judge(&rules, j!({}), &named(Kind::Tool, "a"));
        assert_eq!(verdict, Verdict::Allow);
        assert_eq!(eval.errors.len(), 1, "{:?}", eval.errors);
        let (verdict, _) = judge(&rules, j!({"level": 5}), &named(Kind::Tool, "a"));
        assert!(matches!(verdict, Verdict::Deny(_)));
        let (verdict, eval) = judge(&rules, j!({"level": 5}), &named(Kind::Prompt, "b"));
        assert!(matches!(verdict, Verdict::Deny(_)));
        assert!(eval.errors.is_empty());
    }

    #[test]
    fn a_rule_that_could_never_hold_for_a_kind_it_reads_fails_to_compile() {
        for (source, kind) in [
            (r#"mcp.tool.name == "a" && mcp.prompt.name == "b""#, "tool"),
            ("mcp.tool.name == mcp.prompt.name", "tool"),
            (
                r#"[mcp.tool.name, mcp.prompt.name].exists(n, n == "x")"#,
                "tool",
            ),
            (
                r#"!(mcp.prompt.name == "b") && mcp.resource.uri == "x""#,
                "prompt",
            ),
            (
                r#"size(mcp.resource.uri) > 0 ? true : mcp.tool.name == "a""#,
                "tool",
            ),
        ] {
            for rule in [RuleKind::Allow, RuleKind::Deny, RuleKind::Require] {
                let e = Rule::compile(rule, source).unwrap_err().to_string();
                assert!(e.contains(&format!("{source:?}")), "{e}");
                assert!(
                    e.contains(&format!("can never hold for a message naming a {kind}")),
                    "{e}"
                );
            }
        }
        for fine in [
            r#"mcp.tool.name == "a" || mcp.prompt.name == "b""#,
            r#"has(mcp.tool) ? mcp.tool.name == "a" : mcp.prompt.name == "b""#,
            r#"!(mcp.tool.name == "a") || !(mcp.prompt.name == "b")"#,
            r#"mcp.tool.arguments.paths.all(p, p.startsWith("/tmp")) || size(mcp.prompt.name) > 0"#,
        ] {
            assert!(Rule::compile(RuleKind::Deny, fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn scopes_read_as_a_list_whatever_the_issuer() {
        let okta = j!({"scp": ["mcp.read", "mcp.write"]});
        assert_eq!(
            scopes(okta.as_object().unwrap()),
            vec!["mcp.read", "mcp.write"]
        );
        let rfc = j!({"scope": "openid mcp.read"});
        assert_eq!(scopes(rfc.as_object().unwrap()), vec!["openid", "mcp.read"]);
        let rules = set(&[(RuleKind::Require, r#""mcp.read" in auth.scopes"#)]);
        assert_eq!(run(&rules, rfc).0, Verdict::Allow);
        assert!(matches!(run(&rules, j!({})).0, Verdict::Deny(_)));
    }

    #[test]
    fn bad_expressions_fail_to_compile_with_the_source() {
        let err = Rule::compile(RuleKind::Allow, "auth.claims.groups in in").unwrap_err();
        assert!(
            err.to_string().contains("auth.claims.groups in in"),
            "{err}"
        );
    }
}

//! Lowering of a syntax tree to a [`Plan`].

use std::ops::Range;

use cull_model::analyzer::{analyze, Form, Mode};
use cull_model::Channel;

use super::ast::{Near, Node, NodeKind, Phrase, Term};
use super::QueryError;
use crate::plan::{keyword_value, Field, Plan, Sequence, TextField, Word};

/// The fewest characters a wildcard word needs before its `*`.
///
/// Shorter stems expand to a large part of the vocabulary ("co*"), which makes the
/// rule slow everywhere and almost never means what the operator wanted.
pub const MIN_PREFIX_CHARS: usize = 3;

/// Compiles a parsed query, reporting every error it contains rather than the first.
pub fn compile(node: &Node) -> Result<Plan, Vec<QueryError>> {
    let mut compiler = Compiler::default();
    let plan = compiler.node(node, None);
    compiler.finish(plan)
}

/// Compiles a `mask` entry: a word, a phrase or an OR of them, whose occurrences are
/// to be hidden. Returns one sequence per alternative and field.
pub fn compile_mask(node: &Node) -> Result<Vec<Sequence>, Vec<QueryError>> {
    let mut compiler = Compiler::default();
    let mut sequences = Vec::new();
    for branch in exclude_clauses(node) {
        if let Some(operand) = compiler.operand(branch, None, "a mask") {
            sequences.extend(
                fields_in(operand.field)
                    .into_iter()
                    .flat_map(|field| operand.sequences(field).collect::<Vec<_>>()),
            );
        }
    }
    compiler.finish(Some(sequences))
}

/// Returns the top-level OR branches of a query: each branch of an `exclude` is
/// reported on its own when it culls a mention, and each branch of a `mask` may name
/// its own field.
pub fn exclude_clauses(node: &Node) -> Vec<&Node> {
    match &node.kind {
        NodeKind::Or(branches) => branches.iter().collect(),
        _ => vec![node],
    }
}

/// One alternative of a proximity operand or mask: words not yet bound to a field.
struct Alternative {
    words: Vec<Word>,
    prefix: bool,
    form: Form,
}

/// The alternatives of a proximity operand or mask, with the field it names, if any.
struct Operand {
    field: Option<Field>,
    alternatives: Vec<Alternative>,
}

impl Operand {
    fn sequences(&self, field: Field) -> impl Iterator<Item = Sequence> + '_ {
        self.alternatives.iter().map(move |a| Sequence {
            field: TextField { field, form: a.form },
            words: a.words.clone(),
            prefix: a.prefix,
        })
    }
}

#[derive(Default)]
struct Compiler {
    errors: Vec<QueryError>,
}

fn any_of(mut plans: Vec<Plan>) -> Plan {
    if plans.len() == 1 {
        plans.remove(0)
    } else {
        Plan::Or(plans)
    }
}

fn fields_in(scope: Option<Field>) -> Vec<Field> {
    scope.map_or(Field::DEFAULT.to_vec(), |f| vec![f])
}

const NOT_ALONE_HELP: &str =
    "NOT removes mentions from a clause beside it, e.g. `slack -adjuster`; alone it matches nothing";

impl Compiler {
    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<QueryError>> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(self.errors),
        }
    }

    fn error(&mut self, error: QueryError) -> Option<Plan> {
        self.errors.push(error);
        None
    }

    fn node(&mut self, node: &Node, scope: Option<Field>) -> Option<Plan> {
        match &node.kind {
            NodeKind::Term(term) => self.term(term, &node.span, scope),
            NodeKind::Phrase(phrase) => self.phrase(phrase, &node.span, scope),
            NodeKind::Near(near) => self.near(near, &node.span, scope),
            NodeKind::And(nodes) => self.and(nodes, &node.span, scope),
            NodeKind::Or(nodes) => {
                let mut plans = Vec::new();
                for child in nodes {
                    if let NodeKind::Not(_) = child.kind {
                        self.error(
                            QueryError::new(child.span.clone(), "NOT cannot be an alternative of OR")
                                .with_help(
                                    "`a OR -b` would match almost everything; write `a -b` or `(a OR c) -b`",
                                ),
                        );
                    } else if let Some(plan) = self.node(child, scope) {
                        plans.push(plan);
                    }
                }
                (plans.len() == nodes.len()).then_some(Plan::Or(plans))
            }
            NodeKind::Not(_) => self.error(
                QueryError::new(node.span.clone(), "a query cannot be only NOT").with_help(NOT_ALONE_HELP),
            ),
            NodeKind::Scoped(field, inner) => self.scoped(*field, inner, &node.span, scope),
        }
    }

    fn scoped(
        &mut self,
        field: Field,
        inner: &Node,
        span: &Range<usize>,
        scope: Option<Field>,
    ) -> Option<Plan> {
        if let Some(outer) = scope.filter(|outer| *outer != field) {
            let message = format!("`{}:` inside `{}:` can never match", field.name(), outer.name());
            return self.error(QueryError::new(span.clone(), message));
        }
        self.node(inner, Some(field))
    }

    fn and(&mut self, nodes: &[Node], span: &Range<usize>, scope: Option<Field>) -> Option<Plan> {
        let mut must = Vec::new();
        let mut must_not = Vec::new();
        let mut failed = false;
        for child in nodes {
            let plan = match &child.kind {
                NodeKind::Not(inner) => self.node(inner, scope).map(|p| must_not.push(p)),
                _ => self.node(child, scope).map(|p| must.push(p)),
            };
            failed |= plan.is_none();
        }
        if must.is_empty() && !failed {
            return self.error(
                QueryError::new(span.clone(), "every clause here is negated").with_help(NOT_ALONE_HELP),
            );
        }
        if failed {
            return None;
        }
        if must.len() == 1 && must_not.is_empty() {
            return must.pop();
        }
        Some(Plan::And { must, must_not })
    }

    fn words(&mut self, text: &str, form: Form, span: &Range<usize>) -> Option<Vec<Word>> {
        let tokens = analyze(text, form, Mode::Query);
        let Some(first) = tokens.first().map(|t| t.position) else {
            self.errors.push(
                QueryError::new(span.clone(), format!("`{text}` has no words to match"))
                    .with_help("words are letters or digits; punctuation and spaces are ignored"),
            );
            return None;
        };
        Some(tokens.into_iter().map(|t| Word { offset: t.position - first, term: t.term }).collect())
    }

    fn keyword(&mut self, field: Field, text: &str, span: &Range<usize>) -> Option<Plan> {
        let value = keyword_value(text);
        let value = if field == Field::Site { value.trim_end_matches('.').to_string() } else { value };
        if value.is_empty() {
            return self.error(QueryError::new(span.clone(), format!("`{}:` needs a value", field.name())));
        }
        if field == Field::Channel && Channel::parse(&value).is_none() {
            let names: Vec<&str> = Channel::ALL.iter().map(|c| c.as_str()).collect();
            return self.error(
                QueryError::new(span.clone(), format!("unknown channel `{value}`"))
                    .with_help(format!("channels are {}", names.join(", "))),
            );
        }
        Some(Plan::Keyword { field, value })
    }

    fn alternative_of_term(&mut self, term: &Term, span: &Range<usize>) -> Option<Alternative> {
        let form = if term.exact { Form::Exact } else { Form::Folded };
        let words = self.words(&term.text, form, span)?;
        if term.prefix {
            if words.len() > 1 {
                self.error(
                    QueryError::new(
                        span.clone(),
                        format!("the wildcard in `{}*` applies to one word", term.text),
                    )
                    .with_help("quote the words before it as a phrase and AND them with the wildcard word"),
                );
                return None;
            }
            if words[0].term.chars().count() < MIN_PREFIX_CHARS {
                self.error(
                    QueryError::new(
                        span.clone(),
                        format!("wildcard `{}*` is shorter than {MIN_PREFIX_CHARS} characters", term.text),
                    )
                    .with_help(
                        "a short wildcard matches a large part of the vocabulary; write a longer stem",
                    ),
                );
                return None;
            }
        }
        Some(Alternative { words, prefix: term.prefix, form })
    }

    fn term(&mut self, term: &Term, span: &Range<usize>, scope: Option<Field>) -> Option<Plan> {
        if let Some(field) = scope.filter(|f| !f.is_text()) {
            if term.prefix || term.exact {
                let message =
                    format!("`{}:` takes a whole value; wildcards and `{{…}}` apply to words", field.name());
                return self.error(QueryError::new(span.clone(), message));
            }
            return self.keyword(field, &term.text, span);
        }
        let alternative = self.alternative_of_term(term, span)?;
        let operand = Operand { field: scope, alternatives: vec![alternative] };
        Some(any_of(
            fields_in(scope).into_iter().flat_map(|f| operand.sequences(f)).map(Plan::Sequence).collect(),
        ))
    }

    fn phrase(&mut self, phrase: &Phrase, span: &Range<usize>, scope: Option<Field>) -> Option<Plan> {
        if let Some(field) = scope.filter(|f| !f.is_text()) {
            if phrase.slop.is_some() || phrase.exact {
                let message =
                    format!("`{}:` takes a whole value; `~n` and `{{…}}` apply to text", field.name());
                return self.error(QueryError::new(span.clone(), message));
            }
            return self.keyword(field, &phrase.text, span);
        }
        let form = if phrase.exact { Form::Exact } else { Form::Folded };
        let words = self.words(&phrase.text, form, span)?;
        let slop = phrase.slop.unwrap_or(0);
        if slop > 0 && words.len() > 2 {
            // Tantivy applies the slop of a longer phrase word pair by word pair, in the
            // order of the words' frequencies in the index segment: the same mention can
            // match in one index and not in another. A rule must mean one thing, in the
            // live matcher and in a backtest alike, so only the well-defined case is
            // accepted.
            let message = format!("a phrase with `~{slop}` may have two words, not {}", words.len());
            let help = "write `\"a b\"~n` for two words, or combine them: `(a NEAR/2 b) (b NEAR/2 c)`";
            return self.error(QueryError::new(span.clone(), message).with_help(help));
        }
        let plans = fields_in(scope)
            .into_iter()
            .map(|field| {
                let sequence =
                    Sequence { field: TextField { field, form }, words: words.clone(), prefix: false };
                if slop > 0 && words.len() > 1 {
                    Plan::SloppyPhrase { sequence, slop }
                } else {
                    Plan::Sequence(sequence)
                }
            })
            .collect();
        Some(any_of(plans))
    }

    /// Compiles a proximity operand or a mask: a word, a phrase, or an OR of them,
    /// optionally under one field.
    fn operand(&mut self, node: &Node, scope: Option<Field>, what: &str) -> Option<Operand> {
        let shape_error = |span: &Range<usize>| {
            QueryError::new(span.clone(), format!("{what} is a word, a phrase or an OR of them"))
                .with_help("move other clauses outside, e.g. `(a NEAR/3 b) AND c`")
        };
        match &node.kind {
            NodeKind::Scoped(field, inner) => {
                if scope.is_some_and(|outer| outer != *field) {
                    self.error(QueryError::new(
                        node.span.clone(),
                        format!("`{}:` conflicts with the field around it", field.name()),
                    ));
                    return None;
                }
                if !field.is_text() {
                    self.error(QueryError::new(
                        node.span.clone(),
                        format!("{what} needs a text field, not `{}:`", field.name()),
                    ));
                    return None;
                }
                let mut operand = self.operand(inner, Some(*field), what)?;
                operand.field = Some(*field);
                Some(operand)
            }
            NodeKind::Term(term) => {
                let alternative = self.alternative_of_term(term, &node.span)?;
                Some(Operand { field: None, alternatives: vec![alternative] })
            }
            NodeKind::Phrase(phrase) => {
                if phrase.slop.is_some_and(|s| s > 0) {
                    self.error(
                        QueryError::new(node.span.clone(), format!("a phrase with `~n` cannot be {what}"))
                            .with_help("use NEAR/n between its words instead"),
                    );
                    return None;
                }
                let form = if phrase.exact { Form::Exact } else { Form::Folded };
                let words = self.words(&phrase.text, form, &node.span)?;
                Some(Operand { field: None, alternatives: vec![Alternative { words, prefix: false, form }] })
            }
            NodeKind::Or(nodes) => {
                let mut field = None;
                let mut alternatives = Vec::new();
                let mut failed = false;
                for child in nodes {
                    match self.operand(child, scope, what) {
                        Some(operand) => {
                            if operand.field.is_some() && field.is_some() && operand.field != field {
                                self.error(QueryError::new(
                                    child.span.clone(),
                                    format!("the alternatives of {what} name different fields"),
                                ));
                                failed = true;
                            }
                            field = field.or(operand.field);
                            alternatives.extend(operand.alternatives);
                        }
                        None => failed = true,
                    }
                }
                (!failed).then_some(Operand { field, alternatives })
            }
            _ => {
                self.errors.push(shape_error(&node.span));
                None
            }
        }
    }

    fn near(&mut self, near: &Near, span: &Range<usize>, scope: Option<Field>) -> Option<Plan> {
        let left = self.operand(&near.left, scope, "a NEAR operand");
        let right = self.operand(&near.right, scope, "a NEAR operand");
        let (left, right) = (left?, right?);
        let field = match (left.field, right.field) {
            (Some(l), Some(r)) if l != r => {
                let message =
                    format!("NEAR compares positions in one field, not `{}:` with `{}:`", l.name(), r.name());
                return self.error(QueryError::new(span.clone(), message));
            }
            (l, r) => l.or(r).or(scope),
        };
        if let Some(field) = field.filter(|f| !f.is_text()) {
            return self.error(QueryError::new(
                span.clone(),
                format!("NEAR needs a text field, not `{}:`", field.name()),
            ));
        }
        let plans = fields_in(field)
            .into_iter()
            .map(|f| Plan::Near {
                left: left.sequences(f).collect(),
                right: right.sequences(f).collect(),
                distance: near.distance,
                ordered: near.ordered,
            })
            .collect();
        Some(any_of(plans))
    }
}

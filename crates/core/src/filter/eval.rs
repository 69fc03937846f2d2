//! Typing a parsed filter against a schema, compiling it to a branch program, and running it.
//!
//! Comparison semantics (shared by the compiled program and the reference interpreter):
//! - int and bool fields compare as unsigned 64-bit integers (bool = 0/1; `true`/`false` may be
//!   written for bool fields) with every operator; NULL counts as 0;
//! - string fields compare with `=` / `!=` against a bare word or a quoted string; NULL counts
//!   as the empty string;
//! - a dotted IPv4 literal compares a string field as an address, with every operator: a NULL
//!   value counts as 0.0.0.0, and a value that is not a dotted quad is unequal to every address
//!   and neither smaller nor larger than any.
//!
//! The compiled form is a flat list of tests, each naming where to continue when it holds and
//! when it does not (short-circuit `&&` / `||` become jumps), so evaluating needs no stack and no
//! allocation.

use std::net::Ipv4Addr;

use super::lexer::{CmpOp, error_at};
use super::parser::{Comparison, Expr, Literal};
use crate::error::InputError;
use crate::fields::{FieldType, Record, Schema, Value};

/// A typed test on one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Test {
    /// Integer (or bool as 0/1) comparison.
    Int { field: usize, op: CmpOp, value: u64 },
    /// String equality (`eq`) or inequality (`!eq`).
    Str { field: usize, eq: bool, value: Box<str> },
    /// Address comparison of a string field holding a dotted quad.
    Addr { field: usize, op: CmpOp, value: u32 },
}

/// Where to go next: another instruction, or a verdict.
pub(crate) const ACCEPT: u32 = u32::MAX;
pub(crate) const REJECT: u32 = u32::MAX - 1;

/// One instruction of the branch program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Insn {
    pub(crate) test: Test,
    pub(crate) on_true: u32,
    pub(crate) on_false: u32,
}

/// The integer view of a value (NULL and non-integers are 0).
#[inline]
fn int_of(v: Value<'_>) -> u64 {
    match v {
        Value::Int(n) => n,
        Value::Bool(b) => u64::from(b),
        _ => 0,
    }
}

/// The string view of a value (NULL and non-strings are empty).
#[inline]
fn str_of(v: Value<'_>) -> &str {
    match v {
        Value::Str(s) => s,
        _ => "",
    }
}

/// The address view of a value: NULL is 0.0.0.0, a string that is not a dotted quad is `None`.
#[inline]
fn addr_of(v: Value<'_>) -> Option<u32> {
    match v {
        Value::Null => Some(0),
        Value::Str(s) => s.parse::<Ipv4Addr>().ok().map(u32::from),
        _ => None,
    }
}

#[inline]
fn get(rec: &Record, i: usize) -> Value<'_> {
    if i < rec.len() { rec.get(i) } else { Value::Null }
}

#[inline]
fn addr_cmp(v: Option<u32>, op: CmpOp, lit: u32) -> bool {
    match v {
        Some(x) => op.apply(x, lit),
        None => op == CmpOp::Ne,
    }
}

impl Test {
    #[inline]
    fn holds(&self, rec: &Record) -> bool {
        match self {
            Test::Int { field, op, value } => op.apply(int_of(get(rec, *field)), *value),
            Test::Str { field, eq, value } => (str_of(get(rec, *field)) == &**value) == *eq,
            Test::Addr { field, op, value } => addr_cmp(addr_of(get(rec, *field)), *op, *value),
        }
    }
}

/// Runs a branch program from `entry`.
#[inline]
pub(crate) fn run(prog: &[Insn], entry: u32, rec: &Record) -> bool {
    let mut pc = entry;
    loop {
        if pc == ACCEPT {
            return true;
        }
        if pc == REJECT {
            return false;
        }
        let Some(insn) = prog.get(pc as usize) else { return false };
        pc = if insn.test.holds(rec) { insn.on_true } else { insn.on_false };
    }
}

fn type_error(expr: &str, pos: usize, msg: String) -> InputError {
    error_at(expr, pos, msg)
}

/// Types one comparison against the schema.
fn bind(expr: &str, c: &Comparison, schema: &Schema) -> Result<Test, InputError> {
    let Some(field) = crate::output::select::lookup_field(schema, &c.field) else {
        return Err(type_error(
            expr,
            c.field_pos,
            format!("unknown field \"{}\" (valid fields: {})", c.field, schema.names()),
        ));
    };
    let def = schema.get(field).ok_or_else(|| {
        type_error(expr, c.field_pos, format!("field \"{}\" is not in the schema", c.field))
    })?;
    let name = &c.field;
    match (def.ty, &c.value) {
        (FieldType::Int | FieldType::Bool, Literal::Number(n)) => {
            Ok(Test::Int { field, op: c.op, value: *n })
        }
        (FieldType::Bool, Literal::Word(w)) if w == "true" || w == "false" => {
            Ok(Test::Int { field, op: c.op, value: u64::from(w == "true") })
        }
        (FieldType::Int | FieldType::Bool, Literal::Word(w) | Literal::Quoted(w)) => {
            let kind = if def.ty == FieldType::Bool {
                "a boolean: compare it with 0, 1, true or false"
            } else {
                "an integer: compare it with a number"
            };
            Err(type_error(
                expr,
                c.value_pos,
                format!("field \"{name}\" is {kind}, not with the string {w:?}"),
            ))
        }
        (FieldType::Int | FieldType::Bool, Literal::Ipv4(a)) => Err(type_error(
            expr,
            c.value_pos,
            format!(
                "field \"{name}\" is {}: an address such as {a} can only be compared with a string address field such as saddr",
                def.ty.name()
            ),
        )),
        (FieldType::Str, Literal::Word(w) | Literal::Quoted(w)) => match c.op {
            CmpOp::Eq | CmpOp::Ne => {
                Ok(Test::Str { field, eq: c.op == CmpOp::Eq, value: w.clone().into_boxed_str() })
            }
            op => Err(type_error(
                expr,
                c.op_pos,
                format!(
                    "field \"{name}\" is a string: strings can only be compared with = and !=, not {}",
                    op.symbol()
                ),
            )),
        },
        (FieldType::Str, Literal::Number(n)) => Err(type_error(
            expr,
            c.value_pos,
            format!(
                "field \"{name}\" is a string: compare it with a word or a \"quoted string\", not the number {n}"
            ),
        )),
        (FieldType::Str, Literal::Ipv4(a)) => {
            Ok(Test::Addr { field, op: c.op, value: u32::from(*a) })
        }
        (ty @ (FieldType::Bin | FieldType::Repeated | FieldType::Nested), _) => Err(type_error(
            expr,
            c.field_pos,
            format!("field \"{name}\" has type {} and cannot be used in a filter", ty.name()),
        )),
    }
}

/// Compiles `e` so that a match continues at `on_true` and a mismatch at `on_false`; returns
/// the entry point. Instructions are appended; targets always point at earlier instructions.
pub(crate) fn compile(
    src: &str,
    e: &Expr,
    schema: &Schema,
    on_true: u32,
    on_false: u32,
    prog: &mut Vec<Insn>,
) -> Result<u32, InputError> {
    match e {
        Expr::Cmp(c) => {
            let test = bind(src, c, schema)?;
            let at = prog.len() as u32;
            prog.push(Insn { test, on_true, on_false });
            Ok(at)
        }
        Expr::And(items) => {
            // The last item decides; each earlier one continues to the next when it holds.
            let mut next = on_true;
            for item in items.iter().rev() {
                next = compile(src, item, schema, next, on_false, prog)?;
            }
            Ok(next)
        }
        Expr::Or(items) => {
            let mut next = on_false;
            for item in items.iter().rev() {
                next = compile(src, item, schema, on_true, next, prog)?;
            }
            Ok(next)
        }
    }
}

/// The reference interpreter: walks the syntax tree, looking every field up by name.
///
/// Slow on purpose and written independently of the compiled program; tests and fuzz targets
/// check that both agree. The expression must have compiled against `schema`.
pub fn interpret(e: &Expr, schema: &Schema, rec: &Record) -> bool {
    match e {
        Expr::And(items) => items.iter().all(|i| interpret(i, schema, rec)),
        Expr::Or(items) => items.iter().any(|i| interpret(i, schema, rec)),
        Expr::Cmp(c) => {
            let Some(i) = crate::output::select::lookup_field(schema, &c.field) else {
                return false;
            };
            let ty = schema.fields()[i].ty;
            let v = if i < rec.len() { rec.get(i) } else { Value::Null };
            match &c.value {
                Literal::Number(n) => {
                    let x = match v {
                        Value::Int(x) => x,
                        Value::Bool(true) => 1,
                        _ => 0,
                    };
                    naive_cmp(c.op, x, *n)
                }
                Literal::Word(w) if ty == FieldType::Bool => {
                    let x = match v {
                        Value::Int(n) => n,
                        Value::Bool(true) => 1,
                        _ => 0,
                    };
                    naive_cmp(c.op, x, if w == "true" { 1 } else { 0 })
                }
                Literal::Word(w) | Literal::Quoted(w) => {
                    let s = if let Value::Str(s) = v { s } else { "" };
                    match c.op {
                        CmpOp::Eq => s == w,
                        _ => s != w,
                    }
                }
                Literal::Ipv4(a) => {
                    let lit = u32::from(*a);
                    let parsed = match v {
                        Value::Null => Some(Ipv4Addr::UNSPECIFIED),
                        Value::Str(s) => s.parse::<Ipv4Addr>().ok(),
                        _ => None,
                    };
                    match parsed {
                        None => c.op == CmpOp::Ne,
                        Some(x) => naive_cmp(c.op, u64::from(u32::from(x)), u64::from(lit)),
                    }
                }
            }
        }
    }
}

fn naive_cmp(op: CmpOp, x: u64, lit: u64) -> bool {
    match op {
        CmpOp::Eq => x == lit,
        CmpOp::Ne => x != lit,
        CmpOp::Lt => x < lit,
        CmpOp::Gt => x > lit,
        CmpOp::Le => x <= lit,
        CmpOp::Ge => x >= lit,
    }
}

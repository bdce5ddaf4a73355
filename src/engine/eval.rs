//! Expression evaluation for one tick. A missing input, a division by zero, NaN or an
//! infinity makes the value missing, never a panic.

use crate::model::{BinOp, Expr, Func};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    Num(f64),
    Bool(bool),
}

/// What an expression can see: metric samples, `let` values computed so far, `current`.
pub struct Scope<'a> {
    pub metrics: &'a [Option<f64>],
    pub lets: &'a [Option<Val>],
    pub current: u32,
}

fn num(v: f64) -> Option<Val> {
    v.is_finite().then_some(Val::Num(v))
}

pub fn eval(expr: &Expr, scope: &Scope<'_>) -> Option<Val> {
    match expr {
        Expr::Number(n) => num(*n),
        Expr::Metric(i) => scope.metrics.get(*i).copied().flatten().and_then(num),
        Expr::Let(i) => scope.lets.get(*i).copied().flatten(),
        Expr::Current => num(f64::from(scope.current)),
        Expr::Neg(e) => num(-number(e, scope)?),
        Expr::Not(e) => Some(Val::Bool(!boolean(e, scope)?)),
        Expr::Binary(op, l, r) => binary(*op, l, r, scope),
        Expr::Call(func, args) => call(*func, args, scope),
    }
}

pub fn number(expr: &Expr, scope: &Scope<'_>) -> Option<f64> {
    match eval(expr, scope)? {
        Val::Num(n) => Some(n),
        Val::Bool(_) => None,
    }
}

pub fn boolean(expr: &Expr, scope: &Scope<'_>) -> Option<bool> {
    match eval(expr, scope)? {
        Val::Bool(b) => Some(b),
        Val::Num(_) => None,
    }
}

fn binary(op: BinOp, l: &Expr, r: &Expr, scope: &Scope<'_>) -> Option<Val> {
    if op == BinOp::Fallback {
        // `a ?? b` (§3, v1.1): the first present value.
        return eval(l, scope).or_else(|| eval(r, scope));
    }
    if op.is_logical() {
        // Three-valued (Kleene) logic (§3, v1.1): a side that alone decides wins over a
        // missing one: `true or missing` is true, `false and missing` is false; any
        // other combination with a missing side is missing.
        let (a, b) = (boolean(l, scope), boolean(r, scope));
        let decided = op != BinOp::And;
        return match (a, b) {
            (Some(x), _) | (_, Some(x)) if x == decided => Some(Val::Bool(decided)),
            (Some(_), Some(_)) => Some(Val::Bool(!decided)),
            _ => None,
        };
    }
    let (a, b) = (number(l, scope)?, number(r, scope)?);
    Some(match op {
        BinOp::Add => return num(a + b),
        BinOp::Sub => return num(a - b),
        BinOp::Mul => return num(a * b),
        BinOp::Div => return if b == 0.0 { None } else { num(a / b) },
        BinOp::Gt => Val::Bool(a > b),
        BinOp::Ge => Val::Bool(a >= b),
        BinOp::Lt => Val::Bool(a < b),
        BinOp::Le => Val::Bool(a <= b),
        BinOp::Eq => Val::Bool(a == b),
        BinOp::Ne => Val::Bool(a != b),
        BinOp::And | BinOp::Or | BinOp::Fallback => return None,
    })
}

fn call(func: Func, args: &[Expr], scope: &Scope<'_>) -> Option<Val> {
    let mut values = args.iter().map(|a| number(a, scope));
    let mut next = || values.next().flatten();
    let v = match func {
        Func::Ceil => ceil(next()?),
        Func::Floor => floor(next()?),
        Func::Round => next()?.round(),
        Func::Abs => next()?.abs(),
        Func::Min | Func::Max => {
            let mut acc = next()?;
            for _ in 1..args.len() {
                let v = next()?;
                acc = if func == Func::Min {
                    acc.min(v)
                } else {
                    acc.max(v)
                };
            }
            acc
        }
        Func::Clamp => {
            let (x, lo, hi) = (next()?, next()?, next()?);
            if lo > hi {
                return None;
            }
            x.clamp(lo, hi)
        }
    };
    num(v)
}

/// How far from an integer a value may be and still count as that integer.
pub const NOISE: f64 = 1e-9;

/// Round up, ignoring floating-point noise: `ceil(55.00000000000001)` is 55.
pub fn ceil(x: f64) -> f64 {
    let r = x.round();
    if (x - r).abs() <= NOISE { r } else { x.ceil() }
}

/// Round down, ignoring floating-point noise.
pub fn floor(x: f64) -> f64 {
    let r = x.round();
    if (x - r).abs() <= NOISE { r } else { x.floor() }
}

/// Truncate toward zero, ignoring floating-point noise.
pub fn trunc(x: f64) -> f64 {
    let r = x.round();
    if (x - r).abs() <= NOISE { r } else { x.trunc() }
}

/// A replica count from a real number: negative is 0, beyond `u32` saturates.
pub fn replicas(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        x as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_ignores_noise() {
        assert_eq!(ceil(50.0 * 1.1), 55.0);
        assert_eq!(ceil(55.000001), 56.0);
        assert_eq!(trunc(3.0 * (1.0 - 0.1) * 10.0 / 10.0), 2.0);
        assert_eq!(trunc(2.9999999999), 3.0);
        assert_eq!(floor(-0.5), -1.0);
    }

    #[test]
    fn division_by_zero_and_nan_are_missing() {
        let scope = Scope {
            metrics: &[Some(1.0), Some(f64::NAN)],
            lets: &[],
            current: 2,
        };
        let div = Expr::Binary(
            BinOp::Div,
            Box::new(Expr::Metric(0)),
            Box::new(Expr::Number(0.0)),
        );
        assert_eq!(eval(&div, &scope), None);
        assert_eq!(eval(&Expr::Metric(1), &scope), None);
        let cmp = Expr::Binary(
            BinOp::Gt,
            Box::new(Expr::Metric(1)),
            Box::new(Expr::Number(0.0)),
        );
        assert_eq!(eval(&cmp, &scope), None);
    }

    #[test]
    fn logic_is_three_valued() {
        // metrics: a true condition's input, a false one's, and a missing one.
        let scope = Scope {
            metrics: &[Some(1.0), Some(0.0), None],
            lets: &[],
            current: 1,
        };
        let cond = |i: usize| {
            Box::new(Expr::Binary(
                BinOp::Gt,
                Box::new(Expr::Metric(i)),
                Box::new(Expr::Number(0.5)),
            ))
        };
        let (t, f, m) = (0, 1, 2);
        let logic = |op, a, b| eval(&Expr::Binary(op, cond(a), cond(b)), &scope);
        assert_eq!(logic(BinOp::Or, t, m), Some(Val::Bool(true)));
        assert_eq!(logic(BinOp::Or, m, t), Some(Val::Bool(true)));
        assert_eq!(logic(BinOp::Or, f, m), None);
        assert_eq!(logic(BinOp::And, f, m), Some(Val::Bool(false)));
        assert_eq!(logic(BinOp::And, m, f), Some(Val::Bool(false)));
        assert_eq!(logic(BinOp::And, t, m), None);
        assert_eq!(logic(BinOp::And, t, t), Some(Val::Bool(true)));
        assert_eq!(logic(BinOp::Or, f, f), Some(Val::Bool(false)));
        assert_eq!(eval(&Expr::Not(cond(m)), &scope), None);
    }
}

//! The attribute's arguments: `key = ..., pool = ..., wait, ...` parsed into [`Args`].
//!
//! [`OPTIONS`] is the one list of the options: each row names one and says how its
//! value is parsed and where in the [`Config`] it goes; a second occurrence is
//! refused on its keyword. [`Config::build`] then applies the rules that span
//! several options (a `key` is required, `skip` needs a bound on `wait`, `xact`
//! excludes the options of session locks) and makes the one choice between a
//! session lock and `xact`. Every error names the option or value it is about.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Expr, Ident, Lit, LitInt, LitStr, Path, Token, UnOp};

use crate::duration::{self, Duration};
use crate::errors;

/// One option of the attribute: its name, and how it is read into a [`Config`].
struct Opt {
    name: &'static str,
    /// Parses what follows the name (`= value`, or nothing for a flag) and
    /// records it.
    read: fn(&mut Config, &Given<'_>) -> syn::Result<()>,
}

/// Every option, in the order the docs list them: adding one is adding a row (and
/// its field in [`Config`]).
const OPTIONS: &[Opt] = &[
    Opt {
        name: "key",
        read: |c, o| o.set(&mut c.key, o.value("\"order:{id}\"", parse_key)?),
    },
    Opt {
        name: "pool",
        read: |c, o| o.set(&mut c.pool, o.value("self.pool", Expr::parse)?),
    },
    Opt {
        name: "xact",
        read: |c, o| o.set(&mut c.xact, o.value("tx", Expr::parse)?),
    },
    Opt {
        name: "wait",
        read: |c, o| o.set(&mut c.wait, parse_wait(o.input)?),
    },
    Opt {
        name: "skip",
        read: |c, o| o.set_flag(&mut c.skip),
    },
    Opt {
        name: "shared",
        read: |c, o| o.set_flag(&mut c.shared),
    },
    Opt {
        name: "guard",
        read: |c, o| o.set(&mut c.guard, o.value("conn", parse_guard)?),
    },
    Opt {
        name: "on_lost",
        read: |c, o| o.set(&mut c.on_lost, o.value("\"ignore\"", parse_on_lost)?),
    },
    Opt {
        name: "fence",
        read: |c, o| o.set(&mut c.fence, o.value("token", parse_fence)?),
    },
    Opt {
        name: "hold_at_least",
        read: |c, o| o.set(&mut c.hold_at_least, o.value("\"30s\"", parse_hold)?),
    },
    Opt {
        name: "crate",
        read: |c, o| o.set(&mut c.krate, o.value("::pglock", parse_crate)?),
    },
];

/// `key, pool, ...`: the options' names, for the errors that list them.
fn option_names() -> String {
    let names: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
    names.join(", ")
}

/// What the attribute asked for.
#[derive(Debug)]
pub(crate) struct Args {
    pub key: Key,
    /// Where the lock is taken, with the options that only mean something there.
    pub source: Source,
    /// The `skip` keyword, if given (its span carries the `Default` requirement).
    pub skip: Option<Span>,
    pub shared: bool,
    /// Path of the facade crate: `::pglock` unless `crate = ...`.
    pub krate: Path,
}

/// Where the lock is taken: `pool` (or the fn's `Pool` / `Locker` parameter) or
/// `xact`, chosen once, by [`Config::build`].
#[derive(Debug)]
pub(crate) enum Source {
    /// A session lock, held by a guard while the body runs.
    Pool(SessionLock),
    /// `xact = tx`: a lock taken in that transaction, freed by the server at its end.
    Xact(XactLock),
}

/// The options of a session lock.
#[derive(Debug)]
pub(crate) struct SessionLock {
    /// `pool = expr`, if given; otherwise the parameter typed `Pool` / `Locker`.
    pub pool: Option<Expr>,
    pub wait: Wait,
    pub guard: Option<Ident>,
    pub on_lost: OnLost,
    /// `fence = name`: the lock is taken `fenced()` and its token bound as `name: u64`.
    pub fence: Option<Ident>,
    /// `hold_at_least = "30s"`: the lock stays held that long after the grant.
    pub hold_at_least: Option<Duration>,
}

/// The options of a transaction lock.
#[derive(Debug)]
pub(crate) struct XactLock {
    /// The transaction to take the lock in.
    pub tx: Expr,
    pub wait: XactWait,
}

/// `key = ...`.
#[derive(Debug)]
pub(crate) enum Key {
    /// `key = "order:{id}"`: parsed by `template.rs` once the parameters are known.
    Template(LitStr),
    /// `key = 42`.
    BigInt(i64),
    /// `key = (1, 2)`.
    Pair(i32, i32),
}

/// `wait`, `wait = "5s"`, or nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    Never,
    Forever,
    Limit(Duration),
}

/// `wait` or nothing, in a transaction: a bound is refused (see [`Config::xact_lock`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum XactWait {
    Never,
    Forever,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum OnLost {
    Abort,
    Ignore,
}

/// The options seen so far; each field remembers the span of the keyword that set it.
#[derive(Default)]
struct Config {
    key: Option<(Span, Key)>,
    pool: Option<(Span, Expr)>,
    xact: Option<(Span, Expr)>,
    wait: Option<(Span, Wait)>,
    skip: Option<Span>,
    shared: Option<Span>,
    guard: Option<(Span, Ident)>,
    on_lost: Option<(Span, OnLost)>,
    fence: Option<(Span, Ident)>,
    hold_at_least: Option<(Span, Duration)>,
    krate: Option<(Span, Path)>,
}

/// An option's name as written, and the tokens after it.
struct Given<'a> {
    name: &'a Ident,
    input: ParseStream<'a>,
}

impl Given<'_> {
    /// `= value`, parsed with `parse`; `example` is a value to show when there is
    /// none.
    fn value<T>(&self, example: &str, parse: fn(ParseStream) -> syn::Result<T>) -> syn::Result<T> {
        let name = self.name;
        if !self.input.peek(Token![=]) {
            return Err(syn::Error::new(
                name.span(),
                format!("`{name}` needs a value: `{name} = {example}`"),
            ));
        }
        self.input.parse::<Token![=]>()?;
        parse(self.input)
    }

    /// Records `value` in `slot`, on the name's span, unless it is set already.
    fn set<T>(&self, slot: &mut Option<(Span, T)>, value: T) -> syn::Result<()> {
        if slot.is_some() {
            return Err(self.repeated());
        }
        *slot = Some((self.name.span(), value));
        Ok(())
    }

    /// Records a flag, which takes no `= value` (nor any other trailing tokens).
    fn set_flag(&self, slot: &mut Option<Span>) -> syn::Result<()> {
        let (name, input) = (self.name, self.input);
        if !(input.is_empty() || input.peek(Token![,])) {
            let rest: TokenStream = input.fork().parse()?;
            let rest_span = rest.into_iter().next().map_or(name.span(), |t| t.span());
            return Err(syn::Error::new(
                rest_span,
                format!("`{name}` is a flag and takes no value: write just `{name}`"),
            ));
        }
        if slot.is_some() {
            return Err(self.repeated());
        }
        *slot = Some(name.span());
        Ok(())
    }

    /// The error for an option given twice, on its second keyword.
    fn repeated(&self) -> syn::Error {
        let name = self.name;
        syn::Error::new(
            name.span(),
            format!("`{name}` is set more than once; keep one `{name}`"),
        )
    }
}

impl Config {
    /// Parses one `name` or `name = value` and records it.
    fn parse_option(&mut self, input: ParseStream) -> syn::Result<()> {
        if !input.peek(Ident::peek_any) {
            return Err(input.error(format!("expected an option, one of: {}", option_names())));
        }
        // `crate` is a keyword: take any identifier, then look its text up.
        let name = input.call(Ident::parse_any)?;
        let option = OPTIONS
            .iter()
            .find(|o| name == o.name)
            .ok_or_else(|| unknown_option(&name))?;
        (option.read)(self, &Given { name: &name, input })
    }

    /// The rules that span several options.
    fn build(self) -> syn::Result<Args> {
        let source = self.source()?;
        let Some((_, key)) = self.key else {
            return Err(syn::Error::new(
                Span::call_site(),
                "missing `key`: name the lock with `key = \"name\"` (placeholders like \
                 `{arg}` allowed), `key = 42` or `key = (1, 2)`",
            ));
        };
        if let (Some(skip), Some((_, Wait::Forever))) = (self.skip, self.wait) {
            return Err(syn::Error::new(
                skip,
                "`skip` with an unbounded `wait` never skips: `wait` waits until the lock \
                 is free; bound it (`wait = \"5s\"`) or drop `skip`",
            ));
        }
        Ok(Args {
            key,
            source,
            skip: self.skip,
            shared: self.shared.is_some(),
            krate: self
                .krate
                .map_or_else(|| syn::parse_quote!(::pglock), |(_, k)| k),
        })
    }

    /// The choice between a session lock and `xact`.
    fn source(&self) -> syn::Result<Source> {
        match &self.xact {
            Some((_, tx)) => self.xact_lock(tx).map(Source::Xact),
            None => Ok(Source::Pool(SessionLock {
                pool: self.pool.as_ref().map(|(_, p)| p.clone()),
                wait: self.wait.map_or(Wait::Never, |(_, w)| w),
                guard: self.guard.as_ref().map(|(_, g)| g.clone()),
                on_lost: self.on_lost.map_or(OnLost::Abort, |(_, o)| o),
                fence: self.fence.as_ref().map(|(_, f)| f.clone()),
                hold_at_least: self.hold_at_least.map(|(_, d)| d),
            })),
        }
    }

    /// `xact` takes the lock inside a transaction: the options that only mean
    /// something for a session lock are refused, each on its own keyword.
    fn xact_lock(&self, tx: &Expr) -> syn::Result<XactLock> {
        let pool = refuse(
            self.pool.as_ref().map(|(span, _)| *span),
            "`pool` with `xact`: pick one; with `xact` the lock is taken in that \
             transaction, on its own session, so there is no pool to take it from",
        );
        let wait = match self.wait {
            None => Ok(XactWait::Never),
            Some((_, Wait::Never)) => Ok(XactWait::Never),
            Some((_, Wait::Forever)) => Ok(XactWait::Forever),
            Some((span, Wait::Limit(_))) => Err(syn::Error::new(
                span,
                "`wait = \"...\"` with `xact` is not supported: bounding the wait inside \
                 your transaction would set its `lock_timeout` for the rest of it, and a \
                 wait that runs out aborts the transaction; write `wait` (until granted) \
                 or leave it out (`Error::Busy` at once)",
            )),
        };
        let guard = refuse(
            self.guard.as_ref().map(|(span, _)| *span),
            "`guard` with `xact`: the transaction is the locked session; run the \
             body's queries on the transaction itself",
        );
        let on_lost = refuse(
            self.on_lost.map(|(span, _)| span),
            "`on_lost` with `xact`: nothing to watch; the lock lives and dies with the \
             transaction, and if its session is lost the transaction's own \
             statements fail",
        );
        let fence = refuse(
            self.fence.as_ref().map(|(span, _)| *span),
            "`fence` with `xact`: a fencing token is taken in a transaction of its own \
             that commits durably right after the grant, and the lock's transaction is \
             yours, still open; take a session lock (`pool = ...`) to fence",
        );
        let hold = refuse(
            self.hold_at_least.map(|(span, _)| span),
            "`hold_at_least` with `xact`: the lock is freed when your transaction \
             ends, whatever the hold says; take a session lock (`pool = ...`) to hold it",
        );
        let wait = errors::both(errors::both(pool, wait), errors::both(guard, on_lost))?;
        let (((), wait), ((), ())) = wait;
        errors::both(fence, hold)?;
        Ok(XactLock {
            tx: tx.clone(),
            wait,
        })
    }
}

/// An error on `span` when the option there was given.
fn refuse(given: Option<Span>, why: &str) -> syn::Result<()> {
    match given {
        Some(span) => Err(syn::Error::new(span, why)),
        None => Ok(()),
    }
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut config = Config::default();
        while !input.is_empty() {
            config.parse_option(input)?;
            if input.is_empty() {
                break;
            }
            if !input.peek(Token![,]) {
                return Err(input.error("expected `,` between options"));
            }
            input.parse::<Token![,]>()?;
        }
        config.build()
    }
}

/// `unknown option `foo`; expected one of: ...`, with a suggestion for a near miss.
fn unknown_option(name: &Ident) -> syn::Error {
    let text = name.to_string();
    let close = OPTIONS
        .iter()
        .map(|o| o.name)
        .find(|o| edit_distance(o, &text.to_lowercase()) <= 2 && text.len() > 2);
    let hint = match close {
        Some(o) => format!(" (did you mean `{o}`?)"),
        None => String::new(),
    };
    syn::Error::new(
        name.span(),
        format!(
            "unknown option `{text}`{hint}; expected one of: {}",
            option_names()
        ),
    )
}

/// Levenshtein distance, for "did you mean" on short option names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn parse_key(input: ParseStream) -> syn::Result<Key> {
    let expr: Expr = input.parse()?;
    let wrong = || {
        syn::Error::new(
            expr.span(),
            "`key` must be a string template (`key = \"order:{id}\"`), an integer \
             (`key = 42`) or a pair of integers (`key = (1, 2)`)",
        )
    };
    match &expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Str(s) => {
                if !s.suffix().is_empty() {
                    return Err(syn::Error::new(s.span(), "a key string takes no suffix"));
                }
                Ok(Key::Template(s.clone()))
            }
            Lit::Int(_) => Ok(Key::BigInt(int_of::<i64>(&expr, "i64")?)),
            _ => Err(wrong()),
        },
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => {
            Ok(Key::BigInt(int_of::<i64>(&expr, "i64")?))
        }
        Expr::Tuple(t) if t.elems.len() == 2 => Ok(Key::Pair(
            int_of::<i32>(&t.elems[0], "i32")?,
            int_of::<i32>(&t.elems[1], "i32")?,
        )),
        _ => Err(wrong()),
    }
}

/// An integer literal, maybe negated, that fits `N` (`i64` for `key = 42`, `i32` for
/// each half of `key = (1, 2)`).
fn int_of<N: std::str::FromStr>(expr: &Expr, ty: &str) -> syn::Result<N> {
    let (negative, lit): (bool, &LitInt) = match expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(i), ..
        }) => (false, i),
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => match &*u.expr {
            Expr::Lit(syn::ExprLit {
                lit: Lit::Int(i), ..
            }) => (true, i),
            _ => return Err(syn::Error::new(expr.span(), "expected an integer literal")),
        },
        _ => return Err(syn::Error::new(expr.span(), "expected an integer literal")),
    };
    if !lit.suffix().is_empty() && lit.suffix() != ty {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "this key part is an `{ty}`: drop the `{}` suffix",
                lit.suffix()
            ),
        ));
    }
    let digits = format!("{}{}", if negative { "-" } else { "" }, lit.base10_digits());
    digits.parse::<N>().map_err(|_| {
        syn::Error::new(
            expr.span(),
            format!("`{digits}` does not fit an `{ty}` key"),
        )
    })
}

/// `wait` (until granted) or `wait = "5s"`.
fn parse_wait(input: ParseStream) -> syn::Result<Wait> {
    match input.parse::<Option<Token![=]>>()? {
        Some(_) => parse_duration(input).map(Wait::Limit),
        None => Ok(Wait::Forever),
    }
}

fn parse_duration(input: ParseStream) -> syn::Result<Duration> {
    duration_for("wait", input)
}

/// `hold_at_least = "30s"`.
fn parse_hold(input: ParseStream) -> syn::Result<Duration> {
    duration_for("hold_at_least", input)
}

/// A duration string, for the option `name`.
fn duration_for(name: &str, input: ParseStream) -> syn::Result<Duration> {
    let lit: LitStr = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!(
                "`{name} = ...` takes a duration string: `{name} = \"300ms\"`, `\"1.5s\"`, `\"2m\"`"
            ),
        )
    })?;
    duration::parse(&lit.value()).map_err(|why| {
        // The parser words its errors for `wait`, the first option that took one.
        let why = match name {
            "wait" => why,
            _ => why.replace("`wait = ", &format!("`{name} = ")).replace(
                "waits for nothing: leave `wait` out to fail at once when busy",
                &format!("holds for nothing: leave `{name}` out"),
            ),
        };
        syn::Error::new(lit.span(), why)
    })
}

/// `fence = name`: the name the token is bound to in the body.
fn parse_fence(input: ParseStream) -> syn::Result<Ident> {
    input.parse::<Ident>().map_err(|e| {
        syn::Error::new(
            e.span(),
            "`fence = ...` takes a name for the fencing token in the body: `fence = token`",
        )
    })
}

fn parse_guard(input: ParseStream) -> syn::Result<Ident> {
    input.parse::<Ident>().map_err(|e| {
        syn::Error::new(
            e.span(),
            "`guard = ...` takes the name to bind the guard to: `guard = conn`",
        )
    })
}

fn parse_on_lost(input: ParseStream) -> syn::Result<OnLost> {
    let expected = "`on_lost` is \"abort\" (stop the body, return `Error::LockLost`) or \
                    \"ignore\" (let it run on)";
    let lit: LitStr = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), expected))?;
    match lit.value().as_str() {
        "abort" => Ok(OnLost::Abort),
        "ignore" => Ok(OnLost::Ignore),
        other => Err(syn::Error::new(
            lit.span(),
            format!("unknown `on_lost = \"{other}\"`: {expected}"),
        )),
    }
}

/// `crate = path` or, as tokio and serde accept it, `crate = "path"`.
fn parse_crate(input: ParseStream) -> syn::Result<Path> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        return lit.parse::<Path>().map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!("`crate = \"{}\"` is not a path", lit.value()),
            )
        });
    }
    input.call(Path::parse_mod_style).map_err(|e| {
        syn::Error::new(
            e.span(),
            "`crate = ...` takes the path of the pglock crate: `crate = ::pglock`",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;

    fn parse(s: &str) -> Result<Args, String> {
        syn::parse_str::<Args>(s).map_err(|e| e.to_string())
    }

    fn session(args: &Args) -> &SessionLock {
        match &args.source {
            Source::Pool(session) => session,
            Source::Xact(_) => panic!("a session lock expected: {args:?}"),
        }
    }

    #[test]
    fn every_option_parses() {
        let a = parse(
            r#"key = "order:{id}", pool = self.pool, wait = "1.5s", skip, shared,
               guard = conn, on_lost = "ignore", crate = ::my::pglock"#,
        )
        .unwrap();
        assert!(matches!(a.key, Key::Template(ref s) if s.value() == "order:{id}"));
        let s = session(&a);
        assert!(s.pool.is_some());
        assert!(matches!(s.wait, Wait::Limit(d) if d.secs == 1 && d.nanos == 500_000_000));
        assert!(a.skip.is_some() && a.shared);
        assert_eq!(s.guard.as_ref().unwrap(), "conn");
        assert!(matches!(s.on_lost, OnLost::Ignore));
        assert_eq!(a.krate.to_token_stream().to_string(), ":: my :: pglock");
    }

    #[test]
    fn defaults() {
        let a = parse(r#"key = "x""#).unwrap();
        let s = session(&a);
        assert!(s.pool.is_none() && a.skip.is_none() && !a.shared && s.guard.is_none());
        assert!(matches!(s.wait, Wait::Never));
        assert!(matches!(s.on_lost, OnLost::Abort));
        assert_eq!(a.krate.to_token_stream().to_string(), ":: pglock");
    }

    #[test]
    fn integer_keys() {
        assert!(matches!(parse("key = 42").unwrap().key, Key::BigInt(42)));
        assert!(matches!(parse("key = -7").unwrap().key, Key::BigInt(-7)));
        assert!(matches!(
            parse("key = (1, -2)").unwrap().key,
            Key::Pair(1, -2)
        ));
        assert!(matches!(
            parse("key = 9223372036854775807").unwrap().key,
            Key::BigInt(i64::MAX)
        ));
        assert!(parse("key = 9223372036854775808")
            .unwrap_err()
            .contains("does not fit an `i64`"));
        assert!(parse("key = (2147483648, 0)")
            .unwrap_err()
            .contains("does not fit an `i32`"));
        assert!(parse("key = 4u8")
            .unwrap_err()
            .contains("drop the `u8` suffix"));
        assert!(parse("key = (1, 2, 3)")
            .unwrap_err()
            .contains("pair of integers"));
        assert!(parse("key = 1.5").unwrap_err().contains("pair of integers"));
    }

    #[test]
    fn each_repeated_option_is_named() {
        for (src, name) in [
            (r#"key = "a", key = "b""#, "key"),
            (r#"key = "a", pool = p, pool = q"#, "pool"),
            (r#"key = "a", wait, wait = "1s""#, "wait"),
            (r#"key = "a", skip, wait = "1s", skip"#, "skip"),
            (r#"key = "a", shared, shared"#, "shared"),
            (r#"key = "a", guard = a, guard = b"#, "guard"),
            (
                r#"key = "a", on_lost = "abort", on_lost = "ignore""#,
                "on_lost",
            ),
            (r#"key = "a", crate = a, crate = b"#, "crate"),
            (r#"key = "a", xact = a, xact = b"#, "xact"),
        ] {
            let err = parse(src).unwrap_err();
            assert_eq!(
                err,
                format!("`{name}` is set more than once; keep one `{name}`"),
                "{src}"
            );
        }
    }

    #[test]
    fn fence_and_hold_are_session_lock_options() {
        let err = parse(r#"key = "a", xact = tx, fence = token"#).unwrap_err();
        assert!(err.starts_with("`fence` with `xact`"), "{err}");
        let err = parse(r#"key = "a", xact = tx, hold_at_least = "1s""#).unwrap_err();
        assert!(err.starts_with("`hold_at_least` with `xact`"), "{err}");
        let err = parse(r#"key = "a", hold_at_least = "0s""#).unwrap_err();
        assert_eq!(
            err,
            "`hold_at_least = \"0s\"` holds for nothing: leave `hold_at_least` out"
        );
    }

    #[test]
    fn unknown_options_list_the_valid_ones() {
        let err = parse(r#"key = "a", wiat"#).unwrap_err();
        assert_eq!(
            err,
            "unknown option `wiat` (did you mean `wait`?); expected one of: key, pool, \
             xact, wait, skip, shared, guard, on_lost, fence, hold_at_least, crate"
        );
        let err = parse(r#"key = "a", timeout = "1s""#).unwrap_err();
        assert!(
            err.starts_with("unknown option `timeout`; expected one of:"),
            "{err}"
        );
        let err = parse(r#""a""#).unwrap_err();
        assert!(err.starts_with("expected an option, one of: key,"), "{err}");
    }

    #[test]
    fn cross_option_rules() {
        assert!(parse("").unwrap_err().starts_with("missing `key`"));
        assert!(parse(r#"key = "a", wait, skip"#)
            .unwrap_err()
            .starts_with("`skip` with an unbounded `wait` never skips"));
        assert!(parse(r#"key = "a", wait = "1s", skip"#).is_ok());
        assert!(parse(r#"key = "a", skip"#).is_ok());
    }

    #[test]
    fn xact_refuses_the_options_of_session_locks_each_by_name() {
        let a = parse(r#"key = "a", xact = self.tx, wait, skip"#);
        assert!(a.is_err(), "unbounded wait with skip");
        let a = parse(r#"key = "a", xact = tx, wait, shared"#).unwrap();
        assert!(matches!(
            a.source,
            Source::Xact(XactLock {
                wait: XactWait::Forever,
                ..
            })
        ));
        let a = parse(r#"key = "a", xact = tx, skip"#).unwrap();
        assert!(matches!(
            a.source,
            Source::Xact(XactLock {
                wait: XactWait::Never,
                ..
            })
        ));
        for (src, starts) in [
            (
                r#"key = "a", xact = tx, pool = p"#,
                "`pool` with `xact`: pick one",
            ),
            (r#"key = "a", xact = tx, guard = c"#, "`guard` with `xact`"),
            (
                r#"key = "a", xact = tx, wait = "1s""#,
                "`wait = \"...\"` with `xact` is not supported",
            ),
            (
                r#"key = "a", xact = tx, on_lost = "abort""#,
                "`on_lost` with `xact`: nothing to watch",
            ),
        ] {
            let err = parse(src).unwrap_err();
            assert!(err.starts_with(starts), "{src}: {err}");
        }
        // Each conflicting option gets its own error.
        let err =
            syn::parse_str::<Args>(r#"key = "a", pool = p, guard = c, xact = tx"#).unwrap_err();
        assert_eq!(err.into_iter().count(), 2);
    }

    #[test]
    fn each_option_without_its_value_shows_one() {
        for (src, message) in [
            (r#"key"#, "`key` needs a value: `key = \"order:{id}\"`"),
            (
                r#"key = "a", pool"#,
                "`pool` needs a value: `pool = self.pool`",
            ),
            (r#"key = "a", xact"#, "`xact` needs a value: `xact = tx`"),
            (
                r#"key = "a", guard"#,
                "`guard` needs a value: `guard = conn`",
            ),
            (
                r#"key = "a", on_lost"#,
                "`on_lost` needs a value: `on_lost = \"ignore\"`",
            ),
            (
                r#"key = "a", crate"#,
                "`crate` needs a value: `crate = ::pglock`",
            ),
        ] {
            assert_eq!(parse(src).unwrap_err(), message, "{src}");
        }
    }

    #[test]
    fn value_shapes() {
        assert_eq!(
            parse(r#"key = "a", skip = true"#).unwrap_err(),
            "`skip` is a flag and takes no value: write just `skip`"
        );
        assert!(parse(r#"key = "a", on_lost = "panic""#)
            .unwrap_err()
            .starts_with("unknown `on_lost = \"panic\"`"));
        assert!(parse(r#"key = "a", wait = 5"#)
            .unwrap_err()
            .starts_with("`wait = ...` takes a duration string"));
        assert!(parse(r#"key = "a", guard = "conn""#)
            .unwrap_err()
            .starts_with("`guard = ...` takes the name"));
        assert_eq!(
            parse(r#"key"#).unwrap_err(),
            "`key` needs a value: `key = \"order:{id}\"`"
        );
        assert!(parse(r#"key = "a", crate = "::pglock""#).is_ok());
        assert!(parse(r#"key = "a" pool = p"#)
            .unwrap_err()
            .starts_with("expected `,`"));
    }
}

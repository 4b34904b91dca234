//! The rules the function must follow, each checked where the user can see it: the
//! return type, the lock source, the placeholders of the key, the `guard` name.
//! Each error points at the offending token and says what to write instead;
//! [`validate`] applies those that hold the arguments against the fn, and hands the
//! expansion what they resolved.

use proc_macro2::{Span, TokenStream};
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, LitStr, Pat, PathArguments, ReturnType, Signature, Type};

use crate::args::{Args, Key, SessionLock, Source, XactLock};
use crate::errors;
use crate::template::{self, Template};

/// What [`validate`] resolved, for the expansion to write.
pub(crate) struct Checked<'a> {
    pub source: CheckedSource<'a>,
    pub key: CheckedKey<'a>,
}

/// [`Source`], with the lock source of a session lock resolved.
pub(crate) enum CheckedSource<'a> {
    /// The session lock's options, and its lock source: `pool = ...` as written,
    /// or the `Pool` / `Locker` parameter.
    Pool(&'a SessionLock, TokenStream),
    Xact(&'a XactLock),
}

/// `key = ...`, its template scanned and its placeholders held against the
/// parameters.
pub(crate) enum CheckedKey<'a> {
    /// The template, and the literal it was written as (for spans).
    Template(Template, &'a LitStr),
    BigInt(i64),
    Pair(i32, i32),
}

/// Holds the arguments against the fn's signature: the lock source, the key's
/// placeholders and the `guard` name. Independent mistakes are all reported, each
/// once.
pub(crate) fn validate<'a>(args: &'a Args, sig: &Signature) -> syn::Result<Checked<'a>> {
    let params = Params::of(sig);
    let source = match &args.source {
        Source::Pool(session) => {
            lock_source(session.pool.as_ref(), sig).map(|pool| CheckedSource::Pool(session, pool))
        }
        Source::Xact(xact) => Ok(CheckedSource::Xact(xact)),
    };
    let key = checked_key(&args.key, &params);
    let guard = match &args.source {
        Source::Pool(SessionLock {
            guard: Some(guard), ..
        }) => bound_name("guard", "the guard", guard, &params),
        _ => Ok(()),
    };
    let fence = match &args.source {
        Source::Pool(SessionLock {
            fence: Some(fence), ..
        }) => bound_name("fence", "the token", fence, &params),
        _ => Ok(()),
    };
    let ((source, key), ((), ())) =
        errors::both(errors::both(source, key), errors::both(guard, fence))?;
    Ok(Checked { source, key })
}

fn checked_key<'a>(key: &'a Key, params: &Params) -> syn::Result<CheckedKey<'a>> {
    match key {
        Key::Template(lit) => {
            let template =
                template::scan(&lit.value()).map_err(|why| syn::Error::new(lit.span(), why))?;
            placeholders(&template, lit, params)?;
            Ok(CheckedKey::Template(template, lit))
        }
        Key::BigInt(key) => Ok(CheckedKey::BigInt(*key)),
        Key::Pair(a, b) => Ok(CheckedKey::Pair(*a, *b)),
    }
}

/// The names the function's parameters bind, and whether it has `self`.
pub(crate) struct Params {
    pub names: Vec<Ident>,
    pub has_self: bool,
}

impl Params {
    pub fn of(sig: &Signature) -> Params {
        let mut names = Vec::new();
        let mut has_self = false;
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(_) => has_self = true,
                FnArg::Typed(pat) => bound_names(&pat.pat, &mut names),
            }
        }
        Params { names, has_self }
    }

    /// Whether a parameter binds `name` (raw or not: `r#type` is `type`).
    fn binds(&self, name: &str) -> bool {
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.names.iter().any(|n| n.unraw() == name)
    }

    /// `pool, order_id` (and `self`), for "expected one of".
    fn list(&self) -> String {
        let mut all: Vec<String> = Vec::new();
        if self.has_self {
            all.push("self".into());
        }
        all.extend(self.names.iter().map(Ident::to_string));
        all.join(", ")
    }
}

/// Every identifier a parameter pattern binds (`x`, `(a, b)`, `Point { x, y }`).
fn bound_names(pat: &Pat, names: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            names.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                bound_names(sub, names);
            }
        }
        Pat::Tuple(p) => p.elems.iter().for_each(|p| bound_names(p, names)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|p| bound_names(p, names)),
        Pat::Struct(p) => p.fields.iter().for_each(|f| bound_names(&f.pat, names)),
        Pat::Slice(p) => p.elems.iter().for_each(|p| bound_names(p, names)),
        Pat::Reference(p) => bound_names(&p.pat, names),
        Pat::Paren(p) => bound_names(&p.pat, names),
        Pat::Type(p) => bound_names(&p.pat, names),
        _ => {}
    }
}

/// The declared return type, which must be a `Result`.
pub(crate) fn result_type<'a>(output: &'a ReturnType, name: &Ident) -> syn::Result<&'a Type> {
    match output {
        ReturnType::Default => Err(syn::Error::new(
            name.span(),
            format!("{MUST_RETURN_RESULT}; this fn returns `()`"),
        )),
        ReturnType::Type(_, ty) => result(ty).map(|()| ty.as_ref()),
    }
}

const MUST_RETURN_RESULT: &str = "an `#[advisory_locked]` fn must return `Result<T, E>` \
                                  with `E: From<pglock::Error>`, because taking the lock can fail";

/// `ty` must be a `Result`: `Result<T, E>`, `io::Result<T>`, `AppResult<T>` (any path
/// whose last segment ends in `Result`; rustc checks the rest).
pub(crate) fn result(ty: &Type) -> syn::Result<()> {
    let is_result = match strip_parens(ty) {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident.to_string().ends_with("Result")),
        _ => false,
    };
    if is_result {
        Ok(())
    } else {
        Err(syn::Error::new(
            ty.span(),
            format!(
                "{MUST_RETURN_RESULT}; found `{}`",
                ty.to_token_stream()
                    .to_string()
                    .replace(" < ", "<")
                    .replace(" >", ">")
            ),
        ))
    }
}

fn strip_parens(ty: &Type) -> &Type {
    match ty {
        Type::Paren(p) => strip_parens(&p.elem),
        Type::Group(g) => strip_parens(&g.elem),
        _ => ty,
    }
}

/// The lock source expression: `pool = ...` as written, or the one parameter whose
/// type is a `Pool` or `Locker` (by reference, or in an `Arc`).
pub(crate) fn lock_source(
    explicit: Option<&syn::Expr>,
    sig: &Signature,
) -> syn::Result<TokenStream> {
    if let Some(expr) = explicit {
        return Ok(expr.to_token_stream());
    }
    let mut found: Vec<(&Ident, &'static str, &Type)> = Vec::new();
    for input in &sig.inputs {
        let FnArg::Typed(arg) = input else { continue };
        let Some(kind) = source_kind(&arg.ty) else {
            continue;
        };
        let Pat::Ident(p) = arg.pat.as_ref() else {
            continue;
        };
        found.push((&p.ident, kind, &arg.ty));
    }
    match found.as_slice() {
        [(name, _, _)] => Ok(quote!(#name)),
        [] => Err(syn::Error::new(
            Span::call_site(),
            "no lock source: no parameter of this fn is a `Pool` or `Locker` (or a \
             reference to one); write `pool = <expression>`, e.g. `pool = self.pool`",
        )),
        [(first, k1, _), (second, k2, ty), ..] => Err(syn::Error::new(
            ty.span(),
            format!(
                "two lock sources: `{first}` is a `{k1}` and `{second}` a `{k2}`; choose one \
                 with `pool = {first}` or `pool = {second}`"
            ),
        )),
    }
}

/// `Pool` or `Locker` if `ty` is one (a path ending in that name), a reference to
/// one, or an `Arc` of one.
fn source_kind(ty: &Type) -> Option<&'static str> {
    match strip_parens(ty) {
        Type::Reference(r) => source_kind(&r.elem),
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            match last.ident.to_string().as_str() {
                "Pool" => Some("Pool"),
                "Locker" => Some("Locker"),
                "Arc" => match &last.arguments {
                    PathArguments::AngleBracketed(a) if a.args.len() == 1 => match &a.args[0] {
                        GenericArgument::Type(inner) => source_kind(inner),
                        _ => None,
                    },
                    _ => None,
                },
                _ => None,
            }
        }
        _ => None,
    }
}

/// Every placeholder must name a parameter (or `self`, in a method).
pub(crate) fn placeholders(template: &Template, lit: &LitStr, params: &Params) -> syn::Result<()> {
    for p in template.placeholders() {
        let known = if p.root == "self" {
            params.has_self
        } else {
            params.binds(&p.root)
        };
        if known {
            continue;
        }
        let message = if p.root == "self" {
            format!("`{{{}}}` in key, but this fn has no `self`", p.source)
        } else if params.names.is_empty() && !params.has_self {
            format!(
                "unknown argument `{}` in key: this fn has no parameters",
                p.root
            )
        } else {
            format!(
                "unknown argument `{}` in key; expected one of: {}",
                p.root,
                params.list()
            )
        };
        // Stable Rust cannot point inside a literal: the span is the whole key.
        return Err(syn::Error::new(lit.span(), message));
    }
    Ok(())
}

/// `guard = name` or `fence = name`, binding `what` in the body, must not shadow a
/// parameter the body may still need.
fn bound_name(option: &str, what: &str, name: &Ident, params: &Params) -> syn::Result<()> {
    if params.binds(&name.to_string()) {
        return Err(syn::Error::new(
            name.span(),
            format!(
                "`{option} = {name}` clashes with the parameter `{name}`: {what} would \
                 hide it in the body; bind {what} to another name"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(s: &str) -> Signature {
        syn::parse_str(s).unwrap()
    }

    #[test]
    fn results_are_recognised_by_their_last_segment() {
        for ok in [
            "async fn f() -> Result<(), E>",
            "async fn f() -> std::io::Result<()>",
            "async fn f() -> anyhow::Result<u8>",
            "async fn f() -> AppResult<u8>",
            "async fn f() -> (Result<u8, E>)",
        ] {
            let s = sig(ok);
            assert!(result_type(&s.output, &s.ident).is_ok(), "{ok}");
        }
        let s = sig("async fn f()");
        assert!(result_type(&s.output, &s.ident)
            .unwrap_err()
            .to_string()
            .ends_with("this fn returns `()`"));
        let s = sig("async fn f() -> Option<u8>");
        assert!(result_type(&s.output, &s.ident)
            .unwrap_err()
            .to_string()
            .ends_with("found `Option<u8>`"));
    }

    #[test]
    fn the_one_pool_or_locker_parameter_is_the_source() {
        for (s, want) in [
            ("async fn f(pool: &Pool, id: i64)", "pool"),
            ("async fn f(id: i64, p: deadpool_postgres::Pool)", "p"),
            ("async fn f(l: &pglock::Locker)", "l"),
            ("async fn f(l: Arc<Locker>)", "l"),
            ("async fn f(l: &std::sync::Arc<Pool>)", "l"),
            ("async fn f(&self, p: &mut Pool)", "p"),
        ] {
            assert_eq!(lock_source(None, &sig(s)).unwrap().to_string(), want, "{s}");
        }
        let none = lock_source(None, &sig("async fn f(id: i64, p: PoolConfig)")).unwrap_err();
        assert!(none.to_string().starts_with("no lock source"));
        let two = lock_source(None, &sig("async fn f(a: &Pool, b: &Locker)")).unwrap_err();
        assert_eq!(
            two.to_string(),
            "two lock sources: `a` is a `Pool` and `b` a `Locker`; choose one with \
             `pool = a` or `pool = b`"
        );
        let explicit: syn::Expr = syn::parse_str("self.pool").unwrap();
        let s = sig("async fn f(&self, a: &Pool, b: &Pool)");
        assert_eq!(
            lock_source(Some(&explicit), &s).unwrap().to_string(),
            "self . pool"
        );
    }

    #[test]
    fn placeholders_must_name_parameters() {
        let lit: LitStr = syn::parse_str(r#""k""#).unwrap();
        let check = |s: &str, t: &str| {
            let template = crate::template::scan(t).unwrap();
            placeholders(&template, &lit, &Params::of(&sig(s))).map_err(|e| e.to_string())
        };
        assert!(check("async fn f(pool: &Pool, order_id: i64)", "o:{order_id}").is_ok());
        assert!(check("async fn f(&self)", "{self.id}").is_ok());
        assert!(check("async fn f((a, b): (u8, u8))", "{a}{b}").is_ok());
        assert!(check("async fn f(r#type: u8)", "{r#type}").is_ok());
        assert_eq!(
            check("async fn f(pool: &Pool, order_id: i64)", "o:{order_idd}").unwrap_err(),
            "unknown argument `order_idd` in key; expected one of: pool, order_id"
        );
        assert_eq!(
            check("async fn f(&self, id: i64)", "{x.y}").unwrap_err(),
            "unknown argument `x` in key; expected one of: self, id"
        );
        assert_eq!(
            check("async fn f(id: i64)", "{self.id}").unwrap_err(),
            "`{self.id}` in key, but this fn has no `self`"
        );
        assert_eq!(
            check("async fn f()", "{id}").unwrap_err(),
            "unknown argument `id` in key: this fn has no parameters"
        );
    }

    #[test]
    fn guard_must_not_hide_a_parameter() {
        let params = Params::of(&sig("async fn f(conn: u8, pool: &Pool)"));
        let clash: Ident = syn::parse_str("pool").unwrap();
        assert!(bound_name("guard", "the guard", &clash, &params)
            .unwrap_err()
            .to_string()
            .starts_with("`guard = pool` clashes with the parameter `pool`"));
        let fine: Ident = syn::parse_str("locked").unwrap();
        assert!(bound_name("guard", "the guard", &fine, &params).is_ok());
    }
}

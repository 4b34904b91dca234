//! Methods of an `#[async_trait]` impl. The impl's attribute runs first, so this
//! attribute sees the method already desugared, as `tracing-attributes` does:
//!
//! ```text
//! fn ship<'life0, 'async_trait>(&'life0 self, id: i64)
//!     -> Pin<Box<dyn Future<Output = Result<(), E>> + Send + 'async_trait>>
//! {
//!     Box::pin(async move { /* the original body */ })
//! }
//! ```
//!
//! The lock must be taken inside that future, not by the fn that builds it, so the
//! expansion rewrites the `async move` block and keeps everything else.

use syn::{Block, Expr, ExprAsync, GenericArgument, PathArguments, ReturnType, Stmt, Type};
use syn::{TypeParamBound, TypeTraitObject};

/// Where the future of a desugared `async fn` lives in its body.
pub(crate) struct Desugared<'a> {
    /// Index in the fn's statements of the expression that builds the future.
    pub stmt: usize,
    /// The `async move { ... }` block.
    pub block: &'a ExprAsync,
    /// Whether it is wrapped in `Box::pin(...)` (and the path used for that).
    pub pin: Option<&'a Expr>,
    /// `T` of `Output = T`: what the original `async fn` returned.
    pub output: &'a Type,
}

/// Recognises `Box::pin(async move { .. })` (or a bare `async move { .. }`) as the
/// fn's final expression, in a fn that returns `impl/dyn Future<Output = T>`.
pub(crate) fn recognise<'a>(block: &'a Block, output: &'a ReturnType) -> Option<Desugared<'a>> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let output = future_output(ty)?;
    let (stmt, expr) = block
        .stmts
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, s)| match s {
            Stmt::Expr(e, None) => Some((i, e)),
            _ => None,
        })?;
    if stmt + 1 != block.stmts.len() {
        return None;
    }
    match expr {
        Expr::Async(block) if block.capture.is_some() => Some(Desugared {
            stmt,
            block,
            pin: None,
            output,
        }),
        Expr::Call(call) if call.args.len() == 1 => {
            let Expr::Path(path) = call.func.as_ref() else {
                return None;
            };
            let names: Vec<String> = path
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            if !names.ends_with(&["Box".to_string(), "pin".to_string()]) {
                return None;
            }
            match &call.args[0] {
                Expr::Async(block) if block.capture.is_some() => Some(Desugared {
                    stmt,
                    block,
                    pin: Some(&call.func),
                    output,
                }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `T` in `Pin<Box<dyn Future<Output = T> + Send + 'a>>` or `impl Future<Output = T>`.
fn future_output(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Paren(p) => future_output(&p.elem),
        Type::Group(g) => future_output(&g.elem),
        Type::TraitObject(TypeTraitObject { bounds, .. }) => output_binding(bounds),
        Type::ImplTrait(t) => output_binding(&t.bounds),
        Type::Path(p) => {
            // `Pin<Box<..>>`: look inside the single type argument.
            let last = p.path.segments.last()?;
            let PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            args.args.iter().find_map(|a| match a {
                GenericArgument::Type(inner) => future_output(inner),
                _ => None,
            })
        }
        _ => None,
    }
}

fn output_binding(
    bounds: &syn::punctuated::Punctuated<TypeParamBound, syn::Token![+]>,
) -> Option<&Type> {
    bounds.iter().find_map(|b| {
        let TypeParamBound::Trait(t) = b else {
            return None;
        };
        let last = t.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        args.args.iter().find_map(|a| match a {
            GenericArgument::AssocType(binding) if binding.ident == "Output" => Some(&binding.ty),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;

    #[test]
    fn recognises_async_trait_output() {
        let f: syn::ItemFn = syn::parse_str(
            r#"
            fn ship<'life0, 'async_trait>(&'life0 self, id: i64)
                -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Result<u8, E>>
                    + ::core::marker::Send + 'async_trait>>
            where 'life0: 'async_trait, Self: 'async_trait
            {
                Box::pin(async move {
                    let __self = self;
                    let id = id;
                    let __ret: Result<u8, E> = { Ok(1) };
                    #[allow(unreachable_code)]
                    __ret
                })
            }"#,
        )
        .unwrap();
        let d = recognise(&f.block, &f.sig.output).expect("recognised");
        assert_eq!(d.stmt, 0);
        assert_eq!(d.output.to_token_stream().to_string(), "Result < u8 , E >");
        assert_eq!(d.pin.unwrap().to_token_stream().to_string(), "Box :: pin");
        assert_eq!(d.block.block.stmts.len(), 4);
    }

    #[test]
    fn plain_fns_are_not_desugared_async() {
        let f: syn::ItemFn =
            syn::parse_str("fn f() -> Result<(), E> { Box::pin(async move {}) }").unwrap();
        assert!(recognise(&f.block, &f.sig.output).is_none());
        let f: syn::ItemFn = syn::parse_str(
            "fn f() -> Pin<Box<dyn Future<Output = ()>>> { let x = 1; Box::pin(g(x)) }",
        )
        .unwrap();
        assert!(recognise(&f.block, &f.sig.output).is_none());
        let f: syn::ItemFn =
            syn::parse_str("fn f() -> impl Future<Output = u8> { async move { 1 } }").unwrap();
        assert!(recognise(&f.block, &f.sig.output).is_some());
    }
}

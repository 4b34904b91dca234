//! The rewrite: the signature written back as it was, the body wrapped so that the
//! lock is taken before it and released after it on every path.
//!
//! For `#[advisory_locked(key = "order:{order_id}")] async fn ship(pool: &Pool,
//! order_id: i64) -> Result<(), AppError> { body }` the new body reads:
//!
//! ```text
//! static __PGLOCK_SITE: CallSite = CallSite { function, file, line };
//! let __pglock_lock = &lock_named(format!("order:{}", order_id), &__PGLOCK_SITE);
//! let __pglock_guard = match acquire(source(&pool), __pglock_lock, Patience::Try).await {
//!     Ok(guard) => guard,
//!     Err(error) => return Err(error(error)),         // `E: From<pglock::Error>`
//! };
//! let __pglock_output = match run(&__pglock_guard, OnLost::Abort, async move {
//!     if false { let r: Result<(), AppError> = loop {}; return r; }  // inference
//!     { body }
//! }).await {
//!     Ok(output) => output,
//!     Err(lost) => Err(error(lost)),
//! };
//! __pglock_output
//! // the guard drops here: the unlock is queued in the background
//! ```
//!
//! The body is a future of its own, so `return` and `?` inside it keep their
//! meaning; the guard is a local of the outer future, so it is dropped (and the lock
//! released) however that future ends: a value, an error, a panic, or being dropped.
//!
//! With `xact = tx` there is no guard: the lock is taken in the caller's transaction
//! and the server frees it when that transaction ends, so the body simply follows:
//!
//! ```text
//! match acquire_xact(transaction(&tx), __pglock_lock, Patience::Try).await {
//!     Ok(()) => {}
//!     Err(error) => return Err(error(error)),
//! }
//! { body }
//! ```

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Ident, Signature, Type};

use crate::args::{Args, Key, OnLost, Wait};
use crate::async_trait;
use crate::check::{self, Params};
use crate::item::Function;
use crate::template;

/// Rewrites `func` as `args` ask, or says why it cannot.
pub(crate) fn expand(args: &Args, func: &Function) -> syn::Result<TokenStream> {
    let Function {
        attrs,
        vis,
        sig,
        inner_attrs,
        ..
    } = func;
    let braced = |tokens: TokenStream| {
        let mut group = Group::new(Delimiter::Brace, tokens);
        group.set_span(func.brace.span.join());
        group
    };

    if sig.asyncness.is_some() {
        let ret = check::result_type(&sig.output, &sig.ident)?;
        let locked = locked_body(args, sig, ret, func.body.clone())?;
        let block = braced(quote!(#(#inner_attrs)* #locked));
        return Ok(quote!(#(#attrs)* #vis #sig #block));
    }

    // Not `async`: an `#[async_trait]` method, already desugared, or a mistake.
    let not_async = || {
        syn::Error::new(
            sig.fn_token.span,
            "`#[advisory_locked]` goes on an `async fn`: the lock is taken with `.await` \
             before the body runs; write `async fn`",
        )
    };
    let block = func.block().map_err(|_| not_async())?;
    let desugared = async_trait::recognise(&block, &sig.output).ok_or_else(not_async)?;
    check::result(desugared.output)?;
    let locked = locked_body(
        args,
        sig,
        desugared.output,
        desugared
            .block
            .block
            .stmts
            .iter()
            .map(ToTokens::to_token_stream)
            .collect(),
    )?;
    let async_attrs = &desugared.block.attrs;
    let future = quote!(#(#async_attrs)* async move { #locked });
    let future = match desugared.pin {
        Some(pin) => quote!(#pin(#future)),
        None => future,
    };
    let before = &block.stmts[..desugared.stmt];
    let block = braced(quote!(#(#inner_attrs)* #(#before)* #future));
    Ok(quote!(#(#attrs)* #vis #sig #block))
}

/// The statements that take the lock, run `body` under it and give its value.
/// `body` is the original body's statements; they get a block of their own again,
/// so that the user's items and types cannot shadow ours. `ret` is the fn's `Result` type, where type errors about the
/// error conversion and `skip` are reported.
fn locked_body(
    args: &Args,
    sig: &Signature,
    ret: &Type,
    body: TokenStream,
) -> syn::Result<TokenStream> {
    let params = Params::of(sig);
    let krate = &args.krate;
    let p = quote!(#krate::__private);
    let ret_span = ret.span();

    // Independent mistakes are all reported; each only once.
    let mut errors: Option<syn::Error> = None;
    let mut note = |result: syn::Result<()>| {
        if let Err(e) = result {
            match &mut errors {
                Some(all) => all.combine(e),
                None => errors = Some(e),
            }
        }
    };
    // With `xact = ...` the lock is taken in that transaction: no lock source.
    let pool = match &args.xact {
        Some(_) => None,
        None => match check::lock_source(args.pool.as_ref(), sig) {
            Ok(pool) => Some(pool),
            Err(e) => {
                note(Err(e));
                None
            }
        },
    };
    let template = match &args.key {
        Key::Template(lit) => match template::scan(&lit.value()) {
            Ok(t) => {
                note(check::placeholders(&t, lit, &params));
                Some((t, lit))
            }
            Err(why) => {
                note(Err(syn::Error::new(lit.span(), why)));
                None
            }
        },
        _ => None,
    };
    if let Some(guard) = &args.guard {
        note(check::guard_name(guard, &params));
    }
    if let Some(errors) = errors {
        return Err(errors);
    }

    let mixed = Span::mixed_site();
    let lock = Ident::new("__pglock_lock", mixed);
    let guard = Ident::new("__pglock_guard", mixed);
    let error = Ident::new("__pglock_error", mixed);
    let output = Ident::new("__pglock_output", mixed);
    let fake_return = Ident::new("__pglock_fake_return", mixed);

    let function = sig.ident.to_string();
    let function = function.strip_prefix("r#").unwrap_or(&function);
    let site = quote! {
        static __PGLOCK_SITE: #p::CallSite = #p::CallSite {
            function: #p::concat!(#p::module_path!(), "::", #function),
            file: #p::file!(),
            line: #p::line!(),
        };
    };

    // The lock: fixed at compile time when the key has no placeholder.
    let shared = if args.shared {
        quote!(.shared())
    } else {
        quote!()
    };
    let (items, lock_expr) = match (&args.key, &template) {
        (Key::Template(_), Some((t, lit))) => match t.literal() {
            Some(name) => {
                let name = syn::LitStr::new(&name, lit.span());
                let items = quote! {
                    const __PGLOCK_KEY: #p::LockKey = #p::key_of(#name);
                    static __PGLOCK_LOCK: #p::AdvisoryLock =
                        #p::lock_static(#name, __PGLOCK_KEY, &__PGLOCK_SITE);
                };
                let expr = if args.shared {
                    quote!(&__PGLOCK_LOCK.clone().shared())
                } else {
                    quote!(&__PGLOCK_LOCK)
                };
                (items, expr)
            }
            None => {
                let format_args = t.format_args(lit.span());
                (
                    quote!(),
                    quote!(&#p::lock_named(#p::format!(#format_args), &__PGLOCK_SITE) #shared),
                )
            }
        },
        (Key::BigInt(key), _) => (
            quote!(),
            quote!(&#p::lock_key(#key, &__PGLOCK_SITE) #shared),
        ),
        (Key::Pair(a, b), _) => (
            quote!(),
            quote!(&#p::lock_key((#a, #b), &__PGLOCK_SITE) #shared),
        ),
        (Key::Template(_), None) => unreachable!("a template that did not scan is an error"),
    };

    // Type errors about the fn's own types are reported where the user wrote them:
    // `E: From<pglock::Error>` at the return type, `T: Default` at `skip`, the lock
    // source's type at `pool = ...`, the transaction's at `xact = ...`, the guard's
    // kind at `guard = ...`. rustc puts such an error on the whole call, so the
    // call's path and parentheses carry the user's span (the arguments keep theirs,
    // for hygiene).
    let acquire_error = call_at(ret_span, quote!(#p::error), quote!(#error));
    let skip_arm = args.skip.map(|skip| {
        let default = call_at(skip, quote!(#p::Default::default), quote!());
        quote! {
            #p::Err(#error) if #p::skips(&#error) => return #p::Ok(#default),
        }
    });
    let head = quote! {
        #site
        #items
        let #lock = #lock_expr;
    };

    let Some(pool) = pool else {
        // `xact = tx`: the lock is taken in the caller's transaction and freed by the
        // server at its end; no guard, nothing to release or watch. The body runs
        // as the fn's own, after the lock is granted.
        let xact = args.xact.as_ref().expect("no lock source, so `xact`");
        let wait = match args.wait {
            Wait::Never => quote!(#p::Patience::Try),
            Wait::Forever => quote!(#p::Patience::Forever),
            Wait::Limit(_) => unreachable!("`Args` refuses `wait = \"...\"` with `xact`"),
        };
        let xact_span = xact.span();
        let tx = quote_spanned!(xact_span=> &#xact);
        let tx = call_at(xact_span, quote!(#p::transaction), tx);
        let acquire = call_at(
            xact_span,
            quote!(#p::acquire_xact),
            quote!(#tx, #lock, #wait),
        );
        return Ok(quote! {
            #head
            match #acquire.await {
                #p::Ok(()) => {}
                #skip_arm
                #p::Err(#error) => return #p::Err(#acquire_error),
            }
            { #body }
        });
    };

    let wait = match args.wait {
        Wait::Never => quote!(#p::Patience::Try),
        Wait::Forever => quote!(#p::Patience::Forever),
        Wait::Limit(d) => {
            let (secs, nanos) = (d.secs, d.nanos);
            quote!(#p::Patience::within(#p::Duration::new(#secs, #nanos)))
        }
    };
    let on_lost = match args.on_lost {
        OnLost::Abort => quote!(#p::OnLost::Abort),
        OnLost::Ignore => quote!(#p::OnLost::Ignore),
    };
    let lost_error = call_at(ret_span, quote!(#p::error), quote!(#error));
    let pool_span = pool.span();
    let source = quote_spanned!(pool_span=> &#pool);
    let source = call_at(pool_span, quote!(#p::source), source);
    let acquire = call_at(
        pool_span,
        quote!(#p::acquire),
        quote!(#source, #lock, #wait),
    );
    let bind_guard = args.guard.as_ref().map(|name| {
        // rustc blames a failed bound on the argument, so the argument is a call
        // spanned at `name` too: the error for a guard without a session of its
        // own (a Locker's) lands on `guard = name`, not on the whole attribute.
        let held = call_at(name.span(), quote!(#p::held), quote!(&#guard));
        let bind = call_at(name.span(), quote!(#p::bind_guard), held);
        quote!(let #name = #bind;)
    });

    let ret = erase_impl_trait(ret);
    let fake_return_edge = quote_spanned! {ret_span=>
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
        if false {
            let #fake_return: #ret = loop {};
            return #fake_return;
        }
    };

    Ok(quote! {
        #head
        let #guard = match #acquire.await {
            #p::Ok(#guard) => #guard,
            #skip_arm
            #p::Err(#error) => return #p::Err(#acquire_error),
        };
        #bind_guard
        let #output = match #p::run(&#guard, #on_lost, async move {
            #fake_return_edge
            { #body }
        })
        .await
        {
            #p::Ok(#output) => #output,
            #p::Err(#error) => #p::Err(#lost_error),
        };
        #output
    })
}

/// `path(args)`, the path and the parentheses spanned at `span`.
fn call_at(span: Span, path: TokenStream, args: TokenStream) -> TokenStream {
    let mut args = Group::new(Delimiter::Parenthesis, args);
    args.set_span(span);
    let path = respan(path, span);
    quote!(#path #args)
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(g) = &tt {
                let mut group = Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// `Result<impl Display, E>` cannot be written in a `let`: `_` stands in for each
/// `impl Trait`, as tracing's fake return edge does.
fn erase_impl_trait(ty: &Type) -> Type {
    struct Eraser;
    impl VisitMut for Eraser {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(t) = ty {
                *ty = Type::Infer(syn::TypeInfer {
                    attrs: Vec::new(),
                    underscore_token: syn::Token![_](t.impl_token.span),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    Eraser.visit_type_mut(&mut ty);
    ty
}

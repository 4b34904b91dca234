//! The rewrite: the signature written back as it was, the body wrapped so that the
//! lock is taken before it and released after it on every path.
//!
//! [`expand`] finds the body (an `async fn`'s own, or the future of an
//! `#[async_trait]` method); `locked_body` has it checked (`check::validate`), then
//! writes the call site and the lock (`lock_head`), and the one body its
//! [`CheckedSource`] calls for: `session_body` (a guard, the body watched for the
//! loss of the lock) or `xact_body` (the lock taken in the caller's transaction).
//! `wait_tokens` alone writes how long to wait.
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

use crate::args::{Args, OnLost, SessionLock, Wait, XactLock, XactWait};
use crate::async_trait;
use crate::check::{self, CheckedKey, CheckedSource};
use crate::item::Function;

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
/// so that the user's items and types cannot shadow ours. `ret` is the fn's
/// `Result` type, where type errors about the error conversion and `skip` are
/// reported.
fn locked_body(
    args: &Args,
    sig: &Signature,
    ret: &Type,
    body: TokenStream,
) -> syn::Result<TokenStream> {
    let checked = check::validate(args, sig)?;
    let krate = &args.krate;
    let p = quote!(#krate::__private);
    let names = Names::new();
    let parts = Parts {
        head: lock_head(&p, args, sig, &checked.key, &names),
        acquire_failed: acquire_failed(&p, args, ret, &names),
        wait: wait_tokens(&p, &checked.source),
        skip: args.skip.is_some(),
        p,
        names,
        ret,
        body,
    };
    Ok(match checked.source {
        CheckedSource::Pool(session, pool) => session_body(&parts, session, &pool),
        CheckedSource::Xact(xact) => xact_body(&parts, xact),
    })
}

/// The names the expansion binds, all `__pglock_*`, with `Span::mixed_site()` so
/// that they can clash with none of the user's.
struct Names {
    lock: Ident,
    guard: Ident,
    error: Ident,
    output: Ident,
    fake_return: Ident,
}

impl Names {
    fn new() -> Names {
        let name = |text: &str| Ident::new(text, Span::mixed_site());
        Names {
            lock: name("__pglock_lock"),
            guard: name("__pglock_guard"),
            error: name("__pglock_error"),
            output: name("__pglock_output"),
            fake_return: name("__pglock_fake_return"),
        }
    }
}

/// What the session body and the xact body have in common.
struct Parts<'a> {
    /// `::pglock::__private`, or the path `crate = ...` gave.
    p: TokenStream,
    names: Names,
    /// The call site and the lock, bound to `__pglock_lock`.
    head: TokenStream,
    /// The `match` arms for a lock not taken: `skip`'s, then the error returned.
    acquire_failed: TokenStream,
    /// How long to wait for the lock.
    wait: TokenStream,
    /// With `skip`, a busy lock is a skipped call (the runtime counts it so).
    skip: bool,
    ret: &'a Type,
    body: TokenStream,
}

/// `static __PGLOCK_SITE = ...; let __pglock_lock = ...;`: the lock, fixed at
/// compile time when the key has no placeholder.
fn lock_head(
    p: &TokenStream,
    args: &Args,
    sig: &Signature,
    key: &CheckedKey,
    names: &Names,
) -> TokenStream {
    let function = sig.ident.to_string();
    let function = function.strip_prefix("r#").unwrap_or(&function);
    let site = quote! {
        static __PGLOCK_SITE: #p::CallSite = #p::CallSite {
            function: #p::concat!(#p::module_path!(), "::", #function),
            file: #p::file!(),
            line: #p::line!(),
        };
    };
    let (items, lock_expr) = lock_expr(p, key, args.shared);
    let lock = &names.lock;
    quote! {
        #site
        #items
        let #lock = #lock_expr;
    }
}

/// The items a literal key needs (its hash and its lock, both `static`), and the
/// expression for `&AdvisoryLock`.
fn lock_expr(p: &TokenStream, key: &CheckedKey, shared: bool) -> (TokenStream, TokenStream) {
    let shared_mode = if shared { quote!(.shared()) } else { quote!() };
    match key {
        CheckedKey::Template(template, lit) => match template.literal() {
            Some(name) => {
                let name = syn::LitStr::new(&name, lit.span());
                let items = quote! {
                    const __PGLOCK_KEY: #p::LockKey = #p::key_of(#name);
                    static __PGLOCK_LOCK: #p::AdvisoryLock =
                        #p::lock_static(#name, __PGLOCK_KEY, &__PGLOCK_SITE);
                };
                let expr = if shared {
                    quote!(&__PGLOCK_LOCK.clone().shared())
                } else {
                    quote!(&__PGLOCK_LOCK)
                };
                (items, expr)
            }
            None => {
                let format_args = template.format_args(lit.span());
                let expr = quote!(
                    &#p::lock_named(#p::format!(#format_args), &__PGLOCK_SITE) #shared_mode
                );
                (quote!(), expr)
            }
        },
        CheckedKey::BigInt(key) => (
            quote!(),
            quote!(&#p::lock_key(#key, &__PGLOCK_SITE) #shared_mode),
        ),
        CheckedKey::Pair(a, b) => (
            quote!(),
            quote!(&#p::lock_key((#a, #b), &__PGLOCK_SITE) #shared_mode),
        ),
    }
}

/// The `match` arms for an acquire that failed: with `skip`, a busy lock returns
/// `Ok(T::default())`; any other error is converted and returned.
///
/// Type errors about the fn's own types are reported where the user wrote them:
/// `E: From<pglock::Error>` at the return type, `T: Default` at `skip` (and, in the
/// bodies, the lock source's type at `pool = ...`, the transaction's at
/// `xact = ...`, the guard's kind at `guard = ...`). rustc puts such an error on the
/// whole call, so the call's path and parentheses carry the user's span (the
/// arguments keep theirs, for hygiene).
fn acquire_failed(p: &TokenStream, args: &Args, ret: &Type, names: &Names) -> TokenStream {
    let error = &names.error;
    let acquire_error = call_at(ret.span(), quote!(#p::error), quote!(#error));
    let skip_arm = args.skip.map(|skip| {
        let default = call_at(skip, quote!(#p::Default::default), quote!());
        quote! {
            #p::Err(#error) if #p::skips(&#error) => return #p::Ok(#default),
        }
    });
    quote! {
        #skip_arm
        #p::Err(#error) => return #p::Err(#acquire_error),
    }
}

/// `xact = tx`: the lock is taken in the caller's transaction and freed by the
/// server at its end; no guard, nothing to release or watch. The body runs as the
/// fn's own, after the lock is granted.
fn xact_body(parts: &Parts, xact: &XactLock) -> TokenStream {
    let Parts {
        p,
        names,
        head,
        acquire_failed,
        wait,
        skip,
        body,
        ..
    } = parts;
    let xact = &xact.tx;
    let xact_span = xact.span();
    let tx = quote_spanned!(xact_span=> &#xact);
    let tx = call_at(xact_span, quote!(#p::transaction), tx);
    let lock = &names.lock;
    let acquire_xact = if *skip {
        quote!(#p::acquire_xact_or_skip)
    } else {
        quote!(#p::acquire_xact)
    };
    let acquire = call_at(xact_span, acquire_xact, quote!(#tx, #lock, #wait));
    quote! {
        #head
        match #acquire.await {
            #p::Ok(()) => {}
            #acquire_failed
        }
        { #body }
    }
}

/// A session lock from `pool`: held by a guard, a local of the outer future, while
/// the body runs as a future of its own, watched for the loss of the lock.
fn session_body(parts: &Parts, session: &SessionLock, pool: &TokenStream) -> TokenStream {
    let Parts {
        p,
        names,
        head,
        acquire_failed,
        wait,
        skip,
        ret,
        body,
    } = parts;
    let Names {
        lock,
        guard,
        error,
        output,
        ..
    } = names;
    let on_lost = match session.on_lost {
        OnLost::Abort => quote!(#p::OnLost::Abort),
        OnLost::Ignore => quote!(#p::OnLost::Ignore),
    };
    let lost_error = call_at(ret.span(), quote!(#p::error), quote!(#error));
    let pool_span = pool.span();
    let source = quote_spanned!(pool_span=> &#pool);
    let source = call_at(pool_span, quote!(#p::source), source);
    let acquire = if *skip {
        quote!(#p::acquire_or_skip)
    } else {
        quote!(#p::acquire)
    };
    let acquire = call_at(pool_span, acquire, quote!(#source, #lock, #wait));
    let bind_guard = session
        .guard
        .as_ref()
        .map(|name| bind_guard(p, name, guard));
    let bind_fence = session.fence.as_ref().map(|name| {
        let fence = call_at(name.span(), quote!(#p::fence_of), quote!(&#guard));
        quote!(let #name: u64 = #fence;)
    });
    let lock_options = lock_options(p, session, lock);
    let fake_return_edge = fake_return_edge(ret, &names.fake_return);
    quote! {
        #head
        #lock_options
        let #guard = match #acquire.await {
            #p::Ok(#guard) => #guard,
            #acquire_failed
        };
        #bind_guard
        #bind_fence
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
    }
}

/// `let __pglock_lock = &__pglock_lock.clone().fenced().hold_at_least(..);` when
/// `fence` or `hold_at_least` asks for it; nothing otherwise (a literal key's lock
/// then stays the `static` one).
fn lock_options(p: &TokenStream, session: &SessionLock, lock: &Ident) -> Option<TokenStream> {
    if session.fence.is_none() && session.hold_at_least.is_none() {
        return None;
    }
    let fenced = session.fence.as_ref().map(|_| quote!(.fenced()));
    let hold = session.hold_at_least.map(|d| {
        let (secs, nanos) = (d.secs, d.nanos);
        quote!(.hold_at_least(#p::Duration::new(#secs, #nanos)))
    });
    Some(quote!(let #lock = &#lock.clone() #fenced #hold;))
}

/// How long to wait for the lock, as `acquire` (`Wait`) and `acquire_xact`
/// (`XactWait`) take it.
fn wait_tokens(p: &TokenStream, source: &CheckedSource) -> TokenStream {
    match source {
        CheckedSource::Pool(session, _) => match session.wait {
            Wait::Never => quote!(#p::Patience::Try),
            Wait::Forever => quote!(#p::Patience::Forever),
            Wait::Limit(d) => {
                let (secs, nanos) = (d.secs, d.nanos);
                quote!(#p::Patience::within(#p::Duration::new(#secs, #nanos)))
            }
        },
        CheckedSource::Xact(xact) => match xact.wait {
            XactWait::Never => quote!(#p::Patience::Try),
            XactWait::Forever => quote!(#p::Patience::Forever),
        },
    }
}

/// `let name = bind_guard(held(&__pglock_guard));`: the guard under the user's name.
///
/// rustc blames a failed bound on the argument, so the argument is a call spanned
/// at `name` too: the error for a guard without a session of its own (a Locker's)
/// lands on `guard = name`, not on the whole attribute.
fn bind_guard(p: &TokenStream, name: &Ident, guard: &Ident) -> TokenStream {
    let held = call_at(name.span(), quote!(#p::held), quote!(&#guard));
    let bind = call_at(name.span(), quote!(#p::bind_guard), held);
    quote!(let #name = #bind;)
}

/// `if false { let r: Ret = loop {}; return r; }`, spanned at the return type, as
/// tracing's: it gives the body's future the fn's return type for inference, and
/// type errors about it land on the user's return type.
fn fake_return_edge(ret: &Type, fake_return: &Ident) -> TokenStream {
    let ret_span = ret.span();
    let ret = erase_impl_trait(ret);
    quote_spanned! {ret_span=>
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
    }
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

//! The expansion, as tokens: what the attribute writes, and what it must not.
//! (`cargo test -p pglock-macros -- --nocapture` prints a representative one.)

use proc_macro2::TokenStream;
use quote::quote;

fn expand(args: TokenStream, item: TokenStream) -> String {
    super::rewrite(args, item).to_string()
}

/// `needles` occur in `haystack`, in this order.
fn assert_in_order(haystack: &str, needles: &[&str]) {
    let mut rest = haystack;
    for needle in needles {
        match rest.find(needle) {
            Some(at) => rest = &rest[at + needle.len()..],
            None => panic!("`{needle}` missing (or out of order) in:\n{haystack}"),
        }
    }
}

#[test]
fn a_templated_key_is_formatted_then_the_body_runs_under_the_guard() {
    let out = expand(
        quote!(key = "order:{order_id:08}", wait = "1.5s", guard = conn),
        quote! {
            /// Ships an order.
            #[inline]
            pub async fn ship<'a>(pool: &'a Pool, order_id: i64) -> Result<(), AppError>
            where
                AppError: Send,
            {
                conn.execute("UPDATE orders SET shipped = true WHERE id = $1", &[&order_id]).await?;
                Ok(())
            }
        },
    );
    println!("{out}");
    let p = ":: pglock :: __private ::";
    assert_in_order(
        &out,
        &[
            // The signature, unchanged.
            "# [doc = r\" Ships an order.\"] # [inline] pub async fn ship < 'a > (pool : & 'a Pool , order_id : i64) -> Result < () , AppError > where AppError : Send , {",
            &format!("static __PGLOCK_SITE : {p} CallSite"),
            &format!("{p} lock_named ({p} format ! (\"order:{{:08}}\" , order_id) , & __PGLOCK_SITE)"),
            &format!("{p} acquire ({p} source (& pool) , __pglock_lock , {p} Patience :: within ({p} Duration :: new (1u64 , 500000000u32)))"),
            &format!("{p} Err (__pglock_error) => return {p} Err ({p} error (__pglock_error))"),
            &format!("let conn = {p} bind_guard ({p} held (& __pglock_guard)) ;"),
            &format!("{p} run (& __pglock_guard , {p} OnLost :: Abort , async move {{"),
            "let __pglock_fake_return : Result < () , AppError > = loop { } ;",
            "{ conn . execute (",
            ". await ? ; Ok (()) }",
            "__pglock_output }",
        ],
    );
    // No skip arm without `skip`.
    assert!(!out.contains("skips"), "{out}");
}

#[test]
fn a_literal_key_is_hashed_at_compile_time_and_never_formatted() {
    let out = expand(
        quote!(key = "goldleader", skip),
        quote!(
            async fn lead(pool: &Pool) -> Result<u32, E> {
                Ok(1)
            }
        ),
    );
    let p = ":: pglock :: __private ::";
    assert_in_order(
        &out,
        &[
            &format!("const __PGLOCK_KEY : {p} LockKey = {p} key_of (\"goldleader\") ;"),
            &format!("static __PGLOCK_LOCK : {p} AdvisoryLock = {p} lock_static (\"goldleader\" , __PGLOCK_KEY , & __PGLOCK_SITE) ;"),
            "let __pglock_lock = & __PGLOCK_LOCK ;",
            // With `skip`, a busy lock is a skipped call: the runtime counts it so.
            &format!("{p} acquire_or_skip ({p} source (& pool) , __pglock_lock , {p} Patience :: Try)"),
            &format!("{p} Err (__pglock_error) if {p} skips (& __pglock_error) => return {p} Ok ({p} Default :: default ())"),
        ],
    );
    assert!(
        !out.contains("format !"),
        "nothing formatted at run time: {out}"
    );
    assert!(!out.contains("lock_named"), "{out}");

    // Shared: the static lock, copied in shared mode (still no hashing).
    let out = expand(
        quote!(key = "{{literal}}", shared),
        quote!(
            async fn lead(pool: &Pool) -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(out.contains("key_of (\"{literal}\")"), "{out}");
    assert!(
        out.contains("& __PGLOCK_LOCK . clone () . shared ()"),
        "{out}"
    );
    assert!(!out.contains("format !"), "{out}");
}

#[test]
fn integer_keys_options_and_crate_path() {
    let out = expand(
        quote!(
            key = (1, -2),
            wait,
            shared,
            on_lost = "ignore",
            crate = ::my::pglock,
            pool = self.pool
        ),
        quote!(
            async fn m(&self) -> Result<(), E> {
                Ok(())
            }
        ),
    );
    let p = ":: my :: pglock :: __private ::";
    assert_in_order(
        &out,
        &[
            &format!("{p} lock_key ((1i32 , - 2i32) , & __PGLOCK_SITE) . shared ()"),
            &format!("{p} source (& self . pool)"),
            &format!("{p} Patience :: Forever"),
            &format!("{p} OnLost :: Ignore"),
        ],
    );
    assert!(
        !out.replace(":: my :: pglock", "").contains("pglock ::"),
        "only the given path: {out}"
    );
    let out = expand(
        quote!(key = -7),
        quote!(
            async fn f(p: Arc<Locker>) -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(out.contains("lock_key (- 7i64 , & __PGLOCK_SITE)"), "{out}");
    assert!(out.contains("source (& p)"), "{out}");
}

#[test]
fn an_async_trait_method_is_locked_inside_its_boxed_future() {
    let out = expand(
        quote!(key = "{self.name}:{id}", pool = self.pool),
        quote! {
            fn run<'life0, 'async_trait>(&'life0 self, id: i64)
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
            }
        },
    );
    assert_in_order(
        &out,
        &[
            "fn run < 'life0 , 'async_trait > (& 'life0 self , id : i64)",
            "Box :: pin (async move {",
            "format ! (\"{}:{}\" , self . name , id)",
            ":: pglock :: __private :: acquire (",
            "async move {",
            "let __pglock_fake_return : Result < u8 , E > = loop { } ;",
            "{ let __self = self ; let id = id ;",
        ],
    );
}

#[test]
fn xact_takes_the_lock_in_the_transaction_and_runs_the_body_as_the_fns_own() {
    let out = expand(
        quote!(key = "invoice:{id}", xact = tx, wait),
        quote!(
            async fn pay(pool: &Pool, tx: &Transaction<'_>, id: i64) -> Result<u8, E> {
                Ok(1)
            }
        ),
    );
    let p = ":: pglock :: __private ::";
    assert_in_order(
        &out,
        &[
            "async fn pay (pool : & Pool , tx : & Transaction < '_ > , id : i64) -> Result < u8 , E > {",
            &format!("let __pglock_lock = & {p} lock_named ({p} format ! (\"invoice:{{}}\" , id) , & __PGLOCK_SITE) ;"),
            &format!("match {p} acquire_xact ({p} transaction (& tx) , __pglock_lock , {p} Patience :: Forever) . await {{"),
            &format!("{p} Ok (()) => {{ }}"),
            &format!("{p} Err (__pglock_error) => return {p} Err ({p} error (__pglock_error)) ,"),
            "} { Ok (1) } }",
        ],
    );
    // No session lock, no guard, no watch, no inner future: the `Pool` parameter
    // is not used.
    for absent in [
        "source",
        "acquire (",
        "run (",
        "__pglock_guard",
        "async move",
        "skips",
    ] {
        assert!(!out.contains(absent), "`{absent}` in:\n{out}");
    }
    let out = expand(
        quote!(key = 7, xact = self.tx, shared, skip),
        quote!(
            async fn m(&self) -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert!(
        out.contains("lock_key (7i64 , & __PGLOCK_SITE) . shared ()"),
        "{out}"
    );
    assert!(
        out.contains(":: pglock :: __private :: acquire_xact_or_skip (:: pglock :: __private :: transaction (& self . tx) , __pglock_lock , :: pglock :: __private :: Patience :: Try)"),
        "{out}"
    );
    assert!(
        out.contains("Err (__pglock_error) if :: pglock :: __private :: skips (& __pglock_error) => return :: pglock :: __private :: Ok (:: pglock :: __private :: Default :: default ())"),
        "{out}"
    );
}

#[test]
fn on_error_the_fn_is_emitted_unchanged_with_one_error() {
    let item = quote!(
        async fn ship(pool: &Pool, id: i64) -> Result<(), E> {
            Ok(())
        }
    );
    for (args, message) in [
        (quote!(key = "{idd}"), "unknown argument `idd` in key"),
        (quote!(key = "x", wiat), "unknown option `wiat`"),
        (quote!(wait), "missing `key`"),
    ] {
        let out = expand(args, item.clone());
        assert!(
            out.starts_with(&item.to_string()),
            "the fn, unchanged: {out}"
        );
        assert_eq!(out.matches("compile_error !").count(), 1, "{out}");
        assert!(out.contains(message), "{out}");
    }
    // Two independent mistakes: both reported, nothing more.
    let out = expand(
        quote!(key = "{idd}", guard = id),
        quote!(
            async fn ship(id: i64) -> Result<(), E> {
                Ok(())
            }
        ),
    );
    assert_eq!(out.matches("compile_error !").count(), 3, "{out}");
}

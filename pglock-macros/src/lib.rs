//! The `#[advisory_locked]` attribute of [pglock](https://docs.rs/pglock): a
//! PostgreSQL advisory lock as the guard of an `async fn`.
//!
//! Use it through the facade, as `pglock::advisory_locked`: the generated code
//! calls into `::pglock::__private` and nothing else. This crate only parses,
//! checks and rewrites; it knows no Postgres.
//!
//! | module | its one job |
//! |---|---|
//! | `args` | the attribute's options: their one table, their values, the rules across them, the choice of `pool` or `xact` |
//! | `duration` | `wait = "1.5s"` read at compile time |
//! | `template` | the key template scanner (`"order:{id:08}"`) |
//! | `item` | the annotated fn, taken apart as far as needed |
//! | `check` | the rules for the fn: `Result` return, lock source, placeholders, `guard` |
//! | `errors` | several independent mistakes reported at once |
//! | `async_trait` | recognising a method already desugared by `#[async_trait]` |
//! | `expand` | writing the locked body: the lock, then a session body or an xact body |
//!
//! Imports point one way, from the rewrite down to the parsers: `lib` uses `args`,
//! `item` and `expand`; `expand` uses `check`, `async_trait`, `args` and `item`;
//! `check` uses `args`, `template` and `errors`; `args` uses `duration` and `errors`.

#![warn(missing_docs)]

mod args;
mod async_trait;
mod check;
mod duration;
mod errors;
mod expand;
mod item;
mod template;

use proc_macro::TokenStream;

#[doc = include_str!("advisory_locked.md")]
#[proc_macro_attribute]
pub fn advisory_locked(args: TokenStream, item: TokenStream) -> TokenStream {
    rewrite(args.into(), item.into()).into()
}

/// The attribute on `proc_macro2` tokens, so that unit tests can call it.
///
/// On any error the function is emitted unchanged next to the error, so that the
/// rest of the crate (and the IDE) keeps working and one mistake gives one error.
fn rewrite(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let result = syn::parse2::<args::Args>(args).and_then(|args| {
        let func = syn::parse2::<item::Function>(item.clone()).map_err(|e| {
            syn::Error::new(
                e.span(),
                format!("`#[advisory_locked]` goes on an `async fn`: {e}"),
            )
        })?;
        expand::expand(&args, &func)
    });
    match result {
        Ok(rewritten) => rewritten,
        Err(error) => {
            let mut out = item;
            out.extend(error.into_compile_error());
            out
        }
    }
}

#[cfg(test)]
mod tests;

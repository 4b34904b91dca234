//! Several independent mistakes reported at once, each on its own tokens, so that
//! one compile shows them all and none twice.

/// Both values, or every error of the two, `a`'s first.
pub(crate) fn both<A, B>(a: syn::Result<A>, b: syn::Result<B>) -> syn::Result<(A, B)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(mut a), Err(b)) => {
            a.combine(b);
            Err(a)
        }
    }
}

/// `Ok(())` when `errors` is empty, else every one of them, in order.
pub(crate) fn all(errors: impl IntoIterator<Item = syn::Error>) -> syn::Result<()> {
    let mut result = Ok(());
    for error in errors {
        result = both(result, Err::<(), _>(error)).map(|((), ())| ());
    }
    result
}

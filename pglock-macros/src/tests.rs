//! The expansion, printed: what the attribute writes for representative fns.

use quote::quote;

fn pretty(tokens: proc_macro2::TokenStream) -> String {
    tokens.to_string()
}

#[test]
fn prints_a_representative_expansion() {
    let out = super::rewrite(
        quote!(key = "order:{order_id}", wait = "1.5s", guard = conn),
        quote! {
            /// Ships an order.
            pub async fn ship(pool: &Pool, order_id: i64) -> Result<(), AppError> {
                conn.execute("UPDATE orders SET shipped = true WHERE id = $1", &[&order_id]).await?;
                Ok(())
            }
        },
    );
    println!("{}", pretty(out));
}

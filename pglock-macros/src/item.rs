//! The annotated function, taken apart only as far as the rewrite needs: attributes,
//! visibility and signature parsed; the body kept as the tokens the user wrote, so
//! that it is written back unchanged (and a body that does not parse still gets its
//! own, better, errors from rustc).

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::{token, Attribute, Block, Signature, Visibility};

pub(crate) struct Function {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    pub brace: token::Brace,
    pub inner_attrs: Vec<Attribute>,
    pub body: TokenStream,
}

impl Parse for Function {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        let content;
        let brace = syn::braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let body: TokenStream = content.parse()?;
        Ok(Function {
            attrs,
            vis,
            sig,
            brace,
            inner_attrs,
            body,
        })
    }
}

impl Function {
    /// The body's statements, for the fns whose body must be looked into (the
    /// `#[async_trait]` desugaring).
    pub fn block(&self) -> syn::Result<Block> {
        let stmts = syn::parse::Parser::parse2(Block::parse_within, self.body.clone())?;
        Ok(Block {
            brace_token: self.brace,
            stmts,
        })
    }
}

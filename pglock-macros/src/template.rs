//! The key template: `"order:{order_id}"`, `"{self.tenant}/{job.id:08}"`, `"{{literal}}"`.
//!
//! A hand scanner in the manner of thiserror's `fmt.rs`: it splits the string into
//! literal text and placeholders, each placeholder a parameter (or `self`), a chain
//! of fields, and a format spec. It knows nothing of the function: `check.rs` holds
//! the placeholders against the parameters, `expand.rs` writes the `format!` call.

use proc_macro2::{Span, TokenStream};
use quote::quote;

/// A parsed key template.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Template {
    pub parts: Vec<Part>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// Literal text, braces already unescaped.
    Text(String),
    Value(Placeholder),
}

/// `{root.field.0:spec}`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Placeholder {
    /// A parameter name, or `self`.
    pub root: String,
    /// Field names or tuple indices after the root.
    pub fields: Vec<String>,
    /// What follows the `:`, without it (`08`, `?`, `>8`); empty for none.
    pub spec: String,
    /// The text between the braces, for messages.
    pub source: String,
}

impl Template {
    /// The placeholders, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.parts.iter().filter_map(|p| match p {
            Part::Value(v) => Some(v),
            Part::Text(_) => None,
        })
    }

    /// The name, when the template has no placeholder: the key is then fixed and
    /// hashed at compile time.
    pub fn literal(&self) -> Option<String> {
        let mut name = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => name.push_str(t),
                Part::Value(_) => return None,
            }
        }
        Some(name)
    }

    /// `"order:{}", order_id` — the arguments of `format!`, each placeholder a
    /// positional argument so that each value is evaluated once, where it stands.
    /// Identifiers carry `span` (the key literal's), so they resolve to the
    /// parameters the way the user's own code would.
    pub fn format_args(&self, span: Span) -> TokenStream {
        let mut format = String::new();
        let mut args = Vec::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => format.push_str(&t.replace('{', "{{").replace('}', "}}")),
                Part::Value(v) => {
                    format.push('{');
                    if !v.spec.is_empty() {
                        format.push(':');
                        format.push_str(&v.spec);
                    }
                    format.push('}');
                    args.push(v.expr(span));
                }
            }
        }
        let format = proc_macro2::Literal::string(&format);
        let mut format = format;
        format.set_span(span);
        quote!(#format, #(#args),*)
    }
}

impl Placeholder {
    /// `root.field.0`, as an expression.
    fn expr(&self, span: Span) -> TokenStream {
        let root = ident(&self.root, span);
        let fields = self.fields.iter().map(|f| match f.parse::<u32>() {
            Ok(index) => {
                let index = syn::Index { index, span };
                quote!(.#index)
            }
            Err(_) => {
                let field = ident(f, span);
                quote!(.#field)
            }
        });
        quote!(#root #(#fields)*)
    }
}

fn ident(name: &str, span: Span) -> proc_macro2::Ident {
    match name.strip_prefix("r#") {
        Some(raw) => proc_macro2::Ident::new_raw(raw, span),
        None => proc_macro2::Ident::new(name, span),
    }
}

/// Scans a template; the error says what is wrong, to be reported on the literal.
pub(crate) fn scan(text: &str) -> Result<Template, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|&(_, c)| c) == Some('{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek().map(|&(_, c)| c) == Some('}') => {
                chars.next();
                literal.push('}');
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in key at byte {at}; write `}}}}` for a literal brace"
                ))
            }
            '{' => {
                let start = at + 1;
                let end = loop {
                    match chars.next() {
                        Some((i, '}')) => break i,
                        Some((_, '{')) => {
                            return Err(format!(
                                "`{{` inside a placeholder of the key (at byte {at}); \
                                 write `{{{{` for a literal brace"
                            ))
                        }
                        Some(_) => {}
                        None => {
                            return Err(format!(
                            "unclosed `{{` in key at byte {at}; write `{{{{` for a literal brace"
                        ))
                        }
                    }
                };
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Value(placeholder(&text[start..end])?));
            }
            _ => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(Template { parts })
}

fn placeholder(source: &str) -> Result<Placeholder, String> {
    let (path, spec) = match source.split_once(':') {
        Some((path, spec)) => (path, spec),
        None => (source, ""),
    };
    if path.is_empty() {
        return Err(format!(
            "`{{{source}}}` in key names no argument: write the parameter, as in `{{order_id}}`"
        ));
    }
    if spec.contains('$') || spec.contains('*') {
        return Err(format!(
            "`{{{source}}}` in key takes its width or precision from an argument \
             (`$` or `*`), which keys do not support; write the number, as in `{{id:08}}`"
        ));
    }
    let mut segments = path.split('.');
    let root = segments.next().unwrap_or_default().to_string();
    let fields: Vec<String> = segments.map(str::to_string).collect();
    if !is_ident(&root) {
        return Err(format!(
            "`{{{source}}}` in key is not a placeholder: expected a parameter name, \
             `self`, or a field of one (`{{arg.field}}`), then an optional `:spec`"
        ));
    }
    if let Some(bad) = fields
        .iter()
        .find(|f| !(is_ident(f) || is_index(f)) || *f == "self")
    {
        return Err(format!(
            "`{{{source}}}` in key: `{bad}` is not a field name; expected `{{arg.field}}` \
             or `{{arg.0}}`"
        ));
    }
    Ok(Placeholder {
        root,
        fields,
        spec: spec.to_string(),
        source: source.to_string(),
    })
}

/// An identifier as Rust reads one: `self`, a raw `r#type`, or a non-keyword.
fn is_ident(s: &str) -> bool {
    let (raw, body) = match s.strip_prefix("r#") {
        Some(body) => (true, body),
        None => (false, s),
    };
    let mut chars = body.chars();
    let well_formed = chars
        .next()
        .is_some_and(|c| c == '_' || unicode_ident::is_xid_start(c))
        && chars.all(unicode_ident::is_xid_continue)
        && body != "_";
    well_formed && (raw || body == "self" || syn::parse_str::<syn::Ident>(body).is_ok())
}

fn is_index(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(root: &str, fields: &[&str], spec: &str, source: &str) -> Part {
        Part::Value(Placeholder {
            root: root.into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            spec: spec.into(),
            source: source.into(),
        })
    }

    #[test]
    fn text_only_is_literal() {
        let t = scan("goldleader").unwrap();
        assert_eq!(t.literal().as_deref(), Some("goldleader"));
        assert_eq!(scan("").unwrap().literal().as_deref(), Some(""));
        assert_eq!(
            scan("{{not a placeholder}}").unwrap().literal().as_deref(),
            Some("{not a placeholder}")
        );
        assert_eq!(scan("a}}{{b").unwrap().literal().as_deref(), Some("a}{b"));
    }

    #[test]
    fn placeholders_fields_and_specs() {
        let t = scan("order:{order_id}/{self.tenant}/{job.spec.0:08}-{name:?}{{x}}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                Part::Text("order:".into()),
                value("order_id", &[], "", "order_id"),
                Part::Text("/".into()),
                value("self", &["tenant"], "", "self.tenant"),
                Part::Text("/".into()),
                value("job", &["spec", "0"], "08", "job.spec.0:08"),
                Part::Text("-".into()),
                value("name", &[], "?", "name:?"),
                Part::Text("{x}".into()),
            ]
        );
        assert_eq!(t.literal(), None);
        assert_eq!(t.placeholders().count(), 4);
    }

    #[test]
    fn format_args_escape_text_and_keep_specs() {
        let t = scan("{{a}}:{id:>8}:{p.x}").unwrap();
        assert_eq!(
            t.format_args(Span::call_site()).to_string(),
            r#""{{a}}:{:>8}:{}" , id , p . x"#
        );
        let t = scan("{r#type}/{t.1}").unwrap();
        assert_eq!(
            t.format_args(Span::call_site()).to_string(),
            r#""{}/{}" , r#type , t . 1"#
        );
    }

    #[test]
    fn malformed_templates_say_why() {
        let err = |s: &str| scan(s).unwrap_err();
        assert!(err("a}b").starts_with("unmatched `}` in key at byte 1"));
        assert!(err("a{b").starts_with("unclosed `{` in key at byte 1"));
        assert!(err("{a{b}}").starts_with("`{` inside a placeholder"));
        assert!(err("{}").starts_with("`{}` in key names no argument"));
        assert!(err("{:?}").starts_with("`{:?}` in key names no argument"));
        assert!(err("{0}").starts_with("`{0}` in key is not a placeholder"));
        assert!(err("{ id }").starts_with("`{ id }` in key is not a placeholder"));
        assert!(err("{a-b}").starts_with("`{a-b}` in key is not a placeholder"));
        assert!(err("{_}").starts_with("`{_}` in key is not a placeholder"));
        assert!(err("{a.}").contains("`` is not a field name"));
        assert!(err("{a.b c}").contains("`b c` is not a field name"));
        assert!(err("{a.01}").contains("`01` is not a field name"));
        assert!(err("{a.self}").contains("`self` is not a field name"));
        assert!(err("{id:>w$}").contains("`$` or `*`"));
        assert!(err("{id:.*}").contains("`$` or `*`"));
    }
}

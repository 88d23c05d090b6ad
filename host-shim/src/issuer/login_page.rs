//! The HTML a person sees: the sign-in form, and the page for a request that cannot be sent
//! back to its application (unknown client, unregistered redirect URI), which OAuth says must
//! not redirect. The form is a plain `<form method="post">` with `username` and `password`, so
//! a browser, a password manager or a test's HTTP client can all fill it in; the request it
//! answers is kept on the server and named by one hidden field.

use axum::http::{HeaderName, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// What the sign-in form shows about the request.
pub struct LoginView<'a> {
    /// Where the form posts: `{issuer}/v1/authorize`.
    pub action: &'a str,
    pub request_id: &'a str,
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub audience: &'a str,
    pub scopes: &'a [String],
    /// The login typed last time, kept after a wrong password.
    pub username: &'a str,
    pub error: Option<&'a str>,
}

/// No caching (the page names a live request), no framing (a framed login form is how
/// clickjacking steals passwords), and nothing loaded from anywhere.
fn page_headers() -> [(HeaderName, &'static str); 5] {
    [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

/// Text made safe for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f4f6;margin:0}\
main{max-width:24rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;\
box-shadow:0 1px 4px #0002}h1{font-size:1.3rem;margin-top:0}label{display:block;margin:1rem 0 .3rem}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}\
.buttons{margin-top:1.5rem;display:flex;gap:.5rem}button{padding:.5rem 1rem;font-size:1rem}\
.error{color:#a00;background:#fee;padding:.5rem;border-radius:4px}.small{color:#555;font-size:.85rem}\
code{word-break:break-all}";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n",
        title = escape(title),
    )
}

/// The sign-in form; `status` is 200 for the first showing, 401 after a wrong password.
pub fn login(view: &LoginView<'_>, status: StatusCode) -> Response {
    let error = view
        .error
        .map(|message| {
            format!(
                "<p class=\"error\" role=\"alert\">{}</p>\n",
                escape(message)
            )
        })
        .unwrap_or_default();
    let scopes = if view.scopes.is_empty() {
        String::new()
    } else {
        let items: Vec<String> = view
            .scopes
            .iter()
            .map(|scope| format!("<code>{}</code>", escape(scope)))
            .collect();
        format!("<p class=\"small\">Scopes: {}</p>\n", items.join(", "))
    };
    let body = format!(
        "<h1>Sign in</h1>\n\
         <p><strong>{name}</strong> wants to act as you at <code>{audience}</code>.</p>\n\
         <p class=\"small\">Client: <code>{client_id}</code></p>\n\
         {scopes}{error}\
         <form method=\"post\" action=\"{action}\">\n\
         <input type=\"hidden\" name=\"request_id\" value=\"{request_id}\">\n\
         <label for=\"username\">Username</label>\n\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" \
         autocomplete=\"username\" autofocus required>\n\
         <label for=\"password\">Password</label>\n\
         <input type=\"password\" id=\"password\" name=\"password\" \
         autocomplete=\"current-password\" required>\n\
         <div class=\"buttons\"><button type=\"submit\" name=\"action\" value=\"login\">Sign in</button>\n\
         <button type=\"submit\" name=\"action\" value=\"cancel\" formnovalidate>Cancel</button></div>\n\
         </form>\n\
         <p class=\"small\">Local development issuer: not Okta, and not for real accounts.</p>",
        name = escape(view.client_name),
        audience = escape(view.audience),
        client_id = escape(view.client_id),
        action = escape(view.action),
        request_id = escape(view.request_id),
        username = escape(view.username),
    );
    (status, page_headers(), Html(document("Sign in", &body))).into_response()
}

/// A request that cannot go back to its application: said to the person, not redirected.
pub fn failure(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Sign-in request refused</h1>\n<p class=\"error\" role=\"alert\">{}</p>\n\
         <p class=\"small\">Go back to your application and start the sign-in again.</p>",
        escape(message)
    );
    (
        status,
        page_headers(),
        Html(document("Sign-in request refused", &body)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_clients_cannot_break_out_of_the_page() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[tokio::test]
    async fn the_form_posts_username_and_password_with_the_request_id() {
        let scopes = vec!["agentgateway".to_owned()];
        let view = LoginView {
            action: "http://127.0.0.1:9000/oauth2/default/v1/authorize",
            request_id: "req-1",
            client_name: "<b>Evil</b>",
            client_id: "0oa1",
            audience: "api://agentgateway",
            scopes: &scopes,
            username: "",
            error: None,
        };
        let response = login(&view, StatusCode::OK);
        assert_eq!(
            response.headers().get(header::X_FRAME_OPTIONS).unwrap(),
            "DENY"
        );
        let html = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let html = String::from_utf8(html.to_vec()).unwrap();
        assert!(html.contains("<form method=\"post\""));
        assert!(html.contains("name=\"username\""));
        assert!(html.contains("name=\"password\""));
        assert!(html.contains("name=\"request_id\" value=\"req-1\""));
        assert!(html.contains("&lt;b&gt;Evil&lt;/b&gt;"));
        assert!(!html.contains("<b>Evil"));
    }
}

//! `GET`/`POST /login` and `POST /consent`: read the form and the browser's
//! cookies, let `interaction::forms` decide, render its reply.

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::error::OAuthError;
use crate::http::cookies::BrowserCookies;
use crate::http::form::Form;
use crate::http::pages;
use crate::interaction::forms::{self, ConsentForm, LoginForm};
use crate::interaction::Reply;

fn render(state: &AppState, what: &str, reply: Result<Reply, OAuthError>) -> HttpResponse {
    match reply {
        Ok(r) => pages::reply(&state.settings, &state.settings.issuer, r),
        Err(e) => pages::failure(what, &e),
    }
}

fn forbidden(state: &AppState) -> HttpResponse {
    pages::reply(
        &state.settings,
        &state.settings.issuer,
        forms::forbidden().into(),
    )
}

/// `GET /login?interaction=…`: the login form of a sign-in this browser started.
pub async fn login_form(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let Ok(params) = crate::http::form::parse_form(req.query_string().as_bytes()) else {
        return forbidden(&state);
    };
    let cookies = BrowserCookies::of(&req);
    render(
        &state,
        "login form",
        forms::login_form(&state, cookies.browser(), params.get("interaction")).await,
    )
}

pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Result<Form, OAuthError>,
) -> HttpResponse {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return pages::form_error(&e, forbidden(&state)),
    };
    let cookies = BrowserCookies::of(&req);
    let browser = cookies.browser();
    if !state
        .login_by_address
        .allow(browser.address, state.clock.now())
    {
        return pages::too_many_requests();
    }
    let fields = LoginForm {
        interaction: form.get("interaction"),
        csrf: form.get("csrf"),
        username: form.get("username").unwrap_or(""),
        password: form.get("password").unwrap_or(""),
    };
    render(&state, "login", forms::login(&state, browser, fields).await)
}

pub async fn consent(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: Result<Form, OAuthError>,
) -> HttpResponse {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return pages::form_error(&e, forbidden(&state)),
    };
    let cookies = BrowserCookies::of(&req);
    let fields = ConsentForm {
        interaction: form.get("interaction"),
        csrf: form.get("csrf"),
        decision: form.get("decision"),
    };
    render(
        &state,
        "consent",
        forms::consent(&state, cookies.browser(), fields).await,
    )
}

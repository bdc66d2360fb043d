//! The ceiling baseline of `bench/run`: what this machine's HTTP stack allows with
//! no worker hop. It reads every request body (an unread body makes actix-web
//! several times slower, which would flatter polyfaas) and answers either fixed
//! bytes (`/fixed`, the original handler's answer) or the body itself (`/echo`).
//!
//! Usage: `polyfaas-bench-ceiling <addr>`

use actix_web::{App, HttpResponse, HttpServer, web};

async fn fixed(body: web::Bytes) -> HttpResponse {
    std::hint::black_box(body);
    HttpResponse::Ok().content_type("application/json").body(r#"{"name_twice":"John John"}"#)
}

async fn echo(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(body)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18081".into());
    HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(64 << 20))
            .route("/fixed", web::to(fixed))
            .route("/echo", web::to(echo))
    })
    .bind(addr)?
    .run()
    .await
}

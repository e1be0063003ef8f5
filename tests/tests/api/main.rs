//! The server against a real Garage and against the embedded local backend:
//! flows, store enforcement, every error code. Every test runs on both
//! backends (`<test>::garage` and `<test>::local`); run through
//! `scripts/test.sh`, which starts Garage and sets `TEST_S3_*`.

/// Runs each listed `async fn(Backend)` once per backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn garage() {
                    super::$name(upload_tests::Backend::Garage).await
                }
                #[tokio::test]
                async fn local() {
                    super::$name(upload_tests::Backend::Local).await
                }
            }
        )*
    };
}

mod errors;
mod flows;
mod names;
mod store_enforces;
mod sweeper;

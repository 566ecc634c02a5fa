//! The checked-in OpenAPI document (`openapi/pgfleet.json`) must be exactly
//! what the handlers generate. After an API change, regenerate it with
//! `cargo run -p pgfleet -- openapi > openapi/pgfleet.json`.

#[test]
fn checked_in_openapi_matches_the_handlers() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/pgfleet.json");
    let checked_in = std::fs::read_to_string(path).expect("openapi/pgfleet.json exists");
    let generated = pgfleet_server::openapi::document_pretty();
    assert!(
        checked_in == generated,
        "openapi/pgfleet.json is out of date: run `cargo run -p pgfleet -- openapi > openapi/pgfleet.json`"
    );
}

#[test]
fn every_route_is_documented() {
    let document = pgfleet_server::openapi::document();
    let paths = document["paths"].as_object().expect("paths");
    for route in [
        "/api/v1/databases",
        "/api/v1/databases/{db}",
        "/api/v1/databases/{db}/uri",
        "/api/v1/databases/{db}/replicas",
        "/api/v1/databases/{db}/events",
        "/api/v1/hosts",
        "/api/v1/tasks",
        "/api/v1/tasks/{id}",
        "/api/v1/health",
        "/api/v1/backup-locations",
        "/api/v1/backup-locations/{name}",
        "/api/v1/databases/{db}/backup-policy",
        "/api/v1/databases/{db}/backups",
    ] {
        assert!(
            paths.contains_key(route),
            "{route} missing from the OpenAPI document"
        );
    }
}

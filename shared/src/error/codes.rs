//! The catalogue of error codes: every code the API answers, once, with its HTTP status and
//! what it means. Responses (`http::error`), the OpenAPI document and each route's list of
//! codes (`errors!`) all read it, so a code cannot be answered, documented or listed without
//! being here, and a misspelt one does not compile.

macro_rules! catalogue {
    ($( $(#[$doc:meta])* $variant:ident = ($status:literal, $code:literal, $meaning:literal), )*) => {
        /// A stable, snake_case error code of the API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the catalogue's order (by status).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as clients see it.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),* }
            }

            /// The HTTP status it comes with.
            pub const fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status),* }
            }

            /// What it means, for the documentation.
            pub const fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning),* }
            }
        }
    };
}

catalogue! {
    InvalidInput = (400, "invalid_input", "fields fail validation; `details.fields` has a message per field"),
    InvalidJson = (400, "invalid_json", "the body is not JSON"),
    InvalidBody = (400, "invalid_body", "the body is JSON (or text) of the wrong shape"),
    InvalidQuery = (400, "invalid_query", "the query string does not parse"),
    InvalidPath = (400, "invalid_path", "a part of the path is not valid, such as a broken %-escape"),
    InvalidCursor = (400, "invalid_cursor", "the cursor is not one this listing gave out"),
    InvalidMonth = (400, "invalid_month", "the month is not `yyyy-mm`"),
    KeysRejected = (400, "keys_rejected", "lines of the list are not valid keys; `details.rejected` names each line"),
    NoKeys = (400, "no_keys", "the request holds no key that can be added"),
    CountTooLarge = (400, "count_too_large", "more keys than one request may generate; `details.max`"),
    KeyMistyped = (400, "key_mistyped", "a generated key whose check symbol does not match the rest: a typo; `details.check_symbol_position`"),
    /// A request the local server's HTTP parser refuses.
    MalformedRequest = (400, "malformed_request", "the request line or a header is not valid HTTP (local server)"),
    Unauthenticated = (401, "unauthenticated", "no token, or one that does not verify; also an expired download link"),
    ForbiddenRole = (403, "forbidden_role", "the token's role may not use this route; `details.roles` lists the roles that may"),
    PoolNotActive = (403, "pool_not_active", "the pool is outside its redemption window or deactivated; `details` has the dates"),
    AssignmentExpired = (403, "assignment_expired", "the assignment's content availability is over"),
    AssignmentCancelled = (403, "assignment_cancelled", "an admin cancelled the assignment"),
    /// A write the local server refuses because another site's page sent it.
    CrossOriginRefused = (403, "cross_origin_refused", "a POST, PUT, PATCH or DELETE sent by another site's page: an `Origin` not the server's own, or `Sec-Fetch-Site: cross-site` (local server)"),
    /// No such route.
    NotFound = (404, "not_found", "no such route"),
    CourseNotFound = (404, "course_not_found", "no such course in the caller's organization"),
    PoolNotFound = (404, "pool_not_found", "no such pool in the caller's organization"),
    KeyNotFound = (404, "key_not_found", "no such key in the pool"),
    AssignmentNotFound = (404, "assignment_not_found", "no such assignment for the caller"),
    ExportNotFound = (404, "export_not_found", "no such export in the caller's organization"),
    JobNotFound = (404, "job_not_found", "no such job in the caller's organization"),
    FileNotFound = (404, "file_not_found", "the linked file is gone"),
    WebhookNotFound = (404, "webhook_not_found", "no such webhook endpoint in the caller's organization"),
    DeliveryNotFound = (404, "delivery_not_found", "no such delivery of the endpoint"),
    InvalidKey = (404, "invalid_key", "the key is unknown or removed (both answer alike)"),
    MethodNotAllowed = (405, "method_not_allowed", "the route does not take that method"),
    KeyAlreadyRedeemed = (409, "key_already_redeemed", "another learner redeemed the key"),
    KeyCancelled = (409, "key_cancelled", "the key's redemption was cancelled for this learner"),
    KeyRedeemed = (409, "key_redeemed", "a redeemed key cannot be removed"),
    RedemptionContended = (409, "redemption_contended", "the redemption lost a race it could not settle; retry"),
    ConcurrentUpdate = (409, "concurrent_update", "the pool changed meanwhile; read it and retry"),
    PasteInterrupted = (409, "paste_interrupted", "an all-or-nothing paste stopped before it committed; nothing was added, send it again"),
    WriteConflict = (409, "write_conflict", "a write kept meeting concurrent writes; retry"),
    /// Cancelling an assignment that is cancelled already (the same code as the 403).
    AssignmentAlreadyCancelled = (409, "assignment_cancelled", "the assignment is cancelled already"),
    AssignmentLaunched = (409, "assignment_launched", "a launched assignment cannot be cancelled"),
    CancellationWindowPassed = (409, "cancellation_window_passed", "assignments can be cancelled within 24 hours of redemption"),
    CancellationContended = (409, "cancellation_contended", "the cancellation lost a race; retry"),
    TooManyWebhooks = (409, "too_many_webhooks", "the organization has as many webhook endpoints as it may (20)"),
    PayloadTooLarge = (413, "payload_too_large", "the body is larger than 4 MiB"),
    UriTooLong = (414, "uri_too_long", "the request URI is too long (local server)"),
    UnsupportedMediaType = (415, "unsupported_media_type", "the body's Content-Type is not one the route takes"),
    /// A request for a host the local server does not answer for (DNS rebinding).
    MisdirectedRequest = (421, "misdirected_request", "the `Host` is not one the server answers for: loopback names, its listening address, the `--public-url` host (local server)"),
    Throttled = (429, "throttled", "too many failed redemptions from this learner, or too many misses of custom keys from this client address; retry after `Retry-After` seconds"),
    CollisionBudgetSpent = (429, "collision_budget_spent", "too many recent key additions met other organizations' keys; custom keys can be added again after `Retry-After` seconds"),
    TooManyJobs = (429, "too_many_jobs", "the organization has as many open jobs as it may; retry after `Retry-After` seconds"),
    HeadersTooLarge = (431, "headers_too_large", "the request's headers are too large or too many (local server)"),
    InternalError = (500, "internal_error", "something failed on our side; the message says nothing more"),
    StoreBusy = (503, "store_busy", "the database is short of capacity (throttled) even after retries; retry after `Retry-After` seconds"),
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_are_snake_case_and_one_status_each_unless_documented() {
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert!((400..600).contains(&code.status()), "{s}");
            assert!(!code.meaning().is_empty(), "{s}");
        }
        // A code string names one status, except assignment_cancelled (a launch: 403; a
        // cancellation: 409).
        for a in ErrorCode::ALL {
            for b in ErrorCode::ALL {
                if a != b && a.as_str() == b.as_str() {
                    assert_eq!(a.as_str(), "assignment_cancelled");
                }
            }
        }
    }
}

//! Request contexts for every route and phase, generated from a seeded PRNG
//! (the same cases on every run) as protocol `PolicyRequest`s, so that the
//! input documents come from the agent's own `build_input`.

use std::collections::HashMap;

use policy_engine_tests::opa::SplitMix64;
use policy_proto::agent::{PolicyPhase, PolicyRequest, RequestContext, ResponseContext};

use super::fixtures::{KEY_ALICE, KEY_ROUTES};
use super::pools::{
    API_KEY_HEADERS, AUTH_FORMS, CUSTOM_FORMS, IPS, KEY_ROUTE_TOKENS, METHODS, QUERIES,
    RESPONSE_HEADERS, STATES, STATUS_CODES, TENANTS, api_keys, odd_headers, request_bodies,
    response_bodies,
};

/// One evaluation: a route's chain for one phase on one request.
pub struct Case {
    pub id: String,
    /// The route whose compiled rule evaluates the case (`*`: the default policy).
    pub route: String,
    pub phase: &'static str,
    pub request: PolicyRequest,
}

struct Gen<'a> {
    rng: SplitMix64,
    tokens: &'a [(String, String)],
    cases: Vec<Case>,
}

impl Gen<'_> {
    fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        self.rng.pick(items).copied().unwrap_or_default()
    }

    fn token(&mut self) -> (String, String) {
        self.rng.pick(self.tokens).cloned().unwrap_or_default()
    }

    /// A request to `route` with `headers` plus random method, query, client
    /// IP, body and odd headers.
    fn request(&mut self, route: &str, headers: Vec<(String, String)>) -> (RequestContext, String) {
        let n = self.cases.len() as u64;
        let mut all: HashMap<String, String> = headers.into_iter().collect();
        let odd = odd_headers(n);
        for _ in 0..self.rng.below(4) {
            if let Some((k, v)) = self.rng.pick(&odd) {
                all.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let bodies = request_bodies();
        let (ct, body, note) = bodies
            .get(self.rng.below(bodies.len()))
            .cloned()
            .unwrap_or_default();
        if let Some(ct) = ct {
            all.insert("content-type".into(), ct.into());
        }
        let query = self.pick_str(QUERIES);
        let path = format!("{route}{query}");
        let explicit_query = self.rng.chance(15);
        let ctx = RequestContext {
            headers: all,
            body,
            method: self.pick_str(METHODS).into(),
            path,
            scheme: if self.rng.chance(80) { "https" } else { "http" }.into(),
            authority: if self.rng.chance(90) {
                "api.example.com"
            } else {
                "ÄPI.example.com:8443"
            }
            .into(),
            query_params: if explicit_query {
                HashMap::from([
                    ("explicit".into(), "yes".into()),
                    ("ü".into(), String::new()),
                ])
            } else {
                HashMap::new()
            },
            client_ip: self.pick_str(IPS).into(),
        };
        (ctx, note.to_string())
    }

    fn response(&mut self) -> (ResponseContext, String) {
        let bodies = response_bodies();
        let (ct, body, note) = bodies
            .get(self.rng.below(bodies.len()))
            .cloned()
            .unwrap_or_default();
        let mut headers: HashMap<String, String> = HashMap::new();
        if let Some(ct) = ct {
            headers.insert("Content-Type".into(), ct.into());
        }
        for _ in 0..self.rng.below(3) {
            if let Some((k, v)) = self.rng.pick(RESPONSE_HEADERS) {
                headers.insert((*k).into(), (*v).into());
            }
        }
        let status_code = self.rng.pick(STATUS_CODES).copied().unwrap_or(200);
        (
            ResponseContext {
                headers,
                body,
                status_code,
            },
            format!("{status_code}_{note}"),
        )
    }

    fn push(
        &mut self,
        route: &str,
        rule_route: &str,
        phase: &'static str,
        note: &str,
        request: PolicyRequest,
    ) {
        let id = format!("{:03} {rule_route} {phase} {note}", self.cases.len());
        let mut request = request;
        request.request_id = id.clone();
        request.route = route.to_string();
        self.cases.push(Case {
            id,
            route: rule_route.to_string(),
            phase,
            request,
        });
    }

    /// A request-phase case on `route` with `headers`.
    fn request_case(
        &mut self,
        route: &str,
        rule_route: &str,
        headers: Vec<(String, String)>,
        note: &str,
    ) {
        let (ctx, body_note) = self.request(route, headers);
        let state = if self.rng.chance(10) {
            self.pick_str(STATES)
        } else {
            ""
        };
        let req = PolicyRequest {
            context: Some(ctx),
            phase: PolicyPhase::Request as i32,
            state_json: state.as_bytes().to_vec(),
            ..Default::default()
        };
        self.push(
            route,
            rule_route,
            "request",
            &format!("{note} {body_note}"),
            req,
        );
    }

    /// A response-phase case on `route` with random request, response and state.
    fn response_case(&mut self, route: &str, rule_route: &str) {
        let (ctx, _) = self.request(route, Vec::new());
        let (resp, note) = self.response();
        let with_response = self.rng.chance(95);
        let state = self.pick_str(STATES);
        let req = PolicyRequest {
            context: Some(ctx),
            phase: PolicyPhase::Response as i32,
            response: with_response.then_some(resp),
            state_json: state.as_bytes().to_vec(),
            ..Default::default()
        };
        let note = if with_response {
            note
        } else {
            "no_response_context".into()
        };
        self.push(route, rule_route, "response", &note, req);
    }

    fn auth(&mut self, forms: &[(&str, &str)], token: &str) -> (Vec<(String, String)>, String) {
        let i = self.rng.below(forms.len());
        let (name, form) = forms
            .get(i)
            .copied()
            .unwrap_or(("Authorization", "Bearer {t}"));
        (
            vec![(name.to_string(), form.replace("{t}", token))],
            format!("form{i}"),
        )
    }

    fn api_key(&mut self, header: Option<&str>) -> (Vec<(String, String)>, String) {
        let keys = api_keys();
        if self.rng.chance(15) {
            return (Vec::new(), "no_key".into());
        }
        let (note, key) = keys
            .get(self.rng.below(keys.len()))
            .cloned()
            .unwrap_or_default();
        let name = header.map_or_else(
            || self.pick_str(API_KEY_HEADERS).to_string(),
            str::to_string,
        );
        (vec![(name, key)], format!("key_{note}"))
    }
}

/// The cases of every route and phase (deterministic for a given seed).
pub fn generate(seed: u64, tokens: &[(String, String)]) -> Vec<Case> {
    let mut g = Gen {
        rng: SplitMix64::new(seed),
        tokens,
        cases: Vec::new(),
    };
    // /api/v1/users: apiKeyAuth + rateLimit; addSecurityHeaders + responseBodyTransform.
    let users = "/api/v1/users";
    for (note, key) in api_keys() {
        for name in [API_KEY_HEADERS[0], g.pick_str(API_KEY_HEADERS)] {
            g.request_case(
                users,
                users,
                vec![(name.into(), key.clone())],
                &format!("key_{note} {name}"),
            );
        }
    }
    // Non-ASCII header names that lower-case to `x-api-key` under Go's
    // simple case mapping (İ → i, K → k) but not all under Rust's.
    for name in ["X-APİ-Key", "X-API-\u{212a}EY", "x-apİ-\u{212a}ey"] {
        for (note, key) in [("alice", KEY_ALICE), ("unknown", "ak_live_unknown_0000")] {
            g.request_case(
                users,
                users,
                vec![(name.into(), key.into())],
                &format!("key_{note} unicode_header_name {name}"),
            );
        }
    }
    for _ in 0..30 {
        let (h, note) = g.api_key(None);
        g.request_case(users, users, h, &note);
    }
    for _ in 0..40 {
        g.response_case(users, users);
    }
    // /api/v1/admin: jwtValidation + roleCheck; auditLog.
    let admin = "/api/v1/admin";
    for (name, tok) in tokens {
        g.request_case(
            admin,
            admin,
            vec![("Authorization".into(), format!("Bearer {tok}"))],
            name,
        );
    }
    let alice = tokens
        .iter()
        .find(|(n, _)| n == "rs256_alice")
        .map(|(_, t)| t.as_str())
        .unwrap_or_default();
    for header in ["AUTHORİZATİON", "authorizatİon"] {
        g.request_case(
            admin,
            admin,
            vec![(header.into(), format!("Bearer {alice}"))],
            &format!("rs256_alice unicode_header_name {header}"),
        );
    }
    for _ in 0..30 {
        let (name, tok) = g.token();
        let (h, form) = g.auth(AUTH_FORMS, &tok);
        g.request_case(admin, admin, h, &format!("{name} {form}"));
    }
    for _ in 0..5 {
        g.request_case(admin, admin, Vec::new(), "no_token");
    }
    for _ in 0..20 {
        g.response_case(admin, admin);
    }
    // /api/v2/reports: every algorithm, custom header, match all, per-user rate limit.
    let reports = "/api/v2/reports";
    for (name, tok) in tokens {
        let (h, form) = g.auth(&CUSTOM_FORMS[..4], tok);
        g.request_case(reports, reports, h, &format!("{name} {form}"));
    }
    for _ in 0..12 {
        let (name, tok) = g.token();
        let (h, form) = g.auth(CUSTOM_FORMS, &tok);
        g.request_case(reports, reports, h, &format!("{name} custom{form}"));
    }
    for _ in 0..6 {
        let (name, tok) = g.token();
        let (h, form) = g.auth(AUTH_FORMS, &tok);
        g.request_case(reports, reports, h, &format!("{name} wrong_header {form}"));
    }
    for _ in 0..35 {
        g.response_case(reports, reports);
    }
    // /api/v2/partners: optional key (continue), unknown policy, header-keyed limit, skip_remaining.
    let partners = "/api/v2/partners";
    for _ in 0..40 {
        let header = if g.rng.chance(50) {
            "X-Partner-Key"
        } else {
            "x-partner-key"
        };
        let (mut h, note) = g.api_key(Some(header));
        let tenant = if g.rng.chance(80) {
            Some(g.pick_str(TENANTS))
        } else {
            None
        };
        if let Some(t) = tenant {
            h.push((
                if g.rng.chance(50) {
                    "X-Tenant"
                } else {
                    "x-tenant"
                }
                .into(),
                t.into(),
            ));
        }
        g.request_case(
            partners,
            partners,
            h,
            &format!("{note} tenant_{}", tenant.unwrap_or("none")),
        );
    }
    for _ in 0..20 {
        g.response_case(partners, partners);
    }
    // /internal/misconfigured: schema failures, wrong phase, runtime metadata error.
    let misconfigured = "/internal/misconfigured";
    for _ in 0..8 {
        let (name, tok) = g.token();
        g.request_case(
            misconfigured,
            misconfigured,
            vec![("Authorization".into(), format!("Bearer {tok}"))],
            &name,
        );
    }
    for _ in 0..12 {
        g.response_case(misconfigured, misconfigured);
    }
    // /internal/errors: key material errors with continue, JWK with alg.
    let errors = "/internal/errors";
    for (name, tok) in tokens {
        let (mut h, form) = g.auth(&AUTH_FORMS[..4], tok);
        let (k, key_note) = g.api_key(None);
        h.extend(k);
        g.request_case(errors, errors, h, &format!("{name} {form} {key_note}"));
    }
    for _ in 0..15 {
        g.response_case(errors, errors);
    }
    // Chain state that already holds claims when jwtValidation sets its own.
    for (name, state) in [
        (
            "rs256_carol_no_roles",
            r#"{"claims":{"roles":["admin"],"extra":{"x":1}},"user":"mallory"}"#,
        ),
        ("rs256_bob", r#"{"claims":{"roles":["admin"]}}"#),
    ] {
        let tok = tokens
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
            .unwrap_or_default();
        let (ctx, note) = g.request(
            admin,
            vec![("Authorization".into(), format!("Bearer {tok}"))],
        );
        let req = PolicyRequest {
            context: Some(ctx),
            phase: PolicyPhase::Request as i32,
            state_json: state.as_bytes().to_vec(),
            ..Default::default()
        };
        g.push(
            admin,
            admin,
            "request",
            &format!("{name} preset_claims_state {note}"),
            req,
        );
    }
    // Two transforms in a row.
    let double = "/api/v2/double-transform";
    g.request_case(double, double, Vec::new(), "allow");
    for _ in 0..10 {
        g.response_case(double, double);
    }
    // Key material variants: a JWKS with a broken key, a PEM with trailing
    // text, a certificate.
    for route in KEY_ROUTES {
        for (name, tok) in tokens
            .iter()
            .filter(|(n, _)| KEY_ROUTE_TOKENS.contains(&n.as_str()))
        {
            g.request_case(
                route,
                route,
                vec![("Authorization".into(), format!("Bearer {tok}"))],
                name,
            );
        }
        g.response_case(route, route);
        for _ in 0..4 {
            let (name, tok) = g.token();
            g.request_case(
                route,
                route,
                vec![("Authorization".into(), format!("Bearer {tok}"))],
                &name,
            );
        }
    }
    // A route with a non-ASCII name: leeway, nested roles claim.
    let unicode = "/ünïcode/päth";
    for _ in 0..25 {
        let (name, tok) = g.token();
        let (h, form) = g.auth(&AUTH_FORMS[..3], &tok);
        g.request_case(unicode, unicode, h, &format!("{name} {form}"));
    }
    for _ in 0..3 {
        g.response_case(unicode, unicode);
    }
    // /api/v1/users/ (its slug collides with /api/v1/users).
    let users_slash = "/api/v1/users/";
    for _ in 0..12 {
        let (h, note) = g.api_key(None);
        g.request_case(users_slash, users_slash, h, &note);
    }
    for _ in 0..12 {
        g.response_case(users_slash, users_slash);
    }
    // Unmatched routes: the default policy.
    for _ in 0..8 {
        let (h, note) = g.api_key(None);
        g.request_case("/not/configured", "*", h, &note);
    }
    for _ in 0..6 {
        g.response_case("/not/configured", "*");
    }
    g.cases
}

/// The cases of the `--fail-on-unknown` bundle.
pub fn generate_fail_on_unknown(seed: u64) -> Vec<Case> {
    let mut g = Gen {
        rng: SplitMix64::new(seed),
        tokens: &[],
        cases: Vec::new(),
    };
    let route = "/strict/unknown";
    for _ in 0..4 {
        let (h, note) = g.api_key(None);
        g.request_case(route, route, h, &note);
    }
    for _ in 0..4 {
        g.response_case(route, route);
    }
    for _ in 0..2 {
        g.request_case("/elsewhere", "*", Vec::new(), "default");
        g.response_case("/elsewhere", "*");
    }
    g.cases
}

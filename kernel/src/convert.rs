//! Verdicts → ext_proc v3 messages: header and body mutations, the
//! answers of each message type, and immediate responses. Header values go
//! in `raw_value` with `OVERWRITE_IF_EXISTS_OR_ADD`.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyMutation, BodyResponse, CommonResponse, HeaderMutation, HeadersResponse, ImmediateResponse,
    ProcessingResponse, TrailersResponse, body_mutation, common_response::ResponseStatus,
    processing_response::Response,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;

use crate::decision::{LocalReply, Mutations, Phase};

fn header_option(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            raw_value: value.as_bytes().to_vec(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

fn header_mutation(set: &[(String, String)], remove: &[String]) -> Option<HeaderMutation> {
    if set.is_empty() && remove.is_empty() {
        return None;
    }
    Some(HeaderMutation {
        set_headers: set.iter().map(|(k, v)| header_option(k, v)).collect(),
        remove_headers: remove.to_vec(),
    })
}

fn body_mutation(body: &Option<Vec<u8>>) -> Option<BodyMutation> {
    body.as_ref().map(|b| BodyMutation {
        mutation: Some(body_mutation::Mutation::Body(b.clone())),
    })
}

/// The answer to a `request_headers` / `response_headers` message. A new
/// body replaces the message with CONTINUE_AND_REPLACE (Envoy then drops
/// `content-length` and sends no more body messages for that direction).
pub fn headers_response(
    phase: Phase,
    m: &Mutations,
    mode: Option<ProcessingMode>,
) -> ProcessingResponse {
    let status = if m.body.is_some() {
        ResponseStatus::ContinueAndReplace
    } else {
        ResponseStatus::Continue
    };
    let common = CommonResponse {
        status: status as i32,
        header_mutation: header_mutation(&m.set_headers, &m.remove_headers),
        body_mutation: body_mutation(&m.body),
        ..Default::default()
    };
    let headers = HeadersResponse {
        response: Some(common),
    };
    ProcessingResponse {
        response: Some(match phase {
            Phase::Request => Response::RequestHeaders(headers),
            Phase::Response => Response::ResponseHeaders(headers),
        }),
        mode_override: mode,
        ..Default::default()
    }
}

/// The answer to a buffered `request_body` / `response_body` message. When
/// the body changes and the message had a `content-length`, it is set to
/// the new length (Envoy rejects a buffered body whose length disagrees).
pub fn body_response(phase: Phase, m: &Mutations, had_content_length: bool) -> ProcessingResponse {
    let mut set = m.set_headers.clone();
    if let Some(body) = &m.body
        && had_content_length
    {
        set.retain(|(k, _)| k != "content-length");
        set.push(("content-length".into(), body.len().to_string()));
    }
    let common = CommonResponse {
        header_mutation: header_mutation(&set, &m.remove_headers),
        body_mutation: body_mutation(&m.body),
        ..Default::default()
    };
    let body = BodyResponse {
        response: Some(common),
    };
    ProcessingResponse {
        response: Some(match phase {
            Phase::Request => Response::RequestBody(body),
            Phase::Response => Response::ResponseBody(body),
        }),
        ..Default::default()
    }
}

/// The answer to a trailers message: no change.
pub fn trailers_response(phase: Phase) -> ProcessingResponse {
    let t = TrailersResponse::default();
    ProcessingResponse {
        response: Some(match phase {
            Phase::Request => Response::RequestTrailers(t),
            Phase::Response => Response::ResponseTrailers(t),
        }),
        ..Default::default()
    }
}

/// An `immediate_response`.
pub fn immediate_response(r: &LocalReply) -> ProcessingResponse {
    ProcessingResponse {
        response: Some(Response::ImmediateResponse(ImmediateResponse {
            status: Some(HttpStatus {
                code: i32::from(r.status),
            }),
            headers: header_mutation(&r.headers, &[]),
            body: r.body.clone(),
            grpc_status: None,
            details: r.details.clone(),
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_changes_overwrite_in_raw_value_and_a_new_body_replaces() {
        let m = Mutations {
            set_headers: vec![
                ("x-user-id".into(), "bob".into()),
                ("x-drop".into(), "back".into()),
            ],
            remove_headers: vec!["x-gone".into()],
            body: Some(b"{}".to_vec()),
        };
        let p = headers_response(Phase::Request, &m, None);
        let Some(Response::RequestHeaders(h)) = p.response else {
            panic!("wrong type")
        };
        let common = h.response.unwrap();
        assert_eq!(common.status, ResponseStatus::ContinueAndReplace as i32);
        let hm = common.header_mutation.unwrap();
        let first = hm.set_headers[0].clone();
        assert_eq!(
            first.append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        );
        let hv = first.header.unwrap();
        assert_eq!(
            (hv.key.as_str(), hv.raw_value.as_slice(), hv.value.as_str()),
            ("x-user-id", &b"bob"[..], "")
        );
        assert_eq!(hm.remove_headers, vec!["x-gone".to_string()]);
        assert!(common.body_mutation.is_some());
        let p = headers_response(Phase::Response, &Mutations::default(), None);
        let Some(Response::ResponseHeaders(h)) = p.response else {
            panic!("wrong type")
        };
        assert_eq!(h.response.unwrap(), CommonResponse::default());
    }

    #[test]
    fn immediate_response_keeps_status_headers_body_details() {
        let r = LocalReply {
            status: 401,
            headers: vec![("www-authenticate".into(), "API-Key".into())],
            body: b"{\"error\":\"API key required\"}".to_vec(),
            details: "policy_denied:apiKeyAuth".into(),
        };
        let p = immediate_response(&r);
        let Some(Response::ImmediateResponse(i)) = p.response else {
            panic!("wrong type")
        };
        assert_eq!(i.status.unwrap().code, 401);
        assert_eq!(i.body, b"{\"error\":\"API key required\"}");
        assert_eq!(i.details, "policy_denied:apiKeyAuth");
        assert_eq!(i.headers.unwrap().set_headers.len(), 1);
    }

    #[test]
    fn buffered_body_changes_fix_content_length() {
        let m = Mutations {
            set_headers: vec![("x-frame-options".into(), "DENY".into())],
            remove_headers: vec![],
            body: Some(b"{\"id\":1}".to_vec()),
        };
        let p = body_response(Phase::Response, &m, true);
        let Some(Response::ResponseBody(b)) = p.response else {
            panic!("wrong type")
        };
        let common = b.response.unwrap();
        assert_eq!(common.status, ResponseStatus::Continue as i32);
        let names: Vec<String> = common
            .header_mutation
            .unwrap()
            .set_headers
            .into_iter()
            .map(|h| {
                let h = h.header.unwrap();
                format!("{}={}", h.key, String::from_utf8_lossy(&h.raw_value))
            })
            .collect();
        assert_eq!(names, vec!["x-frame-options=DENY", "content-length=8"]);
        assert_eq!(
            common.body_mutation.unwrap().mutation,
            Some(body_mutation::Mutation::Body(b"{\"id\":1}".to_vec()))
        );
        let p = body_response(Phase::Request, &Mutations::default(), true);
        let Some(Response::RequestBody(b)) = p.response else {
            panic!("wrong type")
        };
        assert_eq!(b.response.unwrap(), CommonResponse::default());
        assert!(matches!(
            trailers_response(Phase::Response).response,
            Some(Response::ResponseTrailers(_))
        ));
    }
}

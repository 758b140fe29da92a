//! Messages that are not valid `PolicyRequest`s on the wire.

use super::*;

/// Wire-compatible with `PolicyRequest`, but header values are `bytes`, so
/// the test can send header values that are not UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct LoosePolicyRequest {
    #[prost(string, tag = "1")]
    request_id: String,
    #[prost(message, repeated, tag = "2")]
    policies: Vec<Policy>,
    #[prost(message, optional, tag = "3")]
    context: Option<LooseRequestContext>,
    #[prost(int32, tag = "5")]
    phase: i32,
    #[prost(string, tag = "8")]
    route: String,
}

/// `RequestContext` with `bytes` header values.
#[derive(Clone, PartialEq, prost::Message)]
struct LooseRequestContext {
    #[prost(map = "string, bytes", tag = "1")]
    headers: HashMap<String, Vec<u8>>,
    #[prost(string, tag = "3")]
    method: String,
    #[prost(string, tag = "4")]
    path: String,
    #[prost(string, tag = "8")]
    client_ip: String,
}

async fn execute_loose(
    channel: Channel,
    req: LoosePolicyRequest,
) -> Result<PolicyResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<LoosePolicyRequest, PolicyResponse>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/policy.agent.v1.PolicyAgent/ExecutePolicies",
    );
    Ok(grpc
        .unary(tonic::Request::new(req), path, codec)
        .await?
        .into_inner())
}

#[tokio::test]
async fn non_utf8_header_bytes_are_a_grpc_error_not_a_crash() -> anyhow::Result<()> {
    let mut agent = AgentProcess::start(&options(policy_data(None))).await?;
    let channel = agent.channel().await?;
    let loose = |value: &[u8]| LoosePolicyRequest {
        request_id: "loose".into(),
        policies: users_request_chain(),
        context: Some(LooseRequestContext {
            headers: HashMap::from([("X-API-Key".to_string(), value.to_vec())]),
            method: "GET".into(),
            path: "/api/v1/users".into(),
            client_ip: "10.0.7.1".into(),
        }),
        phase: PolicyPhase::Request as i32,
        route: USERS.into(),
    };

    // Control: the loose encoding of a valid request is understood.
    let r = execute_loose(channel.clone(), loose(ALICE_KEY.as_bytes())).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    assert_eq!(r.set_headers(), vec![("X-User-ID", "alice")]);

    let err = execute_loose(channel.clone(), loose(b"pe_live_\xff\xfe\x80key"))
        .await
        .err()
        .unwrap_or_else(|| panic!("non-UTF-8 header value accepted"));
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
    assert!(
        err.message().contains("failed to decode Protobuf message"),
        "{err:?}"
    );
    assert!(err.message().contains("UTF-8"), "{err:?}");

    // The same connection and the agent keep working.
    let r = execute_loose(channel.clone(), loose(ALICE_KEY.as_bytes())).await?;
    assert_eq!(r.code(), StatusCode::Ok, "{r:?}");
    let mut client = PolicyAgentClient::new(channel);
    assert_still_serving(&mut client).await?;
    assert!(agent.is_running(), "stderr:\n{}", agent.stderr_log());
    Ok(())
}

//! Pyroscope's settings API as Grafana's Profiles Drilldown calls it when it starts:
//! `settings.v1.SettingsService/Get` (its plugin settings) and
//! `settings.v1.RecordingRulesService/ListRecordingRules`. Kiln stores neither settings nor
//! recording rules yet: both lists are empty, so the app uses its defaults, and `Set` is
//! refused as unimplemented (docs/api.md).

use kiln_proto::settings::v1::{
    GetSettingsRequest, GetSettingsResponse, ListRecordingRulesRequest, ListRecordingRulesResponse,
    SetSettingsRequest, SetSettingsResponse, recording_rules_service_server::RecordingRulesService,
    settings_service_server::SettingsService,
};

/// The gRPC side of both services (Connect calls are answered by the router directly).
#[derive(Debug, Default)]
pub(crate) struct Settings;

#[tonic::async_trait]
impl SettingsService for Settings {
    async fn get(
        &self,
        _: tonic::Request<GetSettingsRequest>,
    ) -> Result<tonic::Response<GetSettingsResponse>, tonic::Status> {
        Ok(tonic::Response::new(GetSettingsResponse::default()))
    }

    async fn set(
        &self,
        _: tonic::Request<SetSettingsRequest>,
    ) -> Result<tonic::Response<SetSettingsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "settings.v1.SettingsService/Set is not implemented: Kiln stores no settings",
        ))
    }
}

#[tonic::async_trait]
impl RecordingRulesService for Settings {
    async fn list_recording_rules(
        &self,
        _: tonic::Request<ListRecordingRulesRequest>,
    ) -> Result<tonic::Response<ListRecordingRulesResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListRecordingRulesResponse::default()))
    }
}

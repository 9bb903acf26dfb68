//! The OpenTelemetry SDK as the runtimes install it: every span gets an id, so records carry
//! the context of the span that sent them; spans leave the process over OTLP/HTTP (protobuf)
//! when an endpoint is set, and go nowhere otherwise. On Lambda the endpoint is usually the
//! ADOT collector layer on `http://localhost:4318`; the runtime flushes after each invocation,
//! before the sandbox is frozen.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter, Tracer};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

/// The variable that names the OTLP endpoint for every signal (`/v1/traces` is appended).
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The variable that names the traces endpoint itself, used as it is.
pub const OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the OTLP span exporter for {endpoint}")]
pub struct TracingSetupError {
    /// The endpoint it was built for.
    pub endpoint: String,
    /// What the exporter said.
    #[source]
    pub source: opentelemetry_otlp::ExporterBuildError,
}

/// A function's tracer provider, and where its spans go.
#[derive(Clone, Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
    endpoint: Option<String>,
}

impl Tracing {
    /// The provider `lookup` (the environment) asks for: spans of service `service` (unless
    /// `OTEL_SERVICE_NAME` names another), exported in batches to the traces endpoint of
    /// [`OTLP_TRACES_ENDPOINT`] or [`OTLP_ENDPOINT`] when one is set and `OTEL_SDK_DISABLED`
    /// is not `true`. Building it opens no connection.
    pub fn from_env(
        service: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TracingSetupError> {
        let disabled = lookup("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let endpoint = lookup(OTLP_TRACES_ENDPOINT)
            .filter(|e| !e.trim().is_empty())
            .or_else(|| {
                lookup(OTLP_ENDPOINT)
                    .filter(|e| !e.trim().is_empty())
                    .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
            })
            .filter(|_| !disabled);
        let service = lookup("OTEL_SERVICE_NAME").unwrap_or_else(|| service.to_string());
        let Some(endpoint) = endpoint else {
            return Ok(Self::unexported(&service));
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&endpoint)
            .with_timeout(Duration::from_secs(2))
            .build()
            .map_err(|source| TracingSetupError {
                endpoint: endpoint.clone(),
                source,
            })?;
        let provider = SdkTracerProvider::builder()
            .with_resource(resource(&service))
            .with_batch_exporter(exporter)
            .build();
        Ok(Self {
            provider,
            endpoint: Some(endpoint),
        })
    }

    /// A provider whose spans have ids (so records carry their context) and go nowhere.
    pub fn unexported(service: &str) -> Self {
        Self {
            provider: SdkTracerProvider::builder()
                .with_resource(resource(service))
                .build(),
            endpoint: None,
        }
    }

    /// A provider that hands each span to `exporter` as it ends (tests read them back).
    pub fn with_exporter(service: &str, exporter: impl SpanExporter + 'static) -> Self {
        Self {
            provider: SdkTracerProvider::builder()
                .with_resource(resource(service))
                .with_simple_exporter(exporter)
                .build(),
            endpoint: None,
        }
    }

    /// The traces endpoint spans are exported to, if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The layer that gives `tracing` spans their OpenTelemetry context and ends them as
    /// OpenTelemetry spans.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, Tracer>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("sagaflow"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
    }

    /// Sends every ended span now, before the Lambda sandbox may be frozen; a failure is
    /// logged, never raised: losing spans must not fail a batch.
    pub fn flush(&self) {
        if self.endpoint.is_none() {
            return;
        }
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(error = %error, "spans could not be exported");
        }
    }
}

fn resource(service: &str) -> Resource {
    Resource::builder_empty()
        .with_service_name(service.to_string())
        .build()
}

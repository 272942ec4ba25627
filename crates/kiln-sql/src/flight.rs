//! Arrow Flight SQL on the public listener, for ADBC and JDBC clients and Grafana's Flight SQL
//! data source: statements and prepared statements (a prepared statement's handle is its SQL
//! text, so nothing is held between calls), run by the same engine as `POST /api/v1/sql`, with
//! the same credentials, tenant scoping and limits; and the catalog calls ([`catalog`]).

use std::pin::Pin;
use std::sync::Arc;

use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use kiln_api::{Auth, Right};
use kiln_model::TenantId;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::{SqlEngine, SqlError, catalog};

/// The stream of a DoGet answer.
type DoGetStream = <FlightSql as arrow_flight::flight_service_server::FlightService>::DoGetStream;

/// Largest Flight SQL request: a query is text, not data.
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// The Flight SQL service.
#[derive(Debug, Clone)]
pub struct FlightSql {
    engine: Arc<SqlEngine>,
    auth: Arc<Auth>,
}

impl FlightSql {
    /// A service answering with `engine`, checking credentials with `auth`.
    pub fn new(engine: Arc<SqlEngine>, auth: Arc<Auth>) -> Self {
        Self { engine, auth }
    }

    /// The tonic server of the service (`arrow.flight.protocol.FlightService`).
    pub fn into_server(self) -> FlightServiceServer<Self> {
        FlightServiceServer::new(self)
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
    }

    fn tenant<T>(&self, request: &Request<T>) -> Result<TenantId, Status> {
        let headers = request.metadata().clone().into_headers();
        self.auth
            .authorize(&headers, Right::Read)
            .map_err(|e| Status::new(kiln_api::grpc_code(e.http_status()), e.to_string()))
    }

    /// A FlightInfo whose one endpoint's ticket runs `sql`.
    async fn info(
        &self,
        tenant: &TenantId,
        sql: &str,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.engine.schema(tenant, sql).await.map_err(status)?;
        let ticket = TicketStatementQuery {
            statement_handle: sql.as_bytes().to_vec().into(),
        };
        let endpoint =
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_ordered(true);
        Ok(Response::new(info))
    }

    /// Runs `sql` through the querier's gate and streams its batches.
    async fn rows(&self, tenant: &TenantId, sql: &str) -> Result<Response<DoGetStream>, Status> {
        let engine = Arc::clone(&self.engine);
        let answer = engine
            .querier()
            .admit(tenant, async { Ok(engine.query(tenant, sql).await) })
            .await
            .map_err(|e| status(SqlError::from(e)))?
            .map_err(status)?;
        let batches = futures::stream::iter(answer.batches.into_iter().map(Ok));
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(answer.schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A catalog call's answer (built from fixed data, so cheap to build for its schema alone).
fn catalog_answer(answer: Result<RecordBatch, FlightError>) -> Result<RecordBatch, Status> {
    answer.map_err(|e| Status::internal(format!("cannot build the answer: {e}")))
}

/// The FlightInfo of a catalog command (GetTables and the like): the columns of its `answer`,
/// and one endpoint whose ticket is the command itself, answered by the matching `do_get_*`.
fn catalog_info(
    command: &impl ProstMessageExt,
    answer: Result<RecordBatch, FlightError>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let schema = catalog_answer(answer)?.schema();
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(command.as_any().encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(&schema)
        .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// A catalog call's answer as a DoGet stream of one batch.
fn batch_stream(answer: Result<RecordBatch, FlightError>) -> Result<Response<DoGetStream>, Status> {
    let batch = catalog_answer(answer)?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async { Ok(batch) }))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(stream)))
}

/// The gRPC status of a SQL error.
fn status(e: SqlError) -> Status {
    Status::new(kiln_api::grpc_code(e.http_status()), e.to_string())
}

fn handle_text(handle: &[u8]) -> Result<&str, Status> {
    std::str::from_utf8(handle)
        .map_err(|_| Status::invalid_argument("the statement handle is not UTF-8 SQL text"))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// Checks the credentials of the handshake (basic auth: the tenant as user, a token as
    /// password; or a bearer token) and answers with the bearer token to send from then on, as
    /// JDBC and ADBC expect.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        self.tenant(&request)?;
        let token = kiln_api::presented_token(&request.metadata().clone().into_headers());
        let answer = futures::stream::once(async {
            Ok(HandshakeResponse {
                protocol_version: 0,
                payload: Default::default(),
            })
        })
        .boxed();
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> = Response::new(answer);
        if let Some(token) = token
            && let Ok(value) = MetadataValue::try_from(format!("Bearer {token}"))
        {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.tenant(&request)?;
        self.info(&tenant, &query.query, request.into_inner()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let tenant = self.tenant(&request)?;
        let sql = handle_text(&query.prepared_statement_handle)?.to_string();
        self.info(&tenant, &sql, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tenant = self.tenant(&request)?;
        let sql = handle_text(&ticket.statement_handle)?.to_string();
        self.rows(&tenant, &sql).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let tenant = self.tenant(&request)?;
        let sql = handle_text(&query.prepared_statement_handle)?.to_string();
        self.rows(&tenant, &sql).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let tenant = self.tenant(&request)?;
        let schema = self
            .engine
            .schema(&tenant, &query.query)
            .await
            .map_err(status)?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e| Status::internal(format!("cannot encode the schema: {e}")))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Nothing is held for a prepared statement.
        self.tenant(&request)?;
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let answer = catalog::sql_info(query.clone());
        catalog_info(&query, answer, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.tenant(&request)?;
        batch_stream(catalog::sql_info(query))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let answer = catalog::catalogs(query);
        catalog_info(&query, answer, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.tenant(&request)?;
        batch_stream(catalog::catalogs(query))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let answer = catalog::schemas(query.clone());
        catalog_info(&query, answer, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.tenant(&request)?;
        batch_stream(catalog::schemas(query))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let answer = catalog::table_types(query);
        catalog_info(&query, answer, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.tenant(&request)?;
        batch_stream(catalog::table_types(query))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.tenant(&request)?;
        let answer = catalog::tables_batch(query.clone());
        catalog_info(&query, answer, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.tenant(&request)?;
        batch_stream(catalog::tables_batch(query))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

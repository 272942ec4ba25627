//! Conversions between the metastore API's protobuf messages and the contract's types, used by
//! the client here and by the metastore's gRPC service.

use kiln_model::{BlockMeta, DatasetMeta, LabelMatcher, MatchOp};
use kiln_proto::kiln::metastore::v1 as pb;

use super::{BlockQuery, Member, MetastoreError, TenantInfo};
use crate::Role;

/// A block as sent over the wire.
pub fn block_to_pb(block: &BlockMeta) -> pb::Block {
    pb::Block {
        id: block.id.clone(),
        path: block.path.clone(),
        shard: block.shard,
        compaction_level: block.compaction_level,
        min_time_nanos: block.min_time_nanos,
        max_time_nanos: block.max_time_nanos,
        size_bytes: block.size_bytes,
        datasets: block
            .datasets
            .iter()
            .map(|d| pb::Dataset {
                tenant: d.tenant.clone(),
                service_name: d.service_name.clone(),
                min_time_nanos: d.min_time_nanos,
                max_time_nanos: d.max_time_nanos,
                profile_types: d.profile_types.clone(),
                label_names: d.label_names.clone(),
                series: d.series,
                profiles: d.profiles,
                samples: d.samples,
            })
            .collect(),
    }
}

/// A block received over the wire, checked for what the index relies on.
pub fn block_from_pb(block: pb::Block) -> Result<BlockMeta, MetastoreError> {
    if block.id.is_empty() {
        return Err(MetastoreError::InvalidArgument(
            "a block has an empty id".into(),
        ));
    }
    if block.datasets.is_empty() {
        return Err(MetastoreError::InvalidArgument(format!(
            "block {} has no datasets",
            block.id
        )));
    }
    let mut datasets = Vec::with_capacity(block.datasets.len());
    for d in block.datasets {
        if d.tenant.is_empty() || d.min_time_nanos > d.max_time_nanos {
            return Err(MetastoreError::InvalidArgument(format!(
                "block {} has a dataset with tenant {:?} and time range [{}, {}]",
                block.id, d.tenant, d.min_time_nanos, d.max_time_nanos
            )));
        }
        datasets.push(DatasetMeta {
            tenant: d.tenant,
            service_name: d.service_name,
            min_time_nanos: d.min_time_nanos,
            max_time_nanos: d.max_time_nanos,
            profile_types: d.profile_types,
            label_names: d.label_names,
            series: d.series,
            profiles: d.profiles,
            samples: d.samples,
        });
    }
    Ok(BlockMeta {
        id: block.id,
        path: block.path,
        shard: block.shard,
        compaction_level: block.compaction_level,
        min_time_nanos: block.min_time_nanos,
        max_time_nanos: block.max_time_nanos,
        size_bytes: block.size_bytes,
        datasets,
    })
}

/// A block query as sent over the wire.
pub fn query_to_pb(query: &BlockQuery) -> pb::QueryBlocksRequest {
    pb::QueryBlocksRequest {
        tenant: query.tenant.clone(),
        start_nanos: query.start_nanos,
        end_nanos: query.end_nanos,
        matchers: query
            .matchers
            .iter()
            .map(|m| pb::LabelMatcher {
                name: m.name.clone(),
                op: match m.op {
                    MatchOp::Equal => pb::MatchOp::Equal,
                    MatchOp::NotEqual => pb::MatchOp::NotEqual,
                    MatchOp::Regex => pb::MatchOp::Regex,
                    MatchOp::NotRegex => pb::MatchOp::NotRegex,
                } as i32,
                value: m.value.clone(),
            })
            .collect(),
    }
}

/// A block query received over the wire, its regexes compiled.
pub fn query_from_pb(request: pb::QueryBlocksRequest) -> Result<BlockQuery, MetastoreError> {
    let mut matchers = Vec::with_capacity(request.matchers.len());
    for m in request.matchers {
        let op = match pb::MatchOp::try_from(m.op) {
            Ok(pb::MatchOp::Equal) => MatchOp::Equal,
            Ok(pb::MatchOp::NotEqual) => MatchOp::NotEqual,
            Ok(pb::MatchOp::Regex) => MatchOp::Regex,
            Ok(pb::MatchOp::NotRegex) => MatchOp::NotRegex,
            Err(_) => {
                return Err(MetastoreError::InvalidArgument(format!(
                    "unknown match operator {} for label {}",
                    m.op, m.name
                )));
            }
        };
        matchers.push(
            LabelMatcher::new(&m.name, op, &m.value)
                .map_err(|e| MetastoreError::InvalidArgument(e.to_string()))?,
        );
    }
    Ok(BlockQuery {
        tenant: request.tenant,
        start_nanos: request.start_nanos,
        end_nanos: request.end_nanos,
        matchers,
    })
}

/// A tenant as sent over the wire.
pub fn tenant_to_pb(tenant: TenantInfo) -> pb::Tenant {
    pb::Tenant {
        id: tenant.id,
        first_seen_nanos: tenant.first_seen_nanos,
        blocks: tenant.blocks,
        profiles: tenant.profiles,
        samples: tenant.samples,
    }
}

/// A tenant received over the wire.
pub fn tenant_from_pb(tenant: pb::Tenant) -> TenantInfo {
    TenantInfo {
        id: tenant.id,
        first_seen_nanos: tenant.first_seen_nanos,
        blocks: tenant.blocks,
        profiles: tenant.profiles,
        samples: tenant.samples,
    }
}

/// A member as sent over the wire.
pub fn member_to_pb(member: Member) -> pb::Member {
    pb::Member {
        role: member.role.as_str().to_string(),
        addr: member.addr,
        first_seen_millis: member.first_seen_millis,
        last_seen_millis: member.last_seen_millis,
    }
}

/// A member received over the wire; its role must be one Kiln knows.
pub fn member_from_pb(member: pb::Member) -> Result<Member, MetastoreError> {
    Ok(Member {
        role: role_from_pb(&member.role)?,
        addr: member.addr,
        first_seen_millis: member.first_seen_millis,
        last_seen_millis: member.last_seen_millis,
    })
}

/// A role name received over the wire: empty means none, anything else must be a known role.
pub fn role_from_pb(name: &str) -> Result<Role, MetastoreError> {
    name.parse()
        .map_err(|e: crate::UnknownRole| MetastoreError::InvalidArgument(e.to_string()))
}

//! Conversions between the metastore API's protobuf messages and the contract's types, used by
//! the client here and by the metastore's gRPC service.

use kiln_model::{BlockMeta, DatasetMeta, LabelMatcher, MatchOp};
use kiln_proto::kiln::metastore::v1 as pb;

use super::{
    BlockQuery, CompactionAssignment, CompactionJob, CompactionPoll, CompactionStatus, JobInfo,
    JobOutcome, JobState, JobUpdate, LevelInfo, Member, MetastoreError, RefusedUpdate,
    RetentionCutoff, RetentionRemoval, TenantInfo, Tombstone, TombstoneReason,
};
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
        tenant: block.tenant.clone(),
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
                region_offset: d.region_offset,
                region_length: d.region_length,
                series_offset: d.series_offset,
                series_length: d.series_length,
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
        if !block.tenant.is_empty() && d.tenant != block.tenant {
            return Err(MetastoreError::InvalidArgument(format!(
                "block {} of tenant {:?} has a dataset of tenant {:?}",
                block.id, block.tenant, d.tenant
            )));
        }
        if d.region_offset
            .checked_add(d.region_length)
            .is_none_or(|end| end > block.size_bytes)
        {
            return Err(MetastoreError::InvalidArgument(format!(
                "block {} of {} bytes has a dataset region [{}, +{}) beyond its end",
                block.id, block.size_bytes, d.region_offset, d.region_length
            )));
        }
        if d.series_offset
            .checked_add(d.series_length)
            .is_none_or(|end| end > d.region_length)
        {
            return Err(MetastoreError::InvalidArgument(format!(
                "block {} has a series section [{}, +{}) beyond its region of {} bytes",
                block.id, d.series_offset, d.series_length, d.region_length
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
            region_offset: d.region_offset,
            region_length: d.region_length,
            series_offset: d.series_offset,
            series_length: d.series_length,
        });
    }
    Ok(BlockMeta {
        id: block.id,
        tenant: block.tenant,
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
        matchers: query.matchers.iter().map(matcher_to_pb).collect(),
    }
}

/// A label matcher as sent over the wire.
pub fn matcher_to_pb(m: &LabelMatcher) -> pb::LabelMatcher {
    pb::LabelMatcher {
        name: m.name.clone(),
        op: match m.op {
            MatchOp::Equal => pb::MatchOp::Equal,
            MatchOp::NotEqual => pb::MatchOp::NotEqual,
            MatchOp::Regex => pb::MatchOp::Regex,
            MatchOp::NotRegex => pb::MatchOp::NotRegex,
        } as i32,
        value: m.value.clone(),
    }
}

/// A label matcher received over the wire, its regex compiled within the model's bounds.
pub fn matcher_from_pb(m: pb::LabelMatcher) -> Result<LabelMatcher, MetastoreError> {
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
    LabelMatcher::new(&m.name, op, &m.value)
        .map_err(|e| MetastoreError::InvalidArgument(e.to_string()))
}

/// A block query received over the wire, its regexes compiled.
pub fn query_from_pb(request: pb::QueryBlocksRequest) -> Result<BlockQuery, MetastoreError> {
    let matchers = request
        .matchers
        .into_iter()
        .map(matcher_from_pb)
        .collect::<Result<_, _>>()?;
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

/// A job as sent over the wire.
pub fn job_to_pb(job: &CompactionJob) -> pb::CompactionJob {
    pb::CompactionJob {
        name: job.name.clone(),
        tenant: job.tenant.clone(),
        shard: job.shard,
        level: job.level,
        sources: job.sources.iter().map(block_to_pb).collect(),
        token: job.token,
        lease_expires_millis: job.lease_expires_millis,
    }
}

/// A job received over the wire.
pub fn job_from_pb(job: pb::CompactionJob) -> Result<CompactionJob, MetastoreError> {
    Ok(CompactionJob {
        name: job.name,
        tenant: job.tenant,
        shard: job.shard,
        level: job.level,
        sources: job
            .sources
            .into_iter()
            .map(block_from_pb)
            .collect::<Result<_, _>>()?,
        token: job.token,
        lease_expires_millis: job.lease_expires_millis,
    })
}

/// A job update as sent over the wire.
pub fn update_to_pb(update: &JobUpdate) -> pb::JobUpdate {
    let (status, compacted, error) = match &update.outcome {
        JobOutcome::InProgress => (pb::JobStatus::InProgress, Vec::new(), String::new()),
        JobOutcome::Success(blocks) => (
            pb::JobStatus::Success,
            blocks.iter().map(block_to_pb).collect(),
            String::new(),
        ),
        JobOutcome::Failure(error) => (pb::JobStatus::Failure, Vec::new(), error.clone()),
    };
    pb::JobUpdate {
        name: update.name.clone(),
        token: update.token,
        status: status as i32,
        compacted,
        error,
    }
}

/// A job update received over the wire.
pub fn update_from_pb(update: pb::JobUpdate) -> Result<JobUpdate, MetastoreError> {
    let outcome = match pb::JobStatus::try_from(update.status) {
        Ok(pb::JobStatus::InProgress) => JobOutcome::InProgress,
        Ok(pb::JobStatus::Success) => JobOutcome::Success(
            update
                .compacted
                .into_iter()
                .map(block_from_pb)
                .collect::<Result<_, _>>()?,
        ),
        Ok(pb::JobStatus::Failure) => JobOutcome::Failure(update.error),
        Err(_) => {
            return Err(MetastoreError::InvalidArgument(format!(
                "job {}: unknown status {}",
                update.name, update.status
            )));
        }
    };
    Ok(JobUpdate {
        name: update.name,
        token: update.token,
        outcome,
    })
}

/// A tombstone as sent over the wire.
pub fn tombstone_to_pb(tombstone: &Tombstone) -> pb::Tombstone {
    pb::Tombstone {
        block_id: tombstone.block_id.clone(),
        path: tombstone.path.clone(),
        tenant: tombstone.tenant.clone(),
        reason: tombstone.reason.as_str().to_string(),
        created_millis: tombstone.created_millis,
    }
}

/// A tombstone received over the wire.
pub fn tombstone_from_pb(tombstone: pb::Tombstone) -> Result<Tombstone, MetastoreError> {
    let reason = TombstoneReason::parse(&tombstone.reason).ok_or_else(|| {
        MetastoreError::InvalidArgument(format!(
            "tombstone of block {}: unknown reason {:?}",
            tombstone.block_id, tombstone.reason
        ))
    })?;
    Ok(Tombstone {
        block_id: tombstone.block_id,
        path: tombstone.path,
        tenant: tombstone.tenant,
        reason,
        created_millis: tombstone.created_millis,
    })
}

/// A poll as sent over the wire.
pub fn poll_to_pb(poll: &CompactionPoll) -> pb::PollCompactionRequest {
    pb::PollCompactionRequest {
        worker: poll.worker.clone(),
        updates: poll.updates.iter().map(update_to_pb).collect(),
        job_capacity: poll.job_capacity,
        deleted: poll.deleted.clone(),
        deletion_capacity: poll.deletion_capacity,
        deletion_delay_millis: poll.deletion_delay_millis,
    }
}

/// A poll received over the wire.
pub fn poll_from_pb(poll: pb::PollCompactionRequest) -> Result<CompactionPoll, MetastoreError> {
    Ok(CompactionPoll {
        worker: poll.worker,
        updates: poll
            .updates
            .into_iter()
            .map(update_from_pb)
            .collect::<Result<_, _>>()?,
        job_capacity: poll.job_capacity,
        deleted: poll.deleted,
        deletion_capacity: poll.deletion_capacity,
        deletion_delay_millis: poll.deletion_delay_millis,
    })
}

/// A poll's answer as sent over the wire.
pub fn assignment_to_pb(assignment: &CompactionAssignment) -> pb::PollCompactionResponse {
    pb::PollCompactionResponse {
        jobs: assignment.jobs.iter().map(job_to_pb).collect(),
        refused: assignment
            .refused
            .iter()
            .map(|r| pb::RefusedUpdate {
                name: r.name.clone(),
                reason: r.reason.clone(),
                discard_outputs: r.discard_outputs,
            })
            .collect(),
        deletions: assignment.deletions.iter().map(tombstone_to_pb).collect(),
    }
}

/// A poll's answer received over the wire.
pub fn assignment_from_pb(
    response: pb::PollCompactionResponse,
) -> Result<CompactionAssignment, MetastoreError> {
    Ok(CompactionAssignment {
        jobs: response
            .jobs
            .into_iter()
            .map(job_from_pb)
            .collect::<Result<_, _>>()?,
        refused: response
            .refused
            .into_iter()
            .map(|r| RefusedUpdate {
                name: r.name,
                reason: r.reason,
                discard_outputs: r.discard_outputs,
            })
            .collect(),
        deletions: response
            .deletions
            .into_iter()
            .map(tombstone_from_pb)
            .collect::<Result<_, _>>()?,
    })
}

/// A compaction status as sent over the wire.
pub fn status_to_pb(status: &CompactionStatus) -> pb::CompactionStatusResponse {
    pb::CompactionStatusResponse {
        jobs: status
            .jobs
            .iter()
            .map(|j| pb::JobInfo {
                name: j.name.clone(),
                tenant: j.tenant.clone(),
                shard: j.shard,
                level: j.level,
                sources: j.sources,
                state: j.state.as_str().to_string(),
                failures: j.failures,
                worker: j.worker.clone(),
                lease_expires_millis: j.lease_expires_millis,
                last_error: j.last_error.clone(),
            })
            .collect(),
        levels: status
            .levels
            .iter()
            .map(|l| pb::LevelInfo {
                level: l.level,
                blocks: l.blocks,
                bytes: l.bytes,
                queued: l.queued,
            })
            .collect(),
        tombstones: status.tombstones.iter().map(tombstone_to_pb).collect(),
        oldest_level0_created_millis: status.oldest_level0_created_millis.unwrap_or(0),
    }
}

/// A compaction status received over the wire.
pub fn status_from_pb(
    status: pb::CompactionStatusResponse,
) -> Result<CompactionStatus, MetastoreError> {
    let mut jobs = Vec::with_capacity(status.jobs.len());
    for j in status.jobs {
        let state = JobState::parse(&j.state).ok_or_else(|| {
            MetastoreError::InvalidArgument(format!("job {}: unknown state {:?}", j.name, j.state))
        })?;
        jobs.push(JobInfo {
            name: j.name,
            tenant: j.tenant,
            shard: j.shard,
            level: j.level,
            sources: j.sources,
            state,
            failures: j.failures,
            worker: j.worker,
            lease_expires_millis: j.lease_expires_millis,
            last_error: j.last_error,
        });
    }
    Ok(CompactionStatus {
        jobs,
        levels: status
            .levels
            .into_iter()
            .map(|l| LevelInfo {
                level: l.level,
                blocks: l.blocks,
                bytes: l.bytes,
                queued: l.queued,
            })
            .collect(),
        tombstones: status
            .tombstones
            .into_iter()
            .map(tombstone_from_pb)
            .collect::<Result<_, _>>()?,
        oldest_level0_created_millis: (status.oldest_level0_created_millis != 0)
            .then_some(status.oldest_level0_created_millis),
    })
}

/// Retention cutoffs as sent over the wire.
pub fn cutoffs_to_pb(cutoffs: &[RetentionCutoff]) -> pb::ApplyRetentionRequest {
    pb::ApplyRetentionRequest {
        cutoffs: cutoffs
            .iter()
            .map(|c| pb::TenantCutoff {
                tenant: c.tenant.clone(),
                before_nanos: c.before_nanos,
            })
            .collect(),
    }
}

/// Retention cutoffs received over the wire.
pub fn cutoffs_from_pb(request: pb::ApplyRetentionRequest) -> Vec<RetentionCutoff> {
    request
        .cutoffs
        .into_iter()
        .map(|c| RetentionCutoff {
            tenant: c.tenant,
            before_nanos: c.before_nanos,
        })
        .collect()
}

/// What retention removed, as sent over the wire.
pub fn removals_to_pb(removed: &[RetentionRemoval]) -> pb::ApplyRetentionResponse {
    pb::ApplyRetentionResponse {
        removed: removed
            .iter()
            .map(|r| pb::RetentionRemoval {
                tenant: r.tenant.clone(),
                datasets: r.datasets,
                blocks: r.blocks,
            })
            .collect(),
    }
}

/// What retention removed, received over the wire.
pub fn removals_from_pb(response: pb::ApplyRetentionResponse) -> Vec<RetentionRemoval> {
    response
        .removed
        .into_iter()
        .map(|r| RetentionRemoval {
            tenant: r.tenant,
            datasets: r.datasets,
            blocks: r.blocks,
        })
        .collect()
}

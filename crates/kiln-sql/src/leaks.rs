//! The memory-leak report: functions whose in-use memory grows steadily across a range. It is a
//! SQL query over `samples` (restricted to the request's label selector): each function's
//! average in-use value per profile in each step, then a least-squares line through those
//! points per function (DataFusion's `regr_slope` and `regr_r2`).

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use kiln_model::TenantId;
use kiln_querier::Selector;
use serde::Serialize;

use crate::{SqlEngine, SqlError};

/// Steps a range is divided into: enough points for a fit, few enough rows per function.
const STEPS: i64 = 60;
/// The shortest step, as the profiles of a series come every 10 to 60 s.
const MIN_STEP_SECONDS: i64 = 60;
/// Functions listed at most.
pub(crate) const MAX_LEAKS: usize = 50;

/// What to look for leaks in.
#[derive(Clone, Debug)]
pub struct LeakQuery {
    /// A profile type of in-use memory, e.g. `memory:inuse_space:bytes:space:bytes`.
    pub profile_type: String,
    /// The series to read.
    pub selector: Selector,
    /// Start, unix nanoseconds.
    pub start_nanos: i64,
    /// End, unix nanoseconds.
    pub end_nanos: i64,
    /// The least coefficient of determination (R²) of the line through a function's points.
    pub min_fit: f64,
    /// The least growth from the line's start to its end, as a share of its start.
    pub min_growth: f64,
}

/// One function that leaks, as the line through its points says.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Leak {
    /// The function (self values: memory it allocated itself that is still in use).
    pub function: String,
    /// Growth per hour, in the profile type's unit.
    pub slope_per_hour: f64,
    /// R² of the line: 1 for perfectly steady growth.
    pub fit: f64,
    /// The average in-use value per profile in the first step the function appears in.
    pub first: f64,
    /// The same in the last step.
    pub last: f64,
    /// Steps the function appears in.
    pub points: u64,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
pub struct LeakReport {
    /// The profile type read.
    pub profile_type: String,
    /// The range read, unix nanoseconds.
    pub from: i64,
    /// End of the range.
    pub until: i64,
    /// The step of the points, seconds.
    pub step_seconds: i64,
    /// The leaking functions, fastest growth first.
    pub leaks: Vec<Leak>,
}

impl SqlEngine {
    /// The functions of `query` whose in-use value grows steadily.
    pub async fn leaks(
        &self,
        tenant: &TenantId,
        query: &LeakQuery,
    ) -> Result<LeakReport, SqlError> {
        let length = query.end_nanos.saturating_sub(query.start_nanos);
        let step = (length / 1_000_000_000 / STEPS).max(MIN_STEP_SECONDS);
        let profile_type = query.profile_type.replace('\'', "''");
        let (start, end) = (query.start_nanos, query.end_nanos);
        // Points: per step, each function's in-use value summed over the step's profiles and
        // divided by the number of profiles in the step (a function missing from a profile holds
        // nothing in it).
        let sql = format!(
            "WITH selected AS ( \
               SELECT function, value, time, \
                      date_bin(interval '{step} seconds', time, TIMESTAMP '1970-01-01T00:00:00Z') AS step \
               FROM samples \
               WHERE time >= to_timestamp_nanos({start}) AND time < to_timestamp_nanos({end}) \
                 AND profile_type = '{profile_type}'), \
             profiles AS (SELECT step, count(DISTINCT time) AS n FROM selected GROUP BY step), \
             points AS ( \
               SELECT s.function, s.step, CAST(sum(s.value) AS DOUBLE) / max(p.n) AS v \
               FROM selected s JOIN profiles p ON s.step = p.step \
               GROUP BY s.function, s.step) \
             SELECT function, \
                    regr_slope(v, date_part('epoch', step) / 3600.0) AS slope, \
                    regr_r2(v, date_part('epoch', step) / 3600.0) AS fit, \
                    first_value(v ORDER BY step) AS first, \
                    last_value(v ORDER BY step) AS last, \
                    count(*) AS points \
             FROM points GROUP BY function"
        );
        let answer = self
            .query_selected(tenant, &sql, Some(query.selector.clone()))
            .await?;
        let mut leaks = Vec::new();
        for batch in &answer.batches {
            let functions = batch.column(0).as_string::<i32>();
            let slope = batch.column(1).as_primitive::<Float64Type>();
            let fit = batch.column(2).as_primitive::<Float64Type>();
            let first = batch.column(3).as_primitive::<Float64Type>();
            let last = batch.column(4).as_primitive::<Float64Type>();
            let points = batch.column(5).as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                if slope.is_null(row) || fit.is_null(row) {
                    continue;
                }
                let leak = Leak {
                    function: functions.value(row).to_string(),
                    slope_per_hour: slope.value(row),
                    fit: fit.value(row),
                    first: first.value(row),
                    last: last.value(row),
                    points: u64::try_from(points.value(row)).unwrap_or(0),
                };
                let growth = leak.last - leak.first;
                if leak.points >= 3
                    && leak.slope_per_hour > 0.0
                    && leak.fit >= query.min_fit
                    && growth > 0.0
                    && growth >= query.min_growth * leak.first.abs()
                {
                    leaks.push(leak);
                }
            }
        }
        leaks.sort_by(|a, b| {
            b.slope_per_hour
                .total_cmp(&a.slope_per_hour)
                .then_with(|| a.function.cmp(&b.function))
        });
        leaks.truncate(MAX_LEAKS);
        Ok(LeakReport {
            profile_type: query.profile_type.clone(),
            from: start,
            until: end,
            step_seconds: step,
            leaks,
        })
    }
}

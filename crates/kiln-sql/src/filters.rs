//! What a scan of the profile tables can take from a query's WHERE clause: the time range,
//! and the service, profile type and labels (`labels['pod'] = '…'`), which narrow the
//! metastore's block selection and the series a dataset's rows are read for. Every filter stays in the plan as well (pushdown is
//! `Inexact`), so what is not understood here is still applied, exactly, above the scan.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator};
use kiln_querier::{MatchOp, Matcher, Selector};

use crate::schema::{LABELS, PROFILE_TYPE, SERVICE_NAME, TIME};

/// The parts of a WHERE clause a scan uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScanFilters {
    /// Lower bound of `time`, unix nanoseconds, inclusive.
    pub(crate) start: Option<i64>,
    /// Upper bound of `time`, unix nanoseconds, exclusive.
    pub(crate) end: Option<i64>,
    /// `service_name = '…'` or `service_name IN (…)`: one of these services.
    pub(crate) services: Option<Vec<String>>,
    /// `profile_type = '…'`.
    pub(crate) profile_type: Option<String>,
    /// `labels['name'] = 'value'`: label equalities that all hold.
    pub(crate) labels: Vec<(String, String)>,
}

impl ScanFilters {
    /// Reads the conjunction `filters` (DataFusion has split the WHERE clause at its ANDs).
    pub(crate) fn from_exprs(filters: &[Expr]) -> Self {
        let mut scan = Self::default();
        for filter in filters {
            scan.add(filter);
        }
        scan
    }

    fn add(&mut self, filter: &Expr) {
        match filter {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::And => {
                self.add(left);
                self.add(right);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) if *op == Operator::Eq => {
                match (label_name(left), label_name(right)) {
                    (Some(name), None) => self.label(name, right),
                    (None, Some(name)) => self.label(name, left),
                    _ => self.compare_either(left, *op, right),
                }
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                self.compare_either(left, *op, right)
            }
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) if column_name(expr) == Some(TIME) => {
                self.compare(TIME, Operator::GtEq, low);
                self.compare(TIME, Operator::LtEq, high);
            }
            Expr::InList(list)
                if !list.negated && column_name(&list.expr) == Some(SERVICE_NAME) =>
            {
                let services: Option<Vec<String>> = list.list.iter().map(string).collect();
                if let Some(services) = services {
                    self.narrow_services(services);
                }
            }
            _ => {}
        }
    }

    /// `labels[name] = value` with a string `value`.
    fn label(&mut self, name: String, value: &Expr) {
        if let Some(value) = string(value) {
            self.labels.push((name, value));
        }
    }

    /// A comparison of a column with a value, either way round.
    fn compare_either(&mut self, left: &Expr, op: Operator, right: &Expr) {
        match (left, right) {
            (column, value) if column_name(column).is_some() => {
                self.compare(column_name(column).unwrap_or_default(), op, value)
            }
            (value, column) if column_name(column).is_some() => {
                if let Some(op) = op.swap() {
                    self.compare(column_name(column).unwrap_or_default(), op, value)
                }
            }
            _ => {}
        }
    }

    fn compare(&mut self, column: &str, op: Operator, value: &Expr) {
        match column {
            TIME => {
                let Some(nanos) = nanoseconds(value) else {
                    return;
                };
                match op {
                    Operator::GtEq => self.start = Some(self.start.map_or(nanos, |s| s.max(nanos))),
                    Operator::Gt => self.raise_start(nanos.saturating_add(1)),
                    Operator::Lt => self.lower_end(nanos),
                    Operator::LtEq => self.lower_end(nanos.saturating_add(1)),
                    Operator::Eq => {
                        self.raise_start(nanos);
                        self.lower_end(nanos.saturating_add(1));
                    }
                    _ => {}
                }
            }
            SERVICE_NAME if op == Operator::Eq => {
                if let Some(service) = string(value) {
                    self.narrow_services(vec![service]);
                }
            }
            PROFILE_TYPE if op == Operator::Eq => {
                if let Some(profile_type) = string(value) {
                    self.profile_type = Some(profile_type);
                }
            }
            _ => {}
        }
    }

    fn raise_start(&mut self, nanos: i64) {
        self.start = Some(self.start.map_or(nanos, |s| s.max(nanos)));
    }

    fn lower_end(&mut self, nanos: i64) {
        self.end = Some(self.end.map_or(nanos, |e| e.min(nanos)));
    }

    /// Two conditions on the service both hold: keep the services both allow.
    fn narrow_services(&mut self, services: Vec<String>) {
        self.services = Some(match self.services.take() {
            None => services,
            Some(known) => known.into_iter().filter(|s| services.contains(s)).collect(),
        });
    }

    /// The label selectors of the querier's selection: one per service (any may match), each
    /// with the label equalities; none for every series.
    pub(crate) fn selectors(&self) -> Vec<Selector> {
        let labels: Vec<Matcher> = self
            .labels
            .iter()
            .filter_map(|(name, value)| Matcher::new(name, MatchOp::Equal, value).ok())
            .collect();
        let Some(services) = &self.services else {
            return if labels.is_empty() {
                Vec::new()
            } else {
                vec![Selector { matchers: labels }]
            };
        };
        services
            .iter()
            .filter_map(|service| {
                let matcher = Matcher::new(SERVICE_NAME, MatchOp::Equal, service).ok()?;
                let mut matchers = vec![matcher];
                matchers.extend(labels.iter().cloned());
                Some(Selector { matchers })
            })
            .collect()
    }
}

fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(column) => Some(column.name.as_str()),
        _ => None,
    }
}

/// The label `labels['name']` reads (DataFusion plans a map's index as `get_field`).
fn label_name(expr: &Expr) -> Option<String> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = expr else {
        return None;
    };
    match args.as_slice() {
        [map, key] if func.name() == "get_field" && column_name(map) == Some(LABELS) => string(key),
        _ => None,
    }
}

fn string(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        _ => None,
    }
}

/// A timestamp literal in unix nanoseconds (the planner casts literals compared with `time`
/// to its type, nanoseconds; other units are converted).
fn nanoseconds(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::common::tree_node::TreeNode;
    use datafusion::logical_expr::{col, lit};

    use super::*;

    fn ts(nanos: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(nanos),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn reads_bounds_services_and_types_from_a_conjunction() {
        let filters = [
            col(TIME).gt_eq(ts(100)),
            col(TIME).lt(ts(500)),
            ts(450).gt(col(TIME)),
            col(SERVICE_NAME).in_list(vec![lit("a"), lit("b")], false),
            col(SERVICE_NAME).eq(lit("b")),
            col(PROFILE_TYPE).eq(lit("process_cpu:cpu:nanoseconds:cpu:nanoseconds")),
            col("value").gt(lit(3i64)),
        ];
        let scan = ScanFilters::from_exprs(&filters);
        assert_eq!(scan.start, Some(100));
        assert_eq!(scan.end, Some(450));
        assert_eq!(scan.services, Some(vec!["b".to_string()]));
        assert_eq!(
            scan.profile_type.as_deref(),
            Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds")
        );
        assert_eq!(scan.selectors().len(), 1);
    }

    #[tokio::test]
    async fn label_equalities_as_planned_from_sql_become_matchers() {
        use datafusion::datasource::MemTable;
        use datafusion::logical_expr::LogicalPlan;
        use datafusion::logical_expr::utils::split_conjunction;
        use datafusion::prelude::SessionContext;

        let context = SessionContext::new();
        let table = MemTable::try_new(crate::schema::SAMPLES.clone(), vec![vec![]]).unwrap();
        context.register_table("samples", Arc::new(table)).unwrap();
        let plan = context
            .sql(
                "SELECT value FROM samples WHERE labels['pod'] = 'a' AND 'eu' = labels['region'] \
                 AND service_name = 's' AND labels['zone'] LIKE 'x%'",
            )
            .await
            .unwrap()
            .into_unoptimized_plan();
        let mut filters = Vec::new();
        plan.apply(|node| {
            if let LogicalPlan::Filter(filter) = node {
                filters.extend(split_conjunction(&filter.predicate).into_iter().cloned());
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        let scan = ScanFilters::from_exprs(&filters);
        assert_eq!(
            scan.labels,
            [
                ("pod".to_string(), "a".to_string()),
                ("region".into(), "eu".into())
            ]
        );
        let selectors = scan.selectors();
        assert_eq!(selectors.len(), 1);
        assert_eq!(selectors[0].matchers.len(), 3);
        // Labels alone, without a service, are one selector too.
        let scan = ScanFilters {
            labels: vec![("pod".into(), "a".into())],
            ..ScanFilters::default()
        };
        assert_eq!(scan.selectors().len(), 1);
    }

    #[test]
    fn between_and_strict_bounds_are_half_open() {
        let scan = ScanFilters::from_exprs(&[col(TIME).between(ts(10), ts(20))]);
        assert_eq!((scan.start, scan.end), (Some(10), Some(21)));
        let scan = ScanFilters::from_exprs(&[col(TIME).gt(ts(10)), col(TIME).lt_eq(ts(20))]);
        assert_eq!((scan.start, scan.end), (Some(11), Some(21)));
        // A disjunction says nothing the scan may rely on.
        let scan = ScanFilters::from_exprs(&[col(TIME).gt(ts(10)).or(col(TIME).lt(ts(5)))]);
        assert_eq!(scan, ScanFilters::default());
    }
}

//! EXPLAIN for split plans: one operator per line, each labelled with where it runs.

use datafusion_common::tree_node::TreeNodeRecursion;
use datafusion_expr::LogicalPlan;

use crate::{fragment_table, Fragment};

fn lines(plan: &LogicalPlan, depth: usize, out: &mut String, label: &dyn Fn(&LogicalPlan, usize, &mut String) -> bool) {
    if label(plan, depth, out) {
        return;
    }
    let _ = plan.apply_subqueries(|subquery| {
        if let LogicalPlan::Subquery(s) = subquery {
            out.push_str(&format!("{}  subquery:\n", "  ".repeat(depth)));
            lines(&s.subquery, depth + 2, out, label);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    for input in plan.inputs() {
        lines(input, depth + 1, out, label);
    }
}

/// The operators of a fragment's plan, each labelled REMOTE, indented by `depth`.
fn remote_lines(plan: &LogicalPlan, depth: usize, out: &mut String) {
    lines(plan, depth, out, &|node, depth, out| {
        out.push_str(&format!("{}[REMOTE] {}\n", "  ".repeat(depth), node.display()));
        false
    });
}

/// A fragment's plan, one REMOTE operator per line.
pub(crate) fn render_remote(plan: &LogicalPlan) -> String {
    let mut out = String::new();
    remote_lines(plan, 0, &mut out);
    out
}

/// The whole split plan: the local part, LOCAL, with each fragment it reads shown as a bridge
/// and the fragment's operators under it, REMOTE.
pub(crate) fn render(local: &LogicalPlan, fragments: &[Fragment]) -> String {
    let mut out = String::new();
    lines(local, 0, &mut out, &|node, depth, out| {
        if let LogicalPlan::TableScan(scan) = node {
            if let Some(fragment) = fragments.iter().find(|f| scan.table_name.table() == fragment_table(f.id)) {
                out.push_str(&format!(
                    "{}[LOCAL] Bridge(REMOTE→LOCAL) fragment {}: {} column(s)\n",
                    "  ".repeat(depth),
                    fragment.id,
                    fragment.column_count
                ));
                remote_lines(&fragment.plan, depth + 1, out);
                return true;
            }
        }
        out.push_str(&format!("{}[LOCAL] {}\n", "  ".repeat(depth), node.display()));
        false
    });
    out
}

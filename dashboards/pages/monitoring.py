"""Label-free monitoring: estimates on batches without labels, shift tests, the estimated class
prior, and estimates against measurements once labels exist."""

import streamlit as st

from app import charts
from app import charts_monitoring as mcharts
from dashboards import common, monitoring_view, queries

url, flt = common.page_setup("Label-free monitoring")
estimates = queries.estimates(url, flt)
if estimates.empty:
    st.info("No label-free estimates under these filters. A model gets them once it carries a monitoring "
            "calibration (`lpt train` fits one; `lpt calibrate` for other models) and the nightly job evaluates it.",
            icon=":material/visibility_off:")
    st.stop()
colours = queries.colours(url)
model = monitoring_view.pick_model(queries.models(url), estimates)
mine = estimates[estimates["model"] == model]
unlabeled = set(queries.estimated_top1(url, flt)["run_id"])

st.subheader(f"Batches without labels: estimated top-1 of {model}")
st.caption("Estimated without labels: ATC (Garg et al., ICLR 2022) counts images whose confidence exceeds a "
           "threshold fitted on labelled reference data; DoC (Guillory et al., ICCV 2021) lowers the reference "
           "accuracy by the drop in confidence. Predicted-group: images whose *predicted* class is in the group "
           "(true groups need labels). In the chart: filled = measured (with its 95% interval), hollow = estimated (ATC).")
latest = queries.latest_batches(url, flt, (model,), 12)
if not latest.empty:
    st.altair_chart(charts.batch_top1(latest, colours, title=f"Top-1 of {model} on its latest shifted batches"),
                    key="mo_batches", theme=None)
table = monitoring_view.unlabeled_table(mine, unlabeled)
if table.empty:
    st.caption(f"{model} has no batch without labels under these filters.")
else:
    st.dataframe(monitoring_view.as_percent(table), hide_index=True, key="mo_estimates",
                 column_config=monitoring_view.percent_config(table))

st.subheader("Shift tests")
tests = queries.detections(url, flt)
tests = tests[tests["model"] == model]
st.caption("BBSD: Kolmogorov-Smirnov on each class's softmax output, Bonferroni over classes; LPT only: "
           "prompt-selection frequencies (chi-square) and query-key cosine. p-values are adjusted by "
           "Benjamini-Hochberg over each night's tests; a shift is detected when the adjusted p is below alpha.")
st.dataframe(monitoring_view.verdicts(tests), hide_index=True, key="mo_verdicts")
batch = monitoring_view.pick_batch(tests.drop_duplicates("run_id"), unlabeled)
if batch is not None:
    st.dataframe(monitoring_view.tests_table(tests[tests["batch_id"] == batch]), hide_index=True, key="mo_tests")
    st.subheader("Class prior of the batch (estimated) against the training prior")
    priors = queries.prior_vs_training(url, flt, model, batch)
    if priors.empty:
        st.caption("No class-prior estimate (or no training counts) for this batch.")
    else:
        st.altair_chart(mcharts.class_prior_vs_training(priors.assign(batch=f"{model} on {batch}"),
                                                       title=f"Class prior of {batch} (estimated from {model}'s "
                                                             "predictions) against the training prior"),
                        key="mo_prior", theme=None, width="content")
        st.dataframe(monitoring_view.prior_table(priors), hide_index=True, key="mo_priors",
                     column_config={c: st.column_config.NumberColumn(format="%.1f") for c in
                                    ("training prior", "reference prior", "batch prior (estimated)",
                                     "change from reference (pp)")})

st.subheader("Estimates against measurements (batches with labels)")
checks = queries.estimate_vs_measured(url, flt)
if checks.empty:
    st.caption("No batch has both labels and estimates yet.")
else:
    st.caption("Once labels exist (a labelled batch, or labels that came later for a sample) each estimate is compared "
               "with the measured top-1 of the same images. Error: mean absolute error, percentage points.")
    mine_checks = checks[checks["model"] == model]
    left, right = st.columns(2)
    if not mine_checks.empty:
        left.altair_chart(mcharts.estimate_vs_measured(mine_checks, title=f"Estimated against measured top-1 of {model}"),
                          key="mo_vs", theme=None, width="content")
        errors = queries.estimator_errors(url, flt)
        right.altair_chart(mcharts.estimator_error_trend(errors[errors["model"] == model],
                                                        title=f"Error of {model}'s estimators, night by night"),
                           key="mo_errors", theme=None, width="content")
    table = monitoring_view.error_table(checks, list(colours))
    st.dataframe(table, hide_index=True, key="mo_error_table",
                 column_config={c: st.column_config.NumberColumn(format="%.1f") for c in table.columns if "error" in c})

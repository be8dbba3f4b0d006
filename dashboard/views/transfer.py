"""Transfer: how a study's top candidates and baselines did on networks of other families (`layerforge transfer`).

Test-split accuracy per transfer proxy, mean ± std over seeds, and each layer against the best baseline of that
proxy (mean paired difference, paired t-test p), as the command prints it.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import state
from search.transfer_results import best_baseline, compare_cell, transfer_runs


@st.cache_data(ttl=10, show_spinner=False)
def transfer_table(url: str, study_name: str) -> tuple[pd.DataFrame, dict[str, int], dict[str, str]]:
    """One row per layer and proxy; the steps each proxy's latest runs used; the best baseline per proxy."""
    store = state.store()
    study = store.get_study(study_name)
    results, steps = transfer_runs(store, study)
    rows, best_names = [], {}
    for proxy in steps:
        best = best_baseline(results, proxy)
        best_names[proxy] = best.label if best else "-"
        for runs in results:
            if proxy not in runs.runs:
                continue
            cell = compare_cell(runs, proxy, best)
            rows.append(
                {
                    "proxy": proxy,
                    "layer": runs.label,
                    "baseline": runs.is_baseline,
                    "formula": runs.formula,
                    "mean": cell.mean,
                    "std": cell.std,
                    "seeds": cell.n,
                    "no value": cell.without_value,
                    "vs best": cell.delta,
                    "p (paired t)": cell.p,
                    "candidate": runs.candidate_id,
                }
            )
    return pd.DataFrame(rows), steps, best_names


st.title("Transfer")
names = [s.name for s in state.studies()]
if not names:
    st.info("The store holds no study yet.")
    st.stop()
asked = st.query_params.get("study")
study_name = st.selectbox("Study", names, index=names.index(asked) if asked in names else 0, key="transfer_study")
st.query_params["study"] = study_name
table, steps, best = transfer_table(state.db_url(), study_name)
if table.empty:
    st.info(
        f"No transfer runs yet: `layerforge transfer {study_name} --top 3 --seeds 3` trains the top candidates and "
        "the baselines on ResNets with post- and pre-activation blocks and a small transformer LM."
    )
    st.stop()
st.caption(
    "Test-split accuracy (trained on train + validation), mean ± std over seeds. vs best: mean paired difference "
    "to the best baseline of that proxy over the seeds both finished; p: two-sided paired t-test. "
    "no value: runs that diverged or failed."
)
for proxy, proxy_steps in steps.items():
    st.subheader(f"{proxy} ({proxy_steps} steps) · best baseline: {best[proxy]}")
    shown = table[table["proxy"] == proxy].drop(columns="proxy").sort_values("mean", ascending=False)
    st.dataframe(
        shown,
        hide_index=True,
        key=f"transfer_{proxy}",
        column_config={
            "mean": st.column_config.NumberColumn(format="%.4f"),
            "std": st.column_config.NumberColumn(format="%.4f"),
            "vs best": st.column_config.NumberColumn(format="%+.4f"),
            "p (paired t)": st.column_config.NumberColumn(format="%.3g"),
        },
    )

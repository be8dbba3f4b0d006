"""LayerForge dashboard: watch a layer search live, inspect candidates, export them.

Started by `layerforge dashboard`; the store URL comes from $LAYERFORGE_DB. Pages live in ``views/`` and
share their state through query parameters, so every view has a link that can be shared.
"""

from __future__ import annotations

import streamlit as st

from dashboard import state
from search.db_urls import redact_url

st.set_page_config(page_title="LayerForge", page_icon=":material/hub:", layout="wide")
navigation = st.navigation(
    [
        st.Page(state.PAGES["studies"], title="Studies", icon=":material/table_rows:", default=True),
        st.Page(state.PAGES["study"], title="Study", icon=":material/monitoring:"),
        st.Page(state.PAGES["explore"], title="Explore", icon=":material/insights:"),
        st.Page(state.PAGES["candidate"], title="Candidate", icon=":material/function:"),
        st.Page(state.PAGES["compare"], title="Compare", icon=":material/compare:"),
        st.Page("views/transfer.py", title="Transfer", icon=":material/swap_horiz:"),
    ]
)
st.sidebar.caption(f"Store (read-only): `{redact_url(state.db_url())}`")
navigation.run()

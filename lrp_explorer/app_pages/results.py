"""Results: read a folder written by ``python -m lrp_engine batch`` (locally or on Ray: one
format): its config, the mean curves and summary table, and its items sorted by a metric,
worst explained first, each with its input, maps, mask outline and curves.

Nothing is computed here; the folder is read by :mod:`ui.results_view` (cached by path and
modification times; one item's maps only when it is selected).
"""

import streamlit as st

from lrp_explorer.ui import results_view as rv

st.title("Results")
st.markdown(
    "A results folder holds what `python -m lrp_engine batch --out FOLDER` wrote: the maps "
    "and metrics of every item, on this machine or on a Ray cluster. Type its path on the "
    "server; the newest folder under `results/` is opened by default.")

folder = rv.folder_picker()
try:
    run = rv.open_run(folder)
except rv.FolderProblem as e:
    e.show()
    st.stop()
rv.show_config(run)
if run.table.empty:
    st.warning("No item is finished in this folder yet: run the batch command again (it "
               "resumes where it stopped).")
    st.stop()

st.subheader("Summary")
rv.show_summary_curves(run)
rv.show_summary_table(run)
rv.show_certainty(run)

st.subheader("Items")
sort_by, method, worst_first = rv.sort_controls(run)
items = rv.sorted_items(run, method, sort_by, worst_first)
page = rv.page_picker(len(items))
shown = rv.page_of(items, page)
st.dataframe(rv.items_frame(shown, sort_by, method), hide_index=True,
             height=rv.table_height(len(shown)))
key = rv.item_picker(shown)
rv.show_item(run, key)

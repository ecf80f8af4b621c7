"""LRP Explorer's Streamlit app (``app.py``, the pages in ``app_pages/``, the widgets in
``ui/``) and the ``lrp-explorer`` command (:mod:`lrp_explorer.cli`). The engine is
:mod:`lrp_engine`; this package needs the ``app`` extra (``pip install ".[app]"``)."""

from pathlib import Path

#: the app's entry script, for ``streamlit run``
APP = Path(__file__).resolve().parent / "app.py"

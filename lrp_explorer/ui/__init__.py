"""Streamlit-side building blocks shared by the pages (the engine stays Streamlit-free).

- :mod:`ui.state`: session-state keys and the digit shared between pages;
- :mod:`ui.resources`: cached models and data (``st.cache_resource``);
- :mod:`ui.compute`: cached explanations keyed by input bytes, model id and rule choice;
- :mod:`ui.rule_table`: the preset selector + per-layer rule table → ``le.Composite``;
- :mod:`ui.digit_input`: canvas / held-out digit / upload → a 28×28 digit;
- :mod:`ui.flipping`: the live pixel-flipping job (batches, stop, resume, summary);
- :mod:`ui.home`: the home page's example picture;
- :mod:`ui.scan_input`: photo / scan / checkpoint inputs of the Image explorer and MRI
  inspector (uploads read in memory, text shown as plain text);
- :mod:`ui.report`: the MRI inspector's PNG/PDF report and its B-LRP with progress.
"""

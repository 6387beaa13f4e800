"""The pieces the pages are built from, one job each (find the one to change by its name):

- ``overview``: the datasets page: search, counts, the datasets table, the storage chart.
- ``add_dialog`` and ``plan_view``: adding a dataset: the form with its options, and what would
  be registered (subsets, partitions, schema, first rows) before anything is written.
- ``dataset_view``: one dataset: details, description editing, its subsets, deleting it.
- ``subset_view``: one subset: its title and the tabs below, kept up to date after downloads.
- ``partitions``: the partitions table (selection for downloads and removals).
- ``downloads``: download, progress, cancel and remove controls.
- ``rows_panel``, ``query_bar``, ``pager``, ``rows_table``: the viewer: every row of a
  downloaded subset, page by page, sorted and filtered.
- ``source_preview``: the first rows of a subset that is not downloaded, read from its source.
- ``stats_panel``: column statistics.
- ``schema_table``: a schema, nested fields indented.
- ``snippets``: code that loads the subset, with copy buttons.
- ``login``: the sign-in form.

Each component is built inside a page function, so every browser tab has its own elements and
state; components call the operations of the process's Manager in worker threads.
"""

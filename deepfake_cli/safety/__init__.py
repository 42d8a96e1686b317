"""The write-safety rules, one module each, below every stage and store:

* `space`: the free-space check before a write and the one type (`DiskFullError`) of a disk that fills
  during one;
* `atomic`: the atomic write (a temporary name beside the target, fsync, rename) and the one cleaner of
  the temporaries a killed writer left;
* `locks`: one writer per output (`output_lock`), and forked helpers that die with their parent;
* `digest`: the sha256 of a JSON dump that names a run, a cache entry or an image list.

* `fileio`: whole text files written atomically, and the one copy of each text format (JSON, CSV cells
  guarded against spreadsheet formulas, Markdown escaped).

The output guards (`store.outputs`) and the extraction's recovery (`store.recovery`) are built on these;
nothing here imports a store, a stage or a backbone.
"""
